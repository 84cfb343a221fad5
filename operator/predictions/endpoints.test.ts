import { describe, expect, it } from 'vitest';
import type { Informer } from '../runtime/index.ts';
import { ownPod, type PodLike, type ReplicaSetLike } from './endpoints.ts';

/** A cache holding these ReplicaSets (the informer's `get`, by name and namespace). */
function cacheOf(...sets: ReplicaSetLike[]): Informer<ReplicaSetLike> {
  return {
    get: (name: string, ns: string) =>
      sets.find((s) => s.metadata?.name === name && s.metadata?.namespace === ns),
  } as unknown as Informer<ReplicaSetLike>;
}

const rs: ReplicaSetLike = {
  apiVersion: 'apps/v1',
  kind: 'ReplicaSet',
  metadata: {
    name: 'llama-7d4f',
    namespace: 'team',
    uid: 'rs-uid',
    ownerReferences: [
      { apiVersion: 'apps/v1', kind: 'Deployment', name: 'llama', uid: 'w-uid', controller: true },
    ],
  },
};

function pod(owner?: { kind?: string; name?: string; uid?: string; apiVersion?: string }): PodLike {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name: 'llama-7d4f-abcde',
      namespace: 'team',
      labels: { 'modelplane.dev/deployment': 'llama' },
      ...(owner
        ? {
            ownerReferences: [
              {
                apiVersion: owner.apiVersion ?? 'apps/v1',
                kind: owner.kind ?? 'ReplicaSet',
                name: owner.name ?? 'llama-7d4f',
                uid: owner.uid ?? 'rs-uid',
                controller: true,
              },
            ],
          }
        : {}),
    },
  };
}

describe('ownPod', () => {
  it("takes a pod of the Deployment's own ReplicaSet", () => {
    expect(ownPod(pod({}), 'llama', cacheOf(rs))).toBe(true);
  });

  it('refuses a bare pod with the label, or one naming a ReplicaSet that is not there or not the same', () => {
    expect(ownPod(pod(), 'llama', cacheOf(rs))).toBe(false);
    expect(ownPod(pod({ uid: 'forged' }), 'llama', cacheOf(rs))).toBe(false);
    expect(ownPod(pod({ name: 'other-1' }), 'llama', cacheOf(rs))).toBe(false);
    expect(ownPod(pod({ kind: 'Job' }), 'llama', cacheOf(rs))).toBe(false);
  });

  it('refuses a pod of a ReplicaSet that another Deployment, or nobody, controls', () => {
    expect(ownPod(pod({}), 'other', cacheOf(rs))).toBe(false);
    const orphan = { ...rs, metadata: { ...rs.metadata, ownerReferences: [] } };
    expect(ownPod(pod({}), 'llama', cacheOf(orphan))).toBe(false);
  });
});
