import { describe, expect, it } from 'vitest';
import type { Informer } from '../runtime/index.ts';
import { ownPod, PodEndpoints, type PodLike, type ReplicaSetLike } from './endpoints.ts';

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

/** An informer stand-in: a list of objects and the handlers a test calls as a watch would. */
function informerOf<T extends { metadata?: { namespace?: string; name?: string } }>(objects: T[]) {
  const handlers: { onAdd?(o: T): void; onUpdate?(a: T, b: T): void; onDelete?(o: T): void }[] = [];
  const inf = {
    list: (ns?: string) => objects.filter((o) => ns === undefined || o.metadata?.namespace === ns),
    get: (name: string, ns: string) =>
      objects.find((o) => o.metadata?.name === name && o.metadata?.namespace === ns),
    addEventHandler: (h: (typeof handlers)[number]) => handlers.push(h),
  };
  return { inf: inf as unknown as Informer<T>, objects, handlers };
}

function readyPod(name: string, ip: string, ready = true): PodLike {
  return {
    ...pod({}),
    metadata: { ...pod({}).metadata, name },
    spec: { containers: [{ name: 'sidecar', ports: [{ name: 'api', containerPort: 8080 }] }] },
    status: {
      phase: 'Running',
      podIP: ip,
      conditions: [{ type: 'Ready', status: ready ? 'True' : 'False' }],
    },
  } as PodLike;
}

describe('PodEndpoints', () => {
  it('keeps a deployment’s ready endpoints until one of its pods or a ReplicaSet changes', () => {
    const pods = informerOf<PodLike>([readyPod('llama-7d4f-a', '10.0.0.1')]);
    const sets = informerOf<ReplicaSetLike>([rs]);
    const eps = new PodEndpoints(pods.inf, sets.inf);
    const first = eps.ready('team', 'llama');
    expect(first).toEqual([{ id: 'llama-7d4f-a', url: 'http://10.0.0.1:8080' }]);
    expect(eps.ready('team', 'llama')).toBe(first);

    // A pod added: seen once its event comes.
    const b = readyPod('llama-7d4f-b', '10.0.0.2');
    pods.objects.push(b);
    for (const h of pods.handlers) h.onAdd?.(b);
    expect(eps.ready('team', 'llama').map((e) => e.id)).toEqual(['llama-7d4f-a', 'llama-7d4f-b']);

    // A pod no longer ready.
    const notReady = readyPod('llama-7d4f-b', '10.0.0.2', false);
    pods.objects[1] = notReady;
    for (const h of pods.handlers) h.onUpdate?.(b, notReady);
    expect(eps.ready('team', 'llama').map((e) => e.id)).toEqual(['llama-7d4f-a']);

    // Its ReplicaSet gone: its pods are no instances.
    sets.objects.pop();
    for (const h of sets.handlers) h.onDelete?.(rs);
    expect(eps.ready('team', 'llama')).toEqual([]);
  });
});
