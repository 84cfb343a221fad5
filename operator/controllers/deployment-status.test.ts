import type { IPodCondition } from 'kubernetes-models/v1/PodCondition';
import { describe, expect, it } from 'vitest';
import { DeploymentSpecSchema, LABEL } from '../../crds/index.ts';
import type { Pod, Workload } from '../resources.ts';
import { deploymentStatus } from './deployment-status.ts';

const spec = DeploymentSpecSchema.parse({
  model: 'llama',
  version: 'llama-v1',
  hardware: 'gpu-h100-2x',
  minInstances: 0,
  maxInstances: 3,
  rollout: { strategy: 'Recreate' },
});

describe('deploymentStatus', () => {
  const now = new Date('2030-01-01T00:00:00Z');
  const gpuSpec = DeploymentSpecSchema.parse({ ...spec, minInstances: 1 });
  const workload: Workload = {
    metadata: { generation: 1 },
    spec: { replicas: 1, selector: {}, template: {} },
    status: { observedGeneration: 1, replicas: 1, updatedReplicas: 1, readyReplicas: 1 },
  };
  const pod = (release: number, conditions: IPodCondition[]): Pod => ({
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
