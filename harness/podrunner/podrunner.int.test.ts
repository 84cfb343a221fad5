/**
 * The local pod runner against a control plane of its own (no kwok T4 nodes, so the only T4
 * node is the runner's), with the CRDs, the default HardwareClasses and the operator's
 * controllers: a modelplane Deployment of `modelplane.local/echo:dev` on `gpu-t4` runs as a
 * real Cog server and sidecar on the pod's own loopback address, turns Ready only once the
 * model server is up, and answers predictions; an image it cannot run shows why; deleting a
 * pod drains it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../crds/index.ts';
import {
  applyDefaultHardware,
  applyModel,
  clientFor,
  podsOf,
  startOperator,
} from '../../operator/controllers/testing.ts';
import type { Operator as Manager } from '../../operator/main.ts';
import { Deployments, Nodes, type Pod, Pods, Secrets } from '../../operator/resources.ts';
import { createLogger, type KubeClient, Leases } from '../../operator/runtime/index.ts';
import { SidecarKey } from '../../operator/sidecar-key.ts';
import { LocalCluster } from '../cluster/local.ts';
import { groupAlive, waitFor } from '../processes.ts';
import { PodRunner, RUNNER_LABEL, runnerPools } from './runner.ts';

const SIDECAR_IMAGE = 'ghcr.io/modelplane/modelplane:e2e';
const NS = 'podrunner';

let cluster: LocalCluster | undefined;
let runner: PodRunner | undefined;
let operator: Manager | undefined;
let client: KubeClient;

const isReady = (p: Pod | undefined) =>
  p?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;

async function onePod(deployment: string): Promise<Pod> {
  return waitFor(
    `a pod of ${deployment}`,
    async () => {
      const pods = await podsOf(client, NS, deployment);
      return pods.length === 1 ? pods[0] : undefined;
    },
    { timeoutMs: 30_000, intervalMs: 100 },
  );
}

async function health(ip: string): Promise<string> {
  try {
    const res = await fetch(`http://${ip}:5000/health-check`, { signal: AbortSignal.timeout(1000) });
    return ((await res.json()) as { status: string }).status;
  } catch {
    return 'UNREACHABLE';
  }
}

/** The operator's credential for the sidecar at `ip` (its key is in the operator's namespace, 'default'). */
async function asOperator(ip: string): Promise<{ authorization: string }> {
  return {
    authorization: await SidecarKey.inNamespace(client, 'default').authorization(`http://${ip}:8080`),
  };
}

async function predict(ip: string, input: Record<string, unknown>) {
  const res = await fetch(`http://${ip}:8080/predictions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', prefer: 'wait', ...(await asOperator(ip)) },
    body: JSON.stringify({ input }),
  });
  return {
    code: res.status,
    body: (await res.json()) as { status: string; output?: unknown; error?: unknown },
  };
}

beforeAll(async () => {
  // No kwok nodes at all: the runner's are the only ones.
  cluster = await LocalCluster.start({ pools: [] });
  client = clientFor(cluster.kubeconfig);
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(client);
  runner = new PodRunner({
    kubeconfig: cluster.kubeconfig,
    name: 'e2e',
    pools: runnerPools('e2e', { t4: 1 }),
    modelplaneImages: [SIDECAR_IMAGE],
    logDir: mkdtempSync(join(tmpdir(), 'modelplane-podrunner-test-')),
    restartBackoff: { initialMs: 1000, maxMs: 5000 },
    resyncMs: 1000,
    // The API server restart below makes every watch warn; LOG_LEVEL=info shows the runner at work.
    log: createLogger({ level: process.env.LOG_LEVEL ?? 'error' }),
  });
  await runner.start();
  operator = await startOperator(cluster.kubeconfig, {
    sidecarImage: SIDECAR_IMAGE,
    resyncPeriodMs: 60_000,
    logLevel: process.env.LOG_LEVEL ?? 'error',
  });
  await client.create(
    { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
    {
      apiVersion: 'v1',
      kind: 'Namespace',
      metadata: { name: NS },
    },
  );
  await waitFor(`the default ServiceAccount in ${NS}`, async () =>
    client.find(
      { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
      'default',
      NS,
    ),
  );
}, 180_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail')
    process.stderr.write(
      `\n${ctx.task.name} failed; container logs in ${runner?.logDir}\n${cluster?.describe()}\n`,
    );
});

afterAll(async () => {
  await operator?.stop();
  const groups = runner?.processGroups ?? [];
  await runner?.stop();
  // Every process the runner started is gone once stop() resolves.
  const left = groups.filter(groupAlive);
  await cluster?.stop();
  expect(left).toEqual([]);
}, 120_000);

describe('the local pod runner', () => {
  it('registers its nodes, labelled, GPU-sized and Ready, with a fresh Lease', async () => {
    const node = await client.get(Nodes, 'e2e-gpu-t4-0');
    expect(node.metadata?.labels).toMatchObject({
      [RUNNER_LABEL]: 'e2e',
      'nvidia.com/gpu.product': 'Tesla-T4',
      'modelplane.dev/pool': 'e2e-gpu-t4',
    });
    expect(node.metadata?.annotations?.['kwok.x-k8s.io/node']).toBeUndefined();
    expect(node.status?.allocatable?.['nvidia.com/gpu']).toBe('4');
    expect(node.status?.conditions?.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(node.status?.addresses).toContainEqual({ type: 'InternalIP', address: '127.0.0.1' });
    const lease = await client.get(Leases, 'e2e-gpu-t4-0', 'kube-node-lease');
    const renewed = Date.parse(lease.spec?.renewTime ?? '');
    expect(Date.now() - renewed).toBeLessThan(30_000);
  });

  it('runs a Deployment of modelplane.local/echo on its T4 node: Ready once the model is, then serving', async () => {
    await applyModel(client, NS, 'echo', { hardware: 'gpu-t4', image: 'modelplane.local/echo:dev' });
    const pod = await onePod('echo');
    const uid = pod.metadata?.uid ?? '';
    // Sample the pod's Ready condition and the Cog server's health until the pod is Ready.
    const samples: { ready: boolean; ip?: string; health: string }[] = [];
    const readyPod = await waitFor(
      'the echo pod to be Ready',
      async () => {
        const p = await client.get(Pods, pod.metadata?.name ?? '', NS);
        const ip = p.status?.podIP;
        const h = ip ? await health(ip) : 'NO_IP';
        samples.push({ ready: isReady(p), ip, health: h });
        return isReady(p) ? p : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    const ip = readyPod.status?.podIP ?? '';
    expect(ip).toMatch(/^127\.10\.\d+\.\d+$/);
    expect(runner!.nodeNames).toContain(readyPod.spec?.nodeName);
    // While the model server was not READY, the pod was never Ready ...
    expect(samples.filter((s) => s.ready && s.health !== 'READY')).toEqual([]);
    // ... and it was seen with its IP, not Ready, while the model server was not READY yet.
    expect(samples.some((s) => !s.ready && s.ip && s.health !== 'READY')).toBe(true);
    // Ready is the sidecar's /ready, over a model server that is READY.
    expect((await fetch(`http://${ip}:8080/ready`)).status).toBe(200);
    expect(await health(ip)).toBe('READY');
    const full = await client.get(Pods, readyPod.metadata?.name ?? '', NS);
    expect(full.status?.phase).toBe('Running');
    expect(full.status?.hostIP).toBe('127.0.0.1');
    expect(full.status?.podIPs).toEqual([{ ip }]);
    expect(full.status?.containerStatuses?.map((c) => [c.name, c.ready, c.restartCount])).toEqual([
      ['model', true, 0],
      ['sidecar', true, 0],
    ]);

    const { code, body } = await predict(ip, { text: 'hello from the pod runner' });
    expect(code).toBe(201);
    expect(body.status).toBe('succeeded');
    expect(body.output).toBe('hello from the pod runner');
    // The sidecar takes only the operator's calls; the webhook token is the runner's, per pod.
    expect((await fetch(`http://${ip}:8080/load`)).status).toBe(401);
    expect(await client.find(Secrets, 'echo-webhook-token', NS)).toBeUndefined();
    expect(runner!.processGroupsOf(uid)).toHaveLength(2);
    // The operator sees the Deployment Ready on one instance.
    await waitFor('the echo Deployment to be Ready', async () => {
      const d = await client.get(Deployments, 'echo', NS);
      return (
        d.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') &&
        d.status.readyInstances === 1
      );
    });
  });

  it('shows an image it cannot run as ErrImagePull / ImagePullBackOff, never Running', async () => {
    await applyModel(client, NS, 'ghost', {
      hardware: 'gpu-t4',
      image: 'registry.example.com/models/ghost:1.0',
    });
    const pod = await onePod('ghost');
    const waiting = await waitFor(
      'the ghost model container to wait on its image',
      async () => {
        const p = await client.get(Pods, pod.metadata?.name ?? '', NS);
        const w = p.status?.containerStatuses?.find((c) => c.name === 'model')?.state?.waiting;
        return w?.reason && /ImagePull/.test(w.reason) ? { p, w } : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(['ErrImagePull', 'ImagePullBackOff']).toContain(waiting.w.reason);
    expect(waiting.w.message).toContain('registry.example.com/models/ghost:1.0');
    expect(waiting.w.message).toContain('modelplane.local/<name>');
    expect(waiting.p.status?.phase).toBe('Pending');
    expect(isReady(waiting.p)).toBe(false);
    await waitFor('the ghost Deployment to report ImagePullFailed', async () => {
      const d = await client.get(Deployments, 'ghost', NS);
      return d.status?.conditions?.some((c) => c.type === 'Degraded' && c.reason === 'ImagePullFailed');
    });
    await client.delete(Deployments, 'ghost', NS, { propagationPolicy: 'Background' });
  });

  it('restarts crashing and unhealthy containers with back-off; a pod that ends for good is Failed', async () => {
    const pod = (
      name: string,
      restartPolicy: IPodSpec['restartPolicy'],
      container: Omit<IContainer, 'name'>,
    ): Pod => ({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace: NS },
      spec: {
        restartPolicy,
        nodeSelector: { [RUNNER_LABEL]: 'e2e' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
        terminationGracePeriodSeconds: 2,
        containers: [{ name: 'main', image: SIDECAR_IMAGE, ...container }],
      },
    });
    // `modelplane no-such-command` exits 2.
    await client.create(Pods, pod('crashloop', 'Always', { args: ['no-such-command'] }));
    await client.create(Pods, pod('once', 'Never', { args: ['no-such-command'] }));
    // A sidecar whose liveness probe asks a port nothing listens on.
    await client.create(
      Pods,
      pod('unlive', 'Always', {
        args: ['sidecar'],
        livenessProbe: { httpGet: { path: '/live', port: 8081 }, periodSeconds: 1, failureThreshold: 2 },
      }),
    );
    const main = async (name: string) => {
      const p = await client.get(Pods, name, NS);
      return { phase: p.status?.phase, c: p.status?.containerStatuses?.[0] };
    };
    const crash = await waitFor(
      'crashloop to be restarted and back off',
      async () => {
        const { c, phase } = await main('crashloop');
        return c && c.restartCount >= 1 && c.state?.waiting?.reason === 'CrashLoopBackOff'
          ? { c, phase }
          : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(crash.c.lastState?.terminated?.exitCode).toBe(2);
    expect(crash.c.state?.waiting?.message).toMatch(/back-off \d+s restarting failed container=main/);
    expect(crash.phase).toBe('Running');
    const once = await waitFor('once to fail', async () => {
      const r = await main('once');
      return r.phase === 'Failed' ? r : undefined;
    });
    expect(once.c?.state?.terminated?.exitCode).toBe(2);
    expect(once.c?.restartCount).toBe(0);
    const unlive = await waitFor(
      'unlive to be restarted by its liveness probe',
      async () => {
        const r = await main('unlive');
        return r.c && r.c.restartCount >= 1 ? r : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(unlive.c?.lastState?.terminated).toBeDefined();
    for (const name of ['crashloop', 'once', 'unlive']) await client.delete(Pods, name, NS);
    await waitFor('the pods to be removed', async () => {
      const left = await Promise.all(['crashloop', 'once', 'unlive'].map((n) => client.find(Pods, n, NS)));
      return left.every((p) => p === undefined);
    });
  });

  it('runs a preStop hook before SIGTERM, within the grace period', async () => {
    await client.create(Pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'hooked', namespace: NS },
      spec: {
        nodeSelector: { [RUNNER_LABEL]: 'e2e' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
        terminationGracePeriodSeconds: 10,
        containers: [
          {
            name: 'main',
            image: SIDECAR_IMAGE,
            args: ['sidecar', '--model-url', 'http://127.0.0.1:5999'],
            ports: [{ name: 'api', containerPort: 8080 }],
            // The sidecar exits at once on SIGTERM when it has nothing to drain.
            lifecycle: { preStop: { sleep: { seconds: 2 } } },
          },
        ],
      },
    });
    const running = await waitFor('hooked to run', async () => {
      const p = await client.get(Pods, 'hooked', NS);
      return p.status?.containerStatuses?.[0]?.state?.running ? p : undefined;
    });
    const [group] = runner!.processGroupsOf(running.metadata?.uid ?? '');
    expect(group).toBeDefined();
    const deletedAt = Date.now();
    await client.delete(Pods, 'hooked', NS);
    await new Promise((r) => setTimeout(r, 1000));
    // A second into the 2 s hook, the container still runs and the pod is still there.
    expect(groupAlive(group!)).toBe(true);
    expect(await client.find(Pods, 'hooked', NS)).toBeDefined();
    const goneAt = await waitFor(
      'hooked to be removed',
      async () => ((await client.find(Pods, 'hooked', NS)) ? undefined : Date.now()),
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    expect(goneAt - deletedAt).toBeGreaterThanOrEqual(2000);
    expect(goneAt - deletedAt).toBeLessThan(10_000);
    expect(groupAlive(group!)).toBe(false);
  });

  it('carries on after the API server restarts: a new pod runs to Succeeded', async () => {
    await cluster!.restartApiServer();
    await client.create(Pods, {
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name: 'after-restart', namespace: NS },
      spec: {
        restartPolicy: 'Never',
        nodeSelector: { [RUNNER_LABEL]: 'e2e' },
        tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
        containers: [{ name: 'main', image: SIDECAR_IMAGE, args: ['--version'] }],
      },
    });
    const done = await waitFor(
      'the pod created after the restart to succeed',
      async () => {
        const p = await client.get(Pods, 'after-restart', NS);
        return p.status?.phase === 'Succeeded' ? p : undefined;
      },
      { timeoutMs: 60_000 },
    );
    expect(done.status?.podIP).toMatch(/^127\.10\./);
    await client.delete(Pods, 'after-restart', NS);
    await waitFor('after-restart to be removed', async () => !(await client.find(Pods, 'after-restart', NS)));
  });

  it('drains a deleted pod: the running prediction finishes, then the processes exit and the pod goes', async () => {
    await applyModel(client, NS, 'sleepy', { hardware: 'gpu-t4', image: 'modelplane.local/sleep:dev' });
    const pod = await onePod('sleepy');
    const name = pod.metadata?.name ?? '';
    const uid = pod.metadata?.uid ?? '';
    const ready = await waitFor(
      'the sleepy pod to be Ready',
      async () => {
        const p = await client.get(Pods, name, NS);
        return isReady(p) ? p : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const ip = ready.status?.podIP ?? '';
    const groups = runner!.processGroupsOf(uid);
    expect(groups).toHaveLength(2);

    const prediction = predict(ip, { seconds: 3 }).then((r) => ({ ...r, at: Date.now() }));
    await waitFor('the prediction to run', async () => {
      const load = (await (
        await fetch(`http://${ip}:8080/load`, { headers: await asOperator(ip) })
      ).json()) as {
        inflight: number;
      };
      return load.inflight === 1;
    });
    const deletedAt = Date.now();
    await client.delete(Pods, name, NS);
    const gone = waitFor(
      'the deleted pod to be removed',
      async () => ((await client.find(Pods, name, NS)) ? undefined : Date.now()),
      { timeoutMs: 40_000, intervalMs: 50 },
    );
    const done = await prediction;
    expect(done.code).toBe(201);
    expect(done.body.status).toBe('succeeded');
    expect(done.body.output).toBe('slept 3 s');
    const goneAt = await gone;
    expect(goneAt).toBeGreaterThan(done.at);
    expect(groups.filter(groupAlive)).toEqual([]);
    // It ended by draining (the sidecar's POST /shutdown), well inside the 35 s grace period.
    expect(goneAt - deletedAt).toBeLessThan(20_000);
  });
});
