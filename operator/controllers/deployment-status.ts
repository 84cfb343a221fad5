/**
 * The status of a modelplane Deployment, as a pure function of what the operator observed:
 * its workload, its pods (ready, unplaced, failing to pull) and what blocks it, as the
 * Ready, Available, Progressing and Degraded conditions.
 */
import { CONDITION, type DeploymentSpec, type DeploymentStatus, LABEL, REASON } from '../../crds/index.ts';
import type { Pod, Workload } from '../resources.ts';
import { mergeConditions, type Observation } from './conditions.ts';
import { workloadReplicas } from './release.ts';

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
  /**
   * The release label the current pods carry: the last release that changed the pod template
   * (default `release`). A release of instances, scaling or queue settings alone keeps its pods.
   */
  podRelease?: number;
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
  const podRelease = String(input.podRelease ?? release);
  const current = live.filter((p) => p.metadata?.labels?.[LABEL.release] === podRelease);
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
