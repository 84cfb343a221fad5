import { describe, expect, it } from 'vitest';
import { ANNOTATION, DeploymentSpecSchema, LABEL } from '../../crds/index.ts';
import type { Workload } from '../resources.ts';
import { podReleaseFor, releaseFor, releaseHash, replicasToApply } from './release.ts';

const spec = DeploymentSpecSchema.parse({
  model: 'llama',
  version: 'llama-v1',
  hardware: 'gpu-h100-2x',
  minInstances: 0,
  maxInstances: 3,
  rollout: { strategy: 'Recreate' },
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

describe('replicasToApply', () => {
  it('leaves replicas to the autoscaler once it owns them, and starts a new workload at minInstances', () => {
    const existing: Workload = { spec: { replicas: 5, selector: {}, template: {} } };
    expect(replicasToApply(spec, undefined, false)).toBe(0);
    expect(replicasToApply(DeploymentSpecSchema.parse({ ...spec, minInstances: 2 }), undefined, false)).toBe(
      2,
    );
    expect(replicasToApply(spec, existing, false)).toBe(5);
    expect(replicasToApply(spec, existing, true)).toBeUndefined();
  });
});

describe('podReleaseFor', () => {
  const workload = (templateHash: string, podRelease: number): Workload => ({
    metadata: { annotations: { [ANNOTATION.podTemplateHash]: templateHash } },
    spec: { selector: {}, template: { metadata: { labels: { [LABEL.release]: String(podRelease) } } } },
  });
  it("keeps the running pods' release while the pod template is the same", () => {
    expect(podReleaseFor('t1', workload('t1', 2), 5)).toBe(2);
  });
  it('gives the pods the new release when the template changed, or there is no workload yet', () => {
    expect(podReleaseFor('t2', workload('t1', 2), 5)).toBe(5);
    expect(podReleaseFor('t1', undefined, 1)).toBe(1);
  });
  it('ignores a pod release that is missing or ahead of the release', () => {
    expect(podReleaseFor('t1', workload('t1', 0), 3)).toBe(3);
    expect(podReleaseFor('t1', workload('t1', 9), 3)).toBe(3);
  });
});
