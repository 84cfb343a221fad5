/**
 * The autoscaler loop, run on the Lease holder beside the controllers. Every tick (and at once
 * when a gateway pokes it) it reads the demand of every gateway replica — this process's
 * sources and, when configured, the other replicas' over HTTP — and for each modelplane
 * Deployment:
 *
 * - decides the instance count (`decide.ts`, a pure function) and applies it as the child
 *   apps/v1 Deployment's `spec.replicas` with server-side apply under its own field manager,
 *   together with the window state in an annotation (restored after a restart);
 * - while a scale-down is pending, marks pods with `controller.kubernetes.io/pod-deletion-cost`
 *   from their outstanding predictions, so idle pods go first;
 * - records `desiredInstances`, `queued`, `running` and `lastScaleTime` in the Deployment's
 *   status (queue-only changes at most every `statusIntervalMs`), an Event for each change of
 *   the count, and Prometheus metrics.
 *
 * It never writes the user's Deployment spec, and a tick that changes nothing writes nothing.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import {
  ANNOTATION,
  type DeploymentSpec,
  DeploymentSpecSchema,
  ModelVersionSpecSchema,
} from '../../crds/index.ts';
import { type Caches, podsOf } from '../controllers/caches.ts';
import { AUTOSCALER_FIELD_MANAGER } from '../controllers/names.ts';
import type { DeploymentDemand } from '../predictions/demand.ts';
import { Deployments, type Pod, Pods, type Stored, type Workload, Workloads } from '../resources.ts';
import {
  applyStatus,
  type Clock,
  covers,
  type EventRecorder,
  type KubeClient,
  type Logger,
  ownsField,
  realClock,
  sleep,
} from '../runtime/index.ts';
import {
  type Decision,
  decide,
  decodeState,
  encodeState,
  policyFor,
  pruneSamples,
  type Sample,
  type WindowState,
} from './decide.ts';
import type { LocalDemand } from './local.ts';
import { sumDemand } from './sum.ts';

export const FIELD_MANAGER = AUTOSCALER_FIELD_MANAGER;
export const REPORTING_CONTROLLER = 'modelplane.dev/autoscaler';
/** The annotation on the child apps/v1 Deployment that carries the window state. */
export const STATE_ANNOTATION = 'modelplane.dev/autoscaler-state';

export interface AutoscalerOptions {
  client: KubeClient;
  caches: Pick<Caches, 'deployments' | 'workloads' | 'pods' | 'modelVersions'>;
  events: EventRecorder;
  registry: Registry;
  log: Logger;
  /** This process's demand sources. */
  local: LocalDemand;
  /** The other replicas' demand, when they are scraped. */
  peers?: { scrape(): Promise<DeploymentDemand[][]> };
  /** Time between ticks (default 1 s). */
  tickMs?: number;
  /**
   * Mark busy pods with controller.kubernetes.io/pod-deletion-cost before a scale-down, so the
   * ReplicaSet removes idle ones first (default false: it needs patch on pods).
   */
  podDeletionCost?: boolean;
  /** Least time between status writes that change only `queued` or `running` (default 5 s). */
  statusIntervalMs?: number;
  /** Least time between state annotation writes that only move a timestamp on (default 30 s). */
  stateIntervalMs?: number;
  clock?: Clock;
}

type Deployment = Stored<import('../../crds/index.ts').Deployment>;

interface Tracked {
  uid: string;
  samples: Sample[];
  state: WindowState;
  restored: boolean;
  /** The workload as our last apply returned it (newer than the cache for a moment). */
  applied?: Workload;
  /** The state as last written to the annotation, and when. */
  stateWritten?: string;
  stateWrittenAt: number;
  statusWritten?: string;
  /** The resourceVersion of the Deployment that last status write was made over. */
  statusWrittenOver?: string;
  statusWrittenAt: number;
}

/** Deployments scaled at once in a tick. */
const TICK_CONCURRENCY = 16;

/** Compares resourceVersions as etcd writes them (integers); the cache wins when unsure. */
function newer(a: Workload | undefined, b: Workload | undefined): Workload | undefined {
  if (!a) return b;
  if (!b) return a;
  try {
    return BigInt(b.metadata?.resourceVersion ?? '0') > BigInt(a.metadata?.resourceVersion ?? '0') ? b : a;
  } catch {
    return a;
  }
}

function ownedBy(workload: Workload, uid: string): boolean {
  return (workload.metadata?.ownerReferences ?? []).some((r) => r.controller && r.uid === uid);
}

function rfc3339(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z');
}

/** The state without its timestamps that only move on (activity, the panic's last trigger). */
function structural(state: WindowState): string {
  const { activityMs: _a, panicLastMs: _p, ...rest } = state;
  return encodeState(rest);
}

export class Autoscaler {
  readonly tickMs: number;
  private readonly opts: AutoscalerOptions;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly tracked = new Map<string, Tracked>();
  private readonly metrics: {
    desired: Gauge<'namespace' | 'deployment'>;
    demand: Gauge<'namespace' | 'deployment'>;
    panic: Gauge<'namespace' | 'deployment'>;
    decisions: Counter<'namespace' | 'deployment' | 'reason'>;
  };
  private remote: DeploymentDemand[][] = [];
  private readonly perKey = new Map<string, Promise<void>>();
  private pokesPending = new Set<string>();
  private running = false;
  private ticks = 0;

  constructor(opts: AutoscalerOptions) {
    this.opts = opts;
    this.tickMs = opts.tickMs ?? 1000;
    this.clock = opts.clock ?? realClock;
    this.log = opts.log.child({ component: 'autoscaler' });
    const registers = [opts.registry];
    const labelNames = ['namespace', 'deployment'] as const;
    this.metrics = {
      desired: new Gauge({
        name: 'modelplane_autoscaler_desired_instances',
        help: 'Instances the autoscaler wants for a deployment',
        labelNames,
        registers,
      }),
      demand: new Gauge({
        name: 'modelplane_autoscaler_demand',
        help: 'Predictions queued plus running for a deployment, over every gateway replica, at the last tick',
        labelNames,
        registers,
      }),
      panic: new Gauge({
        name: 'modelplane_autoscaler_panic',
        help: '1 while a deployment is in panic mode, else 0',
        labelNames,
        registers,
      }),
      decisions: new Counter({
        name: 'modelplane_autoscaler_decisions_total',
        help: 'Scaling decisions per deployment, by reason (Steady: the count stays)',
        labelNames: ['namespace', 'deployment', 'reason'],
        registers,
      }),
    };
    opts.local.onPoke((namespace, name) => this.poke(namespace, name));
  }

  /** Completed ticks (full or poked) since the process started. */
  get tickCount(): number {
    return this.ticks;
  }

  /** Runs until `signal` aborts: a tick every `tickMs`, and one at once per poke. */
  async run(signal: AbortSignal): Promise<void> {
    this.running = true;
    this.log.info({ tickMs: this.tickMs, peers: Boolean(this.opts.peers) }, 'autoscaler started');
    try {
      await Promise.all(
        [this.opts.caches.deployments, this.opts.caches.workloads, this.opts.caches.modelVersions].map((i) =>
          i.waitForSync({ signal }),
        ),
      ).catch(() => {});
      while (!signal.aborted) {
        await this.tick().catch((err) => this.log.error({ err }, 'autoscaler tick failed'));
        await sleep(this.tickMs, signal, this.clock);
      }
    } finally {
      this.running = false;
      await Promise.all(this.perKey.values());
      // A later leadership restores the state from the annotations again.
      this.tracked.clear();
      this.pokesPending.clear();
      // Another replica leads now: its figures are the ones to scrape.
      for (const g of [this.metrics.desired, this.metrics.demand, this.metrics.panic]) g.reset();
      this.log.info('autoscaler stopped');
    }
  }

  /**
   * Decide for one deployment at once (a gateway held a request with no ready instance).
   * Returns false when the autoscaler is not running (this process does not lead).
   */
  poke(namespace: string, name: string): boolean {
    if (!this.running) return false;
    const key = `${namespace}/${name}`;
    if (this.pokesPending.has(key)) return true;
    this.pokesPending.add(key);
    // The peers' last answers stand; this replica's demand is read now.
    void this.serially(key, () => {
      this.pokesPending.delete(key);
      const demand = sumDemand([this.opts.local.demand(), ...this.remote]);
      return this.scale(key, demand.get(key), this.clock.now());
    }).then(() => {
      this.ticks++;
    });
    return true;
  }

  /** Work on one deployment runs one at a time, in order; other deployments do not wait. */
  private serially(key: string, fn: () => Promise<void>): Promise<void> {
    const next = (this.perKey.get(key) ?? Promise.resolve())
      .then(fn)
      .catch((err) => this.log.warn({ err, deployment: key }, 'could not scale'));
    this.perKey.set(key, next);
    void next.then(() => {
      if (this.perKey.get(key) === next) this.perKey.delete(key);
    });
    return next;
  }

  /** One round over every deployment: the peers' demand is scraped first. */
  async tick(): Promise<void> {
    const { caches } = this.opts;
    if (this.opts.peers) this.remote = await this.opts.peers.scrape();
    const demand = sumDemand([this.opts.local.demand(), ...this.remote]);
    // A bounded number at once: a thousand new Deployments must not become a thousand
    // concurrent requests in front of the controllers' own.
    const keys = caches.deployments.keys();
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(TICK_CONCURRENCY, keys.length) }, async () => {
        while (next < keys.length) {
          const key = keys[next++] as string;
          await this.serially(key, () => this.scale(key, demand.get(key), this.clock.now()));
        }
      }),
    );
    for (const [key, t] of this.tracked) {
      const obj = caches.deployments.getByKey(key);
      if (!obj || obj.metadata.uid !== t.uid) this.forget(key);
    }
    this.ticks++;
  }

  private forget(key: string): void {
    this.tracked.delete(key);
    const [namespace = '', deployment = ''] = key.split('/');
    for (const g of [this.metrics.desired, this.metrics.demand, this.metrics.panic])
      g.remove({ namespace, deployment });
  }

  private async scale(key: string, d: DeploymentDemand | undefined, now: number): Promise<void> {
    const { caches, client } = this.opts;
    const obj = caches.deployments.getByKey(key) as Deployment | undefined;
    if (!obj || obj.metadata.deletionTimestamp) return;
    const parsed = DeploymentSpecSchema.safeParse(obj.spec);
    if (!parsed.success) return; // the Deployment controller reports it
    const spec: DeploymentSpec = parsed.data;
    const namespace = obj.metadata.namespace ?? '';
    const name = obj.metadata.name ?? '';
    const uid = obj.metadata.uid ?? '';
    const version = caches.modelVersions.get(spec.version, namespace);
    const maxConcurrency = version
      ? ModelVersionSpecSchema.safeParse(version.spec).data?.maxConcurrency
      : undefined;
    const policy = policyFor(spec, maxConcurrency);

    let t = this.tracked.get(key);
    if (!t || t.uid !== uid) {
      t = { uid, samples: [], state: {}, restored: false, stateWrittenAt: 0, statusWrittenAt: 0 };
      this.tracked.set(key, t);
    }
    const queued = Math.round(d?.queued ?? 0);
    const running = Math.round(d?.inflight ?? 0);
    t.samples.push({ at: now, demand: queued + running });
    t.samples = pruneSamples(t.samples, now, policy.stableWindowMs);

    let workload = newer(caches.workloads.get(name, namespace), t.applied);
    if (workload && !ownedBy(workload, uid)) workload = undefined;
    if ((workload?.metadata as { deletionTimestamp?: string } | undefined)?.deletionTimestamp)
      workload = undefined;
    const labels = { namespace, deployment: name };
    this.metrics.demand.set(labels, queued + running);
    if (!workload) {
      // Nothing to scale yet (being created, or blocked): report the queue only, once there
      // is one (an empty queue reads the same as none; a new Deployment's first scaling
      // status comes with its count, one write rather than two).
      if (queued + running === 0 && obj.status?.queued === undefined && obj.status?.running === undefined)
        return;
      await this.writeStatus(obj, t, { queued, running }, now);
      return;
    }
    if (!t.restored) {
      t.state = decodeState(workload.metadata?.annotations?.[STATE_ANNOTATION]);
      t.stateWritten = workload.metadata?.annotations?.[STATE_ANNOTATION];
      t.stateWrittenAt = now;
      t.restored = true;
    }
    const current = workload.spec?.replicas ?? 1;
    const decision = decide({
      now,
      samples: t.samples,
      current,
      policy,
      state: t.state,
      lastActivityMs: d?.lastActivityMs,
    });
    t.state = decision.state;
    this.metrics.desired.set(labels, decision.desired);
    this.metrics.panic.set(labels, decision.panicking ? 1 : 0);
    this.metrics.decisions.inc({ ...labels, reason: decision.reason });

    // Busy pods are marked while a scale-down is pending, before the count goes down.
    if (this.opts.podDeletionCost && (decision.desired < current || t.state.lowerSinceMs !== undefined))
      await this.markPods(namespace, name, d?.perPod ?? {});

    const stateText = encodeState(t.state);
    const adopt = !ownsField(workload, FIELD_MANAGER, ['spec', 'replicas']);
    const stateDue =
      stateText !== t.stateWritten &&
      (structural(t.state) !== structural(decodeState(t.stateWritten)) ||
        now - t.stateWrittenAt >= (this.opts.stateIntervalMs ?? 30_000));
    if (decision.desired !== current || adopt || stateDue) {
      t.applied = await client.apply(
        Workloads,
        {
          apiVersion: 'apps/v1',
          kind: 'Deployment',
          metadata: { name, namespace, annotations: { [STATE_ANNOTATION]: stateText } },
          spec: { replicas: decision.desired } as Workload['spec'],
        },
        { fieldManager: FIELD_MANAGER, force: true },
      );
      t.stateWritten = stateText;
      t.stateWrittenAt = now;
      if (decision.desired !== current) this.record(obj, decision);
    }
    const status: ScalingStatus = { desiredInstances: decision.desired, queued, running };
    if (t.state.lastScaleMs !== undefined) status.lastScaleTime = rfc3339(t.state.lastScaleMs);
    else if (obj.status?.lastScaleTime) status.lastScaleTime = obj.status.lastScaleTime;
    await this.writeStatus(obj, t, status, now);
  }

  private record(obj: Deployment, decision: Decision): void {
    this.log.info(
      { deployment: `${obj.metadata.namespace}/${obj.metadata.name}`, reason: decision.reason },
      decision.message,
    );
    void this.opts.events.normal(obj, decision.reason, decision.message, 'Scale');
  }

  /**
   * Writes the scaling status when it changed: at once when the count or lastScaleTime
   * changed, else (only queued or running moved) at most once per statusIntervalMs.
   */
  private async writeStatus(obj: Deployment, t: Tracked, status: ScalingStatus, now: number): Promise<void> {
    if (covers(obj.status, status)) return;
    const text = JSON.stringify(status);
    // Our last write may not be in the cache yet: while the cache holds the object our write
    // was based on, writing the same again would only repeat it (every tick, under load).
    if (text === t.statusWritten && obj.metadata.resourceVersion === t.statusWrittenOver) return;
    const { queued: _q, running: _r, ...rest } = status;
    const urgent = !covers(obj.status, rest);
    if (!urgent && now - t.statusWrittenAt < (this.opts.statusIntervalMs ?? 5_000)) return;
    await applyStatus(this.opts.client, Deployments, obj, status as never, { fieldManager: FIELD_MANAGER });
    t.statusWritten = text;
    t.statusWrittenOver = obj.metadata.resourceVersion;
    t.statusWrittenAt = now;
  }

  /** Sets each pod's deletion cost to its outstanding predictions, where that changed. */
  private async markPods(namespace: string, name: string, perPod: Record<string, number>): Promise<void> {
    const pods = podsOf(this.opts.caches.pods, namespace, name).filter((p) => !p.metadata?.deletionTimestamp);
    await Promise.all(
      pods.map(async (pod: Pod) => {
        const podName = pod.metadata?.name ?? '';
        const outstanding = Math.min(Math.round(perPod[podName] ?? 0), 1_000_000);
        const have = pod.metadata?.annotations?.[ANNOTATION.podDeletionCost];
        const want = String(outstanding);
        if (have === want || (have === undefined && outstanding === 0)) return;
        try {
          await this.opts.client.apply(
            Pods,
            {
              apiVersion: 'v1',
              kind: 'Pod',
              metadata: { name: podName, namespace, annotations: { [ANNOTATION.podDeletionCost]: want } },
            },
            { fieldManager: FIELD_MANAGER, force: true },
          );
        } catch (err) {
          this.log.debug({ err, pod: podName }, 'could not mark a pod');
        }
      }),
    );
  }
}

interface ScalingStatus {
  desiredInstances?: number;
  queued: number;
  running: number;
  lastScaleTime?: string;
}
