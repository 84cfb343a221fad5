/**
 * The lifecycle of a prediction under way: taken in (stored, its webhook registered, its hold
 * and Cancel-After timers armed), started (`processing`), its stream events, and its end —
 * succeeded, failed with an error, or canceled, exactly once — with the waiters, listeners,
 * webhooks and metrics that follow. Every timer and timestamp reads the engine's Clock.
 */
import type { Logger } from 'pino';
import type { Clock } from '../../lib/clock.ts';
import type { StreamEventName, TerminalStatus, WebhookEvent } from '../../lib/prediction.ts';
import { doneData, isTerminal } from '../../lib/prediction.ts';
import type { Live } from './live.ts';
import type { EngineMetrics } from './metrics.ts';
import type { PredictionRecord, PredictionView } from './record.ts';
import type { PredictionStore } from './store.ts';
import type { WebhookSender } from './webhooks.ts';

/** What the lifecycle asks of the lanes and the facade. */
export interface LifecycleHooks {
  /** A prediction is about to end: take it out of its queue and free its instance slot. */
  leaving(live: Live): void;
  /** A prediction has ended: its lane may send the next one. */
  ended(live: Live): void;
  /** Its hold (spec.queue.maxWaitSeconds) ran out. */
  holdExpired(live: Live): void;
  /** Its Cancel-After deadline came. */
  deadline(live: Live): void;
}

export interface LifecycleOptions {
  clock: Clock;
  log: Logger;
  store: PredictionStore;
  webhooks: WebhookSender;
  metrics: EngineMetrics;
  /** The object callers read (webhook bodies). */
  view(rec: PredictionRecord): PredictionView;
  hooks: LifecycleHooks;
}

export class Lifecycle {
  /** Predictions under way, by id. */
  readonly lives = new Map<string, Live>();
  private readonly opts: LifecycleOptions;
  private readonly clock: Clock;
  private readonly changeListeners: ((rec: PredictionRecord) => void)[] = [];

  constructor(opts: LifecycleOptions) {
    this.opts = opts;
    this.clock = opts.clock;
  }

  /**
   * Takes in a prediction: stored, known as under way, its webhook registered, its deadline
   * armed and, when `hold`, its hold timer (it waits for an instance until `live.holdUntil`).
   */
  admit(live: Live, hold: boolean): void {
    const rec = live.rec;
    this.opts.store.put(rec);
    this.lives.set(rec.id, live);
    if (rec.webhook) this.opts.webhooks.register(rec.id, rec.namespace, rec.webhook, rec.webhookEvents);
    if (hold)
      live.holdTimer = this.clock.setTimer(() => {
        live.holdTimer = undefined;
        this.opts.hooks.holdExpired(live);
      }, live.holdUntil - this.clock.now());
    this.armDeadline(live);
  }

  /** An instance took it: it no longer waits for one. */
  taken(live: Live): void {
    live.holdTimer?.cancel();
    live.holdTimer = undefined;
  }

  /** Writes the prediction's current state to the store. */
  save(live: Live): void {
    this.opts.store.put(live.rec);
  }

  /** Forgets a prediction that never began (the instance refused its input). */
  forget(live: Live): void {
    this.opts.store.delete(live.rec.id);
  }

  /** Calls `listener` after every change of any prediction (synchronously; keep it cheap). */
  onChange(listener: (rec: PredictionRecord) => void): void {
    this.changeListeners.push(listener);
  }

  changed(rec: PredictionRecord): void {
    for (const l of this.changeListeners) {
      try {
        l(rec);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'a change listener failed');
      }
    }
  }

  /** Queues the webhook of `event` (its body read when sent). */
  notify(rec: PredictionRecord, event: WebhookEvent): void {
    this.opts.webhooks.notify(rec.id, event, () => this.opts.view(rec));
  }

  /** The instance has started it (at `startedAt`, its own time, when known). */
  markProcessing(live: Live, startedAt?: number): void {
    const rec = live.rec;
    if (rec.status !== 'starting') return;
    rec.status = 'processing';
    rec.startedAt = startedAt ?? this.clock.now();
    this.opts.store.put(rec);
    this.changed(rec);
    this.notify(rec, 'start');
  }

  /** Adds a stream event and passes it to the listeners. */
  emit(live: Live, event: StreamEventName, data: string): void {
    const e = { id: live.rec.events.length + 1, event, data };
    live.rec.events.push(e);
    for (const l of live.listeners) {
      try {
        l(e);
      } catch (err) {
        this.opts.log.warn({ err: (err as Error).message }, 'a stream listener failed');
      }
    }
  }

  /** Ends it, once: the final status, the `error` and `done` events, the webhook, the waiters. */
  finish(live: Live, status: TerminalStatus, error: string | null = null): void {
    const rec = live.rec;
    if (isTerminal(rec.status)) return;
    this.opts.hooks.leaving(live);
    live.holdTimer?.cancel();
    live.deadlineTimer?.cancel();
    live.abort.abort();
    rec.status = status;
    rec.error = status === 'failed' ? (error ?? 'prediction failed') : null;
    rec.completedAt = this.clock.now();
    if (status === 'failed') this.emit(live, 'error', rec.error ?? 'prediction failed');
    this.emit(live, 'done', doneData(status));
    this.lives.delete(rec.id);
    this.opts.store.put(rec);
    live.lane.lastActivityMs = this.clock.now();
    this.opts.metrics.predictions.inc({ deployment: live.lane.key, status });
    this.notify(rec, 'completed');
    for (const w of live.waiters) w();
    live.waiters.clear();
    this.changed(rec);
    live.listeners.clear();
    this.opts.log.info(
      {
        prediction: rec.id,
        deployment: live.lane.key,
        status,
        instance: rec.instance,
        error: rec.error ?? undefined,
      },
      'prediction ended',
    );
    this.opts.hooks.ended(live);
  }

  /** Resolves true when the prediction has ended, false after `ms` or when `signal` aborts. */
  waitDone(id: string, ms: number, signal?: AbortSignal): Promise<boolean> {
    const live = this.lives.get(id);
    if (!live) return Promise.resolve(true);
    if (signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const onDone = () => {
        timer.cancel();
        signal?.removeEventListener('abort', onAbort);
        resolve(true);
      };
      const onAbort = () => {
        timer.cancel();
        live.waiters.delete(onDone);
        signal?.removeEventListener('abort', onAbort);
        resolve(false);
      };
      const timer = this.clock.setTimer(onAbort, ms);
      signal?.addEventListener('abort', onAbort, { once: true });
      live.waiters.add(onDone);
    });
  }

  /** Stops every timer and stops following instances; what runs there is left to them. */
  close(): void {
    for (const live of this.lives.values()) {
      live.abort.abort();
      live.holdTimer?.cancel();
      live.deadlineTimer?.cancel();
    }
  }

  private armDeadline(live: Live): void {
    const deadline = live.rec.deadline;
    if (deadline === undefined) return;
    live.deadlineTimer = this.clock.setTimer(() => {
      live.deadlineTimer = undefined;
      this.opts.log.info({ prediction: live.rec.id }, 'Cancel-After deadline reached; canceling');
      this.opts.hooks.deadline(live);
    }, deadline - this.clock.now());
  }
}
