/**
 * A pod's status as the kubelet reports it, built from what the runner knows about each
 * container: pure functions, so the rules (phase, readiness, transition times) are
 * unit-tested without processes.
 */
import type { IContainerState } from 'kubernetes-models/v1/ContainerState';
import type { IContainerStateTerminated } from 'kubernetes-models/v1/ContainerStateTerminated';
import type { IContainerStatus } from 'kubernetes-models/v1/ContainerStatus';
import type { IPodCondition } from 'kubernetes-models/v1/PodCondition';
import type { IPodStatus } from 'kubernetes-models/v1/PodStatus';
import { exponentialDelay } from '../../lib/backoff.ts';

/** A container's state: exactly one of `waiting`, `running` and `terminated`, as the API has it. */
export type ContainerState =
  | Required<Pick<IContainerState, 'waiting'>>
  | Required<Pick<IContainerState, 'running'>>
  | Required<Pick<IContainerState, 'terminated'>>;

/**
 * What the runner knows of one container: its container status less `started` (which follows
 * from `state`); `ready` is running with its readiness probe (if any) passing.
 */
export type ContainerView = Pick<
  IContainerStatus,
  'name' | 'image' | 'imageID' | 'containerID' | 'restartCount' | 'ready'
> & {
  state: ContainerState;
  lastState?: { terminated: IContainerStateTerminated };
};

/**
 * A pod condition as the kubelet writes it: `lastProbeTime` is null (Go's zero metav1.Time),
 * as the API server also returns it, which IPodCondition's type leaves out.
 */
export type PodCondition = Omit<IPodCondition, 'lastProbeTime'> & { lastProbeTime?: string | null };

/** A pod's phase. */
export type PodPhase = NonNullable<IPodStatus['phase']>;

/** What the status is built from: the pod's addresses, start time and restart policy, and its containers. */
export interface PodView {
  podIP?: string;
  hostIP: string;
  startTime: string;
  restartPolicy: string;
  containers: ContainerView[];
}

/** The status the runner writes: phase, conditions, addresses and container statuses always set. */
export type PodStatusOut = Omit<IPodStatus, 'conditions'> &
  Required<Pick<IPodStatus, 'phase' | 'hostIP' | 'hostIPs' | 'startTime' | 'containerStatuses'>> & {
    conditions: PodCondition[];
  };

/** RFC 3339 to the second, as Kubernetes writes metav1.Time. */
export function kubeTime(d: Date): string {
  return d.toISOString().replace(/\.\d+Z$/, 'Z');
}

/**
 * The pod's phase, by the kubelet's rules: Pending while a container has never started;
 * Running while one runs or (with restartPolicy Always, or OnFailure and a failure) will be
 * restarted; Succeeded when all exited 0; Failed when all exited and one failed for good.
 */
export function podPhase(containers: readonly ContainerView[], restartPolicy: string): PodPhase {
  let waiting = 0;
  let running = 0;
  let stopped = 0;
  let succeeded = 0;
  for (const c of containers) {
    if ('running' in c.state) running++;
    else if ('terminated' in c.state) {
      stopped++;
      if (c.state.terminated.exitCode === 0) succeeded++;
    } else if (c.lastState?.terminated) stopped++;
    else waiting++;
  }
  if (waiting > 0) return 'Pending';
  if (running > 0) return 'Running';
  if (stopped === 0) return 'Pending';
  // Everything has exited (or waits to restart).
  if (restartPolicy === 'Always') return 'Running';
  if (succeeded === stopped && containers.every((c) => 'terminated' in c.state)) return 'Succeeded';
  if (restartPolicy === 'OnFailure') return 'Running';
  return containers.every((c) => 'terminated' in c.state) ? 'Failed' : 'Running';
}

function condition(
  type: string,
  ok: boolean,
  previous: readonly PodCondition[] | undefined,
  now: Date,
  notReason?: string,
  notMessage?: string,
): PodCondition {
  const status = ok ? 'True' : 'False';
  const prev = previous?.find((c) => c.type === type);
  const out: PodCondition = {
    type,
    status,
    lastTransitionTime:
      prev?.status === status && prev.lastTransitionTime ? prev.lastTransitionTime : kubeTime(now),
    lastProbeTime: null,
  };
  if (!ok && notReason) out.reason = notReason;
  if (!ok && notMessage) out.message = notMessage;
  return out;
}

/**
 * The status to write. Conditions keep their lastTransitionTime while their status stays
 * the same, so the status of a pod that did not change is the same object (no write).
 */
export function buildPodStatus(
  pod: PodView,
  previousConditions: readonly PodCondition[] | undefined,
  now: Date,
): PodStatusOut {
  const notReady = pod.containers.filter((c) => !c.ready).map((c) => c.name);
  const allReady = pod.containers.length > 0 && notReady.length === 0;
  const message = notReady.length ? `containers with unready status: [${notReady.join(' ')}]` : undefined;
  const conditions = [
    condition('PodReadyToStartContainers', pod.podIP !== undefined, previousConditions, now),
    condition('Initialized', true, previousConditions, now),
    condition('ContainersReady', allReady, previousConditions, now, 'ContainersNotReady', message),
    condition('Ready', allReady, previousConditions, now, 'ContainersNotReady', message),
  ];
  const status: PodStatusOut = {
    phase: podPhase(pod.containers, pod.restartPolicy),
    conditions,
    hostIP: pod.hostIP,
    hostIPs: [{ ip: pod.hostIP }],
    startTime: pod.startTime,
    containerStatuses: pod.containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: c.imageID,
      ...(c.containerID ? { containerID: c.containerID } : {}),
      state: c.state,
      lastState: c.lastState ?? {},
      ready: c.ready,
      started: 'running' in c.state,
      restartCount: c.restartCount,
    })),
  };
  if (pod.podIP) {
    status.podIP = pod.podIP;
    status.podIPs = [{ ip: pod.podIP }];
  }
  return status;
}

/** Reason of a terminated container, as the kubelet words it. */
export function terminationReason(exitCode: number, oomKilled = false): string {
  if (oomKilled) return 'OOMKilled';
  return exitCode === 0 ? 'Completed' : 'Error';
}

/** Exit code of a process that exited with `code` or was killed by `signal` (128 + number). */
export function exitCodeOf(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  const numbers: Record<string, number> = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15, SIGABRT: 6 };
  return 128 + (signal ? (numbers[signal] ?? 0) : 0);
}

/**
 * Whether a container that exited with `exitCode` is started again, by the pod's
 * restartPolicy.
 */
export function shouldRestart(restartPolicy: string, exitCode: number): boolean {
  if (restartPolicy === 'Never') return false;
  if (restartPolicy === 'OnFailure') return exitCode !== 0;
  return true;
}

/**
 * The kubelet's crash-loop back-off: `initialMs` doubled per restart, at most `maxMs`; a
 * container that ran `resetAfterMs` without exiting starts the count again.
 */
export function restartDelay(restarts: number, opts: { initialMs: number; maxMs: number }): number {
  if (restarts <= 0) return 0;
  return exponentialDelay(restarts - 1, opts.initialMs, opts.maxMs);
}
