/**
 * The model server's health as the sidecar follows it: polls `GET /health-check` every
 * health interval (on the clock), follows its setup (and the setup timeout), reads its
 * OpenAPI schema once it is ready, and notices when it goes away, reports itself broken, or
 * restarts (a new setup start time), so that what it ran can be failed and the instance made
 * not ready.
 */
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { CogClient, CogHealth } from './cog-client.ts';
import { Unreachable } from './cog-client.ts';
import { type OutputMode, outputMode } from './cog-webhooks.ts';

/** Where the model server stands, as far as the sidecar knows. */
export type ModelState = 'waiting' | 'ready' | 'setup-failed' | 'down';

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

export interface ModelHealthEvents {
  /** The model server lost (or will never run) what it was given: fail it with `error`. */
  lost(error: string): void;
  /** The model server's state changed. */
  changed(): void;
  /** The model server has turned ready: it can take predictions. */
  ready(): void;
}

export interface ModelHealthSettings {
  modelUrl: string;
  /** Seconds between health checks. */
  healthInterval: number;
  /** Seconds setup may take; 0 waits forever. */
  setupTimeout: number;
}

export class ModelHealth {
  /** Where the model server stands. */
  state: ModelState = 'waiting';
  /** Why, in the readiness answer's words. */
  reason: ReadyReason = 'ModelServerStarting';
  message = 'waiting for the model server to answer its health check';
  /** The last health check's answer. */
  lastHealth: CogHealth | undefined;
  setupLogs = '';
  /** Seconds the last setup took, once it has finished. */
  setupSeconds: number | undefined;
  /** The model server's OpenAPI document, once it has served one. */
  openapi: unknown;
  /** How the model's output streams, from its schema. */
  mode: OutputMode = 'unknown';

  private readonly cog: CogClient;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly settings: ModelHealthSettings;
  private readonly events: ModelHealthEvents;
  /** The model server's setup start time when it became ready: a new one means a restart. */
  private serverStartedAt: string | undefined;
  private setupStartedMono: number;
  private setupTimedOut = false;
  private unreachableCount = 0;
  private timer: Timer | undefined;
  private inFlight: Promise<void> | undefined;
  private stopped = false;

  constructor(
    deps: { cog: CogClient; clock: Clock; log: Logger; settings: ModelHealthSettings },
    events: ModelHealthEvents,
  ) {
    this.cog = deps.cog;
    this.clock = deps.clock;
    this.log = deps.log;
    this.settings = deps.settings;
    this.events = events;
    this.setupStartedMono = this.clock.mono();
  }

  get ready(): boolean {
    return this.state === 'ready';
  }

  /** Starts polling (the first check at once). */
  start(): void {
    this.schedule(0);
  }

  /** Stops polling. */
  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.timer = this.clock.setTimer(() => void this.check(), ms);
  }

  /** One health check now (coalesced with one already under way); the next follows an interval later. */
  check(): Promise<void> {
    if (!this.inFlight) {
      this.inFlight = this.poll().finally(() => {
        this.inFlight = undefined;
        this.schedule(this.settings.healthInterval * 1000);
      });
    }
    return this.inFlight;
  }

  private setState(state: ModelState, reason: ReadyReason, message: string): void {
    this.state = state;
    this.reason = reason;
    this.message = message;
    this.events.changed();
  }

  private async poll(): Promise<void> {
    if (this.stopped) return;
    let health: CogHealth;
    try {
      health = await this.cog.health(Math.max(1000, this.settings.healthInterval * 4000));
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
          this.state === 'ready' &&
          setupStarted &&
          this.serverStartedAt &&
          setupStarted !== this.serverStartedAt
        ) {
          // A new setup since the last check: the model server restarted between two health
          // checks and knows nothing of what it ran before.
          this.events.lost('model server exited: it restarted while the prediction ran');
          this.log.error('the model server restarted; its predictions were lost');
          await this.becomeReady(health);
          return;
        }
        if (this.state !== 'ready') await this.becomeReady(health);
        return;
      }
      case 'SETUP_FAILED':
        if (this.state !== 'setup-failed') {
          if (this.state === 'ready')
            this.events.lost('model server exited: it restarted and its setup failed');
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
        if (this.state !== 'down' || this.reason !== 'ModelServerUnhealthy') {
          this.events.lost(`model server unhealthy (${health.status}${detail})`);
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
        if (this.state === 'ready' || this.state === 'down' || this.state === 'setup-failed') {
          if (this.state === 'ready') {
            this.events.lost('model server exited: it restarted while the prediction ran');
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
    const limit = this.settings.setupTimeout;
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
    if (this.state === 'ready' || (this.state === 'down' && this.reason !== 'ModelServerExited')) {
      if (definite || this.unreachableCount >= 3) {
        this.events.lost('model server exited');
        this.setState('down', 'ModelServerExited', `model server exited: ${err.message}`);
        this.log.error({ err: err.message }, 'model server exited');
      }
      return;
    }
    if (this.state === 'waiting') {
      this.checkSetupTimeout();
      if (!this.setupTimedOut) {
        this.setState(
          'waiting',
          'ModelServerStarting',
          `waiting for the model server at ${this.settings.modelUrl}: ${err.message}`,
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
    this.events.ready();
  }
}

/** The last line of `text` (the gist of a setup failure). */
function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}
