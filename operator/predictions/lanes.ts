/**
 * Lanes and dispatch: one FIFO queue per deployment in front of its ready instances.
 *
 * - A queued prediction goes to the ready instance with the fewest outstanding predictions
 *   below the version's maxConcurrency (least outstanding).
 * - With no ready instance it is held, and the autoscaler is poked at once (while instances
 *   are busy, at most every second); when its hold runs out it fails saying why, quoting the
 *   Deployment's conditions.
 * - An instance that refuses it (429, 503) or cannot be reached before taking it is passed
 *   over for a while, and the prediction goes back to the front of the queue, for another.
 * - The demand the autoscaler reads is these queues: queued, in flight, per instance.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.ts';
import { isTerminal } from '../../lib/prediction.ts';
import { InputBudget, inputBytes } from './budget.ts';
import { type Catalog, notReadyReason } from './catalog.ts';
import type { DeploymentDemand } from './demand.ts';
import { type Endpoint, type EndpointSource, leastOutstanding } from './endpoints.ts';
import type { Follower } from './follower.ts';
import type { Lifecycle } from './lifecycle.ts';
import type { DispatchOutcome, Lane, Live } from './live.ts';
import type { EngineMetrics } from './metrics.ts';
import type { InstanceClient } from './sidecar-client.ts';

export interface LanesOptions {
  catalog: Catalog;
  endpoints: EndpointSource;
  sidecar: InstanceClient;
  clock: Clock;
  log: Logger;
  metrics: EngineMetrics;
  lifecycle: Lifecycle;
  follower: Follower;
  /** How long an instance that refused or could not be reached is passed over. */
  avoidMs: number;
  /** Bytes of inputs held, per deployment and in all (default: DEFAULT_INPUT_BUDGET). */
  budget?: InputBudget;
  /** Where the instance uploads a prediction's output files. */
  uploadUrl?: (rec: { id: string; baseUrl: string }) => string | undefined;
}

/**
 * Whether the instance should follow the prediction live (logs and output as they happen)
 * rather than in one held request: its caller asked (`stream: true`), its webhook wants
 * `output` or `logs` events, or a stream is open on it already.
 */
function wantsLive(live: Live): boolean {
  if (live.wantsLive || live.listeners.size > 0) return true;
  const rec = live.rec;
  return (
    rec.webhook !== undefined && (rec.webhookEvents.includes('output') || rec.webhookEvents.includes('logs'))
  );
}

/** Least time between two pokes of the autoscaler for a deployment whose instances are busy. */
const POKE_BUSY_MS = 1000;

export class Lanes {
  private readonly opts: LanesOptions;
  private readonly clock: Clock;
  private readonly lanes = new Map<string, Lane>();
  readonly budget: InputBudget;
  private readonly pokeListeners: ((namespace: string, name: string) => void)[] = [];
  private closed = false;

  constructor(opts: LanesOptions) {
    this.opts = opts;
    this.clock = opts.clock;
    this.budget = opts.budget ?? new InputBudget();
    opts.endpoints.onChange((ns, name) => {
      const lane = this.lanes.get(`${ns}/${name}`);
      if (lane) this.pump(lane);
    });
  }

  /** The lane of deployment `namespace/name`, made on first use. */
  lane(namespace: string, name: string): Lane {
    const key = `${namespace}/${name}`;
    let lane = this.lanes.get(key);
    if (!lane) {
      lane = {
        namespace,
        name,
        key,
        queue: [],
        running: new Map(),
        perPod: new Map(),
        avoid: new Map(),
        lastActivityMs: undefined,
        lastPokeMs: 0,
        retryTimer: undefined,
      };
      this.lanes.set(key, lane);
      this.opts.metrics.queueDepth.set({ deployment: key }, 0);
    }
    return lane;
  }

  /**
   * Throws a 429 problem when `input`, new in `lane`, would take the bytes of inputs held past
   * the deployment's or the replica's budget.
   */
  admit(lane: Lane, input: unknown): void {
    this.budget.check(lane.key, inputBytes(input));
  }

  /**
   * Queues a prediction at the back of its lane (`pump` then sends what can go). Its input
   * counts against the budgets until it leaves.
   */
  enqueue(live: Live): void {
    this.budget.charge(live.rec.id, live.lane.key, inputBytes(live.rec.input));
    live.lane.queue.push(live);
    live.lane.lastActivityMs = this.clock.now();
  }

  /** Counts a prediction against instance `ep` (sent there, or found running there). */
  occupy(live: Live, ep: Endpoint): void {
    const lane = live.lane;
    live.endpoint = ep;
    lane.running.set(live.rec.id, live);
    lane.perPod.set(ep.id, (lane.perPod.get(ep.id) ?? 0) + 1);
  }

  isQueued(live: Live): boolean {
    return live.lane.queue.includes(live);
  }

  /** Every prediction waiting for an instance. */
  queued(): Live[] {
    return [...this.lanes.values()].flatMap((l) => [...l.queue]);
  }

  /** The lifecycle's hook before a prediction ends: out of its queue, its slot freed. */
  leaving(live: Live): void {
    this.budget.release(live.rec.id);
    const queue = live.lane.queue;
    const i = queue.indexOf(live);
    if (i >= 0) queue.splice(i, 1);
    this.release(live);
  }

  /** The lifecycle's hook after a prediction ended: the next one may go. */
  ended(live: Live): void {
    this.pump(live.lane);
  }

  /** The lifecycle's hook when a prediction's hold runs out: it fails if still queued. */
  holdExpired(live: Live): void {
    if (!this.isQueued(live) || isTerminal(live.rec.status)) return;
    this.opts.lifecycle.finish(live, 'failed', this.holdError(live.lane));
  }

  demand(): DeploymentDemand[] {
    return [...this.lanes.values()].map((l) => ({
      namespace: l.namespace,
      name: l.name,
      queued: l.queue.length,
      inflight: l.running.size,
      perPod: Object.fromEntries([...l.perPod].filter(([, n]) => n > 0)),
      lastActivityMs: l.lastActivityMs,
    }));
  }

  onPoke(listener: (namespace: string, name: string) => void): void {
    this.pokeListeners.push(listener);
  }

  close(): void {
    this.closed = true;
    for (const lane of this.lanes.values()) lane.retryTimer?.cancel();
  }

  /** Sends queued predictions to instances with room. */
  pump(lane: Lane): void {
    if (this.closed) return;
    const view = this.opts.catalog.deployment(lane.namespace, lane.name);
    const endpoints = this.opts.endpoints.ready(lane.namespace, lane.name);
    const now = this.clock.now();
    for (const [id, until] of lane.avoid) if (until <= now) lane.avoid.delete(id);
    const concurrency = view?.maxConcurrency ?? 1;
    while (lane.queue.length > 0 && view) {
      const ep = leastOutstanding(
        endpoints,
        (id) => lane.perPod.get(id) ?? 0,
        concurrency,
        (id) => lane.avoid.has(id),
      );
      if (!ep) break;
      const live = lane.queue.shift()!;
      this.dispatch(live, ep);
    }
    if (lane.queue.length > 0) {
      const avoided = endpoints.some((e) => lane.avoid.has(e.id));
      if (avoided && !lane.retryTimer) {
        const next = Math.min(...endpoints.map((e) => lane.avoid.get(e.id) ?? Infinity));
        lane.retryTimer = this.clock.setTimer(
          () => {
            lane.retryTimer = undefined;
            this.pump(lane);
          },
          Math.max(5, next - now),
        );
      }
      // Held without a ready instance: tell the autoscaler at once; busy: at most every second.
      if (endpoints.length === 0 || now - lane.lastPokeMs >= POKE_BUSY_MS) this.poke(lane);
    }
    this.opts.metrics.queueDepth.set({ deployment: lane.key }, lane.queue.length);
  }

  private poke(lane: Lane): void {
    lane.lastPokeMs = this.clock.now();
    for (const l of this.pokeListeners) {
      try {
        l(lane.namespace, lane.name);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'a poke listener failed');
      }
    }
  }

  private holdError(lane: Lane): string {
    const view = this.opts.catalog.deployment(lane.namespace, lane.name);
    const wait = view?.maxWaitSeconds;
    const ready = this.opts.endpoints.ready(lane.namespace, lane.name);
    if (!view) return `deployment ${lane.key} was deleted before an instance took the prediction`;
    if (ready.length === 0)
      return `no instance of deployment ${lane.key} became ready within ${wait} s (spec.queue.maxWaitSeconds): ${notReadyReason(view)}`;
    return `the prediction waited ${wait} s (spec.queue.maxWaitSeconds) in the queue of deployment ${lane.key}: its ${ready.length} ready instance(s) stayed busy`;
  }

  private dispatch(live: Live, ep: Endpoint): void {
    this.occupy(live, ep);
    live.lane.lastActivityMs = this.clock.now();
    live.dispatching = this.send(live, ep);
  }

  /** Hands the prediction to instance `ep`, and acts on its answer. */
  private async send(live: Live, ep: Endpoint): Promise<DispatchOutcome> {
    const { sidecar, lifecycle, follower } = this.opts;
    const rec = live.rec;
    const lane = live.lane;
    const r = await sidecar.create(ep.url, rec.id, rec.input, {
      live: wantsLive(live),
      inputChecked: live.inputChecked,
      uploadUrl: this.opts.uploadUrl?.(rec),
      onEvent: (e) => follower.onCreateEvent(live, e),
      signal: live.abort.signal,
    });
    if (isTerminal(rec.status) || live.abort.signal.aborted) {
      // Ended or dropped meanwhile (hold timeout cannot, cancel can): the instance stops it too.
      if (r.kind === 'accepted') void sidecar.cancel(ep.url, rec.id);
      return { kind: 'failed' };
    }
    switch (r.kind) {
      case 'accepted': {
        live.accepted = true;
        rec.instance = ep.id;
        lifecycle.taken(live);
        this.opts.metrics.held.observe({ deployment: lane.key }, (this.clock.now() - rec.createdAt) / 1000);
        follower.applySnapshot(live, r.body);
        lifecycle.saveSoon(live);
        if (live.cancelRequested) void sidecar.cancel(ep.url, rec.id);
        if (r.final) void follower.followCreated(live, ep, r.final);
        else void follower.follow(live, ep);
        return { kind: 'accepted' };
      }
      case 'refused':
      case 'unreachable': {
        const why = r.kind === 'refused' ? `${r.status}: ${r.detail}` : r.error;
        this.opts.log.info(
          { prediction: rec.id, instance: ep.id, why },
          'instance did not take the prediction; requeued',
        );
        this.release(live);
        const avoidMs = this.opts.avoidMs;
        lane.avoid.set(
          ep.id,
          this.clock.now() + (r.kind === 'refused' ? Math.max(r.retryAfterMs, avoidMs) : avoidMs),
        );
        live.endpoint = undefined;
        if (this.clock.now() >= live.holdUntil) {
          lifecycle.finish(live, 'failed', this.holdError(lane));
          return { kind: 'failed' };
        }
        lane.queue.unshift(live);
        this.pump(lane);
        return { kind: 'requeued' };
      }
      case 'invalid': {
        const error = `invalid input: ${r.fields.map((f) => f.description).join('; ') || r.detail}`;
        lifecycle.finish(live, 'failed', error);
        return { kind: 'invalid', fields: r.fields, detail: r.detail };
      }
      case 'error':
        lifecycle.finish(
          live,
          'failed',
          `instance ${ep.id} refused the prediction (${r.status}): ${r.detail}`,
        );
        return { kind: 'failed' };
    }
  }

  /** Frees the instance slot the prediction held. */
  private release(live: Live): void {
    const lane = live.lane;
    if (!lane.running.delete(live.rec.id)) return;
    const ep = live.endpoint;
    if (ep) {
      const n = (lane.perPod.get(ep.id) ?? 1) - 1;
      if (n > 0) lane.perPod.set(ep.id, n);
      else lane.perPod.delete(ep.id);
    }
  }
}
