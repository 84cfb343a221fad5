/**
 * The pods of a modelplane Deployment, as pure functions: the apps/v1 Deployment that runs
 * them (the pod template: the model container, the sidecar, the hardware's resources,
 * placement and tolerations).
 */
import { createHash } from 'node:crypto';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IEnvVar } from 'kubernetes-models/v1/EnvVar';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { ISecurityContext } from 'kubernetes-models/v1/SecurityContext';
import type { IToleration } from 'kubernetes-models/v1/Toleration';
import {
  ANNOTATION,
  API_VERSION,
  type DeploymentSpec,
  GPU,
  type HardwareClassSpec,
  KIND,
  LABEL,
  type ModelVersionSpec,
} from '../../crds/index.ts';
import { MAX_OUTPUT_BYTES as SIDECAR_MAX_OUTPUT_BYTES } from '../../lib/bounded.ts';
import type { Workload } from '../resources.ts';
import { canonicalJson } from './version-id.ts';

export const MODEL_CONTAINER = 'model';
export const SIDECAR_CONTAINER = 'sidecar';
/** Port of the Cog server in the model container ($PORT). */
export const MODEL_PORT = 5000;
export const SIDECAR_API_PORT = 8080;
export const SIDECAR_METRICS_PORT = 9090;
/** Port of the sidecar's loopback listener the model server uploads output files to. */
export const SIDECAR_UPLOAD_PORT = 8081;
/**
 * Seconds a terminating pod gets beyond the predict timeout to finish its last prediction:
 * the sidecar's drain timeout takes a third of it, its drain read timeout (10 s by default)
 * fits in the rest.
 */
export const TERMINATION_MARGIN_SECONDS = 30;
export const MANAGED_BY = 'modelplane';
/** What the sidecar container requests, beside the hardware's own CPU and memory. */
export const SIDECAR_REQUESTS = { cpu: '50m', memory: '64Mi' } as const;

/** Environment variables modelplane sets on the model container; a version's env cannot override them. */
export const RESERVED_MODEL_ENV = [
  'PORT',
  'COG_MAX_CONCURRENCY',
  'COG_SETUP_TIMEOUT',
  'WEBHOOK_AUTH_TOKEN',
] as const;

/**
 * How the model container runs: the Cog server, as a Cog image's CMD does, but ignoring
 * SIGTERM (`--await-explicit-shutdown true`), so deleting a pod does not kill the predictions
 * it runs (the sidecar drains, then stops it with `POST /shutdown`), and uploading the files
 * its predictions return to the sidecar's loopback listener (`--upload-url`), which streams
 * them into the files store: outputs hold their URLs, not the files.
 */
export const MODEL_ARGS = [
  'python',
  '-m',
  'cog.server.http',
  '--await-explicit-shutdown',
  'true',
  // Only the pod's own sidecar reaches it: no other pod can run the model directly.
  '--host',
  '127.0.0.1',
  '--upload-url',
  `http://127.0.0.1:${SIDECAR_UPLOAD_PORT}/upload/`,
];

export interface WorkloadInput {
  /** The modelplane Deployment: its name, namespace and uid (the owner) and its parsed spec. */
  owner: { name: string; namespace: string; uid: string };
  spec: DeploymentSpec;
  version: { name: string; id: string; spec: ModelVersionSpec };
  hardware: { name: string; spec: HardwareClassSpec };
  release: number;
  /**
   * The release whose pods the template describes: the last release that changed the pod
   * template (default `release`). A release that changes only what the autoscaler and the
   * gateway read (instances, scaling, queue, rollout) keeps it, so no pod is replaced.
   */
  podRelease?: number;
  releaseHash: string;
  sidecarImage: string;
  /**
   * The public key (base64 SPKI DER, Ed25519) the sidecar checks the operator's calls with
   * (MODELPLANE_OPERATOR_KEY); none leaves the sidecar's API open (tests without an operator).
   */
  operatorKey?: string | undefined;
  /** Address ranges the sidecar's webhooks may reach besides public ones (the operator's own setting). */
  webhookAllowCidrs?: readonly string[] | undefined;
  /**
   * The most bytes of output a prediction may have (the operator's --max-output-bytes): set
   * on the sidecar (MODELPLANE_MAX_OUTPUT_BYTES) when it is not the sidecar's default, so
   * the pods of an operator on the default keep their template.
   */
  maxOutputBytes?: number | undefined;
  /**
   * `spec.replicas` to apply, or undefined to leave the field to the autoscaler. The
   * controller sets it only when it creates the workload (and until the autoscaler has taken
   * the field over); see `replicasToApply`.
   */
  replicas?: number;
}
export function selectorLabels(deployment: string): Record<string, string> {
  return { [LABEL.deployment]: deployment };
}

export function workloadLabels(input: WorkloadInput): Record<string, string> {
  return {
    [LABEL.appName]: input.spec.model,
    [LABEL.appInstance]: input.owner.name,
    [LABEL.appVersion]: input.version.name,
    [LABEL.appComponent]: 'model',
    [LABEL.appPartOf]: 'modelplane',
    [LABEL.appManagedBy]: MANAGED_BY,
    [LABEL.deployment]: input.owner.name,
    [LABEL.version]: input.version.name,
    [LABEL.release]: String(input.release),
    [LABEL.model]: input.spec.model,
    [LABEL.hardware]: input.hardware.name,
  };
}

function modelEnv(version: ModelVersionSpec): IEnvVar[] {
  const reserved = new Set<string>(RESERVED_MODEL_ENV);
  const own: IEnvVar[] = (version.env ?? [])
    .filter((e) => !reserved.has(e.name))
    .map((e) => {
      if (e.value !== undefined) return { name: e.name, value: e.value };
      const from = e.valueFrom;
      if (from?.secretKeyRef) return { name: e.name, valueFrom: { secretKeyRef: { ...from.secretKeyRef } } };
      if (from?.configMapKeyRef)
        return { name: e.name, valueFrom: { configMapKeyRef: { ...from.configMapKeyRef } } };
      return { name: e.name, value: '' };
    });
  return [
    ...own,
    { name: 'PORT', value: String(MODEL_PORT) },
    { name: 'COG_MAX_CONCURRENCY', value: String(version.maxConcurrency) },
    { name: 'COG_SETUP_TIMEOUT', value: String(version.setupTimeoutSeconds) },
  ];
}

function tolerations(hw: HardwareClassSpec): IToleration[] | undefined {
  if (!hw.tolerations?.length) return undefined;
  return hw.tolerations.map((t) => {
    const out: IToleration = { operator: t.operator };
    if (t.key !== undefined) out.key = t.key;
    if (t.value !== undefined && t.operator !== 'Exists') out.value = t.value;
    if (t.effect !== undefined) out.effect = t.effect;
    if (t.tolerationSeconds !== undefined) out.tolerationSeconds = t.tolerationSeconds;
    return out;
  });
}

/**
 * The model container's restrictions: no privilege escalation, no capabilities, the runtime's
 * default seccomp profile, and a non-root user unless the version sets `runAsRoot`.
 */
export function modelSecurityContext(version: Pick<ModelVersionSpec, 'runAsRoot'>): ISecurityContext {
  return {
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
    ...(version.runAsRoot ? {} : { runAsNonRoot: true }),
  };
}

export function podSpec(input: WorkloadInput): IPodSpec {
  const { version, hardware } = input;
  const hw = hardware.spec;
  const resources: Record<string, string> = { cpu: hw.resources.cpu, memory: hw.resources.memory };
  if (hw.gpu) resources[hw.gpu.resourceName] = String(hw.gpu.count);
  const predictTimeout = version.spec.predictTimeoutSeconds;
  const model: IContainer = {
    name: MODEL_CONTAINER,
    image: version.spec.image,
    // The model server ignores SIGTERM; the sidecar shuts it down once it has drained
    // (MODELPLANE_SHUTDOWN_MODEL), so it keeps serving the predictions still running.
    args: [...MODEL_ARGS],
    env: modelEnv(version.spec),
    // No port: the Cog server listens on the pod's loopback, for the sidecar only.
    resources: { requests: { ...resources }, limits: { ...resources } },
    securityContext: modelSecurityContext(version.spec),
  };
  const sidecar: IContainer = {
    name: SIDECAR_CONTAINER,
    image: input.sidecarImage,
    args: ['sidecar'],
    env: [
      { name: 'MODELPLANE_DEPLOYMENT', value: `${input.owner.namespace}/${input.owner.name}` },
      { name: 'MODELPLANE_MODEL_VERSION', value: version.id },
      { name: 'MODELPLANE_HARDWARE', value: hardware.name },
      { name: 'MODELPLANE_PRICE_PER_SECOND', value: hw.pricePerSecond },
      ...(version.spec.pricing
        ? [{ name: 'MODELPLANE_PRICING', value: JSON.stringify(version.spec.pricing) }]
        : []),
      { name: 'MODELPLANE_MODEL_URL', value: `http://127.0.0.1:${MODEL_PORT}` },
      { name: 'MODELPLANE_SIDECAR_PORT', value: String(SIDECAR_API_PORT) },
      { name: 'MODELPLANE_METRICS_PORT', value: String(SIDECAR_METRICS_PORT) },
      { name: 'MODELPLANE_UPLOAD_PORT', value: String(SIDECAR_UPLOAD_PORT) },
      { name: 'COG_MAX_CONCURRENCY', value: String(version.spec.maxConcurrency) },
      { name: 'MODELPLANE_SETUP_TIMEOUT', value: String(version.spec.setupTimeoutSeconds) },
      { name: 'MODELPLANE_PREDICT_TIMEOUT', value: String(predictTimeout) },
      { name: 'MODELPLANE_DRAIN_TIMEOUT', value: String(predictTimeout + TERMINATION_MARGIN_SECONDS / 3) },
      { name: 'MODELPLANE_SHUTDOWN_MODEL', value: 'true' },
      // The operator reads each terminating instance's usage every second: its final figures.
      { name: 'MODELPLANE_USAGE_READ_TIMEOUT', value: '5' },
      // The operator's calls carry a token for this pod's address, signed with its key.
      { name: 'MODELPLANE_POD_IP', valueFrom: { fieldRef: { fieldPath: 'status.podIP' } } },
      ...(input.operatorKey ? [{ name: 'MODELPLANE_OPERATOR_KEY', value: input.operatorKey }] : []),
      ...(input.webhookAllowCidrs?.length
        ? [{ name: 'MODELPLANE_WEBHOOK_ALLOW_CIDRS', value: input.webhookAllowCidrs.join(',') }]
        : []),
      ...(input.maxOutputBytes !== undefined && input.maxOutputBytes !== SIDECAR_MAX_OUTPUT_BYTES
        ? [{ name: 'MODELPLANE_MAX_OUTPUT_BYTES', value: String(input.maxOutputBytes) }]
        : []),
    ],
    ports: [
      { name: 'api', containerPort: SIDECAR_API_PORT, protocol: 'TCP' },
      { name: 'metrics', containerPort: SIDECAR_METRICS_PORT, protocol: 'TCP' },
    ],
    readinessProbe: {
      httpGet: { path: '/ready', port: 'api' },
      periodSeconds: 2,
      failureThreshold: 1,
      successThreshold: 1,
      timeoutSeconds: 1,
    },
    livenessProbe: {
      httpGet: { path: '/live', port: 'api' },
      periodSeconds: 10,
      failureThreshold: 3,
      timeoutSeconds: 2,
    },
    resources: { requests: { ...SIDECAR_REQUESTS }, limits: { memory: '256Mi' } },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: 65532,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    },
  };
  const spec: IPodSpec = {
    containers: [model, sidecar],
    terminationGracePeriodSeconds: predictTimeout + TERMINATION_MARGIN_SECONDS,
    automountServiceAccountToken: false,
    enableServiceLinks: false,
    securityContext: { seccompProfile: { type: 'RuntimeDefault' } },
  };
  if (hw.gpu) {
    spec.affinity = {
      nodeAffinity: {
        requiredDuringSchedulingIgnoredDuringExecution: {
          nodeSelectorTerms: [
            { matchExpressions: [{ key: GPU.productLabel, operator: 'In', values: [...hw.gpu.products] }] },
          ],
        },
      },
    };
  }
  if (hw.nodeSelector && Object.keys(hw.nodeSelector).length) spec.nodeSelector = { ...hw.nodeSelector };
  const tol = tolerations(hw);
  if (tol) spec.tolerations = tol;
  if (version.spec.imagePullSecrets?.length)
    spec.imagePullSecrets = version.spec.imagePullSecrets.map((s) => ({ name: s.name }));
  return spec;
}

/**
 * The hash of the pod template `input` gives, the release label left out: equal hashes mean
 * the pods that run are what the release wants.
 */
export function podTemplateHash(input: WorkloadInput): string {
  const { [LABEL.release]: _release, ...labels } = workloadLabels(input);
  return createHash('sha256')
    .update(canonicalJson({ labels, annotations: podAnnotations(input), spec: podSpec(input) }))
    .digest('hex')
    .slice(0, 32);
}

function podAnnotations(input: WorkloadInput): Record<string, string> {
  return { [ANNOTATION.versionId]: input.version.id };
}

/** The apps/v1 Deployment that runs the pods of one release of a modelplane Deployment. */
export function desiredWorkload(input: WorkloadInput): Workload {
  const labels = workloadLabels(input);
  const podLabels = { ...labels, [LABEL.release]: String(input.podRelease ?? input.release) };
  const rollout = input.spec.rollout;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: input.owner.name,
      namespace: input.owner.namespace,
      labels,
      annotations: {
        [ANNOTATION.releaseHash]: input.releaseHash,
        [ANNOTATION.podTemplateHash]: podTemplateHash(input),
      },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: KIND.Deployment,
          name: input.owner.name,
          uid: input.owner.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    spec: {
      ...(input.replicas === undefined ? {} : { replicas: input.replicas }),
      selector: { matchLabels: selectorLabels(input.owner.name) },
      strategy:
        rollout.strategy === 'Recreate'
          ? { type: 'Recreate' }
          : {
              type: 'RollingUpdate',
              rollingUpdate: { maxSurge: rollout.maxSurge, maxUnavailable: rollout.maxUnavailable },
            },
      progressDeadlineSeconds: rollout.progressDeadlineSeconds,
      revisionHistoryLimit: 2,
      template: {
        metadata: { labels: podLabels, annotations: podAnnotations(input) },
        spec: podSpec(input),
      },
    },
  };
}
