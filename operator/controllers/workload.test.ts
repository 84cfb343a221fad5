import { describe, expect, it } from 'vitest';
import {
  ANNOTATION,
  DeploymentSpecSchema,
  HardwareClassSpecSchema,
  LABEL,
  ModelVersionSpecSchema,
} from '../../crds/index.ts';
import type { Pod, Workload, WorkloadCondition } from '../resources.ts';
import {
  deploymentStatus,
  desiredWebhookSecret,
  desiredWorkload,
  MODEL_CONTAINER,
  releaseFor,
  releaseHash,
  replicasToApply,
  SIDECAR_CONTAINER,
  WEBHOOK_TOKEN_KEY,
  type WorkloadInput,
  webhookSecretName,
} from './workload.ts';

const h100x2 = HardwareClassSpecSchema.parse({
  displayName: '2x Nvidia H100 GPU',
  gpu: { count: 2, products: ['NVIDIA-H100-80GB-HBM3', 'NVIDIA-H100-PCIe'] },
  nodeSelector: { 'node.kubernetes.io/instance-type': 'p5.48xlarge' },
  tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
  resources: { cpu: '40', memory: '400Gi' },
  pricePerSecond: '0.003050',
});
const cpu = HardwareClassSpecSchema.parse({
  displayName: 'CPU',
  resources: { cpu: '2', memory: '4Gi' },
  pricePerSecond: '0.000100',
});
const version = ModelVersionSpecSchema.parse({
  model: 'llama',
  image: 'registry.example.com/llama@sha256:0123456789abcdef0123456789abcdef',
  env: [
    { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf', key: 'token' } } },
    { name: 'PORT', value: '9999' },
    { name: 'MODE', value: 'fast' },
  ],
  imagePullSecrets: [{ name: 'pull' }],
  maxConcurrency: 4,
  predictTimeoutSeconds: 300,
});
const spec = DeploymentSpecSchema.parse({
  model: 'llama',
  version: 'llama-v1',
  hardware: 'gpu-h100-2x',
  minInstances: 0,
  maxInstances: 3,
  rollout: { strategy: 'Recreate' },
});

function input(overrides: Partial<WorkloadInput> = {}): WorkloadInput {
  return {
    owner: { name: 'llama', namespace: 'team', uid: 'uid-1' },
    spec,
    version: { name: 'llama-v1', id: 'a'.repeat(64), spec: version },
    hardware: { name: 'gpu-h100-2x', spec: h100x2 },
    release: 3,
    releaseHash: releaseHash(spec),
    sidecarImage: 'ghcr.io/modelplane/modelplane:0.1.0',
    ...overrides,
  };
}

describe('desiredWorkload', () => {
  const w = desiredWorkload(input());
  const pod = w.spec!.template.spec!;
  const model = pod.containers.find((c) => c.name === MODEL_CONTAINER)!;
  const sidecar = pod.containers.find((c) => c.name === SIDECAR_CONTAINER)!;

  it('is owned by the modelplane Deployment, as its controller', () => {
    expect(w.metadata?.ownerReferences).toEqual([
      {
        apiVersion: 'modelplane.dev/v1alpha1',
        kind: 'Deployment',
        name: 'llama',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    expect(w.metadata?.name).toBe('llama');
    expect(w.metadata?.namespace).toBe('team');
  });

  it('labels the workload and its pods with the deployment, version and release', () => {
    for (const labels of [w.metadata!.labels!, w.spec!.template.metadata!.labels!]) {
      expect(labels).toMatchObject({
        [LABEL.deployment]: 'llama',
        [LABEL.version]: 'llama-v1',
        [LABEL.release]: '3',
        'app.kubernetes.io/name': 'llama',
        'app.kubernetes.io/instance': 'llama',
        'app.kubernetes.io/managed-by': 'modelplane',
        'app.kubernetes.io/part-of': 'modelplane',
      });
    }
    expect(w.spec!.selector.matchLabels).toEqual({ [LABEL.deployment]: 'llama' });
    expect(w.metadata?.annotations?.[ANNOTATION.releaseHash]).toBe(releaseHash(spec));
    expect(w.spec!.template.metadata?.annotations?.[ANNOTATION.versionId]).toBe('a'.repeat(64));
  });

  it('sets replicas only when told to, with the rollout settings of the spec', () => {
    expect(w.spec).not.toHaveProperty('replicas');
    expect(desiredWorkload(input({ replicas: 0 })).spec!.replicas).toBe(0);
    expect(w.spec!.strategy).toEqual({ type: 'Recreate' });
    expect(w.spec!.progressDeadlineSeconds).toBe(1800);
    const rolling = desiredWorkload(
      input({ spec: DeploymentSpecSchema.parse({ ...spec, minInstances: 2, rollout: { maxSurge: '50%' } }) }),
    );
    expect(rolling.spec!.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: '50%', maxUnavailable: 0 },
    });
  });

  it('leaves replicas to the autoscaler once it owns them, and starts a new workload at minInstances', () => {
    const existing: Workload = { spec: { replicas: 5, selector: {}, template: {} } };
    expect(replicasToApply(spec, undefined, false)).toBe(0);
    expect(replicasToApply(DeploymentSpecSchema.parse({ ...spec, minInstances: 2 }), undefined, false)).toBe(
      2,
    );
    expect(replicasToApply(spec, existing, false)).toBe(5);
    expect(replicasToApply(spec, existing, true)).toBeUndefined();
  });

  it('gives the model container the image, env, PORT, Cog settings and the class resources with its GPUs', () => {
    expect(model.image).toBe(version.image);
    expect(model.env).toEqual([
      { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf', key: 'token' } } },
      { name: 'MODE', value: 'fast' },
      { name: 'PORT', value: '5000' },
      { name: 'COG_MAX_CONCURRENCY', value: '4' },
      { name: 'COG_SETUP_TIMEOUT', value: '600' },
      {
        name: 'WEBHOOK_AUTH_TOKEN',
        valueFrom: { secretKeyRef: { name: 'llama-webhook-token', key: 'token' } },
      },
    ]);
    const want = { cpu: '40', memory: '400Gi', 'nvidia.com/gpu': '2' };
    expect(model.resources).toEqual({ requests: want, limits: want });
    expect(pod.imagePullSecrets).toEqual([{ name: 'pull' }]);
  });

  it('places pods on the accepted GPU products, the extra node selector, with the tolerations', () => {
    expect(
      pod.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms,
    ).toEqual([
      {
        matchExpressions: [
          {
            key: 'nvidia.com/gpu.product',
            operator: 'In',
            values: ['NVIDIA-H100-80GB-HBM3', 'NVIDIA-H100-PCIe'],
          },
        ],
      },
    ]);
    expect(pod.nodeSelector).toEqual({ 'node.kubernetes.io/instance-type': 'p5.48xlarge' });
    expect(pod.tolerations).toEqual([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }]);
  });

  it('runs the sidecar with its env, ports, readiness probe and a restricted security context', () => {
    expect(sidecar.image).toBe('ghcr.io/modelplane/modelplane:0.1.0');
    expect(sidecar.args).toEqual(['sidecar']);
    const env = Object.fromEntries((sidecar.env ?? []).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({
      MODELPLANE_DEPLOYMENT: 'team/llama',
      MODELPLANE_MODEL_VERSION: 'a'.repeat(64),
      MODELPLANE_HARDWARE: 'gpu-h100-2x',
      MODELPLANE_PRICE_PER_SECOND: '0.003050',
      COG_MAX_CONCURRENCY: '4',
      MODELPLANE_PREDICT_TIMEOUT: '300',
      MODELPLANE_SHUTDOWN_MODEL: 'true',
    });
    expect(sidecar.ports).toEqual([
      { name: 'api', containerPort: 8080, protocol: 'TCP' },
      { name: 'metrics', containerPort: 9090, protocol: 'TCP' },
    ]);
    expect(sidecar.readinessProbe?.httpGet).toEqual({ path: '/ready', port: 'api' });
    expect(sidecar.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  it('gives a terminating pod the predict timeout to drain, the model server stopped by the sidecar', () => {
    expect(pod.terminationGracePeriodSeconds).toBe(330);
    const drain = Number(sidecar.env?.find((e) => e.name === 'MODELPLANE_DRAIN_TIMEOUT')?.value);
    expect(drain).toBeGreaterThanOrEqual(300);
    expect(drain).toBeLessThan(330);
    // The Cog server ignores SIGTERM and waits for the sidecar's POST /shutdown; no preStop sleep.
    expect(model.args).toEqual(['python', '-m', 'cog.server.http', '--await-explicit-shutdown', 'true']);
    expect(model.command).toBeUndefined();
    expect(model.lifecycle).toBeUndefined();
    expect(sidecar.env?.find((e) => e.name === 'MODELPLANE_SHUTDOWN_MODEL')?.value).toBe('true');
  });

  it("gives both containers the one webhook token, from the Deployment's Secret", () => {
    const ref = { secretKeyRef: { name: webhookSecretName('llama'), key: WEBHOOK_TOKEN_KEY } };
    for (const c of [model, sidecar]) {
      const token = (c.env ?? []).filter((e) => e.name === 'WEBHOOK_AUTH_TOKEN');
      expect(token).toEqual([{ name: 'WEBHOOK_AUTH_TOKEN', valueFrom: ref }]);
    }
  });

  it("keeps WEBHOOK_AUTH_TOKEN from a version's env", () => {
    const v = ModelVersionSpecSchema.parse({
      ...version,
      env: [{ name: 'WEBHOOK_AUTH_TOKEN', value: 'mine' }],
    });
    const p = desiredWorkload(input({ version: { name: 'llama-v1', id: 'a'.repeat(64), spec: v } })).spec!
      .template.spec!;
    const env = p.containers.find((c) => c.name === MODEL_CONTAINER)!.env ?? [];
    expect(env.filter((e) => e.name === 'WEBHOOK_AUTH_TOKEN')).toEqual([
      {
        name: 'WEBHOOK_AUTH_TOKEN',
        valueFrom: { secretKeyRef: { name: 'llama-webhook-token', key: 'token' } },
      },
    ]);
  });

  it('leaves GPUs, affinity and tolerations out on CPU hardware', () => {
    const p = desiredWorkload(input({ hardware: { name: 'cpu', spec: cpu } })).spec!.template.spec!;
    const m = p.containers.find((c) => c.name === MODEL_CONTAINER)!;
    expect(m.resources?.limits).toEqual({ cpu: '2', memory: '4Gi' });
    expect(p.affinity).toBeUndefined();
    expect(p.tolerations).toBeUndefined();
    expect(p.nodeSelector).toBeUndefined();
  });

  it('is a pure function of its input', () => {
    expect(desiredWorkload(input())).toEqual(desiredWorkload(input()));
  });
});

describe('desiredWebhookSecret', () => {
  const owner = { name: 'llama', namespace: 'team', uid: 'uid-1' };

  it('is owned by the modelplane Deployment and holds a random 32-byte token', () => {
    const a = desiredWebhookSecret(owner);
    const b = desiredWebhookSecret(owner);
    expect(a.metadata.name).toBe('llama-webhook-token');
    expect(a.metadata.namespace).toBe('team');
    expect(a.metadata.ownerReferences).toEqual([
      {
        apiVersion: 'modelplane.dev/v1alpha1',
        kind: 'Deployment',
        name: 'llama',
        uid: 'uid-1',
        controller: true,
        blockOwnerDeletion: true,
      },
    ]);
    expect(a.metadata.labels[LABEL.deployment]).toBe('llama');
    expect(a.type).toBe('Opaque');
    const token = Buffer.from(a.data[WEBHOOK_TOKEN_KEY]!, 'base64').toString('utf8');
    expect(token).toMatch(/^[0-9a-f]{64}$/);
    expect(b.data[WEBHOOK_TOKEN_KEY]).not.toBe(a.data[WEBHOOK_TOKEN_KEY]);
  });

  it('takes a given token', () => {
    expect(desiredWebhookSecret(owner, 'abc').data).toEqual({ token: Buffer.from('abc').toString('base64') });
  });
});

describe('releaseFor', () => {
  const hash = releaseHash(spec);
  const child = (release: number, h: string): Workload => ({
    metadata: { labels: { [LABEL.release]: String(release) }, annotations: { [ANNOTATION.releaseHash]: h } },
  });

  it('cuts release 1 for a new Deployment', () => {
    expect(releaseFor(hash, undefined, undefined, 1)).toEqual({ release: 1, cut: true });
  });
  it("keeps the workload's release while the spec is the same", () => {
    expect(releaseFor(hash, child(4, hash), { release: 4, observedGeneration: 1 }, 2)).toEqual({
      release: 4,
      cut: false,
    });
  });
  it('cuts the next release when the spec changed', () => {
    expect(releaseFor('other', child(4, hash), { release: 4, observedGeneration: 4 }, 5)).toEqual({
      release: 5,
      cut: true,
    });
  });
  it('keeps the release of a current status when the workload is gone', () => {
    expect(releaseFor(hash, undefined, { release: 2, observedGeneration: 3 }, 3)).toEqual({
      release: 2,
      cut: false,
    });
  });
  it('gives a different hash for every change of the spec', () => {
    expect(releaseHash(DeploymentSpecSchema.parse({ ...spec, version: 'llama-v2' }))).not.toBe(hash);
    expect(releaseHash(DeploymentSpecSchema.parse({ ...spec }))).toBe(hash);
  });
});

describe('deploymentStatus', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  const gpuSpec = DeploymentSpecSchema.parse({ ...spec, minInstances: 1 });
  const workload: Workload = {
    metadata: { generation: 1 },
    spec: { replicas: 1, selector: {}, template: {} },
    status: { observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1 },
  };
  const pod = (release: number, conditions: WorkloadCondition[]): Pod => ({
    metadata: { labels: { [LABEL.release]: String(release) } },
    status: { conditions },
  });
  const readyPod = pod(1, [{ type: 'Ready', status: 'True' }]);
  const pendingPod = pod(1, [
    {
      type: 'PodScheduled',
      status: 'False',
      reason: 'Unschedulable',
      message: '0/8 nodes are available: 2 Insufficient nvidia.com/gpu.',
    },
  ]);
  const base = {
    generation: 1,
    spec: gpuSpec,
    previous: undefined,
    release: 1,
    versionId: 'b'.repeat(64),
    hardware: 'gpu-h100-2x',
    workload,
    now,
  };
  const cond = (s: ReturnType<typeof deploymentStatus>, type: string) =>
    s.conditions?.find((c) => c.type === type);

  it('is Ready and Available once the release runs on every instance', () => {
    const s = deploymentStatus({ ...base, pods: [readyPod] });
    expect(s).toMatchObject({ instances: 1, readyInstances: 1, release: 1 });
    // The autoscaler writes desiredInstances, not the Deployment controller.
    expect(s).not.toHaveProperty('desiredInstances');
    expect(cond(s, 'Ready')).toMatchObject({ status: 'True', reason: 'Ready' });
    expect(cond(s, 'Available')).toMatchObject({ status: 'True' });
    expect(cond(s, 'Progressing')).toMatchObject({ status: 'False', reason: 'ReleaseRolledOut' });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'False' });
    expect(s.versionId).toBe('b'.repeat(64));
  });

  it("compares ready instances with the workload's replicas, which the autoscaler sets", () => {
    const scaled: Workload = {
      ...workload,
      spec: { replicas: 3, selector: {}, template: {} },
      status: { observedGeneration: 1, replicas: 3, updatedReplicas: 3, readyReplicas: 1 },
    };
    const s = deploymentStatus({ ...base, workload: scaled, pods: [readyPod] });
    expect(cond(s, 'Progressing')).toMatchObject({
      status: 'True',
      message: 'release 1: 1 of 3 instances ready',
    });
    const zero: Workload = {
      ...workload,
      spec: { replicas: 0, selector: {}, template: {} },
      status: { observedGeneration: 1 },
    };
    const z = deploymentStatus({ ...base, spec: spec, workload: zero, pods: [] });
    expect(cond(z, 'Ready')).toMatchObject({
      status: 'True',
      message: 'release 1 is scaled to zero; the next prediction starts an instance',
    });
    expect(cond(z, 'Available')).toMatchObject({ status: 'True' });
  });

  it("reports InsufficientCapacity with the scheduler's message when a pod cannot be placed", () => {
    const s = deploymentStatus({ ...base, pods: [pendingPod] });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'InsufficientCapacity' });
    expect(cond(s, 'Degraded')?.message).toContain('0/8 nodes are available: 2 Insufficient nvidia.com/gpu.');
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'InsufficientCapacity' });
    expect(cond(s, 'Available')).toMatchObject({ status: 'False', reason: 'InsufficientInstances' });
  });

  it('is Progressing while pods of an older release remain', () => {
    const s = deploymentStatus({ ...base, release: 2, pods: [pod(1, [{ type: 'Ready', status: 'True' }])] });
    expect(cond(s, 'Progressing')).toMatchObject({ status: 'True', reason: 'RollingOut' });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'RollingOut' });
    expect(cond(s, 'Available')).toMatchObject({ status: 'True' });
  });

  it('reports a blocker on Ready and Degraded', () => {
    const s = deploymentStatus({
      ...base,
      workload: undefined,
      pods: [],
      blocker: { reason: 'VersionNotFound', message: 'ModelVersion llama-v9 does not exist' },
    });
    expect(cond(s, 'Ready')).toMatchObject({ status: 'False', reason: 'VersionNotFound' });
    expect(cond(s, 'Degraded')).toMatchObject({ status: 'True', reason: 'VersionNotFound' });
  });

  it('keeps transition times and releasedAt while nothing changes', () => {
    const first = deploymentStatus({ ...base, pods: [readyPod] });
    const later = deploymentStatus({
      ...base,
      previous: first,
      pods: [readyPod],
      now: new Date('2030-01-01T01:00:00Z'),
    });
    expect(later).toEqual(first);
    const degraded = deploymentStatus({
      ...base,
      previous: first,
      pods: [pendingPod],
      now: new Date('2030-01-01T01:00:00Z'),
    });
    expect(cond(degraded, 'Degraded')?.lastTransitionTime).toBe('2030-01-01T01:00:00Z');
    expect(cond(degraded, 'Progressing')?.lastTransitionTime).toBe('2030-01-01T01:00:00Z');
    expect(degraded.releasedAt).toBe(first.releasedAt);
  });
});
