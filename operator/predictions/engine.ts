/**
 * The prediction engine: one FIFO queue per deployment in front of its ready instances.
 *
 * - A prediction is accepted into its deployment's queue (bounded by spec.queue.maxLength:
 *   beyond it, 429) and sent to the ready instance with the fewest outstanding predictions
 *   below the version's maxConcurrency.
 * - With no ready instance it is held (status `starting`) up to spec.queue.maxWaitSeconds,
 *   and the autoscaler is poked at once; at the limit it fails saying why, quoting the
 *   Deployment's conditions.
 * - An instance that refuses it (429, 503) or cannot be reached before taking it puts it
 *   back at the front of the queue, for another instance. Once taken, the engine follows it
 *   through the sidecar's event stream, then reads the final record; an instance that goes
 *   away meanwhile fails it with an error naming the instance.
 * - Every accepted prediction ends: succeeded, failed (with an error) or canceled; never lost.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { HttpError, invalid } from '../../lib/http.ts';
import { type InvalidField, validateInput } from '../../lib/openapi-input.ts';
import {
  newPredictionId,
  type TerminalStatus,
  WEBHOOK_EVENTS,
  type WebhookEvent,
} from '../../lib/prediction.ts';
import type { DemandSource, DeploymentDemand } from '../autoscaler/demand.ts';
import { type Catalog, type DeploymentView, notReadyReason } from './catalog.ts';
import { type Endpoint, type EndpointSource, leastOutstanding } from './endpoints.ts';
import { type GatewayMetrics, gatewayMetrics } from './metrics.ts';
import {
  type EventName,
  isTerminal,
  type PredictionRecord,
  type PredictionView,
  type StreamEvent,
  toView,
} from './record.ts';
import { SidecarClient as Client, type InstancePrediction, type SidecarClient } from './sidecar-client.ts';
import { MemoryStore, type PredictionStore } from './store.ts';
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
  /** HMAC key of stream URL tokens (default: random per process). */
  streamKey?: Buffer;
  sidecar?: SidecarClient;
  /** How long an instance that refused or could not be reached is passed over (default 1 s). */
  avoidMs?: number;
  webhookOptions?: Partial<Omit<WebhookSenderOptions, 'secretFor' | 'log'>>;
  now?: () => number;
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

type Listener = (e: StreamEvent) => void;

interface Lane {
  namespace: string;
  name: string;
  key: string;
  queue: Live[];
  running: Map<string, Live>;
  perPod: Map<string, number>;
  avoid: Map<string, number>;
  lastActivityMs: number | undefined;
  lastPokeMs: number;
  retryTimer: NodeJS.Timeout | undefined;
}

interface Live {
  rec: PredictionRecord;
  lane: Lane;
  listeners: Set<Listener>;
  waiters: Set<() => void>;
  endpoint: Endpoint | undefined;
  accepted: boolean;
  cancelRequested: boolean;
  holdUntil: number;
  holdTimer: NodeJS.Timeout | undefined;
  deadlineTimer: NodeJS.Timeout | undefined;
  /** Resolves when the current dispatch attempt has an outcome. */
  dispatching: Promise<DispatchOutcome> | undefined;
  sidecarEventId: number;
  /** The instance's stream has said the prediction ended: its final record is read next. */
  sidecarEnded: boolean;
  refreshing: boolean;
  refreshAgain: boolean;
  abort: AbortController;
}

type DispatchOutcome =
  | { kind: 'accepted' }
  | { kind: 'requeued' }
  | { kind: 'invalid'; fields: InvalidField[]; detail: string }
  | { kind: 'failed' };

/** Least time between two reads of a running prediction's output from its instance. */
const REFRESH_MS = 250;

const parseTime = (s: string | null | undefined): number | undefined => {
  if (!s) return undefined;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : undefined;
};

export class PredictionEngine implements DemandSource {
  readonly store: PredictionStore;
  private readonly catalog: Catalog;
  private readonly endpoints: EndpointSource;
  private readonly log: Logger;
  private readonly sidecar: SidecarClient;
  private readonly webhooks: WebhookSender;
  private readonly metrics: GatewayMetrics;
  /** The stream token key, made once: an HMAC keyed with a KeyObject skips building one per call. */
  private readonly streamKey: KeyObject;
  private readonly avoidMs: number;
  private readonly now: () => number;
  private readonly lanes = new Map<string, Lane>();
  private readonly lives = new Map<string, Live>();
  private readonly pokeListeners: ((namespace: string, name: string) => void)[] = [];
  private readonly changeListeners: ((rec: PredictionRecord) => void)[] = [];
  private readonly expiry: NodeJS.Timeout;
  private closed = false;
  /** Refusing new predictions while those under way finish. */
  private draining = false;

  constructor(opts: EngineOptions) {
    this.catalog = opts.catalog;
    this.endpoints = opts.endpoints;
    this.log = opts.log.child({ component: 'predictions' });
    this.store = opts.store ?? new MemoryStore();
    this.sidecar = opts.sidecar ?? new Client();
    this.metrics = gatewayMetrics(opts.registry ?? new Registry());
    this.streamKey = createSecretKey(
      opts.streamKey ?? Buffer.from(crypto.getRandomValues(new Uint8Array(32))),
    );
    this.avoidMs = opts.avoidMs ?? 1000;
    this.now = opts.now ?? Date.now;
    const secretFor =
      opts.secretFor ??
      (() => {
        throw new Error('no webhook secret is configured');
      });
    this.webhooks = new WebhookSender({ ...opts.webhookOptions, secretFor, log: this.log });
    this.endpoints.onChange((ns, name) => {
      const lane = this.lanes.get(`${ns}/${name}`);
      if (lane) this.pump(lane);
    });
    this.expiry = setInterval(() => this.store.expire(this.now()), 30_000);
    this.expiry.unref();
  }

  // --- reading -----------------------------------------------------------------------------

  get(id: string): PredictionRecord | undefined {
    return this.lives.get(id)?.rec ?? this.store.get(id);
  }

  /** The object callers read, with its signed stream URL. */
  /**
   * The object callers read, with its signed stream URL; its urls start at `baseUrl` (the
   * request's), else at the one it was created with.
   */
  view(rec: PredictionRecord, baseUrl?: string): PredictionView {
    const r = baseUrl && baseUrl !== rec.baseUrl ? { ...rec, baseUrl } : rec;
    return toView(r, this.streamUrl(r));
  }

  streamToken(id: string): string {
    return createHmac('sha256', this.streamKey).update(`stream:${id}`).digest('base64url');
  }

  verifyStreamToken(id: string, token: string | null | undefined): boolean {
    if (!token) return false;
    const want = Buffer.from(this.streamToken(id));
    const got = Buffer.from(token);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  streamUrl(rec: PredictionRecord): string {
    return `${rec.baseUrl}/predictions/${rec.id}/stream?token=${this.streamToken(rec.id)}`;
  }

  /** Resolves true when the prediction has ended, false after `ms` or when `signal` aborts. */
  waitDone(id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    const live = this.lives.get(id);
    if (!live) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onDone = () => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      };
      const onAbort = () => {
        clearTimeout(timer);
        live.waiters.delete(onDone);
        resolve(false);
      };
      const timer = setTimeout(onAbort, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
      live.waiters.add(onDone);
    });
  }

  /**
   * Events after `afterId`, and a subscription for the ones to come (undefined when the
   * prediction has ended: the past events are all there is).
   */
  events(id: string, afterId: number, listener: Listener): { past: StreamEvent[]; unsubscribe?: () => void } {
    const live = this.lives.get(id);
    const rec = live?.rec ?? this.store.get(id);
    const past = (rec?.events ?? []).filter((e) => e.id > afterId);
    if (!live) return { past };
    live.listeners.add(listener);
    return { past, unsubscribe: () => live.listeners.delete(listener) };
  }

  // --- creating ----------------------------------------------------------------------------

  /**
   * Accepts a prediction into its deployment's queue. Throws HttpError: 404 unknown
   * deployment, 422 invalid input, 429 queue full. When an instance takes it at once, this
   * waits for the instance's answer, so its 422 reaches the caller too.
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
    if (req.idempotencyKey) {
      const first = this.store.findByIdempotencyKey(req.namespace, req.idempotencyKey);
      if (first) return { record: this.lives.get(first.id)?.rec ?? first, replayed: true };
    }
    if (req.id) {
      const known = this.get(req.id);
      if (known) return { record: known, replayed: true };
    }
    const input = req.input ?? {};
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw invalidInput([{ type: 'type', field: 'input', description: 'input must be a JSON object' }]);
    }
    const problems = validateInput(input, view.openapi);
    if (problems.length) throw invalidInput(problems);
    const lane = this.lane(req.namespace, req.deployment);
    if (lane.queue.length >= view.maxLength) {
      throw new HttpError(
        429,
        'Queue full',
        `deployment ${lane.key} has ${lane.queue.length} predictions waiting, the most its spec.queue.maxLength allows`,
        {},
        { 'retry-after': '1' },
      );
    }
    const now = this.now();
    const rec: PredictionRecord = this.newRecord(req, view, input as Record<string, unknown>, now);
    const live = this.newLive(rec, lane, now + view.maxWaitSeconds * 1000);
    // No await between the idempotency check above and these writes.
    this.store.put(rec);
    this.lives.set(rec.id, live);
    if (rec.webhook) this.webhooks.register(rec.id, rec.namespace, rec.webhook, rec.webhookEvents);
    live.holdTimer = setTimeout(() => this.onHoldTimeout(live), Math.max(0, live.holdUntil - now));
    this.armDeadline(live);
    lane.queue.push(live);
    lane.lastActivityMs = now;
    this.log.debug({ prediction: rec.id, deployment: lane.key }, 'prediction accepted');
    this.changed(rec);
    this.pump(lane);
    if (live.dispatching) {
      const outcome = await live.dispatching;
      if (outcome.kind === 'invalid' && !live.accepted) {
        this.store.delete(rec.id);
        throw invalidInput(outcome.fields, outcome.detail);
      }
    }
    return { record: rec, replayed: false };
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
      const now = this.now();
      const lane = this.lane(req.namespace, req.deployment);
      const rec = this.newRecord(req, view, (req.input ?? {}) as Record<string, unknown>, now);
      const live = this.newLive(rec, lane, now);
      this.store.put(rec);
      this.lives.set(rec.id, live);
      if (rec.webhook) this.webhooks.register(rec.id, rec.namespace, rec.webhook, rec.webhookEvents);
      this.armDeadline(live);
      live.endpoint = ep;
      lane.running.set(rec.id, live);
      lane.perPod.set(ep.id, (lane.perPod.get(ep.id) ?? 0) + 1);
      live.accepted = true;
      rec.instance = ep.id;
      this.log.info({ prediction: rec.id, instance: ep.id }, 're-attached to a running prediction');
      if (isTerminal(got.body.status)) {
        this.complete(live, got.body);
      } else {
        this.applySnapshot(live, got.body);
        this.changed(rec);
        void this.follow(live, ep);
      }
      return rec;
    }
    return undefined;
  }

  /** Calls `listener` after every change of any prediction (synchronously; keep it cheap). */
  onChange(listener: (rec: PredictionRecord) => void): void {
    this.changeListeners.push(listener);
  }

  private changed(rec: PredictionRecord): void {
    for (const l of this.changeListeners) {
      try {
        l(rec);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'a change listener failed');
      }
    }
  }

  private armDeadline(live: Live): void {
    const deadline = live.rec.deadline;
    if (deadline === undefined) return;
    live.deadlineTimer = setTimeout(
      () => {
        this.log.info({ prediction: live.rec.id }, 'Cancel-After deadline reached; canceling');
        void this.cancel(live.rec.id);
      },
      Math.max(0, deadline - this.now()),
    );
  }

  private newLive(rec: PredictionRecord, lane: Lane, holdUntil: number): Live {
    return {
      rec,
      lane,
      listeners: new Set(),
      waiters: new Set(),
      endpoint: undefined,
      accepted: false,
      cancelRequested: false,
      holdUntil,
      holdTimer: undefined,
      deadlineTimer: undefined,
      dispatching: undefined,
      sidecarEventId: 0,
      sidecarEnded: false,
      refreshing: false,
      refreshAgain: false,
      abort: new AbortController(),
    };
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

  /** Cancels: a queued prediction at once, a running one on its instance. */
  async cancel(id: string): Promise<PredictionRecord | undefined> {
    const live = this.lives.get(id);
    if (!live) return this.store.get(id);
    live.cancelRequested = true;
    const lane = live.lane;
    const queued = lane.queue.indexOf(live);
    if (queued >= 0) {
      this.finish(live, 'canceled');
      return live.rec;
    }
    if (live.accepted && live.endpoint) {
      const answered = await this.sidecar.cancel(live.endpoint.url, id);
      if (!answered) this.log.warn({ prediction: id, instance: live.endpoint.id }, 'cancel not confirmed');
      await this.waitDone(id, 1000);
    }
    // A dispatch under way: the cancel follows as soon as the instance takes it.
    return live.rec;
  }

  // --- demand ------------------------------------------------------------------------------

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

  /**
   * Refuses new predictions (503), lets those under way end for up to `timeoutMs`, then
   * closes. What is still running then is left to its instance.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    const deadline = Date.now() + timeoutMs;
    while (this.lives.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    for (const lane of this.lanes.values()) {
      for (const live of [...lane.queue]) {
        this.finish(live, 'failed', 'the gateway shut down before an instance took the prediction');
      }
    }
    if (this.lives.size > 0)
      this.log.warn({ predictions: this.lives.size }, 'stopping with predictions still running on instances');
    this.close();
  }

  /** Stops timers; predictions still running are left to their instances. */
  close(): void {
    this.closed = true;
    clearInterval(this.expiry);
    for (const live of this.lives.values()) {
      live.abort.abort();
      if (live.holdTimer) clearTimeout(live.holdTimer);
      if (live.deadlineTimer) clearTimeout(live.deadlineTimer);
    }
    for (const lane of this.lanes.values()) if (lane.retryTimer) clearTimeout(lane.retryTimer);
    this.webhooks.close();
  }

  /** Resolves when every webhook queued so far has been delivered or given up. */
  drainWebhooks(): Promise<void> {
    return this.webhooks.drain();
  }

  // --- the queue ---------------------------------------------------------------------------

  private lane(namespace: string, name: string): Lane {
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
      this.metrics.queueDepth.set({ deployment: key }, 0);
    }
    return lane;
  }

  private poke(lane: Lane): void {
    lane.lastPokeMs = this.now();
    for (const l of this.pokeListeners) {
      try {
        l(lane.namespace, lane.name);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'a poke listener failed');
      }
    }
  }

  /** Sends queued predictions to instances with room. */
  private pump(lane: Lane): void {
    if (this.closed) return;
    const view = this.catalog.deployment(lane.namespace, lane.name);
    const endpoints = this.endpoints.ready(lane.namespace, lane.name);
    const now = this.now();
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
        lane.retryTimer = setTimeout(
          () => {
            lane.retryTimer = undefined;
            this.pump(lane);
          },
          Math.max(5, next - now),
        );
      }
      // Held without a ready instance: tell the autoscaler at once; busy: at most every second.
      if (endpoints.length === 0 || now - lane.lastPokeMs >= 1000) this.poke(lane);
    }
    this.metrics.queueDepth.set({ deployment: lane.key }, lane.queue.length);
  }

  private onHoldTimeout(live: Live): void {
    live.holdTimer = undefined;
    const lane = live.lane;
    if (!lane.queue.includes(live) || isTerminal(live.rec.status)) return;
    this.finish(live, 'failed', this.holdError(lane));
  }

  private holdError(lane: Lane): string {
    const view = this.catalog.deployment(lane.namespace, lane.name);
    const wait = view?.maxWaitSeconds;
    const ready = this.endpoints.ready(lane.namespace, lane.name);
    if (!view) return `deployment ${lane.key} was deleted before an instance took the prediction`;
    if (ready.length === 0)
      return `no instance of deployment ${lane.key} became ready within ${wait} s (spec.queue.maxWaitSeconds): ${notReadyReason(view)}`;
    return `the prediction waited ${wait} s (spec.queue.maxWaitSeconds) in the queue of deployment ${lane.key}: its ${ready.length} ready instance(s) stayed busy`;
  }

  private dispatch(live: Live, ep: Endpoint): void {
    const lane = live.lane;
    const rec = live.rec;
    live.endpoint = ep;
    lane.running.set(rec.id, live);
    lane.perPod.set(ep.id, (lane.perPod.get(ep.id) ?? 0) + 1);
    lane.lastActivityMs = this.now();
    live.dispatching = this.send(live, ep);
  }

  private async send(live: Live, ep: Endpoint): Promise<DispatchOutcome> {
    const rec = live.rec;
    const lane = live.lane;
    const r = await this.sidecar.create(ep.url, rec.id, rec.input);
    if (isTerminal(rec.status)) {
      // Ended meanwhile (hold timeout cannot, cancel can): make sure the instance stops it too.
      if (r.kind === 'accepted') void this.sidecar.cancel(ep.url, rec.id);
      return { kind: 'failed' };
    }
    switch (r.kind) {
      case 'accepted': {
        live.accepted = true;
        rec.instance = ep.id;
        if (live.holdTimer) clearTimeout(live.holdTimer);
        live.holdTimer = undefined;
        this.metrics.held.observe({ deployment: lane.key }, (this.now() - rec.createdAt) / 1000);
        this.applySnapshot(live, r.body);
        this.store.put(rec);
        if (live.cancelRequested) void this.sidecar.cancel(ep.url, rec.id);
        void this.follow(live, ep);
        return { kind: 'accepted' };
      }
      case 'refused':
      case 'unreachable': {
        const why = r.kind === 'refused' ? `${r.status}: ${r.detail}` : r.error;
        this.log.info(
          { prediction: rec.id, instance: ep.id, why },
          'instance did not take the prediction; requeued',
        );
        this.release(live);
        lane.avoid.set(
          ep.id,
          this.now() + (r.kind === 'refused' ? Math.max(r.retryAfterMs, this.avoidMs) : this.avoidMs),
        );
        live.endpoint = undefined;
        if (this.now() >= live.holdUntil) {
          this.finish(live, 'failed', this.holdError(lane));
          return { kind: 'failed' };
        }
        lane.queue.unshift(live);
        this.pump(lane);
        return { kind: 'requeued' };
      }
      case 'invalid': {
        const error = `invalid input: ${r.fields.map((f) => f.description).join('; ') || r.detail}`;
        this.finish(live, 'failed', error);
        return { kind: 'invalid', fields: r.fields, detail: r.detail };
      }
      case 'error':
        this.finish(live, 'failed', `instance ${ep.id} refused the prediction (${r.status}): ${r.detail}`);
        return { kind: 'failed' };
    }
  }

  /** Frees the instance's slot held by `live`. */
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

  // --- following a running prediction ------------------------------------------------------

  private async follow(live: Live, ep: Endpoint): Promise<void> {
    const rec = live.rec;
    let attempt = 0;
    while (!isTerminal(rec.status) && !live.abort.signal.aborted) {
      let dropped = '';
      try {
        await this.sidecar.stream(
          ep.url,
          rec.id,
          live.sidecarEventId,
          (e) => this.onSidecarEvent(live, e),
          live.abort.signal,
        );
      } catch (err) {
        dropped = (err as Error).message;
      }
      if (isTerminal(rec.status) || live.abort.signal.aborted) return;
      const got = await this.readWithRetry(ep, rec.id);
      if (isTerminal(rec.status)) return;
      switch (got.kind) {
        case 'ok':
          if (isTerminal(got.body.status)) {
            this.complete(live, got.body);
            return;
          }
          this.applySnapshot(live, got.body);
          // The stream ended or dropped while the instance still runs it: follow again.
          attempt++;
          await new Promise((r) => setTimeout(r, Math.min(1000, 50 * 2 ** Math.min(attempt, 5))));
          break;
        case 'not-found':
          this.finish(
            live,
            'failed',
            `instance ${ep.id} no longer knows the prediction (it restarted while running it)`,
          );
          return;
        case 'unreachable':
          this.finish(
            live,
            'failed',
            `instance ${ep.id} (${ep.url}) went away while running the prediction: ${got.error}${dropped ? `; its event stream broke: ${dropped}` : ''}`,
          );
          return;
        case 'error':
          this.finish(
            live,
            'failed',
            `instance ${ep.id} answered ${got.status} for the prediction: ${got.detail}`,
          );
          return;
      }
    }
  }

  /** Reads the prediction from its instance, trying three more times over ~1.5 s when unreachable. */
  private async readWithRetry(ep: Endpoint, id: string) {
    let got = await this.sidecar.get(ep.url, id);
    for (let i = 0; i < 3 && got.kind === 'unreachable'; i++) {
      await new Promise((r) => setTimeout(r, 200 * 2 ** i));
      got = await this.sidecar.get(ep.url, id);
    }
    return got;
  }

  private onSidecarEvent(live: Live, e: { id: number; event: string; data: string }): void {
    if (e.id <= live.sidecarEventId || isTerminal(live.rec.status)) return;
    live.sidecarEventId = e.id;
    const rec = live.rec;
    if (e.event === 'logs') {
      this.markProcessing(live);
      rec.logs += e.data;
      this.emit(live, 'logs', e.data);
      this.changed(rec);
      this.webhooks.notify(rec.id, 'logs', () => this.view(rec));
    } else if (e.event === 'output') {
      this.markProcessing(live);
      this.emit(live, 'output', e.data);
      this.refresh(live);
    } else if (e.event === 'done' || e.event === 'error') {
      // Their details come with the final record, read when the stream ends.
      live.sidecarEnded = true;
    }
  }

  private markProcessing(live: Live, startedAt?: number): void {
    const rec = live.rec;
    if (rec.status !== 'starting') return;
    rec.status = 'processing';
    rec.startedAt = startedAt ?? this.now();
    this.store.put(rec);
    this.changed(rec);
    this.webhooks.notify(rec.id, 'start', () => this.view(rec));
  }

  /** Folds a non-final record from the instance into ours. */
  private applySnapshot(live: Live, body: InstancePrediction): void {
    const rec = live.rec;
    if (isTerminal(rec.status)) return;
    if (body.status === 'processing') this.markProcessing(live, parseTime(body.started_at));
    if (body.output !== undefined && body.output !== null && !isTerminal(body.status)) {
      const changed = JSON.stringify(body.output) !== JSON.stringify(rec.output);
      rec.output = body.output;
      if (changed) {
        this.webhooks.notify(rec.id, 'output', () => this.view(rec));
        this.changed(rec);
      }
    }
    if (typeof body.logs === 'string' && body.logs.length > rec.logs.length) rec.logs = body.logs;
  }

  /**
   * Reads the instance's record for the output so far: one read at a time, at most every
   * REFRESH_MS (a model streaming tokens sends many output events a second). The read waits
   * for the events that arrived with the output event: when the stream ends the prediction
   * there (a model that returns one value sends its output just before `done`), the final
   * record brings the output and no read is made for it.
   */
  private refresh(live: Live): void {
    if (live.refreshing) {
      live.refreshAgain = true;
      return;
    }
    const ep = live.endpoint;
    if (!ep || live.sidecarEnded) return;
    live.refreshing = true;
    void (async () => {
      try {
        await new Promise((r) => setImmediate(r));
        if (live.sidecarEnded) return;
        do {
          live.refreshAgain = false;
          const started = Date.now();
          const got = await this.sidecar.get(ep.url, live.rec.id);
          if (got.kind === 'ok' && !isTerminal(got.body.status)) this.applySnapshot(live, got.body);
          const pause = REFRESH_MS - (Date.now() - started);
          if (live.refreshAgain && pause > 0) await new Promise((r) => setTimeout(r, pause));
        } while (live.refreshAgain && !isTerminal(live.rec.status) && !live.sidecarEnded);
      } finally {
        live.refreshing = false;
      }
    })();
  }

  /** Ends with the instance's final record. */
  private complete(live: Live, body: InstancePrediction): void {
    const rec = live.rec;
    const status = body.status as TerminalStatus;
    rec.output = body.output ?? null;
    if (typeof body.logs === 'string') rec.logs = body.logs;
    rec.startedAt = parseTime(body.started_at) ?? rec.startedAt;
    if (typeof body.metrics?.predict_time === 'number') rec.predictTime = body.metrics.predict_time;
    if (typeof body.cost === 'string') rec.cost = body.cost;
    this.finish(live, status, status === 'failed' ? (body.error ?? 'prediction failed') : null);
  }

  // --- ending ------------------------------------------------------------------------------

  private emit(live: Live, event: EventName, data: string): void {
    const e: StreamEvent = { id: live.rec.events.length + 1, event, data };
    live.rec.events.push(e);
    for (const l of live.listeners) {
      try {
        l(e);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'a stream listener failed');
      }
    }
  }

  private finish(live: Live, status: 'succeeded' | 'failed' | 'canceled', error: string | null = null): void {
    const rec = live.rec;
    if (isTerminal(rec.status)) return;
    const lane = live.lane;
    const queued = lane.queue.indexOf(live);
    if (queued >= 0) lane.queue.splice(queued, 1);
    this.release(live);
    if (live.holdTimer) clearTimeout(live.holdTimer);
    if (live.deadlineTimer) clearTimeout(live.deadlineTimer);
    live.abort.abort();
    rec.status = status;
    rec.error = status === 'failed' ? (error ?? 'prediction failed') : null;
    rec.completedAt = this.now();
    if (status === 'failed') this.emit(live, 'error', rec.error ?? 'prediction failed');
    this.emit(
      live,
      'done',
      status === 'succeeded' ? '{}' : JSON.stringify({ reason: status === 'failed' ? 'error' : 'canceled' }),
    );
    this.lives.delete(rec.id);
    this.store.put(rec);
    lane.lastActivityMs = this.now();
    this.metrics.predictions.inc({ deployment: lane.key, status });
    this.webhooks.notify(rec.id, 'completed', () => this.view(rec));
    for (const w of live.waiters) w();
    live.waiters.clear();
    this.changed(rec);
    live.listeners.clear();
    this.log.info(
      {
        prediction: rec.id,
        deployment: lane.key,
        status,
        instance: rec.instance,
        error: rec.error ?? undefined,
      },
      'prediction ended',
    );
    this.pump(lane);
  }
}

const invalidInput = (fields: InvalidField[], detail?: string) =>
  invalid(fields, { title: 'Invalid input', detail });
