import { describe, expect, it } from 'vitest';
import {
  ANNOTATION,
  DeploymentSpecSchema,
  HardwareClassSpecSchema,
  LABEL,
  ModelVersionSpecSchema,
} from '../../crds/index.ts';
import {
  desiredWorkload,
  MODEL_CONTAINER,
  podTemplateHash,
  SIDECAR_CONTAINER,
  type WorkloadInput,
} from './pod-spec.ts';
import { releaseHash } from './release.ts';

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

  it('keeps the pod template, and its hash, when only instances, scaling, queue or rollout change', () => {
    const scaled = DeploymentSpecSchema.parse({
      ...spec,
      minInstances: 1,
      maxInstances: 7,
      scaling: { targetPerInstance: 3, scaleDownDelaySeconds: 5 },
      queue: { maxLength: 10, maxWaitSeconds: 20 },
      rollout: { strategy: 'RollingUpdate' },
    });
    const next = input({ spec: scaled, release: 4, podRelease: 3, releaseHash: releaseHash(scaled) });
    expect(podTemplateHash(next)).toBe(podTemplateHash(input()));
    expect(desiredWorkload(next).spec!.template).toEqual(w.spec!.template);
    expect(desiredWorkload(next).metadata?.labels?.[LABEL.release]).toBe('4');
    expect(w.metadata?.annotations?.[ANNOTATION.podTemplateHash]).toBe(podTemplateHash(input()));
  });

  it('changes the pod template hash when the pods must change', () => {
    const base = podTemplateHash(input());
    expect(
      podTemplateHash(input({ version: { name: 'llama-v2', id: 'b'.repeat(64), spec: version } })),
    ).not.toBe(base);
    expect(podTemplateHash(input({ sidecarImage: 'ghcr.io/modelplane/modelplane:0.2.0' }))).not.toBe(base);
    expect(
      podTemplateHash(
        input({ hardware: { name: 'gpu-h100-2x', spec: { ...h100x2, pricePerSecond: '0.1' } } }),
      ),
    ).not.toBe(base);
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

  it('gives the model container the image, env, PORT, Cog settings and the class resources with its GPUs', () => {
    expect(model.image).toBe(version.image);
    expect(model.env).toEqual([
      { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'hf', key: 'token' } } },
      { name: 'MODE', value: 'fast' },
      { name: 'PORT', value: '5000' },
      { name: 'COG_MAX_CONCURRENCY', value: '4' },
      { name: 'COG_SETUP_TIMEOUT', value: '600' },
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

  it("gives the sidecar the version's pricing, and none when the version has none", () => {
    const envOf = (w: ReturnType<typeof desiredWorkload>) =>
      Object.fromEntries(
        (w.spec!.template.spec!.containers.find((c) => c.name === SIDECAR_CONTAINER)!.env ?? []).map((e) => [
          e.name,
          e.value,
        ]),
      );
    expect(envOf(w).MODELPLANE_PRICING).toBeUndefined();
    const pricing = { perUnit: { output_token_count: '0.0000015' } };
    const priced = desiredWorkload(
      input({ version: { name: 'llama-v2', id: 'b'.repeat(64), spec: { ...version, pricing } } }),
    );
    expect(JSON.parse(envOf(priced).MODELPLANE_PRICING!)).toEqual(pricing);
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
    // It uploads output files to the sidecar's loopback listener, which the sidecar opens on that port.
    expect(model.args).toEqual([
      'python',
      '-m',
      'cog.server.http',
      '--await-explicit-shutdown',
      'true',
      '--host',
      '127.0.0.1',
      '--upload-url',
      'http://127.0.0.1:8081/upload/',
    ]);
    expect(sidecar.env?.find((e) => e.name === 'MODELPLANE_UPLOAD_PORT')?.value).toBe('8081');
    expect(sidecar.ports?.map((p) => p.containerPort)).not.toContain(8081);
    expect(model.command).toBeUndefined();
    expect(model.lifecycle).toBeUndefined();
    expect(sidecar.env?.find((e) => e.name === 'MODELPLANE_SHUTDOWN_MODEL')?.value).toBe('true');
  });

  it('keeps the model server on loopback, undeclared, under a restricted security context', () => {
    expect(model.ports).toBeUndefined();
    const args = model.args ?? [];
    expect(args[args.indexOf('--host') + 1]).toBe('127.0.0.1');
    expect(model.securityContext).toEqual({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const v = ModelVersionSpecSchema.parse({ ...version, runAsRoot: true });
    const root = desiredWorkload(
      input({ version: { name: 'llama-v1', id: 'a'.repeat(64), spec: v } }),
    ).spec!.template.spec!.containers.find((c) => c.name === MODEL_CONTAINER)!;
    expect(root.securityContext).toEqual({
      allowPrivilegeEscalation: false,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
  });

  it("gives the sidecar the operator's public key, its pod IP and the webhook ranges; no Secret", () => {
    const keyed = desiredWorkload(
      input({ operatorKey: 'MCowBQYDK2VwAyEA', webhookAllowCidrs: ['10.0.0.0/8', '::1'] }),
    ).spec!.template.spec!;
    const env = keyed.containers.find((c) => c.name === SIDECAR_CONTAINER)!.env ?? [];
    expect(env.filter((e) => e.name.match(/OPERATOR_KEY|POD_IP|ALLOW_CIDRS/))).toEqual([
      { name: 'MODELPLANE_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      { name: 'MODELPLANE_OPERATOR_KEY', value: 'MCowBQYDK2VwAyEA' },
      { name: 'MODELPLANE_WEBHOOK_ALLOW_CIDRS', value: '10.0.0.0/8,::1' },
    ]);
    for (const c of keyed.containers) {
      expect(JSON.stringify(c.env)).not.toContain('secretKeyRef":{"name":"llama');
      expect((c.env ?? []).map((e) => e.name)).not.toContain('WEBHOOK_AUTH_TOKEN');
    }
  });

  it("gives the sidecar the operator's output cap when it is not the sidecar's default", () => {
    const sidecarEnv = (maxOutputBytes: number | undefined) =>
      (
        desiredWorkload(input({ maxOutputBytes })).spec!.template.spec!.containers.find(
          (c) => c.name === SIDECAR_CONTAINER,
        )!.env ?? []
      ).filter((e) => e.name === 'MODELPLANE_MAX_OUTPUT_BYTES');
    expect(sidecarEnv(4 * 2 ** 20)).toEqual([{ name: 'MODELPLANE_MAX_OUTPUT_BYTES', value: '4194304' }]);
    expect(sidecarEnv(64 * 2 ** 20)).toEqual([{ name: 'MODELPLANE_MAX_OUTPUT_BYTES', value: '67108864' }]);
    // The default leaves the template as it was.
    expect(sidecarEnv(16 * 2 ** 20)).toEqual([]);
    expect(sidecarEnv(undefined)).toEqual([]);
  });

  it("drops WEBHOOK_AUTH_TOKEN from a version's env", () => {
    const v = ModelVersionSpecSchema.parse({
      ...version,
      env: [{ name: 'WEBHOOK_AUTH_TOKEN', value: 'mine' }],
    });
    const p = desiredWorkload(input({ version: { name: 'llama-v1', id: 'a'.repeat(64), spec: v } })).spec!
      .template.spec!;
    const env = p.containers.find((c) => c.name === MODEL_CONTAINER)!.env ?? [];
    expect(env.filter((e) => e.name === 'WEBHOOK_AUTH_TOKEN')).toEqual([]);
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
