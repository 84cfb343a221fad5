/**
 * The desired state of a modelplane Deployment's pods, as pure functions: the apps/v1
 * Deployment that runs them (model container plus sidecar), the release number a spec is
 * cut as, and the status observed from the workload and its pods.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { V1Container, V1EnvVar, V1PodSpec, V1Toleration } from '@kubernetes/client-node';
import {
  ANNOTATION,
  API_VERSION,
  CONDITION,
  type DeploymentSpec,
  type DeploymentStatus,
  GPU,
  type HardwareClassSpec,
  KIND,
  LABEL,
  type ModelVersionSpec,
  REASON,
} from '../../crds/index.ts';
import type { Pod, Workload } from '../resources.ts';
import { mergeConditions, type Observation } from './conditions.ts';
import { canonicalJson } from './version-id.ts';

export const MODEL_CONTAINER = 'model';
export const SIDECAR_CONTAINER = 'sidecar';
/** Port of the Cog server in the model container ($PORT). */
export const MODEL_PORT = 5000;
export const SIDECAR_API_PORT = 8080;
export const SIDECAR_METRICS_PORT = 9090;
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
 * it runs; the sidecar drains, then stops it with `POST /shutdown`.
 */
export const MODEL_ARGS = ['python', '-m', 'cog.server.http', '--await-explicit-shutdown', 'true'];

/** Key, in the webhook token Secret, of the bearer token the Cog server puts on its webhooks. */
export const WEBHOOK_TOKEN_KEY = 'token';

/** Name of the Secret holding the webhook token shared by a Deployment's model and sidecar containers. */
export function webhookSecretName(deployment: string): string {
  return `${deployment}-webhook-token`;
}

function webhookTokenEnv(deployment: string): V1EnvVar {
  return {
    name: 'WEBHOOK_AUTH_TOKEN',
    valueFrom: { secretKeyRef: { name: webhookSecretName(deployment), key: WEBHOOK_TOKEN_KEY } },
  };
}

/** A Secret as the Deployment controller writes it. */
export interface WebhookSecret {
  apiVersion: 'v1';
  kind: 'Secret';
  metadata: {
    name: string;
    namespace: string;
    labels: Record<string, string>;
    ownerReferences: NonNullable<Workload['metadata']>['ownerReferences'];
  };
  type: 'Opaque';
  data: Record<string, string>;
}

/**
 * The webhook token Secret of a modelplane Deployment, with a new random token (32 bytes,
 * hex). The controller creates it once and never rewrites it: pods keep their token.
 */
export function desiredWebhookSecret(
  owner: { name: string; namespace: string; uid: string },
  token: string = randomBytes(32).toString('hex'),
): WebhookSecret {
  return {
    apiVersion: 'v1',
    kind: 'Secret',
    metadata: {
      name: webhookSecretName(owner.name),
      namespace: owner.namespace,
      labels: {
        [LABEL.appPartOf]: 'modelplane',
        [LABEL.appManagedBy]: MANAGED_BY,
        [LABEL.deployment]: owner.name,
      },
      ownerReferences: [
        {
          apiVersion: API_VERSION,
          kind: KIND.Deployment,
          name: owner.name,
          uid: owner.uid,
          controller: true,
          blockOwnerDeletion: true,
        },
      ],
    },
    type: 'Opaque',
    data: { [WEBHOOK_TOKEN_KEY]: Buffer.from(token, 'utf8').toString('base64') },
  };
}

export interface WorkloadInput {
  /** The modelplane Deployment: its name, namespace and uid (the owner) and its parsed spec. */
  owner: { name: string; namespace: string; uid: string };
  spec: DeploymentSpec;
  version: { name: string; id: string; spec: ModelVersionSpec };
  hardware: { name: string; spec: HardwareClassSpec };
  release: number;
  releaseHash: string;
  sidecarImage: string;
  /**
   * `spec.replicas` to apply, or undefined to leave the field to the autoscaler. The
   * controller sets it only when it creates the workload (and until the autoscaler has taken
   * the field over); see `replicasToApply`.
   */
  replicas?: number;
}

/** The hash a release is cut from: the Deployment spec, defaults applied. */
export function releaseHash(spec: DeploymentSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 32);
}

/**
 * The release number of `spec`: the workload's own when it was cut from the same spec, else
 * one more than the last one known. A workload that is gone while the status is current for
 * this generation keeps the status's release.
 */
export function releaseFor(
  hash: string,
  workload: Workload | undefined,
  status: { release?: number; observedGeneration?: number } | undefined,
  generation: number | undefined,
): { release: number; cut: boolean } {
  const childRelease = Number(workload?.metadata?.labels?.[LABEL.release] ?? 0) || 0;
  if (workload && workload.metadata?.annotations?.[ANNOTATION.releaseHash] === hash && childRelease > 0)
    return { release: childRelease, cut: false };
  if (!workload && status?.release && status.observedGeneration === generation)
    return { release: status.release, cut: false };
  return { release: Math.max(status?.release ?? 0, childRelease) + 1, cut: true };
}

/** Instances a new workload starts with: `minInstances` (0 for a deployment that scales to zero). */
export function initialReplicas(spec: DeploymentSpec): number {
  return spec.minInstances;
}

/**
 * What the Deployment controller applies as the workload's `spec.replicas`. The autoscaler
 * owns that field (server-side apply, its own field manager), so the controller leaves it
 * out once the autoscaler has applied it; before that the controller keeps it at the value
 * it has (`minInstances` when it creates the workload). It must never leave out a field it
 * alone owns: the API server would remove it and the count would fall back to 1.
 */
export function replicasToApply(
  spec: DeploymentSpec,
  workload: Workload | undefined,
  autoscalerOwns: boolean,
): number | undefined {
  if (!workload) return initialReplicas(spec);
  if (autoscalerOwns) return undefined;
  return workload.spec?.replicas ?? initialReplicas(spec);
}

/** Instances the workload is told to run: its `spec.replicas` (set by the autoscaler). */
export function workloadReplicas(workload: Workload | undefined, spec: DeploymentSpec): number {
  return workload?.spec?.replicas ?? initialReplicas(spec);
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

function modelEnv(version: ModelVersionSpec, deployment: string): V1EnvVar[] {
  const reserved = new Set<string>(RESERVED_MODEL_ENV);
  const own: V1EnvVar[] = (version.env ?? [])
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
    webhookTokenEnv(deployment),
  ];
}

function tolerations(hw: HardwareClassSpec): V1Toleration[] | undefined {
  if (!hw.tolerations?.length) return undefined;
  return hw.tolerations.map((t) => {
    const out: V1Toleration = { operator: t.operator };
    if (t.key !== undefined) out.key = t.key;
    if (t.value !== undefined && t.operator !== 'Exists') out.value = t.value;
    if (t.effect !== undefined) out.effect = t.effect;
    if (t.tolerationSeconds !== undefined) out.tolerationSeconds = t.tolerationSeconds;
    return out;
  });
}

export function podSpec(input: WorkloadInput): V1PodSpec {
  const { version, hardware } = input;
  const hw = hardware.spec;
  const resources: Record<string, string> = { cpu: hw.resources.cpu, memory: hw.resources.memory };
  if (hw.gpu) resources[hw.gpu.resourceName] = String(hw.gpu.count);
  const predictTimeout = version.spec.predictTimeoutSeconds;
  const model: V1Container = {
    name: MODEL_CONTAINER,
    image: version.spec.image,
    // The model server ignores SIGTERM; the sidecar shuts it down once it has drained
    // (MODELPLANE_SHUTDOWN_MODEL), so it keeps serving the predictions still running.
    args: [...MODEL_ARGS],
    env: modelEnv(version.spec, input.owner.name),
    ports: [{ name: 'model', containerPort: MODEL_PORT, protocol: 'TCP' }],
    resources: { requests: { ...resources }, limits: { ...resources } },
  };
  const sidecar: V1Container = {
    name: SIDECAR_CONTAINER,
    image: input.sidecarImage,
    args: ['sidecar'],
    env: [
      { name: 'MODELPLANE_DEPLOYMENT', value: `${input.owner.namespace}/${input.owner.name}` },
      { name: 'MODELPLANE_MODEL_VERSION', value: version.id },
      { name: 'MODELPLANE_HARDWARE', value: hardware.name },
      { name: 'MODELPLANE_PRICE_PER_SECOND', value: hw.pricePerSecond },
      { name: 'MODELPLANE_MODEL_URL', value: `http://127.0.0.1:${MODEL_PORT}` },
      { name: 'MODELPLANE_SIDECAR_PORT', value: String(SIDECAR_API_PORT) },
      { name: 'MODELPLANE_METRICS_PORT', value: String(SIDECAR_METRICS_PORT) },
      { name: 'COG_MAX_CONCURRENCY', value: String(version.spec.maxConcurrency) },
      { name: 'MODELPLANE_SETUP_TIMEOUT', value: String(version.spec.setupTimeoutSeconds) },
      { name: 'MODELPLANE_PREDICT_TIMEOUT', value: String(predictTimeout) },
      { name: 'MODELPLANE_DRAIN_TIMEOUT', value: String(predictTimeout + TERMINATION_MARGIN_SECONDS / 3) },
      { name: 'MODELPLANE_SHUTDOWN_MODEL', value: 'true' },
      webhookTokenEnv(input.owner.name),
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
  const spec: V1PodSpec = {
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

/** The apps/v1 Deployment that runs the pods of one release of a modelplane Deployment. */
export function desiredWorkload(input: WorkloadInput): Workload {
  const labels = workloadLabels(input);
  const rollout = input.spec.rollout;
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: {
      name: input.owner.name,
      namespace: input.owner.namespace,
      labels,
      annotations: { [ANNOTATION.releaseHash]: input.releaseHash },
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
        metadata: { labels, annotations: { [ANNOTATION.versionId]: input.version.id } },
        spec: podSpec(input),
      },
    },
  };
}

// --- status -------------------------------------------------------------------------------

/** Something that stops the operator from running the Deployment as specified. */
export interface Blocker {
  reason: string;
  message: string;
}

export interface StatusInput {
  generation: number | undefined;
  spec: DeploymentSpec;
  previous: DeploymentStatus | undefined;
  release: number;
  versionId: string | undefined;
  hardware: string;
  /** Set when the workload could not be applied as specified. */
  blocker?: Blocker;
  workload: Workload | undefined;
  /** The pods of this Deployment (any release). */
  pods: readonly Pod[];
  now: Date;
}

function podCondition(pod: Pod, type: string) {
  return pod.status?.conditions?.find((c) => c.type === type);
}

export function isPodReady(pod: Pod): boolean {
  return podCondition(pod, 'Ready')?.status === 'True';
}

/** The scheduler's message for a pod it could not place, if it could not. */
export function unschedulableMessage(pod: Pod): string | undefined {
  const c = podCondition(pod, 'PodScheduled');
  return c?.status === 'False' && c.reason === 'Unschedulable' ? (c.message ?? 'unschedulable') : undefined;
}

const IMAGE_PULL_REASONS = new Set(['ErrImagePull', 'ImagePullBackOff', 'InvalidImageName']);

function imagePullProblem(pod: Pod): string | undefined {
  for (const s of pod.status?.containerStatuses ?? []) {
    const w = s.state?.waiting;
    if (w?.reason && IMAGE_PULL_REASONS.has(w.reason))
      return `container ${s.name}: ${w.reason}${w.message ? `: ${w.message}` : ''}`;
  }
  return undefined;
}

/** The status of a Deployment, from what the operator observed. */
export function deploymentStatus(input: StatusInput): DeploymentStatus {
  const { spec, release, workload, previous } = input;
  const live = input.pods.filter((p) => !p.metadata?.deletionTimestamp);
  const ready = live.filter(isPodReady).length;
  const current = live.filter((p) => p.metadata?.labels?.[LABEL.release] === String(release));
  const currentReady = current.filter(isPodReady).length;
  // The workload's count: the autoscaler sets it, between minInstances and maxInstances.
  const desired = workloadReplicas(workload, spec);
  const observations = input.blocker
    ? blockedObservations(input.blocker, ready, spec.minInstances)
    : runningObservations({
        release,
        hardware: input.hardware,
        desired,
        minInstances: spec.minInstances,
        ready,
        live,
        current: current.length,
        currentReady,
        workload,
      });
  const releasedAt =
    previous?.release === release && previous.releasedAt
      ? previous.releasedAt
      : input.now.toISOString().replace(/\.\d+Z$/, 'Z');
  const status: DeploymentStatus = {
    observedGeneration: input.generation,
    conditions: mergeConditions(previous?.conditions, observations, input.generation, input.now),
    instances: live.length,
    readyInstances: ready,
    release,
    releasedAt,
  };
  const versionId = input.versionId ?? previous?.versionId;
  if (versionId) status.versionId = versionId;
  return status;
}

function blockedObservations(blocker: Blocker, ready: number, min: number): Observation[] {
  return [
    { type: CONDITION.Ready, status: 'False', reason: blocker.reason, message: blocker.message },
    {
      type: CONDITION.Available,
      status: ready >= min ? 'True' : 'False',
      reason: ready >= min ? REASON.MinimumInstancesReady : REASON.InsufficientInstances,
      message: `${ready} of at least ${min} instances ready`,
    },
    { type: CONDITION.Progressing, status: 'False', reason: blocker.reason, message: blocker.message },
    { type: CONDITION.Degraded, status: 'True', reason: blocker.reason, message: blocker.message },
  ];
}

function runningObservations(o: {
  release: number;
  hardware: string;
  desired: number;
  minInstances: number;
  ready: number;
  live: Pod[];
  current: number;
  currentReady: number;
  workload: Workload | undefined;
}): Observation[] {
  const w = o.workload;
  const upToDate =
    w !== undefined &&
    (w.status?.observedGeneration ?? 0) >= (w.metadata?.generation ?? 1) &&
    (w.status?.updatedReplicas ?? 0) >= o.desired;
  const rolledOut =
    upToDate && o.currentReady >= o.desired && o.live.length === o.current && o.current === o.desired;
  const deadline = w?.status?.conditions?.find(
    (c) => c.type === 'Progressing' && c.status === 'False' && c.reason === 'ProgressDeadlineExceeded',
  );
  const unplaced = o.live.map(unschedulableMessage).filter((m): m is string => m !== undefined);
  const pullProblem = o.live.map(imagePullProblem).find((m) => m !== undefined);

  let degraded: Observation;
  if (unplaced.length) {
    degraded = {
      type: CONDITION.Degraded,
      status: 'True',
      reason: REASON.InsufficientCapacity,
      message: `${unplaced.length} of ${o.live.length} instances cannot be placed on hardware ${o.hardware}: ${unplaced[0]}. Add nodes of this hardware, free capacity on them, or choose other hardware.`,
    };
  } else if (pullProblem) {
    degraded = {
      type: CONDITION.Degraded,
      status: 'True',
      reason: REASON.ImagePullFailed,
      message: `the image cannot be pulled (${pullProblem}); check the ModelVersion's image and imagePullSecrets.`,
    };
  } else if (deadline) {
    degraded = {
      type: CONDITION.Degraded,
      status: 'True',
      reason: REASON.ProgressDeadlineExceeded,
      message:
        `release ${o.release} did not become ready within spec.rollout.progressDeadlineSeconds: ${deadline.message ?? ''}`.trim(),
    };
  } else {
    degraded = {
      type: CONDITION.Degraded,
      status: 'False',
      reason: REASON.Ready,
      message: 'nothing needs attention',
    };
  }
  const available = o.ready >= o.minInstances;
  const progressing: Observation = rolledOut
    ? {
        type: CONDITION.Progressing,
        status: 'False',
        reason: REASON.ReleaseRolledOut,
        message: `release ${o.release} runs on ${o.desired} of ${o.desired} instances`,
      }
    : deadline
      ? {
          type: CONDITION.Progressing,
          status: 'False',
          reason: REASON.ProgressDeadlineExceeded,
          message: degraded.message,
        }
      : {
          type: CONDITION.Progressing,
          status: 'True',
          reason: REASON.RollingOut,
          message: `release ${o.release}: ${o.currentReady} of ${o.desired} instances ready`,
        };
  const isReady = rolledOut && degraded.status === 'False';
  return [
    {
      type: CONDITION.Ready,
      status: isReady ? 'True' : 'False',
      reason: isReady ? REASON.Ready : degraded.status === 'True' ? degraded.reason : REASON.RollingOut,
      message: isReady
        ? o.desired === 0
          ? `release ${o.release} is scaled to zero; the next prediction starts an instance`
          : `release ${o.release} is ready on ${o.desired} instances`
        : degraded.status === 'True'
          ? degraded.message
          : progressing.message,
    },
    {
      type: CONDITION.Available,
      status: available ? 'True' : 'False',
      reason: available ? REASON.MinimumInstancesReady : REASON.InsufficientInstances,
      message: `${o.ready} of at least ${o.minInstances} instances ready`,
    },
    progressing,
    degraded,
  ];
}
