/**
 * Where a deployment's predictions can run: its ready instances (pods), each an HTTP base
 * URL of the sidecar's API. The dispatcher only reads this interface, so it runs the same
 * against pods found by a Pod watch and against sidecars a test started itself.
 */

import type { IReplicaSet } from 'kubernetes-models/apps/v1/ReplicaSet';
import type { IPod } from 'kubernetes-models/v1/Pod';
import { CONDITION, LABEL } from '../../crds/index.ts';
import { type Informer, type Listed, resourceType } from '../runtime/index.ts';

export interface Endpoint {
  /** Names the instance in errors and metrics: the pod's name. */
  id: string;
  /** Base URL of the sidecar's API, e.g. `http://10.0.0.7:8080`. */
  url: string;
}

export interface EndpointSource {
  /** The ready instances of deployment `namespace/name`. */
  ready(namespace: string, name: string): readonly Endpoint[];
  /** Calls `listener` when the instances of a deployment may have changed. */
  onChange(listener: (namespace: string, name: string) => void): void;
}

/** Endpoints set by hand (tests, `modelplane dev`). */
export class StaticEndpoints implements EndpointSource {
  private readonly byDeployment = new Map<string, Endpoint[]>();
  private readonly listeners: ((namespace: string, name: string) => void)[] = [];

  set(namespace: string, name: string, endpoints: Endpoint[]): void {
    this.byDeployment.set(`${namespace}/${name}`, [...endpoints]);
    for (const l of this.listeners) l(namespace, name);
  }

  ready(namespace: string, name: string): readonly Endpoint[] {
    return this.byDeployment.get(`${namespace}/${name}`) ?? [];
  }

  onChange(listener: (namespace: string, name: string) => void): void {
    this.listeners.push(listener);
  }
}

/** A Pod, as the endpoint watch reads it. */
export type PodLike = Listed<IPod>;
/** A ReplicaSet, as the endpoint watch reads it. */
export type ReplicaSetLike = Listed<IReplicaSet>;

type Owned = {
  metadata?: {
    ownerReferences?: { apiVersion: string; kind: string; name: string; uid: string; controller?: boolean }[];
  };
};

function controllerOf(obj: Owned) {
  return obj.metadata?.ownerReferences?.find((r) => r.controller);
}

/**
 * Whether `pod` belongs to the pods modelplane runs for Deployment `name`: its controller is a
 * ReplicaSet that exists (same uid) and is itself controlled by the apps/v1 Deployment `name`
 * the operator made. A pod anyone else created with the label is not an instance.
 */
export function ownPod(pod: PodLike, name: string, replicaSets: Informer<ReplicaSetLike>): boolean {
  const ref = controllerOf(pod);
  if (ref?.kind !== 'ReplicaSet' || ref.apiVersion !== 'apps/v1') return false;
  const rs = replicaSets.get(ref.name, pod.metadata?.namespace ?? '');
  if (!rs || rs.metadata?.uid !== ref.uid) return false;
  const owner = controllerOf(rs);
  return owner?.kind === 'Deployment' && owner.apiVersion === 'apps/v1' && owner.name === name;
}

export const SIDECAR_CONTAINER = 'sidecar';
export const SIDECAR_PORT_NAME = 'api';

/** The base URL (`http://ip:port`) of a pod's sidecar API, whatever its readiness. */
export function sidecarBase(pod: PodLike): string | undefined {
  const ip = pod.status?.podIP;
  const sidecar = pod.spec?.containers?.find((c) => c.name === SIDECAR_CONTAINER);
  const port = sidecar?.ports?.find((p) => p.name === SIDECAR_PORT_NAME)?.containerPort;
  if (!ip || !port) return undefined;
  return `http://${ip.includes(':') ? `[${ip}]` : ip}:${port}`;
}

/** The sidecar endpoint of a pod, when the pod is ready to take predictions. */
export function podEndpoint(pod: PodLike): Endpoint | undefined {
  const name = pod.metadata?.name;
  const ip = pod.status?.podIP;
  if (!name || !ip || pod.metadata?.deletionTimestamp) return undefined;
  if (pod.status?.phase !== 'Running') return undefined;
  const ready = pod.status.conditions?.find((c) => c.type === CONDITION.Ready);
  if (ready?.status !== 'True') return undefined;
  const url = sidecarBase(pod);
  return url ? { id: name, url } : undefined;
}

/**
 * Ready endpoints from a watch on Pods labelled `modelplane.dev/deployment`; with a watch on
 * ReplicaSets, only pods of the Deployment's own ReplicaSets (`ownPod`).
 *
 * Each deployment's ready endpoints are worked out once and kept until one of its pods (or
 * any ReplicaSet) changes: every dispatch asks for them, and scanning the namespace's pods
 * each time cost the gateway more with every pod of the namespace.
 */
export class PodEndpoints implements EndpointSource {
  private readonly pods: Informer<PodLike>;
  private readonly replicaSets: Informer<ReplicaSetLike> | undefined;
  private readonly listeners: ((namespace: string, name: string) => void)[] = [];
  /** Ready endpoints by `namespace/name`, as of the last change of the deployment's pods. */
  private readonly known = new Map<string, Endpoint[]>();

  constructor(pods: Informer<PodLike>, replicaSets?: Informer<ReplicaSetLike>) {
    this.pods = pods;
    this.replicaSets = replicaSets;
    const forget = (pod: PodLike | undefined) => {
      const ns = pod?.metadata?.namespace;
      const dep = pod?.metadata?.labels?.[LABEL.deployment];
      if (ns && dep) this.known.delete(`${ns}/${dep}`);
    };
    const changed = (pod: PodLike) => {
      forget(pod);
      const ns = pod.metadata?.namespace;
      const dep = pod.metadata?.labels?.[LABEL.deployment];
      if (ns && dep) for (const l of this.listeners) l(ns, dep);
    };
    pods.addEventHandler({
      onAdd: changed,
      onUpdate: (old, pod) => {
        forget(old);
        changed(pod);
      },
      onDelete: changed,
    });
    // Which pods are a Deployment's own depends on its ReplicaSets: any change of one, and the
    // endpoints are worked out again (ReplicaSets change at rollouts, not per prediction).
    replicaSets?.addEventHandler({
      onAdd: () => this.known.clear(),
      onUpdate: () => this.known.clear(),
      onDelete: () => this.known.clear(),
    });
  }

  /** The ready instances of deployment `namespace/name`, sorted by name (kept: do not change it). */
  ready(namespace: string, name: string): readonly Endpoint[] {
    const key = `${namespace}/${name}`;
    let eps = this.known.get(key);
    if (!eps) {
      eps = this.scan(namespace, name);
      this.known.set(key, eps);
    }
    return eps;
  }

  private scan(namespace: string, name: string): Endpoint[] {
    const out: Endpoint[] = [];
    for (const pod of this.pods.list(namespace)) {
      if (pod.metadata?.labels?.[LABEL.deployment] !== name) continue;
      if (this.replicaSets && !ownPod(pod, name, this.replicaSets)) continue;
      const e = podEndpoint(pod);
      if (e) out.push(e);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : 1));
  }

  onChange(listener: (namespace: string, name: string) => void): void {
    this.listeners.push(listener);
  }
}

/**
 * The endpoint to send the next prediction to: the one with the fewest outstanding
 * predictions among those below `concurrency`, skipping `avoid`; ties go to the first.
 */
export function leastOutstanding(
  endpoints: readonly Endpoint[],
  outstanding: (id: string) => number,
  concurrency: number,
  avoid: (id: string) => boolean = () => false,
): Endpoint | undefined {
  let best: Endpoint | undefined;
  let bestN = Infinity;
  for (const e of endpoints) {
    if (avoid(e.id)) continue;
    const n = outstanding(e.id);
    if (n < concurrency && n < bestN) {
      best = e;
      bestN = n;
    }
  }
  return best;
}

/** Pods as the endpoint watch reads them. */
export const PodResource = resourceType<PodLike>({
  apiVersion: 'v1',
  kind: 'Pod',
  plural: 'pods',
  namespaced: true,
});

/** ReplicaSets as the endpoint watch reads them. */
export const ReplicaSetResource = resourceType<ReplicaSetLike>({
  apiVersion: 'apps/v1',
  kind: 'ReplicaSet',
  plural: 'replicasets',
  namespaced: true,
});

/** The label selector of the endpoint watch: pods of modelplane Deployments. */
export const POD_SELECTOR = LABEL.deployment;
