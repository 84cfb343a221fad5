/**
 * The preStop drain: stop taking predictions (the instance turns not ready), let every
 * accepted one finish (bounded by the drain timeout, if any), deliver their webhooks, keep
 * answering until their callers have read the final records (bounded by the drain read
 * timeout), ask the model server to shut down, then stop.
 */
import type { Logger } from 'pino';
import type { Clock, Timer } from '../lib/clock.ts';
import type { CogClient } from './cog-client.ts';
import type { Prediction } from './prediction.ts';
import type { Slots } from './slots.ts';

export interface DrainSettings {
  /** Seconds to wait for accepted predictions; 0 waits for all of them. */
  drainTimeout: number;
  /** Seconds to wait, after that, for callers to read the final records. */
  drainReadTimeout: number;
  /**
   * Seconds to wait, after that, for the operator to read the instance's final usage
   * (`GET /status` once the meter has stopped); 0 does not wait.
   */
  usageReadTimeout: number;
  /** `POST /shutdown` to the model server at the end. */
  shutdownModel: boolean;
}

export class Drain {
  /** Why the instance is not ready while it drains. */
  readonly message = 'draining: finishing accepted predictions before exit';
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly settings: DrainSettings;
  private readonly deps: {
    cog: CogClient;
    slots: Slots;
    /** Resolves when every webhook to callers has been delivered (or given up). */
    webhooksDelivered(): Promise<void>;
    /** Stops the meter, then resolves once its final figures were read, or after `ms`. */
    finalUsageRead(ms: number): Promise<void>;
    /** What the instance did, for the last log line. */
    summary(): Record<string, unknown>;
    /** Closes everything. */
    stop(): Promise<void>;
  };
  private active = false;
  private promise: Promise<void> | undefined;
  private idleWaiters: Array<() => void> = [];
  /**
   * The predictions that were running or queued when the drain began, whose final record no
   * caller has read yet (one with a `completed` webhook gets it that way).
   */
  private readonly unread = new Set<string>();
  private unreadWaiters: Array<() => void> = [];

  constructor(deps: Drain['deps'] & { clock: Clock; log: Logger; settings: DrainSettings }) {
    this.clock = deps.clock;
    this.log = deps.log;
    this.settings = deps.settings;
    this.deps = deps;
  }

  get draining(): boolean {
    return this.active;
  }

  /** Starts the drain (once); resolves when the sidecar has stopped. */
  start(): Promise<void> {
    if (this.promise) return this.promise;
    this.active = true;
    const { slots } = this.deps;
    this.log.info({ inflight: slots.inflight(), queued: slots.queued }, 'draining');
    for (const p of slots.pending())
      if (!p.terminal && !(p.webhook && p.webhookEventsFilter.includes('completed'))) this.unread.add(p.id);
    this.promise = this.run();
    return this.promise;
  }

  private async run(): Promise<void> {
    const { slots, cog } = this.deps;
    const idle = new Promise<void>((resolveIdle) => {
      this.idleWaiters.push(resolveIdle);
      this.check();
    });
    const limit = this.settings.drainTimeout;
    if (limit > 0) {
      if (!(await this.within(idle, limit * 1000))) {
        this.log.warn(
          { inflight: slots.inflight(), queued: slots.queued, drainTimeout: limit },
          'drain timeout reached; failing what is left',
        );
        slots.failAll('the instance shut down before the prediction finished (drain timeout)');
      }
    } else {
      await idle;
    }
    await this.deps.webhooksDelivered();
    // Whoever follows a prediction reads its final record once it has ended (the gateway
    // does after the stream's done event): keep answering until they have.
    await this.finalRecordsRead(this.settings.drainReadTimeout * 1000);
    // The instance's time ends here; the operator records the final figures it reads.
    await this.deps.finalUsageRead(this.settings.usageReadTimeout * 1000);
    if (this.settings.shutdownModel) {
      try {
        await cog.shutdown();
        this.log.info('asked the model server to shut down');
      } catch (err) {
        this.log.debug({ err: (err as Error).message }, 'model server shutdown request failed');
      }
    }
    this.log.info(this.deps.summary(), 'drained');
    await this.deps.stop();
  }

  /** True when `done` resolves within `ms` on the clock, false when the time runs out first. */
  private async within(done: Promise<void>, ms: number): Promise<boolean> {
    let timer: Timer | undefined;
    const inTime = await Promise.race([
      done.then(() => true),
      new Promise<boolean>((r) => {
        timer = this.clock.setTimer(() => r(false), ms);
      }),
    ]);
    timer?.cancel();
    return inTime;
  }

  /** Ends the wait for accepted predictions once nothing is queued or running. */
  check(): void {
    if (!this.draining || this.idleWaiters.length === 0) return;
    if (!this.deps.slots.idle()) return;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  /** A caller has read the final record of `p`. */
  read(p: Prediction): void {
    if (!this.unread.delete(p.id) || this.unread.size > 0) return;
    for (const w of this.unreadWaiters.splice(0)) w();
  }

  /** Resolves once every prediction the drain waits on has been read in its final state, or after `ms`. */
  private async finalRecordsRead(ms: number): Promise<void> {
    if (this.unread.size === 0 || ms <= 0) return;
    const read = new Promise<void>((r) => this.unreadWaiters.push(r));
    if (!(await this.within(read, ms)))
      this.log.warn(
        { unread: [...this.unread], drainReadTimeout: ms / 1000 },
        'exiting with final records no caller has read',
      );
  }
}
