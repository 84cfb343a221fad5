/**
 * The sidecar of one model pod: the prediction API in front of a Cog model server.
 *
 * - Startup: polls the model server's /health-check until READY. SETUP_FAILED, or no READY
 *   within the setup timeout, leaves the instance not ready with a reason (GET /ready,
 *   GET /status) and the setup logs in the log.
 * - Predictions: each is created on the model server with an idempotent async
 *   `PUT /predictions/{id}` and a webhook back to a listener on loopback; the webhooks'
 *   snapshots become the record, the SSE events and the sidecar's own webhooks out.
 * - Concurrency: at most `concurrency` predictions on the model server, up to `queueSize`
 *   more waiting here; a full queue answers 429.
 * - Failure: a model server that goes away (or reports itself broken) fails what it was
 *   running with "model server exited" and makes the instance not ready.
 * - Drain: stop taking predictions (not ready), finish the running and queued ones, deliver
 *   their webhooks, keep serving until their callers have read the final records (bounded
 *   by the drain read timeout), ask the model server to shut down, then stop.
 * - Metering: per prediction predict_time, total_time, queue_time and an exact cost; per
 *   instance the seconds in setup, idle, busy and down.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino, { type Logger } from 'pino';
import { type Clock, realClock } from '../lib/clock.ts';
import { HttpError, preferWait, readJson, sendEventStream, sendJson, sendProblem } from '../lib/http.ts';
import { fromCogDetail, type InvalidField, validateInput } from '../lib/openapi-input.ts';
import {
  isTerminal,
  newPredictionId,
  type PredictionObject,
  type TerminalStatus,
  WEBHOOK_EVENTS,
} from '../lib/prediction.ts';
import { WebhookSender } from '../lib/webhooks.ts';
import { CogClient, type CogHealth, Unreachable } from './cog-client.ts';
import type { SidecarConfig } from './config.ts';
import { add, type Decimal, format, fromNumber, multiply, parseDecimal, toNumber, zero } from './decimal.ts';
import { SidecarMetrics } from './metrics.ts';
import { type CogPayload, type OutputMode, outputMode, Prediction } from './prediction.ts';
import { StateClock } from './state-clock.ts';

export const INSTANCE_STATES = ['setup', 'idle', 'busy', 'down'] as const;
export type InstanceState = (typeof INSTANCE_STATES)[number];

/** Where the model server stands, as far as the sidecar knows. */
type ModelState = 'waiting' | 'ready' | 'setup-failed' | 'down';

/** Reasons the readiness answer gives (CamelCase, for the operator's conditions). */
export type ReadyReason =
  | 'Ready'
  | 'ModelServerStarting'
  | 'SettingUp'
  | 'SetupFailed'
  | 'SetupTimeout'
  | 'ModelServerExited'
  | 'ModelServerUnhealthy'
  | 'Draining';

const MAX_BODY = 64 * 1024 * 1024;
const MAX_WAIT_SECONDS = 600;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

interface Slot {
  prediction: Prediction;
  /** Ended here (predict timeout) while the model server still runs it. */
  zombie: boolean;
  timer: NodeJS.Timeout | undefined;
  /** Repeats the cancel until the model server confirms it. */
  cancelTimer?: NodeJS.Timeout;
}

/** How often a cancel is repeated while the model server has not confirmed it. */
const CANCEL_REPEAT_MS = 1000;

type DispatchOutcome = 'accepted' | 'requeued' | 'invalid' | 'failed';

export interface SidecarOptions {
  logger?: Logger;
  clock?: Clock;
  /** Seconds between SSE keep-alive comments. */
  keepAliveSeconds?: number;
  /** Throttle of output/logs webhooks to callers, in ms. */
  webhookThrottleMs?: number;
}

export interface Listening {
  api: string;
  metrics: string;
  webhook: string;
}

export class Sidecar {
  readonly config: SidecarConfig;
  readonly log: Logger;
  readonly metrics: SidecarMetrics;
  private readonly cog: CogClient;
  private readonly clock: Clock;
  private readonly instance: StateClock<InstanceState>;
  private readonly webhooks: WebhookSender;
  private readonly price: Decimal;
  private readonly keepAliveMs: number;

  private readonly predictions = new Map<string, Prediction>();
  private readonly queue: Prediction[] = [];
  private readonly slots = new Map<string, Slot>();
  private readonly retentionTimers = new Set<NodeJS.Timeout>();
  private readonly sseResponses = new Set<ServerResponse>();

  private modelState: ModelState = 'waiting';
  /** Why the model server is in its state (the readiness reason says Draining over it). */
  private stateReason: ReadyReason = 'ModelServerStarting';
  private reason: ReadyReason = 'ModelServerStarting';
  private message = 'waiting for the model server to answer its health check';
  private lastHealth: CogHealth | undefined;
  /** The model server's setup start time when it became ready: a new one means a restart. */
  private serverStartedAt: string | undefined;
  private setupLogs = '';
  private setupStartedMono: number;
  private setupSeconds: number | undefined;
  private setupTimedOut = false;
  private openapi: unknown;
  private mode: OutputMode = 'unknown';
  private unreachableCount = 0;
  private serverBusy = false;
  private busyBackoffMs = 0;
  private busyTimer: NodeJS.Timeout | undefined;
  private healthTimer: NodeJS.Timeout | undefined;
  private healthInFlight: Promise<void> | undefined;
  private draining = false;
  private drainPromise: Promise<void> | undefined;
  private drainWaiters: Array<() => void> = [];
  /**
   * While draining: the predictions that were running or queued when the drain began, whose
   * final record no caller has read yet (one with a `completed` webhook gets it that way).
   */
  private readonly unread = new Set<string>();
  private unreadWaiters: Array<() => void> = [];
  private stopped = false;

  private billable: Decimal = zero();
  private costTotal: Decimal = zero();
  private readonly counts = { succeeded: 0, failed: 0, canceled: 0 };

  private api: Server | undefined;
  private metricsServer: Server | undefined;
  private webhookServer: Server | undefined;
  private webhookBase = '';

  constructor(config: SidecarConfig, opts: SidecarOptions = {}) {
    this.config = config;
    this.clock = opts.clock ?? realClock;
    this.log =
      opts.logger ??
      pino(
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
    this.cog = new CogClient(config.modelUrl);
    this.instance = new StateClock<InstanceState>('setup', INSTANCE_STATES, () => this.clock.mono());
    this.setupStartedMono = this.clock.mono();
    this.webhooks = new WebhookSender(this.log, { throttleMs: opts.webhookThrottleMs ?? 500 });
    this.price = parseDecimal(config.pricePerSecond);
    this.keepAliveMs = (opts.keepAliveSeconds ?? 15) * 1000;
    this.metrics = new SidecarMetrics(
      { deployment: config.deployment, version: config.version, hardware: config.hardware },
      {
        instanceSeconds: () => this.instance.seconds(),
        inflight: () => this.inflight(),
        queued: () => this.queue.length,
        ready: () => this.ready(),
      },
    );
  }

  // --- lifecycle -------------------------------------------------------------------------

  /** Opens the API, metrics and webhook listeners and starts watching the model server. */
  async start(): Promise<Listening> {
    this.webhookServer = createServer((req, res) => this.onCogWebhook(req, res));
    const hook = await listen(this.webhookServer, this.config.webhookHost, this.config.webhookPort);
    this.webhookBase = `http://${hostForUrl(this.config.webhookHost)}:${hook.port}`;
    if (!isLoopback(this.config.webhookHost)) {
      this.log.warn(
        { webhookHost: this.config.webhookHost },
        'the webhook listener is not on a loopback address',
      );
    }
    this.api = createServer((req, res) => {
      this.onApi(req, res).catch((err: unknown) => this.fail(res, err));
    });
    this.api.keepAliveTimeout = 65_000;
    const api = await listen(this.api, this.config.host, this.config.port);
    this.metricsServer = createServer((req, res) => {
      this.onMetrics(req, res).catch((err: unknown) => this.fail(res, err));
    });
    const met = await listen(this.metricsServer, this.config.metricsHost, this.config.metricsPort);
    const listening = {
      api: `http://${hostForUrl(this.config.host)}:${api.port}`,
      metrics: `http://${hostForUrl(this.config.metricsHost)}:${met.port}`,
      webhook: this.webhookBase,
    };
    this.log.info(
      {
        ...listening,
        modelUrl: this.config.modelUrl,
        concurrency: this.config.concurrency,
        queueSize: this.config.queueSize,
        webhookAuth: this.config.webhookToken ? 'bearer' : 'none (loopback only)',
      },
      'sidecar listening; waiting for the model server',
    );
    this.scheduleHealth(0);
    return listening;
  }

  /**
   * Stops taking predictions (not ready from now on), lets every accepted prediction finish,
   * delivers their webhooks, asks the model server to shut down, then closes the listeners.
   */
  drain(): Promise<void> {
    if (this.drainPromise) return this.drainPromise;
    this.draining = true;
    this.reason = 'Draining';
    this.message = 'draining: finishing accepted predictions before exit';
    this.log.info({ inflight: this.inflight(), queued: this.queue.length }, 'draining');
    for (const p of [
      ...[...this.slots.values()].filter((s) => !s.zombie).map((s) => s.prediction),
      ...this.queue,
    ])
      if (!p.terminal && !(p.webhook && p.webhookEventsFilter.includes('completed'))) this.unread.add(p.id);
    this.drainPromise = (async () => {
      const all = new Promise<void>((resolveDrained) => {
        this.drainWaiters.push(resolveDrained);
        this.checkDrained();
      });
      const limit = this.config.drainTimeout;
      if (limit > 0) {
        let timer: NodeJS.Timeout | undefined;
        const timedOut = await Promise.race([
          all.then(() => false),
          new Promise<boolean>((r) => {
            timer = setTimeout(() => r(true), limit * 1000);
          }),
        ]);
        clearTimeout(timer);
        if (timedOut) {
          this.log.warn(
            { inflight: this.inflight(), queued: this.queue.length, drainTimeout: limit },
            'drain timeout reached; failing what is left',
          );
          this.failRunning('the instance shut down before the prediction finished (drain timeout)');
        }
      } else {
        await all;
      }
      await this.webhooks.drain();
      // Whoever follows a prediction reads its final record once it has ended (the gateway
      // does after the stream's done event): keep answering until they have.
      await this.finalRecordsRead(this.config.drainReadTimeout * 1000);
      if (this.config.shutdownModel) {
        try {
          await this.cog.shutdown();
          this.log.info('asked the model server to shut down');
        } catch (err) {
          this.log.debug({ err: (err as Error).message }, 'model server shutdown request failed');
        }
      }
      this.log.info(
        { ...this.counts, billable_seconds: format(this.billable), cost: format(this.costTotal) },
        'drained',
      );
      await this.stop();
    })();
    return this.drainPromise;
  }

  /** Resolves once every prediction the drain waits on has been read in its final state, or after `ms`. */
  private async finalRecordsRead(ms: number): Promise<void> {
    if (this.unread.size === 0 || ms <= 0) return;
    let timer: NodeJS.Timeout | undefined;
    const read = await Promise.race([
      new Promise<boolean>((r) => this.unreadWaiters.push(() => r(true))),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(false), ms);
      }),
    ]);
    clearTimeout(timer);
    if (!read)
      this.log.warn(
        { unread: [...this.unread], drainReadTimeout: ms / 1000 },
        'exiting with final records no caller has read',
      );
  }

  /**
   * Answers with `p`; when the answer holds its final state, notes (once the answer has gone
   * out) that its caller has read it.
   */
  private answer(
    res: ServerResponse,
    status: number,
    p: Prediction,
    base: string,
    headers: Record<string, string> = {},
  ): void {
    const final = p.terminal;
    if (final)
      res.once('finish', () => {
        if (!this.unread.delete(p.id) || this.unread.size > 0) return;
        for (const w of this.unreadWaiters.splice(0)) w();
      });
    sendJson(res, status, this.view(p, base), headers);
  }

  /** Closes everything now (held requests and streams are ended). */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.healthTimer) clearTimeout(this.healthTimer);
    if (this.busyTimer) clearTimeout(this.busyTimer);
    for (const id of [...this.slots.keys()]) this.release(id);
    for (const t of this.retentionTimers) clearTimeout(t);
    this.webhooks.close();
    for (const res of this.sseResponses) res.end();
    await Promise.all(
      [this.api, this.metricsServer, this.webhookServer].map(
        (srv) =>
          new Promise<void>((resolveClosed) => {
            if (!srv) return resolveClosed();
            srv.close(() => resolveClosed());
            srv.closeIdleConnections();
            setTimeout(() => srv.closeAllConnections(), 1000).unref();
          }),
      ),
    );
    this.cog.close();
  }

  // --- state -----------------------------------------------------------------------------

  ready(): boolean {
    return this.modelState === 'ready' && !this.draining && !this.stopped;
  }

  /** Predictions the model server is running for callers (not counting timed-out leftovers). */
  inflight(): number {
    let n = 0;
    for (const s of this.slots.values()) if (!s.zombie) n++;
    return n;
  }

  private updateClock(): void {
    if (this.modelState === 'ready') this.instance.enter(this.slots.size > 0 ? 'busy' : 'idle');
    else if (this.modelState === 'waiting') this.instance.enter('setup');
    else this.instance.enter('down');
  }

  private setState(state: ModelState, reason: ReadyReason, message: string): void {
    this.modelState = state;
    this.stateReason = reason;
    if (!this.draining) {
      this.reason = reason;
      this.message = message;
    }
    this.updateClock();
  }

  /** Readiness, with the reason the operator surfaces. */
  readiness(): { ready: boolean; reason: ReadyReason; message: string } {
    if (this.ready()) return { ready: true, reason: 'Ready', message: 'the model server is ready' };
    return { ready: false, reason: this.reason, message: this.message };
  }

  status(): Record<string, unknown> {
    const r = this.readiness();
    return {
      ready: r.ready,
      reason: r.reason,
      message: r.message,
      state: this.instance.state,
      draining: this.draining,
      deployment: this.config.deployment,
      version: this.config.version,
      hardware: this.config.hardware,
      price_per_second: this.config.pricePerSecond,
      model_server: {
        url: this.config.modelUrl,
        status: this.lastHealth?.status ?? null,
        version: this.lastHealth?.version ?? null,
      },
      setup: {
        seconds: this.setupSeconds ?? null,
        logs: this.setupLogs,
      },
      instance_seconds: this.instance.seconds(),
      uptime_seconds: this.instance.elapsed(),
      predictions: { ...this.counts },
      billable_seconds: format(this.billable),
      cost: format(this.costTotal),
      load: this.load(),
    };
  }

  load(): Record<string, unknown> {
    const used = this.slots.size;
    return {
      slots: this.config.concurrency,
      inflight: this.inflight(),
      busy_slots: used,
      available: Math.max(0, this.config.concurrency - used),
      queued: this.queue.length,
      queue_size: this.config.queueSize,
      // Whether a prediction sent now would be taken (run at once or queued) rather than refused.
      accepting:
        this.ready() && (used < this.config.concurrency || this.queue.length < this.config.queueSize),
      ready: this.ready(),
    };
  }

  // --- model server health ----------------------------------------------------------------

  private scheduleHealth(ms: number): void {
    if (this.stopped) return;
    if (this.healthTimer) clearTimeout(this.healthTimer);
    this.healthTimer = setTimeout(() => void this.checkHealth(), ms);
  }

  /** One health check now (coalesced with one already under way). */
  checkHealth(): Promise<void> {
    if (!this.healthInFlight) {
      this.healthInFlight = this.pollHealth().finally(() => {
        this.healthInFlight = undefined;
        this.scheduleHealth(this.config.healthInterval * 1000);
      });
    }
    return this.healthInFlight;
  }

  private async pollHealth(): Promise<void> {
    if (this.stopped) return;
    let health: CogHealth;
    try {
      health = await this.cog.health(Math.max(1000, this.config.healthInterval * 4000));
    } catch (err) {
      this.onUnreachable(err as Error);
      return;
    }
    this.unreachableCount = 0;
    this.lastHealth = health;
    if (typeof health.setup?.logs === 'string') this.setupLogs = health.setup.logs;
    switch (health.status) {
      case 'READY':
      case 'BUSY': {
        const setupStarted = health.setup?.started_at;
        if (
          this.modelState === 'ready' &&
          setupStarted &&
          this.serverStartedAt &&
          setupStarted !== this.serverStartedAt
        ) {
          // A new setup since the last check: the model server restarted between two health
          // checks and knows nothing of what it ran before.
          this.failRunning('model server exited: it restarted while the prediction ran');
          this.log.error('the model server restarted; its predictions were lost');
          await this.becomeReady(health);
          return;
        }
        if (this.modelState !== 'ready') await this.becomeReady(health);
        return;
      }
      case 'SETUP_FAILED':
        if (this.modelState !== 'setup-failed') {
          if (this.modelState === 'ready')
            this.failRunning('model server exited: it restarted and its setup failed');
          const logs = health.setup?.logs ?? '';
          this.setState(
            'setup-failed',
            'SetupFailed',
            `model setup failed: ${lastLine(logs) || 'no setup logs'}`,
          );
          this.log.error({ setupLogs: logs }, 'model setup failed');
        }
        return;
      case 'DEFUNCT':
      case 'UNHEALTHY': {
        const detail = health.user_healthcheck_error ? `: ${health.user_healthcheck_error}` : '';
        if (this.modelState !== 'down' || this.stateReason !== 'ModelServerUnhealthy') {
          this.failRunning(`model server unhealthy (${health.status}${detail})`);
          this.setState('down', 'ModelServerUnhealthy', `the model server reports ${health.status}${detail}`);
          this.log.error(
            { status: health.status, detail: health.user_healthcheck_error },
            'model server unhealthy',
          );
        }
        return;
      }
      default: {
        // UNKNOWN or STARTING: setup is running.
        if (this.modelState === 'ready' || this.modelState === 'down' || this.modelState === 'setup-failed') {
          if (this.modelState === 'ready') {
            this.failRunning('model server exited: it restarted while the prediction ran');
            this.log.error('the model server restarted; its predictions were lost');
          }
          this.setupStartedMono = this.clock.mono();
          this.setupTimedOut = false;
        }
        this.checkSetupTimeout();
        if (!this.setupTimedOut)
          this.setState('waiting', 'SettingUp', 'the model server is running its setup');
        else this.setState('waiting', 'SetupTimeout', this.message);
      }
    }
  }

  private checkSetupTimeout(): void {
    const limit = this.config.setupTimeout;
    if (limit <= 0 || this.setupTimedOut) return;
    const waited = (this.clock.mono() - this.setupStartedMono) / 1000;
    if (waited < limit) return;
    this.setupTimedOut = true;
    this.reason = 'SetupTimeout';
    this.message = `the model server was not ready within the setup timeout of ${limit} s`;
    this.log.error({ setupTimeout: limit, setupLogs: this.setupLogs }, 'model setup timed out');
  }

  private onUnreachable(err: Error): void {
    const code = err instanceof Unreachable ? err.code : '';
    const definite = code === 'ECONNREFUSED' || code === 'ECONNRESET' || code === 'EPIPE';
    this.unreachableCount++;
    if (
      this.modelState === 'ready' ||
      (this.modelState === 'down' && this.stateReason !== 'ModelServerExited')
    ) {
      if (definite || this.unreachableCount >= 3) {
        this.failRunning('model server exited');
        this.setState('down', 'ModelServerExited', `model server exited: ${err.message}`);
        this.log.error({ err: err.message }, 'model server exited');
      }
      return;
    }
    if (this.modelState === 'waiting') {
      this.checkSetupTimeout();
      if (!this.setupTimedOut) {
        this.setState(
          'waiting',
          'ModelServerStarting',
          `waiting for the model server at ${this.config.modelUrl}: ${err.message}`,
        );
      }
    }
  }

  private async becomeReady(health: CogHealth): Promise<void> {
    try {
      this.openapi = await this.cog.openapi();
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'could not read the model server schema');
      this.openapi = undefined;
    }
    this.mode = outputMode(this.openapi);
    this.serverStartedAt = health.setup?.started_at;
    this.setupSeconds = (this.clock.mono() - this.setupStartedMono) / 1000;
    this.setupTimedOut = false;
    this.setState('ready', 'Ready', 'the model server is ready');
    this.log.info(
      {
        setupSeconds: this.setupSeconds,
        modelServer: health.version,
        schema: this.openapi ? 'yes' : 'none (inputs are not checked here)',
        output: this.mode,
      },
      'model server ready',
    );
    this.pump();
  }

  // --- the API --------------------------------------------------------------------------

  private fail(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof HttpError) {
      sendProblem(res, err);
      return;
    }
    this.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'request failed');
    sendProblem(res, new HttpError(500, 'Internal error', (err as Error).message));
  }

  private base(req: IncomingMessage): string {
    return `http://${req.headers.host ?? `${hostForUrl(this.config.host)}:${this.config.port}`}`;
  }

  view(p: Prediction, base?: string): PredictionObject {
    return p.toJSON({
      base,
      version: this.config.version,
      deployment: this.config.deployment,
      hardware: this.config.hardware,
    });
  }

  private async onApi(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://sidecar');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    const method = req.method ?? 'GET';
    const route = `${method} /${parts.map((p, i) => (i === 1 && parts[0] === 'predictions' ? ':id' : p)).join('/')}`;
    switch (route) {
      case 'POST /predictions':
        return this.create(req, res);
      case 'GET /predictions/:id':
        return this.get(req, res, parts[1]!);
      case 'POST /predictions/:id/cancel':
        return this.cancel(req, res, parts[1]!);
      case 'GET /predictions/:id/stream':
        return this.stream(req, res, parts[1]!);
      case 'GET /ready': {
        const r = this.readiness();
        const body = r.ready ? r : { ...r, setup_logs: this.setupLogs || undefined };
        return sendJson(res, r.ready ? 200 : 503, body);
      }
      case 'GET /live':
        return sendJson(res, this.stopped ? 503 : 200, { live: !this.stopped });
      case 'GET /load':
        return sendJson(res, 200, this.load());
      case 'GET /status':
        return sendJson(res, 200, this.status());
      case 'GET /openapi.json':
        if (!this.openapi)
          throw new HttpError(503, 'No schema', 'the model server has not served an OpenAPI schema');
        return sendJson(res, 200, this.openapi);
      default:
        throw new HttpError(404, 'Not found', `no route for ${method} ${url.pathname}`);
    }
  }

  private find(id: string): Prediction {
    const p = this.predictions.get(id);
    if (!p) throw new HttpError(404, 'Prediction not found', `no prediction "${id}" on this instance`);
    return p;
  }

  private async create(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await readJson(req, MAX_BODY);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new HttpError(400, 'Bad request', 'the body must be a JSON object');
    }
    const b = body as Record<string, unknown>;
    const wait = preferWait(req.headers.prefer, MAX_WAIT_SECONDS);
    const base = this.base(req);
    const id = b.id === undefined ? newPredictionId() : b.id;
    if (typeof id !== 'string' || !ID.test(id)) {
      throw new HttpError(400, 'Bad request', 'id must be 1-128 letters, digits, "_", "-" or "."');
    }
    const existing = this.predictions.get(id);
    if (existing) {
      // Idempotent: the same id answers with the prediction already made.
      if (wait !== undefined) await existing.waitDone(wait * 1000);
      this.answer(
        res,
        200,
        existing,
        base,
        wait !== undefined ? { 'preference-applied': `wait=${wait}` } : {},
      );
      return;
    }
    if (this.draining || this.stopped) {
      throw new HttpError(
        503,
        'Draining',
        'this instance is shutting down; send the prediction to another one',
        {},
        {
          'retry-after': '1',
        },
      );
    }
    if (!this.ready()) {
      const r = this.readiness();
      throw new HttpError(503, 'Not ready', r.message, { reason: r.reason }, { 'retry-after': '1' });
    }
    const input = b.input ?? {};
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw invalid([{ type: 'type', field: 'input', description: 'input must be a JSON object' }]);
    }
    const problems = validateInput(input, this.openapi);
    if (problems.length) throw invalid(problems);
    const webhook = b.webhook;
    if (webhook !== undefined && (typeof webhook !== 'string' || !/^https?:\/\//.test(webhook))) {
      throw new HttpError(400, 'Bad request', 'webhook must be an http(s) URL');
    }
    const filter = b.webhook_events_filter;
    if (
      filter !== undefined &&
      (!Array.isArray(filter) || !filter.every((f) => (WEBHOOK_EVENTS as readonly unknown[]).includes(f)))
    ) {
      throw new HttpError(
        400,
        'Bad request',
        'webhook_events_filter may hold start, output, logs and completed',
      );
    }
    const free = this.slots.size < this.config.concurrency && this.queue.length === 0 && !this.serverBusy;
    if (!free && this.queue.length >= this.config.queueSize) {
      throw new HttpError(
        429,
        'Too many requests',
        `this instance is running ${this.inflight()} predictions and has ${this.queue.length} waiting (the most it queues)`,
        {},
        { 'retry-after': '1' },
      );
    }
    const p = new Prediction({
      id,
      input: input as Record<string, unknown>,
      clock: this.clock,
      webhook: webhook as string | undefined,
      webhookEventsFilter: filter as string[] | undefined,
    });
    this.predictions.set(id, p);
    if (p.webhook) {
      this.webhooks.register(id, p.webhook, p.webhookEventsFilter);
      p.subscribe((e) => {
        if (e.event === 'output' || e.event === 'logs') this.webhooks.notify(id, e.event, () => this.view(p));
      });
    }
    if (free) {
      this.slots.set(id, { prediction: p, zombie: false, timer: undefined });
      this.updateClock();
      // An async create answers at once, so its outcome (a 422 included) is part of this
      // answer; a held one only answers when the prediction ends, so it goes on by itself.
      if (this.config.progress === 'webhook') {
        if ((await this.dispatch(p)) === 'invalid') {
          this.predictions.delete(id);
          throw invalid(p.invalidFields ?? []);
        }
      } else {
        void this.dispatch(p);
      }
    } else {
      this.queue.push(p);
      this.log.debug({ prediction: id, queued: this.queue.length }, 'queued');
    }
    if (wait !== undefined) await p.waitDone(wait * 1000);
    this.answer(res, 201, p, base, wait !== undefined ? { 'preference-applied': `wait=${wait}` } : {});
  }

  private async get(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const p = this.find(id);
    const wait = preferWait(req.headers.prefer, MAX_WAIT_SECONDS);
    if (wait !== undefined) await p.waitDone(wait * 1000);
    this.answer(res, 200, p, this.base(req));
  }

  private async cancel(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const p = this.find(id);
    if (!p.terminal) {
      p.cancelRequested = true;
      const queued = this.queue.indexOf(p);
      if (queued >= 0) {
        this.queue.splice(queued, 1);
        p.end('canceled');
        this.finish(p);
      } else if (this.slots.has(id) && p.startedAt !== undefined) {
        await this.cancelOnServer(id);
        // The model server confirms with its terminal state; give it a moment to arrive.
        await p.waitDone(1000);
      }
      // Otherwise its PUT is under way: the cancel follows as soon as the server accepts it.
      this.log.info({ prediction: id, status: p.status }, 'cancel requested');
    }
    this.answer(res, 200, p, this.base(req));
  }

  private async stream(req: IncomingMessage, res: ServerResponse, id: string): Promise<void> {
    const p = this.find(id);
    this.sseResponses.add(res);
    res.on('close', () => this.sseResponses.delete(res));
    sendEventStream(req, res, {
      keepAliveMs: this.keepAliveMs,
      // A stream stays open until its done event, even one opened after that event.
      events: (afterId, send) => ({ past: p.eventsSince(afterId), unsubscribe: p.subscribe(send) }),
    });
  }

  private async onMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://sidecar').pathname;
    if (req.method !== 'GET' || path !== '/metrics') {
      throw new HttpError(404, 'Not found', 'metrics are at GET /metrics');
    }
    const text = await this.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
    res.end(text);
  }

  // --- dispatch -------------------------------------------------------------------------

  /** Sends queued predictions to free slots. */
  private pump(): void {
    while (
      this.modelState === 'ready' &&
      !this.stopped &&
      !this.serverBusy &&
      this.queue.length > 0 &&
      this.slots.size < this.config.concurrency
    ) {
      const p = this.queue.shift()!;
      if (p.terminal) continue;
      this.slots.set(p.id, { prediction: p, zombie: false, timer: undefined });
      void this.dispatch(p);
    }
    this.updateClock();
    this.checkDrained();
  }

  /** Creates `p` on the model server; its slot is already reserved. */
  private async dispatch(p: Prediction): Promise<DispatchOutcome> {
    const held = this.config.progress === 'final';
    if (held) {
      // A held request: the prediction runs from the moment it is sent.
      p.markStarted();
      this.webhooks.notify(p.id, 'start', () => this.view(p));
      this.armTimeout(p);
    }
    let r: Awaited<ReturnType<CogClient['create']>>;
    try {
      r = await this.cog.create(
        p.id,
        p.input,
        held ? undefined : `${this.webhookBase}/cog/${encodeURIComponent(p.id)}`,
      );
    } catch (err) {
      if (held && err instanceof Unreachable && err.afterSend) {
        // The model server took the request and the connection broke while it ran.
        this.release(p.id);
        if (p.end('failed', { error: 'model server exited' })) this.finish(p);
        this.log.warn(
          { prediction: p.id, err: err.message },
          'the model server dropped a running prediction',
        );
        // Let the health check say whether it is gone before sending it more.
        void this.checkHealth().then(() => this.pump());
        return 'failed';
      }
      this.requeue(p);
      this.log.warn(
        { prediction: p.id, err: (err as Error).message },
        'could not reach the model server; requeued',
      );
      void this.checkHealth();
      return 'requeued';
    }
    switch (r.kind) {
      case 'accepted': {
        this.busyBackoffMs = 0;
        const slot = this.slots.get(p.id);
        if (p.terminal || !slot) return 'accepted'; // its terminal webhook came first
        const before = p.startedAt;
        p.markStarted();
        if (before === undefined) this.webhooks.notify(p.id, 'start', () => this.view(p));
        this.armTimeout(p);
        if (p.cancelRequested) void this.cancelOnServer(p.id);
        return 'accepted';
      }
      case 'finished':
        this.onCogPayload(p.id, r.body);
        if (!p.terminal) {
          // A held request answers with the final state; anything else is a broken answer.
          this.release(p.id);
          if (
            p.end('failed', {
              error: `the model server answered without a final state (${String(r.body.status)})`,
            })
          ) {
            this.finish(p);
          }
          this.pump();
        }
        return 'accepted';
      case 'busy':
        // Every slot of the model server is taken (one is still being released, or a canceled
        // prediction is winding down): wait here and try again, backing off until one frees.
        this.requeue(p);
        this.onServerBusy();
        this.log.debug(
          { prediction: p.id, retryMs: this.busyBackoffMs },
          'model server busy (409); requeued',
        );
        return 'requeued';
      case 'not-ready':
        this.requeue(p);
        this.log.warn({ prediction: p.id, message: r.message }, 'model server not ready (503); requeued');
        void this.checkHealth();
        return 'requeued';
      case 'invalid': {
        this.release(p.id);
        const fields = fromCogDetail(r.body);
        p.invalidFields = fields;
        p.end('failed', { error: `invalid input: ${fields.map((f) => f.description).join('; ')}` });
        this.finish(p);
        this.pump();
        return 'invalid';
      }
      case 'error':
        this.release(p.id);
        p.end('failed', { error: r.message });
        this.finish(p);
        this.pump();
        return 'failed';
    }
  }

  /** Puts `p` back at the head of the queue (it never ran). */
  private requeue(p: Prediction): void {
    this.release(p.id);
    if (p.terminal) return;
    p.unstart();
    this.queue.unshift(p);
  }

  private armTimeout(p: Prediction): void {
    const slot = this.slots.get(p.id);
    if (!slot || slot.timer || this.config.predictTimeout <= 0) return;
    slot.timer = setTimeout(() => this.onPredictTimeout(p), this.config.predictTimeout * 1000);
  }

  private onServerBusy(): void {
    this.serverBusy = true;
    this.busyBackoffMs = Math.min(1000, Math.max(2, this.busyBackoffMs * 2));
    if (this.busyTimer) clearTimeout(this.busyTimer);
    this.busyTimer = setTimeout(() => this.clearServerBusy(false), this.busyBackoffMs);
  }

  /** Lets dispatch try again; `slotFreed` (a prediction ended) also resets the backoff. */
  private clearServerBusy(slotFreed: boolean): void {
    if (this.busyTimer) clearTimeout(this.busyTimer);
    this.busyTimer = undefined;
    this.serverBusy = false;
    if (slotFreed) this.busyBackoffMs = 0;
    this.pump();
  }

  /**
   * Asks the model server to cancel, and asks again every second until the prediction has
   * left its slot: a cancel that reaches the server before its worker has begun the
   * prediction can be lost.
   */
  private async cancelOnServer(id: string): Promise<void> {
    const slot = this.slots.get(id);
    if (!slot) return;
    if (!slot.cancelTimer) {
      slot.cancelTimer = setInterval(() => {
        if (this.slots.get(id) !== slot) return;
        this.log.debug({ prediction: id }, 'repeating cancel');
        void this.sendCancel(id);
      }, CANCEL_REPEAT_MS);
    }
    await this.sendCancel(id);
  }

  private async sendCancel(id: string): Promise<void> {
    try {
      await this.cog.cancel(id);
    } catch (err) {
      this.log.warn(
        { prediction: id, err: (err as Error).message },
        'cancel request to the model server failed',
      );
    }
  }

  private release(id: string): void {
    const slot = this.slots.get(id);
    if (!slot) return;
    if (slot.timer) clearTimeout(slot.timer);
    if (slot.cancelTimer) clearInterval(slot.cancelTimer);
    this.slots.delete(id);
    this.updateClock();
  }

  private onPredictTimeout(p: Prediction): void {
    const slot = this.slots.get(p.id);
    if (!slot || p.terminal) return;
    slot.timer = undefined;
    slot.zombie = true; // the slot stays taken until the model server confirms the cancel
    void this.cancelOnServer(p.id);
    const limit = this.config.predictTimeout;
    p.end('failed', {
      error: `prediction timed out: it ran longer than the predict timeout of ${limit} s and was canceled`,
    });
    this.finish(p);
  }

  /** Fails every prediction the model server held or would have run. */
  private failRunning(error: string): void {
    for (const [id, slot] of [...this.slots]) {
      this.release(id);
      if (slot.prediction.end('failed', { error })) this.finish(slot.prediction);
    }
    for (const p of this.queue.splice(0)) {
      if (p.end('failed', { error: `${error} before the prediction started` })) this.finish(p);
    }
    this.updateClock();
    this.checkDrained();
  }

  // --- webhooks from the model server -----------------------------------------------------

  private authorized(req: IncomingMessage): boolean {
    const token = this.config.webhookToken;
    if (!token) return true;
    const got = Buffer.from(req.headers.authorization ?? '');
    const want = Buffer.from(`Bearer ${token}`);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  private onCogWebhook(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST' || !req.url?.startsWith('/cog/')) {
      res.writeHead(404).end();
      return;
    }
    if (!this.authorized(req)) {
      this.log.warn('rejected a webhook without the right bearer token');
      res.writeHead(401).end();
      return;
    }
    const id = decodeURIComponent(req.url.slice('/cog/'.length).split('?')[0] ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-length': '0' }).end();
      let payload: CogPayload;
      try {
        payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as CogPayload;
      } catch {
        this.log.warn({ prediction: id }, 'unreadable webhook from the model server');
        return;
      }
      this.onCogPayload(id, payload);
    });
  }

  /** Folds one model-server webhook into its prediction. */
  onCogPayload(id: string, payload: CogPayload): void {
    const slot = this.slots.get(id);
    const terminal = isTerminal(payload.status);
    if (slot?.zombie) {
      if (terminal) {
        this.release(id);
        this.log.info(
          { prediction: id, status: payload.status },
          'the model server finished a timed-out prediction',
        );
        this.clearServerBusy(true);
      }
      return;
    }
    const p = this.predictions.get(id);
    if (!p || p.terminal) return;
    const before = p.startedAt;
    const ended = p.applyCog(payload, this.mode);
    if (before === undefined && p.startedAt !== undefined)
      this.webhooks.notify(id, 'start', () => this.view(p));
    if (ended) {
      this.release(id);
      this.finish(p);
      this.clearServerBusy(true);
    }
  }

  // --- completion and metering ----------------------------------------------------------

  /** Meters, counts and reports a prediction that has just ended. */
  private finish(p: Prediction): void {
    const seconds = p.metrics.predict_time ?? 0;
    const billed = fromNumber(seconds, 6);
    const cost = multiply(billed, this.price);
    p.cost = format(cost);
    this.billable = add(this.billable, billed);
    this.costTotal = add(this.costTotal, cost);
    const status = p.status as TerminalStatus;
    this.counts[status]++;
    this.metrics.predictions.inc({ status });
    this.metrics.duration.observe({ status }, toNumber(billed));
    this.metrics.billableSeconds.inc(toNumber(billed));
    this.metrics.cost.inc(toNumber(cost));
    this.log.info(
      {
        prediction: p.id,
        status,
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
    if (!this.stopped) {
      const t = setTimeout(() => {
        this.retentionTimers.delete(t);
        this.predictions.delete(p.id);
      }, this.config.retention * 1000);
      t.unref();
      this.retentionTimers.add(t);
    }
    this.checkDrained();
  }

  private checkDrained(): void {
    if (!this.draining || this.drainWaiters.length === 0) return;
    if (this.queue.length > 0) return;
    for (const s of this.slots.values()) if (!s.zombie && !s.prediction.terminal) return;
    for (const w of this.drainWaiters.splice(0)) w();
  }
}

function invalid(fields: InvalidField[]): HttpError {
  const detail = fields.map((f) => f.description).join('; ') || 'the input does not match the model schema';
  return new HttpError(422, 'Invalid input', detail, { invalid_fields: fields });
}

/** One SSE frame; multi-line data becomes several `data:` lines. */
function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function hostForUrl(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolveListen(server.address() as AddressInfo);
    });
  });
}
