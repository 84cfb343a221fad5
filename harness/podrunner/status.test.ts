import { describe, expect, it } from 'vitest';
import {
  buildPodStatus,
  type ContainerView,
  exitCodeOf,
  podPhase,
  restartDelay,
  shouldRestart,
} from './status.ts';

const t0 = new Date('2026-01-01T00:00:00.123Z');
const t1 = new Date('2026-01-01T00:01:00Z');

function c(name: string, state: ContainerView['state'], extra: Partial<ContainerView> = {}): ContainerView {
  return { name, image: `img/${name}`, imageID: '', state, restartCount: 0, ready: false, ...extra };
}
const running = { running: { startedAt: '2026-01-01T00:00:00Z' } };
const exited = (exitCode: number) => ({
  terminated: { exitCode, reason: exitCode ? 'Error' : 'Completed', startedAt: 'x', finishedAt: 'y' },
});

describe('podPhase', () => {
  it('is Pending while a container has never started', () => {
    expect(podPhase([c('a', running), c('b', { waiting: { reason: 'ErrImagePull' } })], 'Always')).toBe(
      'Pending',
    );
  });

  it('is Running while containers run or wait to restart', () => {
    expect(podPhase([c('a', running), c('b', running)], 'Always')).toBe('Running');
    const crashLooping = c('b', { waiting: { reason: 'CrashLoopBackOff' } }, { lastState: exited(1) });
    expect(podPhase([c('a', running), crashLooping], 'Always')).toBe('Running');
    expect(podPhase([c('a', exited(0))], 'Always')).toBe('Running');
  });

  it('is Succeeded or Failed once everything exited for good', () => {
    expect(podPhase([c('a', exited(0)), c('b', exited(0))], 'Never')).toBe('Succeeded');
    expect(podPhase([c('a', exited(0)), c('b', exited(2))], 'Never')).toBe('Failed');
    expect(podPhase([c('a', exited(0))], 'OnFailure')).toBe('Succeeded');
    expect(podPhase([c('a', exited(1))], 'OnFailure')).toBe('Running');
  });
});

describe('buildPodStatus', () => {
  const pod = {
    podIP: '127.10.0.7',
    hostIP: '127.0.0.1',
    startTime: '2026-01-01T00:00:00Z',
    restartPolicy: 'Always',
    containers: [c('model', running, { ready: true }), c('sidecar', running)],
  };

  it('is Ready only when every container is ready, naming the ones that are not', () => {
    const s = buildPodStatus(pod, undefined, t0);
    const ready = s.conditions.find((x) => x.type === 'Ready');
    expect(ready).toMatchObject({
      status: 'False',
      reason: 'ContainersNotReady',
      message: 'containers with unready status: [sidecar]',
    });
    expect(ready?.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(s.podIP).toBe('127.10.0.7');
    expect(s.podIPs).toEqual([{ ip: '127.10.0.7' }]);
    expect(s.hostIPs).toEqual([{ ip: '127.0.0.1' }]);
    expect(s.phase).toBe('Running');
    expect(s.containerStatuses.map((x) => [x.name, x.ready, x.started])).toEqual([
      ['model', true, true],
      ['sidecar', false, true],
    ]);
    const all = buildPodStatus(
      { ...pod, containers: pod.containers.map((x) => ({ ...x, ready: true })) },
      s.conditions,
      t1,
    );
    expect(all.conditions.find((x) => x.type === 'Ready')).toMatchObject({
      status: 'True',
      lastTransitionTime: '2026-01-01T00:01:00Z',
    });
    expect(all.conditions.find((x) => x.type === 'ContainersReady')?.status).toBe('True');
  });

  it('keeps transition times while nothing changes, so an unchanged pod has an identical status', () => {
    const first = buildPodStatus(pod, undefined, t0);
    const again = buildPodStatus(pod, first.conditions, t1);
    expect(JSON.stringify(again)).toBe(JSON.stringify(first));
  });

  it('has no pod IP before one is given', () => {
    const s = buildPodStatus({ ...pod, podIP: undefined }, undefined, t0);
    expect(s.podIP).toBeUndefined();
    expect(s.conditions.find((x) => x.type === 'PodReadyToStartContainers')?.status).toBe('False');
  });
});

describe('restarts', () => {
  it('follows restartPolicy', () => {
    expect(shouldRestart('Always', 0)).toBe(true);
    expect(shouldRestart('OnFailure', 0)).toBe(false);
    expect(shouldRestart('OnFailure', 1)).toBe(true);
    expect(shouldRestart('Never', 1)).toBe(false);
  });

  it('backs off like the kubelet: doubling from the first delay, capped', () => {
    const o = { initialMs: 10_000, maxMs: 300_000 };
    expect([1, 2, 3, 4, 5, 6, 7].map((n) => restartDelay(n, o))).toEqual([
      10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000,
    ]);
    expect(restartDelay(0, o)).toBe(0);
  });

  it('reports a signal as 128 + its number', () => {
    expect(exitCodeOf(3, null)).toBe(3);
    expect(exitCodeOf(null, 'SIGKILL')).toBe(137);
    expect(exitCodeOf(null, 'SIGTERM')).toBe(143);
  });
});
