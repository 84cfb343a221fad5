/**
 * The prediction engine: the facade that the gateway's routes and the Prediction controller
 * use — create, attach, get, list, stream, cancel, drain.
 *
 * - A prediction is accepted into its deployment's queue (bounded by spec.queue.maxLength:
 *   beyond it, 429), once per Idempotency-Key, after its input is checked against the
 *   version's schema; lanes.ts sends it to an instance, follower.ts follows it there,
 *   lifecycle.ts ends it.
 * - Every accepted prediction ends: succeeded, failed (with an error) or canceled; never lost.
 * - Drain: new predictions are refused (503) while those under way finish.
 *
 * Time is the `clock` option's (a FakeClock in unit tests); the HTTP side gives the stream URL
 * of a prediction (`streamUrl`), signed as it sees fit.
 */
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';
import { HttpError, invalidInput } from '../../lib/http.ts';
import { validateInput } from '../../lib/openapi-input.ts';
import {
  isTerminal,
  newPredictionId,
  type StreamEvent,
  WEBHOOK_EVENTS,
  type WebhookEvent,
} from '../../lib/prediction.ts';
import type { Catalog, DeploymentView } from './catalog.ts';
import type { DemandSource, DeploymentDemand } from './demand.ts';
import type { EndpointSource } from './endpoints.ts';
import { Follower } from './follower.ts';
import { Lanes } from './lanes.ts';
import { Lifecycle } from './lifecycle.ts';
import { type Listener, newLive } from './live.ts';
import { engineMetrics } from './metrics.ts';
import { type PredictionRecord, type PredictionView, toView } from './record.ts';
import { type InstanceClient, SidecarClient } from './sidecar-client.ts';
import { type ListOptions, type ListPage, MemoryStore, type PredictionStore } from './store.ts';
import { WebhookSender, type WebhookSenderOptions } from './webhooks.ts';

export interface EngineOptions {
  catalog: Catalog;
  endpoints: EndpointSource;
  log: Logger;
  store?: PredictionStore;
  /** The webhook signing secret (`whsec_...`) of a namespace. */
  secretFor?: (namespace: string) => string | Promise<string>;
  /** Metrics registry (the operator's). */
  registry?: Registry;
  /** The stream URL of a prediction (`urls.stream`); none when not given. */
  streamUrl?: (rec: { id: string; baseUrl: string }) => string;
  sidecar?: InstanceClient;
  /** How long an instance that refused or could not be reached is passed over (default 1 s). */
  avoidMs?: number;
  webhookOptions?: Partial<Omit<WebhookSenderOptions, 'secretFor' | 'log' | 'clock'>>;
  clock?: Clock;
}

export interface CreateRequest {
  namespace: string;
  deployment: string;
  /** Created through `/deployments/...`: the object names its deployment. */
  viaDeployment?: boolean;
  input: unknown;
  webhook?: string;
  webhookEvents?: WebhookEvent[];
  idempotencyKey?: string;
  /** Cancel-After, in ms. */
  cancelAfterMs?: number;
  /** Absolute API base URL (with `/v1`). */
  baseUrl: string;
  /** A given id (a Prediction object re-attaching); a new one otherwise. */
  id?: string;
  /** When it was created, epoch ms (a Prediction object's own time; default now). */
  createdAt?: number;
  /** Who made it, e.g. `prediction/<namespace>/<name>` for a Prediction object. */
  origin?: string;
}

/** How often finished predictions past their TTL are dropped from the store. */
const EXPIRE_EVERY_MS = 30_000;

export class PredictionEngine implements DemandSource {
  readonly store: PredictionStore;
  private readonly catalog: Catalog;
  private readonly endpoints: EndpointSource;
  private readonly log: Logger;
  private readonly sidecar: InstanceClient;
  private readonly webhooks: WebhookSender;
  private readonly clock: Clock;
  private readonly streamUrl: EngineOptions['streamUrl'];
  private readonly lifecycle: Lifecycle;
  private readonly lanes: Lanes;
  private readonly follower: Follower;
  private expiry: Timer | undefined;
  private closed = false;
  /** Refusing new predictions while those under way finish. */
  private draining = false;

  constructor(opts: EngineOptions) {
    this.catalog = opts.catalog;
    this.endpoints = opts.endpoints;
    this.log = opts.log.child({ component: 'predictions' });
    this.clock = opts.clock ?? realClock;
    this.store = opts.store ?? new MemoryStore({ clock: this.clock });
    this.sidecar = opts.sidecar ?? new SidecarClient({ clock: this.clock });
    this.streamUrl = opts.streamUrl;
    const metrics = engineMetrics(opts.registry ?? new Registry());
    const secretFor =
      opts.secretFor ??
      (() => {
        throw new Error('no webhook secret is configured');
      });
    this.webhooks = new WebhookSender({
      ...opts.webhookOptions,
      secretFor,
      log: this.log,
      clock: this.clock,
    });
    this.lifecycle = new Lifecycle({
      clock: this.clock,
      log: this.log,
      store: this.store,
      webhooks: this.webhooks,
      metrics,
      view: (rec) => this.view(rec),
      hooks: {
        leaving: (live) => this.lanes.leaving(live),
        ended: (live) => this.lanes.ended(live),
        holdExpired: (live) => this.lanes.holdExpired(live),
        deadline: (live) => void this.cancel(live.rec.id),
      },
    });
    this.follower = new Follower({ sidecar: this.sidecar, clock: this.clock, lifecycle: this.lifecycle });
    this.lanes = new Lanes({
      catalog: this.catalog,
      endpoints: this.endpoints,
      sidecar: this.sidecar,
      clock: this.clock,
      log: this.log,
      metrics,
      lifecycle: this.lifecycle,
      follower: this.follower,
      avoidMs: opts.avoidMs ?? 1000,
    });
    this.scheduleExpiry();
  }

  // --- reading -----------------------------------------------------------------------------

  get(id: string): PredictionRecord | undefined {
    return this.lifecycle.lives.get(id)?.rec ?? this.store.get(id);
  }

  /** Predictions in `opts.namespaces`, newest first. */
  list(opts: ListOptions): ListPage {
    return this.store.list(opts);
  }

  /**
   * The object callers read, with its stream URL; its urls start at `baseUrl` (the
   * request's), else at the one it was created with.
   */
  view(rec: PredictionRecord, baseUrl?: string): PredictionView {
    const r = baseUrl && baseUrl !== rec.baseUrl ? { ...rec, baseUrl } : rec;
    return toView(r, this.streamUrl?.(r));
  }

  /** Resolves true when the prediction has ended, false after `ms` or when `signal` aborts. */
  waitDone(id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    return this.lifecycle.waitDone(id, ms, signal);
  }

  /**
   * Events after `afterId`, and a subscription for the ones to come (undefined when the
   * prediction has ended: the past events are all there is).
   */
  stream(id: string, afterId: number, listener: Listener): { past: StreamEvent[]; unsubscribe?: () => void } {
    const live = this.lifecycle.lives.get(id);
    const rec = live?.rec ?? this.store.get(id);
    const past = (rec?.events ?? []).filter((e) => e.id > afterId);
    if (!live) return { past };
    live.listeners.add(listener);
    return { past, unsubscribe: () => live.listeners.delete(listener) };
  }

  /** Calls `listener` after every change of any prediction (synchronously; keep it cheap). */
  onChange(listener: (rec: PredictionRecord) => void): void {
    this.lifecycle.onChange(listener);
  }

  // --- creating ----------------------------------------------------------------------------

  /**
   * Accepts a prediction into its deployment's queue. Throws HttpError: 404 unknown
   * deployment, 422 invalid input, 429 queue full, 503 draining. When an instance takes it at
   * once, this waits for the instance's answer, so its 422 reaches the caller too.
   */
  async create(req: CreateRequest): Promise<{ record: PredictionRecord; replayed: boolean }> {
    if (this.closed || this.draining)
      throw new HttpError(503, 'Shutting down', 'the gateway is shutting down', {}, { 'retry-after': '1' });
    const view = this.catalog.deployment(req.namespace, req.deployment);
    if (!view)
      throw new HttpError(
        404,
        'Deployment not found',
        `deployment ${req.namespace}/${req.deployment} does not exist`,
      );
    const first = this.replay(req);
    if (first) return { record: first, replayed: true };
    const input = req.input ?? {};
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw invalidInput([{ type: 'type', field: 'input', description: 'input must be a JSON object' }]);
    }
    const problems = validateInput(input, view.openapi);
    if (problems.length) throw invalidInput(problems);
    const lane = this.lanes.lane(req.namespace, req.deployment);
    if (lane.queue.length >= view.maxLength) {
      throw new HttpError(
        429,
        'Queue full',
        `deployment ${lane.key} has ${lane.queue.length} predictions waiting, the most its spec.queue.maxLength allows`,
        {},
        { 'retry-after': '1' },
      );
    }
    const now = this.clock.now();
    const rec = this.newRecord(req, view, input as Record<string, unknown>, now);
    const live = newLive(rec, lane, now + view.maxWaitSeconds * 1000);
    // No await between the idempotency check above and these writes.
    this.lifecycle.admit(live, true);
    this.lanes.enqueue(live);
    this.log.debug({ prediction: rec.id, deployment: lane.key }, 'prediction accepted');
    this.lifecycle.changed(rec);
    this.lanes.pump(lane);
    if (live.dispatching) {
      const outcome = await live.dispatching;
      if (outcome.kind === 'invalid' && !live.accepted) {
        this.lifecycle.forget(live);
        throw invalidInput(outcome.fields, outcome.detail);
      }
    }
    return { record: rec, replayed: false };
  }

  /**
   * Idempotency: the prediction this request already made — the one created in its namespace
   * with its Idempotency-Key (while the store keeps it), or the one with its given id.
   */
  private replay(req: CreateRequest): PredictionRecord | undefined {
    if (req.idempotencyKey) {
      const first = this.store.findByIdempotencyKey(req.namespace, req.idempotencyKey);
      if (first) return this.get(first.id) ?? first;
    }
    return req.id ? this.get(req.id) : undefined;
  }

  /**
   * Re-attaches to a prediction an instance may be running already (after a restart of the
   * process that sent it): asks each ready instance of the deployment for it by id, and
   * follows it where found. Undefined when no instance knows it.
   */
  async attach(req: CreateRequest & { id: string }): Promise<PredictionRecord | undefined> {
    const known = this.get(req.id);
    if (known) return known;
    const view = this.catalog.deployment(req.namespace, req.deployment);
    if (!view) return undefined;
    for (const ep of this.endpoints.ready(req.namespace, req.deployment)) {
      const got = await this.sidecar.get(ep.url, req.id);
      if (got.kind !== 'ok') continue;
      if (this.get(req.id)) return this.get(req.id);
      const now = this.clock.now();
      const lane = this.lanes.lane(req.namespace, req.deployment);
      const rec = this.newRecord(req, view, (req.input ?? {}) as Record<string, unknown>, now);
      const live = newLive(rec, lane, now);
      this.lifecycle.admit(live, false);
      this.lanes.occupy(live, ep);
      live.accepted = true;
      rec.instance = ep.id;
      this.log.info({ prediction: rec.id, instance: ep.id }, 're-attached to a running prediction');
      if (isTerminal(got.body.status)) {
        this.follower.complete(live, got.body);
      } else {
        // Its logs come again with the stream, which is followed from its first event.
        this.follower.applySnapshot(live, { ...got.body, logs: undefined });
        this.lifecycle.changed(rec);
        void this.follower.follow(live, ep);
      }
      return rec;
    }
    return undefined;
  }

  private newRecord(
    req: CreateRequest,
    view: DeploymentView,
    input: Record<string, unknown>,
    now: number,
  ): PredictionRecord {
    const createdAt = req.createdAt ?? now;
    return {
      id: req.id ?? newPredictionId(),
      namespace: req.namespace,
      deployment: req.deployment,
      viaDeployment: req.viaDeployment ?? false,
      model: `${req.namespace}/${view.model}`,
      version: view.versionId,
      input,
      output: null,
      logs: '',
      error: null,
      status: 'starting',
      createdAt,
      webhook: req.webhook,
      webhookEvents: req.webhookEvents ?? [...WEBHOOK_EVENTS],
      idempotencyKey: req.idempotencyKey,
      deadline: req.cancelAfterMs === undefined ? undefined : createdAt + req.cancelAfterMs,
      baseUrl: req.baseUrl,
      origin: req.origin,
      events: [],
    };
  }

  // --- canceling ---------------------------------------------------------------------------

  /**
   * Cancels: a queued prediction at once; a running one on its instance (waiting up to a
   * second for it to end); one being handed to an instance as soon as the instance takes it.
   */
  async cancel(id: string): Promise<PredictionRecord | undefined> {
    const live = this.lifecycle.lives.get(id);
    if (!live) return this.store.get(id);
    live.cancelRequested = true;
    if (this.lanes.isQueued(live)) {
      this.lifecycle.finish(live, 'canceled');
      return live.rec;
    }
    if (live.accepted && live.endpoint) {
      const answered = await this.sidecar.cancel(live.endpoint.url, id);
      if (!answered) this.log.warn({ prediction: id, instance: live.endpoint.id }, 'cancel not confirmed');
      await this.lifecycle.waitDone(id, 1000);
    }
    return live.rec;
  }

  // --- demand ------------------------------------------------------------------------------

  demand(): DeploymentDemand[] {
    return this.lanes.demand();
  }

  onPoke(listener: (namespace: string, name: string) => void): void {
    this.lanes.onPoke(listener);
  }

  // --- stopping ----------------------------------------------------------------------------

  /**
   * Refuses new predictions (503), lets those under way end for up to `timeoutMs`, fails
   * those still waiting for an instance, then closes. What still runs then is left to its
   * instance.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    const deadline = this.clock.now() + timeoutMs;
    const lives = this.lifecycle.lives;
    for (let left = timeoutMs; lives.size > 0 && left > 0; left = deadline - this.clock.now()) {
      await Promise.all([...lives.keys()].map((id) => this.lifecycle.waitDone(id, left)));
    }
    for (const live of this.lanes.queued()) {
      this.lifecycle.finish(live, 'failed', 'the gateway shut down before an instance took the prediction');
    }
    if (lives.size > 0)
      this.log.warn({ predictions: lives.size }, 'stopping with predictions still running on instances');
    this.close();
  }

  /** Stops timers; predictions still running are left to their instances. */
  close(): void {
    this.closed = true;
    this.expiry?.cancel();
    this.lifecycle.close();
    this.lanes.close();
    this.webhooks.close();
  }

  /** Resolves when every webhook queued so far has been delivered or given up. */
  drainWebhooks(): Promise<void> {
    return this.webhooks.drain();
  }

  private scheduleExpiry(): void {
    this.expiry = this.clock.setTimer(() => {
      this.store.expire(this.clock.now());
      if (!this.closed) this.scheduleExpiry();
    }, EXPIRE_EVERY_MS);
  }
}
