/**
 * The sidecar of one model pod: the prediction API in front of a Cog model server. This file
 * wires the parts and keeps the predictions:
 *
 * - listeners.ts, api.ts: the HTTP listeners (API, metrics, the Cog server's webhooks) and
 *   the API's routes;
 * - model-health.ts: the model server's health and setup, followed by polling;
 * - slots.ts: concurrency, the queue, dispatch to the model server, deadlines and cancels;
 * - cog-webhooks.ts: the model server's webhook payloads folded into predictions;
 * - meter.ts: what each prediction costs, and the instance's setup/idle/busy/down seconds;
 * - drain.ts: the preStop drain.
 *
 * Every timer, deadline and timestamp goes through one `Clock`, and the model server through
 * one `CogClient`: unit tests give a fake of each.
 */
import pino, { type Logger } from 'pino';
import { type Clock, realClock, type Timer } from '../lib/clock.ts';
import { EgressPolicy } from '../lib/egress.ts';
import { HttpError } from '../lib/http.ts';
import type { PredictionObject } from '../lib/prediction.ts';
import { WebhookSender } from '../lib/webhooks.ts';
import { ApiRoutes, type NewPrediction, type PredictionService } from './api.ts';
import { type CogClient, HttpCogClient } from './cog-client.ts';
import { type CogPayload, CogWebhooks } from './cog-webhooks.ts';
import type { SidecarConfig } from './config.ts';
import { Drain } from './drain.ts';
import { hostForUrl, isLoopback as isLoopbackHost, Listeners, type Listening } from './listeners.ts';
import { Meter } from './meter.ts';
import type { SidecarMetrics } from './metrics.ts';
import { ModelHealth, type ReadyReason } from './model-health.ts';
import { operatorAuth } from './operator-auth.ts';
import { Prediction } from './prediction.ts';
import { ProgressPolicy } from './progress.ts';
import { Slots } from './slots.ts';
import { UploadListener } from './uploads.ts';

export type { Listening } from './listeners.ts';
export { INSTANCE_STATES, type InstanceState } from './meter.ts';
export type { ReadyReason } from './model-health.ts';

export interface SidecarOptions {
  logger?: Logger;
  clock?: Clock;
  /** The model server (the real one at `config.modelUrl` by default). */
  cog?: CogClient;
  /** Seconds between SSE keep-alive comments. */
  keepAliveSeconds?: number;
  /** Throttle of output/logs webhooks to callers, in ms. */
  webhookThrottleMs?: number;
}

export class Sidecar implements PredictionService {
  readonly config: SidecarConfig;
  readonly log: Logger;
  readonly metrics: SidecarMetrics;
  private readonly clock: Clock;
  private readonly cog: CogClient;
  private readonly health: ModelHealth;
  private readonly slots: Slots;
  private readonly cogWebhooks: CogWebhooks;
  private readonly meter: Meter;
  private readonly drainer: Drain;
  private readonly progress: ProgressPolicy;
  private readonly webhooks: WebhookSender;
  /** Which addresses callers' webhooks may reach. */
  readonly egress: EgressPolicy;
  private readonly routes: ApiRoutes;
  private readonly listeners: Listeners;
  private readonly uploads: UploadListener;

  private readonly predictions = new Map<string, Prediction>();
  /** Finished predictions kept for the retention, oldest first, with what each holds. */
  private readonly retained = new Map<string, { p: Prediction; timer: Timer | undefined; bytes: number }>();
  private retainedBytes = 0;
  private webhookBase = '';
  private stopped = false;
  private usageReaders: Array<() => void> = [];

  constructor(config: SidecarConfig, opts: SidecarOptions = {}) {
    this.config = config;
    this.clock = opts.clock ?? realClock;
    this.log = opts.logger ?? defaultLogger(config);
    this.cog = opts.cog ?? new HttpCogClient(config.modelUrl);
    const { clock, log, cog } = this;
    this.egress = new EgressPolicy(config.webhookAllowCidrs);
    this.webhooks = new WebhookSender(log, {
      throttleMs: opts.webhookThrottleMs ?? 500,
      egress: this.egress,
    });
    this.meter = new Meter(
      {
        clock,
        pricePerSecond: config.pricePerSecond,
        pricing: config.pricing,
        labels: { deployment: config.deployment, version: config.version, hardware: config.hardware },
      },
      { inflight: () => this.slots.inflight(), queued: () => this.slots.queued, ready: () => this.ready() },
    );
    this.metrics = this.meter.metrics;
    log.info(
      { pricePerSecond: config.pricePerSecond, pricing: config.pricing ?? null },
      'instance time started',
    );
    this.health = new ModelHealth(
      { cog, clock, log, settings: config },
      {
        lost: (error) => this.slots.failAll(error),
        changed: () => this.track(),
        ready: () => this.slots.pump(),
      },
    );
    this.progress = new ProgressPolicy(config);
    this.slots = new Slots(
      {
        cog,
        clock,
        log,
        settings: config,
        model: this.health,
        webhookUrl: (id) => `${this.webhookBase}/cog/${encodeURIComponent(id)}`,
        live: (p) => this.progress.live(p, this.health.mode),
      },
      {
        started: (p) => this.webhooks.notify(p.id, 'start', () => this.view(p)),
        ended: (p) => this.finished(p),
        payload: (id, body) => this.cogWebhooks.apply(id, body),
        changed: () => this.track(),
        settled: () => this.drainer.check(),
      },
    );
    this.cogWebhooks = new CogWebhooks(
      { slots: this.slots, find: (id) => this.predictions.get(id), mode: () => this.health.mode, log },
      {
        started: (p) => this.webhooks.notify(p.id, 'start', () => this.view(p)),
        ended: (p) => this.finished(p),
      },
    );
    this.drainer = new Drain({
      clock,
      log,
      settings: config,
      cog,
      slots: this.slots,
      webhooksDelivered: () => this.webhooks.drain(),
      summary: () => {
        const t = this.meter.totals();
        return { ...t.predictions, billable_seconds: t.billable_seconds, cost: t.cost };
      },
      finalUsageRead: (ms) => this.finalUsageRead(ms),
      stop: () => this.stop(),
    });
    this.routes = new ApiRoutes(this, {
      clock,
      keepAliveMs: (opts.keepAliveSeconds ?? 15) * 1000,
      fallbackHost: `${hostForUrl(config.host)}:${config.port}`,
      authenticate: operatorAuth(config, clock),
    });
    this.listeners = new Listeners(
      { settings: config, log, clock },
      {
        api: (app) => this.routes.declare(app),
        metrics: async () => ({
          contentType: this.metrics.registry.contentType,
          text: await this.metrics.registry.metrics(),
        }),
        cogWebhook: (id, payload) => this.onCogPayload(id, payload),
      },
    );
    this.uploads = new UploadListener({
      host: config.uploadHost,
      port: config.uploadPort,
      log,
      target: (id) => this.predictions.get(id)?.uploadUrl,
    });
  }

  // --- lifecycle -------------------------------------------------------------------------

  /** Opens the API, metrics and webhook listeners and starts watching the model server. */
  async start(): Promise<Listening> {
    const listening = await this.listeners.open();
    listening.upload = await this.uploads.open();
    if (!isLoopbackHost(this.config.uploadHost))
      this.log.warn(
        { uploadHost: this.config.uploadHost },
        'the upload listener is not on a loopback address',
      );
    this.webhookBase = listening.webhook;
    this.log.info(
      {
        ...listening,
        modelUrl: this.config.modelUrl,
        concurrency: this.config.concurrency,
        queueSize: this.config.queueSize,
        webhookAuth: this.config.webhookToken ? 'bearer' : 'none (loopback only)',
        apiAuth: this.config.operatorKey ? "the operator's token" : 'none (MODELPLANE_OPERATOR_KEY unset)',
      },
      'sidecar listening; waiting for the model server',
    );
    this.watch();
    return listening;
  }

  /** Starts watching the model server (without listeners: `start` does both). */
  watch(): void {
    this.health.start();
  }

  /**
   * Stops taking predictions (not ready from now on), lets every accepted prediction finish,
   * delivers their webhooks, asks the model server to shut down, then closes the listeners.
   */
  drain(): Promise<void> {
    return this.drainer.start();
  }

  /** Closes everything now (held requests and streams are ended). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.health.stop();
    this.slots.stop();
    for (const r of this.retained.values()) r.timer?.cancel();
    this.retained.clear();
    this.retainedBytes = 0;
    this.webhooks.close();
    this.routes.closeStreams();
    await this.listeners.close();
    await this.uploads.close();
    this.cog.close();
  }

  // --- state -----------------------------------------------------------------------------

  ready(): boolean {
    return this.health.ready && !this.drainer.draining && !this.stopped;
  }

  /** Predictions the model server is running for callers (not counting timed-out leftovers). */
  inflight(): number {
    return this.slots.inflight();
  }

  /** Readiness, with the reason the operator surfaces. */
  readiness(): { ready: boolean; reason: ReadyReason; message: string } {
    if (this.ready()) return { ready: true, reason: 'Ready', message: 'the model server is ready' };
    if (this.drainer.draining) return { ready: false, reason: 'Draining', message: this.drainer.message };
    return { ready: false, reason: this.health.reason, message: this.health.message };
  }

  live(): boolean {
    return !this.stopped;
  }

  setupLogs(): string {
    return this.health.setupLogs;
  }

  openapi(): unknown {
    return this.health.openapi;
  }

  /** Stops the meter; resolves once `status()` has given the final figures, or after `ms`. */
  private async finalUsageRead(ms: number): Promise<void> {
    this.meter.freeze();
    this.log.info(
      { instance_seconds: this.meter.instanceSeconds(), uptime_seconds: this.meter.uptimeSeconds() },
      'instance time stopped: final usage',
    );
    if (ms <= 0) return;
    let timer: Timer | undefined;
    const read = await Promise.race([
      new Promise<boolean>((r) => this.usageReaders.push(() => r(true))),
      new Promise<boolean>((r) => {
        timer = this.clock.setTimer(() => r(false), ms);
      }),
    ]);
    timer?.cancel();
    if (!read) this.log.warn({ usageReadTimeout: ms / 1000 }, 'exiting with final usage nobody has read');
  }

  status(): Record<string, unknown> {
    const final = this.meter.frozen;
    if (final) for (const r of this.usageReaders.splice(0)) queueMicrotask(r);
    const r = this.readiness();
    const last = this.health.lastHealth;
    return {
      ready: r.ready,
      reason: r.reason,
      message: r.message,
      state: this.meter.state,
      draining: this.drainer.draining,
      deployment: this.config.deployment,
      version: this.config.version,
      hardware: this.config.hardware,
      price_per_second: this.config.pricePerSecond,
      pricing: this.config.pricing ?? null,
      model_server: {
        url: this.config.modelUrl,
        status: last?.status ?? null,
        version: last?.version ?? null,
      },
      setup: { seconds: this.health.setupSeconds ?? null, logs: this.health.setupLogs },
      progress: this.progress.summary(),
      instance_seconds: this.meter.instanceSeconds(),
      /** The meter has stopped: these are the instance's last figures. */
      final,
      uptime_seconds: this.meter.uptimeSeconds(),
      ...this.meter.totals(),
      load: this.load(),
    };
  }

  load(): Record<string, unknown> {
    return this.slots.load(this.ready());
  }

  /** The instance's state follows the model server's and the slots'. */
  private track(): void {
    this.meter.track(this.health.state, this.slots.used > 0);
  }

  // --- predictions -----------------------------------------------------------------------

  get(id: string): Prediction | undefined {
    return this.predictions.get(id);
  }

  checkAccepting(): void {
    if (this.drainer.draining || this.stopped) {
      throw new HttpError(
        503,
        'Draining',
        'this instance is shutting down; send the prediction to another one',
        {},
        { 'retry-after': '1' },
      );
    }
    if (!this.ready()) {
      const r = this.readiness();
      throw new HttpError(503, 'Not ready', r.message, { reason: r.reason }, { 'retry-after': '1' });
    }
  }

  async create(
    req: NewPrediction,
  ): Promise<{ prediction: Prediction; refused?: Prediction['invalidFields'] }> {
    this.checkAccepting();
    if (this.slots.full()) {
      throw new HttpError(
        429,
        'Too many requests',
        `this instance is running ${this.slots.inflight()} predictions and has ${this.slots.queued} waiting (the most it queues)`,
        {},
        { 'retry-after': '1' },
      );
    }
    const { id } = req;
    const p = new Prediction({
      ...req,
      clock: this.clock,
      bounds: {
        logBytes: this.config.maxLogBytes,
        outputBytes: this.config.maxOutputBytes,
        // Events carry the logs and output again as they came.
        eventBytes: this.config.maxLogBytes + this.config.maxOutputBytes,
      },
    });
    this.predictions.set(id, p);
    if (p.webhook) {
      this.webhooks.register(id, p.webhook, p.webhookEventsFilter);
      p.subscribe((e) => {
        if (e.event === 'output' || e.event === 'logs') this.webhooks.notify(id, e.event, () => this.view(p));
      });
    }
    if ((await this.slots.submit(p)) === 'invalid') {
      this.predictions.delete(id);
      return { prediction: p, refused: p.invalidFields ?? [] };
    }
    return { prediction: p };
  }

  async cancel(p: Prediction): Promise<void> {
    if (p.terminal) return;
    // The model server confirms with its terminal state; give it a moment to arrive.
    if ((await this.slots.cancel(p)) === 'on-server') await p.waitDone(1000);
    // A create under way is canceled as soon as the server accepts it.
    this.log.info({ prediction: p.id, status: p.status }, 'cancel requested');
  }

  read(p: Prediction): void {
    if (p.terminal) p.collected = true;
    this.drainer.read(p);
  }

  view(p: Prediction, base?: string): PredictionObject {
    return p.toJSON({
      base,
      version: this.config.version,
      deployment: this.config.deployment,
      hardware: this.config.hardware,
    });
  }

  /** Folds one model-server webhook into its prediction. */
  onCogPayload(id: string, payload: CogPayload): void {
    this.cogWebhooks.apply(id, payload);
  }

  /** Meters, counts and reports a prediction that has just ended; keeps it for the retention. */
  private finished(p: Prediction): void {
    this.meter.charge(p);
    if (p.dispatchedMono !== undefined) this.progress.record(p);
    // Its metering record: one line per prediction, kept at info (written asynchronously).
    this.log.info(
      {
        prediction: p.id,
        status: p.status,
        predict_time: p.metrics.predict_time,
        wall_time: p.runningSeconds(),
        queue_time: p.metrics.queue_time,
        total_time: p.metrics.total_time,
        cost: p.cost,
        error: p.error ?? undefined,
      },
      'prediction finished',
    );
    this.webhooks.notify(p.id, 'completed', () => this.view(p));
    if (!this.stopped) this.retain(p);
    this.drainer.check();
  }

  /**
   * Keeps a finished prediction readable for the retention time, within the count and byte
   * caps: past them the oldest finished ones are forgotten, those whose final record was
   * already read (or sent by webhook) before those not yet read.
   */
  private retain(p: Prediction): void {
    if (p.webhook && p.webhookEventsFilter.includes('completed')) p.collected = true;
    const timer = this.clock.setTimer(() => this.forget(p.id), this.config.retention * 1000);
    const bytes = p.heldBytes();
    this.retained.set(p.id, { p, timer, bytes });
    this.retainedBytes += bytes;
    while (
      this.retained.size > 1 &&
      (this.retained.size > this.config.retainMax || this.retainedBytes > this.config.retainBytes)
    ) {
      let victim: string | undefined;
      for (const [id, r] of this.retained) {
        if (r.p.collected) {
          victim = id;
          break;
        }
      }
      victim ??= this.retained.keys().next().value!;
      const r = this.retained.get(victim)!;
      if (!r.p.collected) {
        this.log.warn(
          { prediction: victim, retained: this.retained.size, retainedBytes: this.retainedBytes },
          'forgetting a finished prediction before its final record was read (retention cap)',
        );
      }
      this.forget(victim);
    }
  }

  private forget(id: string): void {
    const r = this.retained.get(id);
    if (!r) return;
    r.timer?.cancel();
    this.retained.delete(id);
    this.retainedBytes -= r.bytes;
    this.predictions.delete(id);
  }
}

function defaultLogger(config: SidecarConfig): Logger {
  return pino(
    {
      level: config.logLevel,
      base: {
        component: 'sidecar',
        deployment: config.deployment,
        version: config.version,
        hardware: config.hardware,
      },
      redact: { paths: ['token', 'authorization', '*.authorization', '*.token'], censor: '[redacted]' },
    },
    // Asynchronous writes: a log line per prediction stays off its path.
    pino.destination({ dest: 1, sync: false }),
  );
}
