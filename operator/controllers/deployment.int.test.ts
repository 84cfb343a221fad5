/**
 * The Deployment controller against the real control plane and its fake GPU node pools:
 * placement, capacity problems and their recovery, releases, deletion, and no-op reconciles.
 */
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../crds/index.ts';
import { createNodePools } from '../../harness/cluster/local.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import { publicKeyText } from '../../lib/sidecar-token.ts';
import type { Operator } from '../main.ts';
import { Deployments, type Pod, Pods, Secrets, Workloads } from '../resources.ts';
import { type KubeObject, ownsField, resourceType } from '../runtime/index.ts';
import { SIDECAR_KEY_SECRET } from '../sidecar-key.ts';
import { AUTOSCALER_FIELD_MANAGER } from './names.ts';
import { MODEL_CONTAINER, SIDECAR_CONTAINER } from './pod-spec.ts';
import {
  applyDefaultHardware,
  applyModel,
  clientFor,
  podsOf,
  reconciles,
  startOperator,
  TEST_MANAGER,
  workloadsOf,
} from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-deploy');
const client = clientFor(cluster.kubeconfig);
let operator: Operator;
const EXTRA_NODE = 'gpu-h100-extra-0';
const ReplicaSets = resourceType<KubeObject>({
  apiVersion: 'apps/v1',
  kind: 'ReplicaSet',
  plural: 'replicasets',
  namespaced: true,
});

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(client);
  operator = await startOperator(cluster.kubeconfig, { resyncPeriodMs: 500 });
});
afterAll(async () => {
  await operator?.stop();
  // Without their workloads, nothing recreates the pods the namespace's teardown deletes.
  for (const w of await workloadsOf(client, ns())) {
    await client.delete(Workloads, w.metadata?.name ?? '', ns(), { propagationPolicy: 'Background' });
  }
  await cluster.core.deleteNode({ name: EXTRA_NODE }).catch(() => {});
});

async function status(name: string) {
  return (await client.get(Deployments, name, ns())).status;
}

function condition(s: Awaited<ReturnType<typeof status>>, type: string) {
  return s?.conditions?.find((c) => c.type === type);
}

async function ready(name: string, instances: number) {
  return waitFor(
    `${name} to be Ready with ${instances} instances`,
    async () => {
      const s = await status(name);
      return condition(s, 'Ready')?.status === 'True' && s?.readyInstances === instances ? s : undefined;
    },
    { timeoutMs: 60_000 },
  );
}

function gpuLimit(
  pod: Pod & { spec?: { containers?: { name: string; resources?: { limits?: Record<string, string> } }[] } },
) {
  return pod.spec?.containers?.find((c) => c.name === MODEL_CONTAINER)?.resources?.limits?.['nvidia.com/gpu'];
}

async function deleteAndWaitGone(name: string) {
  await client.delete(Deployments, name, ns(), { propagationPolicy: 'Background' });
  await waitFor(
    `every child of ${name} to be gone`,
    async () => {
      const [w, p] = await Promise.all([
        workloadsOf(client, ns(), name),
        client.list(
          { apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true },
          { namespace: ns(), labelSelector: `modelplane.dev/deployment=${name}` },
        ),
      ]);
      return w.length === 0 && p.items.length === 0;
    },
    { timeoutMs: 60_000 },
  );
}

describe('the Deployment controller', () => {
  it('places each hardware on its pool with its GPU limits, and deleting removes every child', async () => {
    const cases = [
      { name: 'on-t4', hardware: 'gpu-t4', pool: 'gpu-t4-', gpus: '1' },
      { name: 'on-a100', hardware: 'gpu-a100-80gb', pool: 'gpu-a100-80gb-', gpus: '1' },
      { name: 'on-h100x2', hardware: 'gpu-h100-2x', pool: 'gpu-h100-', gpus: '2' },
      { name: 'on-cpu', hardware: 'cpu', pool: 'cpu-', gpus: undefined },
    ];
    for (const c of cases) await applyModel(client, ns(), c.name, { hardware: c.hardware });
    for (const c of cases) {
      const s = await ready(c.name, 1);
      expect(s.release).toBe(1);
      expect(s.versionId).toMatch(/^[0-9a-f]{64}$/);
      const pods = await podsOf(client, ns(), c.name);
      expect(pods).toHaveLength(1);
      const pod = pods[0] as Parameters<typeof gpuLimit>[0];
      expect(pod.spec?.nodeName?.startsWith(c.pool), `${c.name} on ${pod.spec?.nodeName}`).toBe(true);
      expect(gpuLimit(pod)).toBe(c.gpus);
      const [w] = await workloadsOf(client, ns(), c.name);
      expect(w?.metadata?.ownerReferences?.[0]).toMatchObject({
        kind: 'Deployment',
        name: c.name,
        controller: true,
      });
    }
    for (const c of cases) await deleteAndWaitGone(c.name);
  });

  it("reports InsufficientCapacity with the scheduler's message, and recovers when a node arrives", async () => {
    // Two H100 nodes of eight GPUs hold two 8-GPU instances; the third cannot be placed.
    await applyModel(client, ns(), 'big', { hardware: 'gpu-h100-8x', minInstances: 3, maxInstances: 3 });
    const degraded = await waitFor(
      'big to be Degraded for capacity',
      async () => {
        const c = condition(await status('big'), 'Degraded');
        return c?.status === 'True' && c.reason === 'InsufficientCapacity' ? c : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(degraded.message).toMatch(/Insufficient nvidia\.com\/gpu/);
    expect(degraded.message).toMatch(/nodes are available/);
    expect(condition(await status('big'), 'Ready')).toMatchObject({
      status: 'False',
      reason: 'InsufficientCapacity',
    });

    await createNodePools(cluster.kubeconfig, [
      {
        name: 'gpu-h100-extra',
        count: 1,
        cpu: '192',
        memory: '2048Gi',
        gpu: { product: 'NVIDIA-H100-80GB-HBM3', count: 8, memoryMiB: 81559, family: 'hopper' },
      },
    ]);
    const s = await ready('big', 3);
    expect(condition(s, 'Degraded')).toMatchObject({ status: 'False' });
    await deleteAndWaitGone('big');
    await cluster.core.deleteNode({ name: EXTRA_NODE });
  });

  it('rolls the pods and the release when the version changes', async () => {
    await applyModel(client, ns(), 'rolling', { hardware: 'cpu', minInstances: 2, maxInstances: 2 });
    const first = await ready('rolling', 2);
    expect(first.release).toBe(1);
    await applyModel(client, ns(), 'rolling', {
      hardware: 'cpu',
      minInstances: 2,
      maxInstances: 2,
      version: 'rolling-v2',
      image: 'registry.example.com/models/echo:2.0',
    });
    const second = await waitFor(
      'release 2 to be rolled out',
      async () => {
        const s = await status('rolling');
        const pods = await podsOf(client, ns(), 'rolling');
        return s?.release === 2 &&
          condition(s, 'Ready')?.status === 'True' &&
          pods.length === 2 &&
          pods.every(
            (p) =>
              p.metadata?.labels?.['modelplane.dev/release'] === '2' &&
              p.metadata?.labels?.['modelplane.dev/version'] === 'rolling-v2',
          )
          ? s
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(second.versionId).not.toBe(first.versionId);
    const [w] = await workloadsOf(client, ns(), 'rolling');
    expect(w?.spec?.template.spec?.containers.find((c) => c.name === MODEL_CONTAINER)?.image).toBe(
      'registry.example.com/models/echo:2.0',
    );
  });

  it('cuts a release without replacing pods when only maxInstances changes; a new version replaces them', async () => {
    await applyModel(client, ns(), 'bounds', { hardware: 'cpu', minInstances: 2, maxInstances: 2 });
    const first = await ready('bounds', 2);
    const uids = async () => (await podsOf(client, ns(), 'bounds')).map((p) => p.metadata?.uid ?? '').sort();
    const before = await uids();
    expect(before).toHaveLength(2);
    const replicaSets = async () =>
      (
        await client.list(ReplicaSets, { namespace: ns(), labelSelector: 'modelplane.dev/deployment=bounds' })
      ).items.map((r) => r.metadata?.uid);
    const setsBefore = await replicaSets();

    await applyModel(client, ns(), 'bounds', { hardware: 'cpu', minInstances: 2, maxInstances: 5 });
    const second = await waitFor(
      'release 2 of bounds, Ready',
      async () => {
        const s = await status('bounds');
        return s?.release === first.release! + 1 &&
          s.observedGeneration === (await client.get(Deployments, 'bounds', ns())).metadata?.generation &&
          condition(s, 'Ready')?.status === 'True'
          ? s
          : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(second.readyInstances).toBe(2);
    const [w] = await workloadsOf(client, ns(), 'bounds');
    expect(w?.metadata?.labels?.['modelplane.dev/release']).toBe(String(second.release));
    // The pods of release 1 still serve release 2: same UIDs, no new ReplicaSet.
    expect(await uids()).toEqual(before);
    expect(await replicaSets()).toEqual(setsBefore);
    expect(w?.spec?.template.metadata?.labels?.['modelplane.dev/release']).toBe(String(first.release));

    // A new version needs new pods: they replace the old ones, labelled with the new release.
    await applyModel(client, ns(), 'bounds', {
      hardware: 'cpu',
      minInstances: 2,
      maxInstances: 5,
      version: 'bounds-v2',
      image: 'registry.example.com/models/echo:2.0',
    });
    const third = await waitFor(
      'release 3 of bounds rolled out on new pods',
      async () => {
        const s = await status('bounds');
        const pods = await podsOf(client, ns(), 'bounds');
        return s?.release === second.release! + 1 &&
          condition(s, 'Ready')?.status === 'True' &&
          pods.length === 2 &&
          pods.every((p) => p.metadata?.labels?.['modelplane.dev/release'] === String(s.release))
          ? s
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const after = await uids();
    expect(after.filter((u) => before.includes(u))).toEqual([]);
    expect(third.versionId).not.toBe(second.versionId);
    await deleteAndWaitGone('bounds');
  });

  it('makes no write when objects are re-applied unchanged and resyncs run', async () => {
    await ready('rolling', 2);
    // Kubernetes' own deployment controller finishes its status first, and the autoscaler
    // has taken over the count (it applies spec.replicas and its state annotation once).
    const w = await waitFor(
      'the workload to be complete',
      async () => {
        const x = await client.get(Workloads, 'rolling', ns());
        const st = x.status;
        const done =
          st?.observedGeneration === x.metadata?.generation &&
          st?.replicas === 2 &&
          st?.updatedReplicas === 2 &&
          st?.availableReplicas === 2 &&
          // Pods of the previous release still terminating would move its status again.
          ((st as { terminatingReplicas?: number }).terminatingReplicas ?? 0) === 0 &&
          (
            await client.list(Pods, { namespace: ns(), labelSelector: 'modelplane.dev/deployment=rolling' })
          ).items.every((p) => !p.metadata?.deletionTimestamp) &&
          st?.conditions?.some((c) => c.type === 'Progressing' && c.reason === 'NewReplicaSetAvailable') &&
          ownsField(x, AUTOSCALER_FIELD_MANAGER, ['spec', 'replicas']);
        return done ? x : undefined;
      },
      { timeoutMs: 90_000 },
    );
    // The autoscaler's part of the status is in.
    const before = await waitFor('the scaling status', async () => {
      const s = await status('rolling');
      return condition(s, 'Ready')?.status === 'True' && s?.desiredInstances === 2 && s.queued === 0
        ? s
        : undefined;
    });
    const obj = await client.get(Deployments, 'rolling', ns());
    const rv = { deployment: obj.metadata?.resourceVersion, workload: w?.metadata?.resourceVersion };
    // The same manifests again, as a GitOps tool re-applies them.
    await applyModel(client, ns(), 'rolling', {
      hardware: 'cpu',
      minInstances: 2,
      maxInstances: 2,
      version: 'rolling-v2',
      image: 'registry.example.com/models/echo:2.0',
    });
    const start = await reconciles(operator.manager, 'deployment');
    await waitFor(
      'several resyncs',
      async () => (await reconciles(operator.manager, 'deployment')) >= start + 4,
      {
        timeoutMs: 30_000,
      },
    );
    const after = await client.get(Deployments, 'rolling', ns());
    const wAfter = await client.get(Workloads, 'rolling', ns());
    expect(after.status).toEqual(before);
    expect(after.metadata?.resourceVersion).toBe(rv.deployment);
    expect(
      wAfter.metadata?.resourceVersion,
      JSON.stringify(wAfter.metadata?.managedFields?.map((f) => [f.manager, f.operation, f.subresource])),
    ).toBe(rv.workload);
  });

  it('reports VersionNotFound and HardwareClassNotFound', async () => {
    await applyModel(client, ns(), 'broken', { hardware: 'gpu-nonexistent' });
    await waitFor('HardwareClassNotFound', async () => {
      const s = await status('broken');
      return (
        condition(s, 'Degraded')?.reason === 'HardwareClassNotFound' &&
        condition(s, 'Ready')?.status === 'False'
      );
    });
    expect(condition(await status('broken'), 'Degraded')?.message).toContain('gpu-t4');
    await client.mergePatch(
      Deployments,
      'broken',
      ns(),
      { spec: { hardware: 'cpu', version: 'missing-v1' } },
      { fieldManager: TEST_MANAGER },
    );
    await waitFor(
      'VersionNotFound',
      async () => condition(await status('broken'), 'Degraded')?.reason === 'VersionNotFound',
    );
    expect(await workloadsOf(client, ns(), 'broken')).toHaveLength(0);
  });

  it("gives the pods the operator's public key and makes no Secret in the Deployment's namespace", async () => {
    await applyModel(client, ns(), 'keyed', { hardware: 'cpu' });
    await ready('keyed', 1);
    // The key pair lives in the operator's namespace ('default' for the test operator).
    const keySecret = await client.get(Secrets, SIDECAR_KEY_SECRET, 'default');
    const pem = Buffer.from(keySecret.data?.['ed25519.pem'] ?? '', 'base64').toString();
    const publicKey = publicKeyText(createPublicKey(createPrivateKey(pem)));
    const [w] = await workloadsOf(client, ns(), 'keyed');
    const containers = w?.spec?.template.spec?.containers ?? [];
    const sidecarEnv = containers.find((c) => c.name === SIDECAR_CONTAINER)?.env ?? [];
    expect(sidecarEnv.find((e) => e.name === 'MODELPLANE_OPERATOR_KEY')?.value).toBe(publicKey);
    expect(sidecarEnv.find((e) => e.name === 'MODELPLANE_POD_IP')?.valueFrom).toEqual({
      fieldRef: { apiVersion: 'v1', fieldPath: 'status.podIP' },
    });
    const model = containers.find((c) => c.name === MODEL_CONTAINER);
    expect(model?.ports).toBeUndefined();
    expect(model?.securityContext).toMatchObject({ runAsNonRoot: true, allowPrivilegeEscalation: false });
    for (const c of containers) expect((c.env ?? []).map((e) => e.name)).not.toContain('WEBHOOK_AUTH_TOKEN');
    const { items } = await client.list(Secrets, { namespace: ns() });
    expect(items.map((x) => x.metadata?.name).filter((n) => n?.startsWith('keyed'))).toEqual([]);
    await deleteAndWaitGone('keyed');
  });
});
