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
 * - Kept in a store (store.ts) that several replicas may share: a prediction is stored before
 *   its creation is answered; any replica reads it, streams it and cancels it (its driver
 *   hears of it through the store's notices); the predictions of a replica that stopped are
 *   adopted by another (replicas.ts). While the store cannot be reached, creates and reads
 *   answer 503 with Retry-After; what runs keeps running and is stored when it returns.
 *
 * Time is the `clock` option's (a FakeClock in unit tests); the HTTP side gives the stream URL
 * of a prediction (`streamUrl`), signed as it sees fit.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { MAX_OUTPUT_BYTES } from '../../lib/bounded.ts';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';
import { EgressPolicy } from '../../lib/egress.ts';
import { HttpError, invalidInput } from '../../lib/http.ts';
import { inputSchema, validateInput } from '../../lib/openapi-input.ts';
import {
  isTerminal,
  newPredictionId,
  type StreamEvent,
  WEBHOOK_EVENTS,
  type WebhookEvent,
} from '../../lib/prediction.ts';
import { Adoption, type AdoptionTiming } from './adoption.ts';
import { InputBudget, type InputBudgetLimits } from './budget.ts';
import type { Catalog, DeploymentView } from './catalog.ts';
import type { DemandSource, DeploymentDemand } from './demand.ts';
import type { Endpoint, EndpointSource } from './endpoints.ts';
import { Follower } from './follower.ts';
import { Lanes } from './lanes.ts';
import { Lifecycle } from './lifecycle.ts';
import { type Listener, type Live, newLive } from './live.ts';
import { engineMetrics } from './metrics.ts';
import {
  LOG_TAIL_BYTES,
  logTail,
  type PredictionRecord,
  type PredictionView,
  toView,
  withoutEvents,
} from './record.ts';
import { type InstanceClient, type InstancePrediction, SidecarClient } from './sidecar-client.ts';
import {
  type ListOptions,
  type ListPage,
  MemoryStore,
  type PredictionStore,
  type StoredPrediction,
  type StoreNotice,
  StoreUnavailableError,
} from './store.ts';
import type { UsageStore } from './usage-store.ts';
import { WebhookSender, type WebhookSenderOptions } from './webhooks.ts';

export interface Retention {
  /** How long after it ends a prediction keeps its input, output and logs (default 1 h). */
  dataMs: number;
  /** How long after it ends its record is kept (default 30 days). */
  recordMs: number;
  /** How long usage buckets are kept (default 400 days). */
  usageMs: number;
  /** How often they are applied (default 1 min). */
  everyMs: number;
}

export interface EngineOptions {
  catalog: Catalog;
  endpoints: EndpointSource;
  log: Logger;
  /** Where predictions are kept, open (default: this process's memory). */
  store?: PredictionStore;
  /** Opens the store when the engine starts (instead of `store`); tried again until it opens. */
  openStore?: () => Promise<PredictionStore>;
  /** This replica's name: the driver of the predictions it accepts (default: random). */
  replica?: string;
  /** Heartbeats and adoption of the predictions of replicas that stopped. */
  adoption?: Partial<AdoptionTiming>;
  retention?: Partial<Retention>;
  /** The webhook signing secret (`whsec_...`) of a namespace. */
  secretFor?: (namespace: string) => string | Promise<string>;
  /** Metrics registry (the operator's). */
  registry?: Registry;
  /** The stream URL of a prediction (`urls.stream`); none when not given. */
  streamUrl?: (rec: { id: string; baseUrl: string; createdAt: number }) => string;
  /** Where an instance uploads a prediction's output files (none: outputs stay inline). */
  uploadUrl?: (rec: { id: string; baseUrl: string }) => string | undefined;
  sidecar?: InstanceClient;
  /** The `Authorization` header of calls to the sidecar at `base`, when `sidecar` is left to the engine. */
  sidecarAuthorization?: (base: string) => Promise<string>;
  /** How long an instance that refused or could not be reached is passed over (default 1 s). */
  avoidMs?: number;
  webhookOptions?: Partial<Omit<WebhookSenderOptions, 'secretFor' | 'log' | 'clock'>>;
  /** Byte budgets of the inputs held (budget.ts). */
  inputBudget?: Partial<InputBudgetLimits>;
  /** The most bytes of output a prediction may bring from its instance (default 16 MiB). */
  maxOutputBytes?: number;
  /**
   * The most bytes of event data a prediction keeps in memory (default: the logs' 1 MiB and
   * `maxOutputBytes`); past it its oldest logs and output events are dropped here.
   */
  maxEventBytes?: number;
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
  /** The caller wants the prediction's logs and output as they happen (`stream: true`). */
  stream?: boolean;
  /** Absolute API base URL (with `/v1`). */
  baseUrl: string;
  /** A given id (a Prediction object re-attaching); a new one otherwise. */
  id?: string;
  /** When it was created, epoch ms (a Prediction object's own time; default now). */
  createdAt?: number;
  /** Who made it, e.g. `prediction/<namespace>/<name>` for a Prediction object. */
  origin?: string;
}

const DEFAULT_RETENTION: Retention = {
  dataMs: 3_600_000,
  recordMs: 30 * 86_400_000,
  usageMs: 400 * 86_400_000,
  everyMs: 60_000,
};
/** Retry-After of a 503 while the store cannot be reached. */
const STORE_RETRY_AFTER_S = 2;

export class PredictionEngine implements DemandSource {
  /** This replica's name in the store. */
  readonly replica: string;
  private store: PredictionStore | undefined;
  private readonly openStore: (() => Promise<PredictionStore>) | undefined;
  private readonly catalog: Catalog;
  private readonly endpoints: EndpointSource;
  private readonly log: Logger;
  private readonly sidecar: InstanceClient;
  private readonly webhooks: WebhookSender;
  /** Which addresses webhooks may reach; the gateway checks a webhook's literal host against it at create time. */
  readonly egress: EgressPolicy;
  private readonly clock: Clock;
  private readonly streamUrl: EngineOptions['streamUrl'];
  private readonly lifecycle: Lifecycle;
  private readonly lanes: Lanes;
  private readonly follower: Follower;
  private readonly adoption: Adoption;
  private readonly retention: Retention;
  private retentionTimer: Timer | undefined;
  private unsubscribe: (() => void) | undefined;
  /** Readers of predictions other replicas drive, by prediction id: called on its notices. */
  private readonly watchers = new Map<string, Set<(n: StoreNotice) => void>>();
  private closed = false;
  /** Refusing new predictions while those under way finish. */
  private draining = false;

  constructor(opts: EngineOptions) {
    this.catalog = opts.catalog;
    this.endpoints = opts.endpoints;
    this.log = opts.log.child({ component: 'predictions' });
    this.clock = opts.clock ?? realClock;
    this.replica = opts.replica ?? `replica-${randomBytes(6).toString('hex')}`;
    this.openStore = opts.openStore;
    if (!opts.openStore) this.useStore(opts.store ?? new MemoryStore({ clock: this.clock }));
    this.sidecar =
      opts.sidecar ?? new SidecarClient({ clock: this.clock, authorization: opts.sidecarAuthorization });
    this.streamUrl = opts.streamUrl;
    this.retention = { ...DEFAULT_RETENTION, ...opts.retention };
    const metrics = engineMetrics(opts.registry ?? new Registry());
    const secretFor =
      opts.secretFor ??
      (() => {
        throw new Error('no webhook secret is configured');
      });
    this.egress = opts.webhookOptions?.egress ?? new EgressPolicy();
    const onAttempt = opts.webhookOptions?.onAttempt;
    this.webhooks = new WebhookSender({
      ...opts.webhookOptions,
      egress: this.egress,
      onAttempt: (a) => {
        const result =
          a.status >= 200 && a.status < 300
            ? 'delivered'
            : a.refused
              ? 'refused'
              : a.error?.startsWith('body not serialisable')
                ? 'unserialisable'
                : 'failed';
        metrics.webhookAttempts.inc({ event: a.event, result });
        onAttempt?.(a);
      },
      secretFor,
      log: this.log,
      clock: this.clock,
    });
    const self = this;
    this.lifecycle = new Lifecycle({
      clock: this.clock,
      log: this.log,
      get store() {
        return self.db();
      },
      replica: this.replica,
      webhooks: this.webhooks,
      metrics,
      view: (rec) => this.view(rec),
      maxEventBytes: opts.maxEventBytes ?? LOG_TAIL_BYTES + (opts.maxOutputBytes ?? MAX_OUTPUT_BYTES),
      hooks: {
        leaving: (live) => this.lanes.leaving(live),
        ended: (live) => this.lanes.ended(live),
        holdExpired: (live) => this.lanes.holdExpired(live),
        deadline: (live) => void this.cancel(live.rec.id),
      },
    });
    this.follower = new Follower({
      sidecar: this.sidecar,
      clock: this.clock,
      lifecycle: this.lifecycle,
      maxOutputBytes: opts.maxOutputBytes,
    });
    this.lanes = new Lanes({
      uploadUrl: opts.uploadUrl,
      catalog: this.catalog,
      endpoints: this.endpoints,
      sidecar: this.sidecar,
      clock: this.clock,
      log: this.log,
      metrics,
      lifecycle: this.lifecycle,
      follower: this.follower,
      avoidMs: opts.avoidMs ?? 1000,
      budget: new InputBudget(opts.inputBudget),
    });
    this.adoption = new Adoption({
      ...opts.adoption,
      replica: this.replica,
      store: () => this.store,
      clock: this.clock,
      log: this.log,
      takeOver: (rec) => this.takeOver(rec),
    });
  }

  /**
   * Opens the store (trying again until it opens), announces this replica, takes over what
   * replicas that stopped left unfinished, and applies the retention times. Resolves after
   * the first try to open the store: until it opens, `problem` says so and creates answer 503.
   */
  async start(): Promise<void> {
    this.scheduleRetention();
    await this.adoption.run(async () => {
      if (!this.store && this.openStore) this.useStore(await this.openStore());
    });
  }

  /** The usage store, once the store is open (the usage collector records into it). */
  usageStore(): UsageStore | undefined {
    return this.store?.usage;
  }

  /** Why the engine cannot serve now (the store is not open or cannot be reached); undefined when it can. */
  problem(): string | undefined {
    if (!this.store) return 'the prediction store is not open yet';
    return this.adoption.problem();
  }

  private useStore(store: PredictionStore & { onResumed?(fn: () => void): void }): void {
    this.store = store;
    this.unsubscribe = store.subscribe((n) => this.onNotice(n));
    // Notices sent while the store's listening connection was down are lost: streams of
    // predictions other replicas drive read their events again.
    store.onResumed?.(() => {
      for (const id of [...this.watchers.keys()])
        this.onNotice({ kind: 'events', id, lastId: Number.MAX_SAFE_INTEGER });
    });
  }

  /** The open store; a 503 before it opens. */
  private db(): PredictionStore {
    if (!this.store)
      throw new HttpError(
        503,
        'Store unavailable',
        'the prediction store is not open yet',
        {},
        { 'retry-after': String(STORE_RETRY_AFTER_S) },
      );
    return this.store;
  }

  /** Runs `fn` on the open store for a request (files): a 503 while it is not open or cannot be reached. */
  withStore<T>(fn: (store: PredictionStore) => Promise<T>): Promise<T> {
    return this.ask(fn);
  }

  /** A call of the store for a request: a 503 with Retry-After while it cannot be reached. */
  private async ask<T>(fn: (store: PredictionStore) => Promise<T>): Promise<T> {
    try {
      return await fn(this.db());
    } catch (err) {
      if (!(err instanceof StoreUnavailableError)) throw err;
      throw new HttpError(
        503,
        'Store unavailable',
        `the prediction store cannot be reached: ${err.message}`,
        {},
        { 'retry-after': String(STORE_RETRY_AFTER_S) },
      );
    }
  }

  // --- reading -----------------------------------------------------------------------------

  /** The prediction: as this replica drives it, else as the store keeps it. */
  async get(id: string): Promise<StoredPrediction | undefined> {
    const live = this.lifecycle.lives.get(id);
    if (live) return live.rec;
    return this.ask((s) => s.get(id));
  }

  /** Predictions in `opts.namespaces`, newest first. */
  async list(opts: ListOptions): Promise<ListPage> {
    const page = await this.ask((s) => s.list(opts));
    return { ...page, items: page.items.map((r) => this.lifecycle.lives.get(r.id)?.rec ?? r) };
  }

  /**
   * The object callers read, with its stream URL; its urls start at `baseUrl` (the
   * request's), else at the one it was created with.
   */
  view(rec: StoredPrediction, baseUrl?: string): PredictionView {
    const r = baseUrl && baseUrl !== rec.baseUrl ? { ...rec, baseUrl } : rec;
    return toView(r, this.streamUrl?.(r));
  }

  /** Resolves true when the prediction has ended, false after `ms` or when `signal` aborts. */
  waitDone(id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    return this.lifecycle.waitDone(id, ms, signal);
  }

  /**
   * Events after `afterId`, and a subscription for the ones to come (undefined when the
   * prediction has ended: the past events are all there is). Undefined when there is no such
   * prediction. A prediction another replica drives is read from the store, its new events
   * when the store's notices say they were written.
   */
  async stream(
    id: string,
    afterId: number,
    listener: Listener,
  ): Promise<{ past: StreamEvent[]; unsubscribe?: () => void } | undefined> {
    const local = this.localStream(id, afterId, listener);
    if (local) return local;
    let last = afterId;
    let ended = false;
    let reading: Promise<void> | undefined;
    let again = false;
    const pass = (events: StreamEvent[]) => {
      const fresh = events.filter((e) => e.id > last);
      if (fresh.length) last = fresh.at(-1)!.id;
      if (fresh.some((e) => e.event === 'done')) ended = true;
      return fresh;
    };
    const read = (): Promise<void> => {
      if (reading) {
        again = true;
        return reading;
      }
      reading = (async () => {
        do {
          again = false;
          try {
            for (const e of pass(await this.db().events(id, last))) listener(e);
          } catch (err) {
            this.log.warn({ prediction: id, err: (err as Error).message }, 'cannot read stream events');
          }
        } while (again && !ended);
        reading = undefined;
        if (ended) stop();
      })();
      return reading;
    };
    const stop = this.watch(id, (n) => {
      if (n.kind === 'events' && n.lastId > last) void read();
      // Taken over by this replica: its events come from here now, and are stored too.
      if (n.kind === 'changed' && isTerminal(n.status)) void read();
    });
    try {
      const rec = await this.ask((s) => s.get(id));
      if (!rec) {
        stop();
        return undefined;
      }
      const past = pass(await this.ask((s) => s.events(id, afterId)));
      if (ended || (isTerminal(rec.status) && !reading)) {
        stop();
        return { past };
      }
      return { past, unsubscribe: stop };
    } catch (err) {
      stop();
      throw err;
    }
  }

  private localStream(
    id: string,
    afterId: number,
    listener: Listener,
  ): { past: StreamEvent[]; unsubscribe?: () => void } | undefined {
    const live = this.lifecycle.lives.get(id);
    if (!live) return undefined;
    const past = live.rec.events.filter((e) => e.id > afterId && e.id <= live.delivered);
    live.listeners.add(listener);
    return { past, unsubscribe: () => live.listeners.delete(listener) };
  }

  /** Calls `listener` on each notice about prediction `id`; returns the unsubscribe. */
  private watch(id: string, listener: (n: StoreNotice) => void): () => void {
    const set = this.watchers.get(id) ?? new Set();
    this.watchers.set(id, set);
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.watchers.get(id) === set) this.watchers.delete(id);
    };
  }

  private onNotice(n: StoreNotice): void {
    if (n.kind === 'cancel' && n.driver === this.replica && this.lifecycle.lives.has(n.id)) {
      void this.cancel(n.id).catch((err: unknown) =>
        this.log.warn({ prediction: n.id, err: (err as Error).message }, 'cancel failed'),
      );
    }
    const set = this.watchers.get(n.id);
    if (set) for (const l of [...set]) l(n);
  }

  /** Calls `listener` after every change of any prediction (synchronously; keep it cheap). */
  onChange(listener: (rec: PredictionRecord) => void): void {
    this.lifecycle.onChange(listener);
  }

  /** True when this replica drives prediction `id` (and it has not ended). */
  drives(id: string): boolean {
    return this.lifecycle.lives.has(id);
  }

  // --- creating ----------------------------------------------------------------------------

  /**
   * Accepts a prediction into its deployment's queue, stored before this resolves. Throws
   * HttpError: 404 unknown deployment, 422 invalid input, 429 queue full, 503 draining or the
   * store unreachable. When an instance takes it at once, this waits for the instance's
   * answer, so its 422 reaches the caller too.
   */
  async create(req: CreateRequest): Promise<{ record: StoredPrediction; replayed: boolean }> {
    this.refuseWhenStopping();
    const view = this.catalog.deployment(req.namespace, req.deployment);
    if (!view)
      throw new HttpError(
        404,
        'Deployment not found',
        `deployment ${req.namespace}/${req.deployment} does not exist`,
      );
    const first = req.idempotencyKey || req.id ? await this.replay(req) : undefined;
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
    this.lanes.admit(lane, input);
    const now = this.clock.now();
    const rec = this.newRecord(req, view, input as Record<string, unknown>, now);
    // With an Idempotency-Key, the insert decides whether this request makes a prediction at
    // all: it goes first. Without one (a new random id) it goes beside the dispatch, so the
    // instance starts while the row is written; the answer waits for both.
    const key = req.idempotencyKey;
    let inserting: Promise<unknown> = Promise.resolve();
    if (key) {
      const existing = await this.ask((s) => s.insert(withoutEvents(rec), this.replica));
      if (existing) return { record: this.lifecycle.lives.get(existing.id)?.rec ?? existing, replayed: true };
    } else {
      inserting = this.ask((s) => s.insert(withoutEvents(rec), this.replica));
    }
    const live = newLive(rec, lane, this.clock.now() + view.maxWaitSeconds * 1000);
    live.wantsLive = req.stream === true;
    live.inputChecked = inputSchema(view.openapi) !== undefined;
    live.stored = inserting.then(() => true);
    // Handled below (the caller hears of it); writes wait for it and give up when it fails.
    live.stored.catch(() => {});
    this.lifecycle.admit(live, true);
    this.lanes.enqueue(live);
    this.log.debug({ prediction: rec.id, deployment: lane.key }, 'prediction accepted');
    this.lifecycle.changed(rec);
    this.lanes.pump(lane);
    try {
      await inserting;
    } catch (err) {
      // Never accepted: not run, not kept, not told to anyone.
      this.abandon(live);
      throw err;
    }
    if (live.dispatching) {
      const outcome = await live.dispatching;
      if (outcome.kind === 'invalid' && !live.accepted) {
        this.lifecycle.forget(live);
        throw invalidInput(outcome.fields, outcome.detail);
      }
    }
    return { record: rec, replayed: false };
  }

  /** Drops a prediction whose row could not be stored: out of its queue, stopped on its instance. */
  private abandon(live: Live): void {
    const ep = live.endpoint;
    const accepted = live.accepted;
    this.lifecycle.drop(live);
    if (ep && accepted) void this.sidecar.cancel(ep.url, live.rec.id);
    this.log.warn({ prediction: live.rec.id }, 'the prediction could not be stored; refused');
  }

  private refuseWhenStopping(): void {
    if (this.closed || this.draining)
      throw new HttpError(503, 'Shutting down', 'the gateway is shutting down', {}, { 'retry-after': '1' });
  }

  /**
   * Idempotency: the prediction this request already made — the one created in its namespace
   * with its Idempotency-Key (while the store keeps it), or the one with its given id.
   */
  private async replay(req: CreateRequest): Promise<StoredPrediction | undefined> {
    if (req.idempotencyKey) {
      const key = req.idempotencyKey;
      const first = await this.ask((s) => s.findByIdempotencyKey(req.namespace, key));
      if (first) return this.lifecycle.lives.get(first.id)?.rec ?? first;
    }
    return req.id ? this.get(req.id) : undefined;
  }

  /**
   * Re-attaches to a prediction an instance may be running already (after a restart of the
   * process that sent it, when the store did not keep it): asks each ready instance of the
   * deployment for it by id, and follows it where found. Undefined when no instance knows it.
   */
  async attach(req: CreateRequest & { id: string }): Promise<StoredPrediction | undefined> {
    const known = await this.get(req.id);
    if (known) return known;
    const view = this.catalog.deployment(req.namespace, req.deployment);
    if (!view) return undefined;
    const found = await this.findOnInstances(req.namespace, req.deployment, req.id);
    if (!found) return undefined;
    const known2 = await this.get(req.id);
    if (known2) return known2;
    const now = this.clock.now();
    const rec = this.newRecord(req, view, (req.input ?? {}) as Record<string, unknown>, now);
    if (await this.ask((s) => s.insert(withoutEvents(rec), this.replica))) return this.get(req.id);
    this.log.info({ prediction: rec.id, instance: found.ep.id }, 're-attached to a running prediction');
    this.followOn(rec, found.ep, found.body, false);
    return rec;
  }

  /** The ready instance of deployment `namespace/name` that knows prediction `id`, `prefer` asked first. */
  private async findOnInstances(
    namespace: string,
    name: string,
    id: string,
    prefer?: string,
  ): Promise<{ ep: Endpoint; body: InstancePrediction } | undefined> {
    const eps = [...this.endpoints.ready(namespace, name)].sort(
      (a, b) => Number(b.id === prefer) - Number(a.id === prefer),
    );
    for (const ep of eps) {
      const got = await this.sidecar.get(ep.url, id);
      if (got.kind === 'ok') return { ep, body: got.body };
    }
    return undefined;
  }

  /**
   * Drives a prediction found on instance `ep`: follows it there to its end. `resume`: its
   * stored events are kept and the instance's stream is read after them; otherwise the stream
   * is read from its start (the logs come again with it).
   */
  private followOn(rec: PredictionRecord, ep: Endpoint, body: InstancePrediction, resume: boolean): void {
    const lane = this.lanes.lane(rec.namespace, rec.deployment);
    const live = newLive(rec, lane, this.clock.now());
    this.lifecycle.admit(live, false);
    this.lanes.occupy(live, ep);
    live.accepted = true;
    rec.instance = ep.id;
    if (resume) {
      // Our events are the instance's (logs and output, one for one) until the end.
      live.sidecarEventId = rec.events.at(-1)?.id ?? 0;
      rec.logs = logTail(
        rec.events
          .filter((e) => e.event === 'logs')
          .map((e) => e.data)
          .join(''),
      );
    }
    this.lifecycle.bound(live);
    if (isTerminal(body.status)) {
      this.follower.complete(live, body);
    } else {
      this.follower.applySnapshot(live, { ...body, logs: undefined });
      this.lifecycle.saveSoon(live);
      this.lifecycle.changed(rec);
      if (rec.cancelRequested) void this.sidecar.cancel(ep.url, rec.id);
      void this.follower.follow(live, ep);
    }
  }

  /**
   * Takes over a prediction of a replica that stopped (`adopt` made this replica its driver):
   * one an instance runs or ran is followed there again by id; one that never reached an
   * instance goes back into its queue; one whose instance is gone too fails saying so; one
   * that ended with its `completed` webhook owed has it sent.
   */
  private async takeOver(s: StoredPrediction): Promise<void> {
    if (this.lifecycle.lives.has(s.id) || this.closed) return;
    const rec: PredictionRecord = { ...s, events: await this.db().events(s.id, 0) };
    const lane = this.lanes.lane(rec.namespace, rec.deployment);
    if (isTerminal(rec.status)) {
      // It ended, and its `completed` webhook may not have gone out: it goes from here.
      if (rec.webhook && rec.webhookPending) {
        this.log.info({ prediction: rec.id }, 'sending the completed webhook of a replica that stopped');
        this.webhooks.register(rec.id, rec.namespace, rec.webhook, rec.webhookEvents);
        this.lifecycle.sendCompleted(newLive(rec, lane, this.clock.now()));
      }
      return;
    }
    const found = await this.findOnInstances(rec.namespace, rec.deployment, rec.id, rec.instance);
    if (this.lifecycle.lives.has(rec.id) || this.closed) return;
    this.log.info(
      { prediction: rec.id, deployment: `${rec.namespace}/${rec.deployment}`, instance: found?.ep.id },
      'took over a prediction of a replica that stopped',
    );
    if (found) {
      this.followOn(rec, found.ep, found.body, true);
      return;
    }
    const view = this.catalog.deployment(rec.namespace, rec.deployment);
    const live = newLive(rec, lane, this.clock.now() + (view?.maxWaitSeconds ?? 0) * 1000);
    if (rec.instance || rec.status === 'processing') {
      this.lifecycle.admit(live, false);
      this.lifecycle.finish(
        live,
        'failed',
        `the replica driving the prediction stopped, and instance ${rec.instance ?? '(unknown)'} that ran it no longer knows it`,
      );
      return;
    }
    this.lifecycle.admit(live, true);
    if (rec.cancelRequested) {
      this.lifecycle.finish(live, 'canceled');
      return;
    }
    this.lanes.enqueue(live);
    this.lanes.pump(lane);
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
   * One another replica drives is canceled by that replica, told through the store.
   */
  async cancel(id: string): Promise<StoredPrediction | undefined> {
    const live = this.lifecycle.lives.get(id);
    if (!live) return this.cancelElsewhere(id);
    live.cancelRequested = true;
    live.rec.cancelRequested = true;
    if (isTerminal(live.rec.status)) {
      await this.lifecycle.waitDone(id, 1000);
      return live.rec;
    }
    if (this.lanes.isQueued(live)) {
      this.lifecycle.finish(live, 'canceled');
      await this.lifecycle.waitDone(id, 1000);
      return live.rec;
    }
    if (live.accepted && live.endpoint) {
      const answered = await this.sidecar.cancel(live.endpoint.url, id);
      if (!answered) this.log.warn({ prediction: id, instance: live.endpoint.id }, 'cancel not confirmed');
      await this.lifecycle.waitDone(id, 1000);
    }
    return live.rec;
  }

  private async cancelElsewhere(id: string): Promise<StoredPrediction | undefined> {
    let ended!: () => void;
    const done = new Promise<void>((r) => {
      ended = r;
    });
    const stop = this.watch(id, (n) => {
      if (n.kind === 'changed' && isTerminal(n.status)) ended();
    });
    try {
      const rec = await this.ask((s) => s.requestCancel(id));
      if (!rec || isTerminal(rec.status)) return rec;
      let timer: Timer | undefined;
      await Promise.race([done, new Promise<void>((r) => (timer = this.clock.setTimer(r, 1000)))]);
      timer?.cancel();
      return this.lifecycle.lives.get(id)?.rec ?? (await this.ask((s) => s.get(id))) ?? rec;
    } finally {
      stop();
    }
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
   * Refuses new predictions (503), lets those under way end for up to `timeoutMs`, then
   * closes. What still waits for an instance is left in the store for another replica (or
   * this one's successor) to take over; with the memory store, where nothing would, it fails.
   * What still runs is left to its instance, followed again by whoever takes it over.
   */
  async drain(timeoutMs: number): Promise<void> {
    this.draining = true;
    const deadline = this.clock.now() + timeoutMs;
    const lives = this.lifecycle.lives;
    for (let left = timeoutMs; lives.size > 0 && left > 0; left = deadline - this.clock.now()) {
      await Promise.all([...lives.keys()].map((id) => this.lifecycle.waitDone(id, left)));
    }
    if (this.store?.kind === 'memory') {
      for (const live of this.lanes.queued()) {
        this.lifecycle.finish(live, 'failed', 'the gateway shut down before an instance took the prediction');
      }
      await Promise.all(this.lanes.queued().map((l) => this.lifecycle.waitDone(l.rec.id, 1000)));
    }
    if (lives.size > 0)
      this.log.warn(
        { predictions: lives.size },
        'stopping with predictions under way; another replica takes them over',
      );
    await this.close();
  }

  /** Stops timers and leaves; predictions still running are left to their instances. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.retentionTimer?.cancel();
    this.lifecycle.close();
    this.lanes.close();
    this.webhooks.close();
    await this.adoption.stop();
    this.unsubscribe?.();
    if (this.openStore) await this.store?.close();
  }

  /** Resolves when every webhook queued so far has been delivered or given up. */
  drainWebhooks(): Promise<void> {
    return this.webhooks.drain();
  }

  /**
   * Removes the data of predictions past the data retention time, records past theirs, and
   * usage buckets past the usage retention time.
   */
  async applyRetention(): Promise<void> {
    const store = this.store;
    if (!store) return;
    const now = this.clock.now();
    const removed = await store.removeData(now - this.retention.dataMs);
    const purged = await store.purge(now - this.retention.recordMs);
    const usage = (await store.usage?.purgeUsage(now - this.retention.usageMs)) ?? 0;
    if (removed || purged || usage)
      this.log.info({ removed, purged, usageBuckets: usage }, 'applied the retention times');
  }

  private scheduleRetention(): void {
    this.retentionTimer = this.clock.setTimer(() => {
      void this.applyRetention()
        .catch((err: unknown) =>
          this.log.warn({ err: (err as Error).message }, 'cannot apply the retention times'),
        )
        .finally(() => {
          if (!this.closed) this.scheduleRetention();
        });
    }, this.retention.everyMs);
  }
}
