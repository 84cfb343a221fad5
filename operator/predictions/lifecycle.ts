/**
 * The lifecycle of a prediction under way: taken in (its webhook registered, its hold and
 * Cancel-After timers armed), started (`processing`), its stream events, and its end —
 * succeeded, failed with an error, or canceled, exactly once — with the waiters, listeners,
 * webhooks and metrics that follow. Every change is written to the store (`save`, fenced by
 * this replica's id); an end is stored before the waiters, the stream and the `completed`
 * webhook hear of it. Every timer and timestamp reads the engine's Clock.
 */
import type { Logger } from 'pino';
import { Backoff } from '../../lib/backoff.ts';
import { byteLength, MAX_OUTPUT_BYTES } from '../../lib/bounded.ts';
import { type Clock, sleep } from '../../lib/clock.ts';
import type { StreamEvent, StreamEventName, TerminalStatus, WebhookEvent } from '../../lib/prediction.ts';
import { doneData, isTerminal } from '../../lib/prediction.ts';
import type { Live } from './live.ts';
import type { EngineMetrics } from './metrics.ts';
import { LOG_TAIL_BYTES, type PredictionRecord, type PredictionView, withoutEvents } from './record.ts';
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
  /** This replica: the driver its writes are fenced by. */
  replica: string;
  webhooks: WebhookSender;
  metrics: EngineMetrics;
  /** The object callers read (webhook bodies). */
  view(rec: PredictionRecord): PredictionView;
  hooks: LifecycleHooks;
  /**
   * The most bytes of event data a prediction keeps in memory (default MAX_EVENT_BYTES): past
   * it its oldest `logs` and `output` events are dropped here (ids stay as they were; the store
   * keeps them all). A replay from an earlier id starts at the oldest event kept.
   */
  maxEventBytes?: number;
}

/** Event data a prediction keeps in memory by default: its logs' cap and its output's. */
export const MAX_EVENT_BYTES = LOG_TAIL_BYTES + MAX_OUTPUT_BYTES;

/**
 * Why a prediction is no longer followed (its end, or the engine closing): one object for
 * all, as an abort without a reason makes a DOMException, with its stack, every time.
 */
const STOPPED = new Error('the prediction is no longer followed here');

/** Longest a change of a prediction under way waits to be written with the next ones. */
export const SAVE_DELAY_MS = 100;

export class Lifecycle {
  /** Predictions under way, by id. */
  readonly lives = new Map<string, Live>();
  private readonly opts: LifecycleOptions;
  private readonly clock: Clock;
  private readonly maxEventBytes: number;
  private readonly changeListeners: ((rec: PredictionRecord) => void)[] = [];
  private closed = false;

  constructor(opts: LifecycleOptions) {
    this.opts = opts;
    this.clock = opts.clock;
    this.maxEventBytes = opts.maxEventBytes ?? MAX_EVENT_BYTES;
  }

  /**
   * Takes in a prediction (stored already): known as under way, its webhook registered, its
   * deadline armed and, when `hold`, its hold timer (it waits for an instance until
   * `live.holdUntil`).
   */
  admit(live: Live, hold: boolean): void {
    const rec = live.rec;
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

  /**
   * Writes the prediction's state and its new events to the store: one write at a time, each
   * with the latest state, tried again while the store cannot be reached. Resolves true when
   * the state as of this call is stored; false when another replica has taken the prediction
   * over (it is then dropped here, unended) or the engine closed first.
   */
  save(live: Live): Promise<boolean> {
    live.dirty = true;
    live.saveTimer?.cancel();
    live.saveTimer = undefined;
    live.writing ??= this.write(live).finally(() => {
      live.writing = undefined;
    });
    return live.writing;
  }

  /**
   * Writes the prediction's state within SAVE_DELAY_MS: the changes of a prediction under way
   * (taken by an instance, started, its events) go in one write, and one that ends sooner
   * is written once, with its end. Other replicas see them that much later; what is lost when
   * this replica dies meanwhile, its instance still has for the replica that takes it over.
   */
  saveSoon(live: Live): void {
    live.dirty = true;
    if (live.writing || live.saveTimer) return;
    live.saveTimer = this.clock.setTimer(() => {
      live.saveTimer = undefined;
      void this.save(live);
    }, SAVE_DELAY_MS);
  }

  private async write(live: Live): Promise<boolean> {
    // Its row first; changes made meanwhile go in one write.
    if (!(await live.stored.catch(() => false))) return false;
    const backoff = new Backoff(100, 5000);
    while (live.dirty) {
      live.dirty = false;
      const events = live.unsaved.splice(0);
      const state = withoutEvents(live.rec);
      for (;;) {
        if (this.closed) return false;
        try {
          if (await this.opts.store.update(state, this.opts.replica, events)) break;
          this.dropTaken(live);
          return false;
        } catch (err) {
          this.opts.log.warn(
            { prediction: live.rec.id, err: (err as Error).message },
            'cannot store the prediction; trying again',
          );
          await sleep(backoff.next(), undefined, this.clock);
        }
      }
      backoff.reset();
    }
    return true;
  }

  /** Another replica drives the prediction now: stop following it here, end nothing. */
  private dropTaken(live: Live): void {
    if (this.lives.get(live.rec.id) !== live) return;
    this.opts.log.warn({ prediction: live.rec.id }, 'another replica took the prediction over; leaving it');
    this.drop(live);
  }

  /** Stops driving a prediction here without ending it: no webhook, no stored change. */
  drop(live: Live): void {
    if (this.lives.get(live.rec.id) !== live) return;
    this.opts.hooks.leaving(live);
    live.saveTimer?.cancel();
    live.holdTimer?.cancel();
    live.deadlineTimer?.cancel();
    live.abort.abort(STOPPED);
    this.lives.delete(live.rec.id);
    for (const w of live.waiters) w();
    live.waiters.clear();
    live.listeners.clear();
    this.opts.hooks.ended(live);
  }

  /** Forgets a prediction that never began (the instance refused its input). */
  forget(live: Live): void {
    this.lives.delete(live.rec.id);
    void this.opts.store
      .delete(live.rec.id)
      .catch((err: unknown) =>
        this.opts.log.warn(
          { prediction: live.rec.id, err: (err as Error).message },
          'cannot delete a refused prediction',
        ),
      );
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
    this.saveSoon(live);
    this.changed(rec);
    this.notify(rec, 'start');
  }

  /** Adds a stream event, passes it to the listeners and stores it. */
  emit(live: Live, event: StreamEventName, data: string): void {
    this.add(live, event, data);
    this.deliver(live);
    this.saveSoon(live);
  }

  private add(live: Live, event: StreamEventName, data: string): StreamEvent {
    const events = live.rec.events;
    const e = { id: (events.at(-1)?.id ?? 0) + 1, event, data };
    events.push(e);
    live.unsaved.push(e);
    live.eventBytes += byteLength(data);
    this.bound(live);
    return e;
  }

  /**
   * Keeps the events of `live` in memory within maxEventBytes: past it the oldest `logs` and
   * `output` events go (all delivered already: they are delivered as they come), down to
   * three quarters of it so that a prediction at its cap does not shift its events at every
   * new one. The newest event stays, whatever its size.
   */
  bound(live: Live): void {
    if (live.eventBytes <= this.maxEventBytes) return;
    const events = live.rec.events;
    const target = Math.floor((this.maxEventBytes * 3) / 4);
    let k = 0;
    while (k < events.length - 1 && live.eventBytes > target) {
      const e = events[k]!;
      if (e.event !== 'logs' && e.event !== 'output') break;
      live.eventBytes -= byteLength(e.data);
      k++;
    }
    if (k) events.splice(0, k);
  }

  /** Passes the events the listeners have not had yet. */
  private deliver(live: Live): void {
    const events = live.rec.events;
    let i = events.length;
    while (i > 0 && events[i - 1]!.id > live.delivered) i--;
    for (; i < events.length; i++) {
      const e = events[i]!;
      live.delivered = e.id;
      for (const l of live.listeners) {
        try {
          l(e);
        } catch (err) {
          this.opts.log.warn({ err: (err as Error).message }, 'a stream listener failed');
        }
      }
    }
  }

  /**
   * Ends it, once: the final status and its `error` and `done` events. Its instance slot is
   * freed at once; the waiters, the stream's last events and the `completed` webhook follow
   * when the end is stored.
   */
  finish(live: Live, status: TerminalStatus, error: string | null = null): void {
    const rec = live.rec;
    if (isTerminal(rec.status)) return;
    this.opts.hooks.leaving(live);
    live.holdTimer?.cancel();
    live.deadlineTimer?.cancel();
    live.abort.abort(STOPPED);
    rec.status = status;
    rec.error = status === 'failed' ? (error ?? 'prediction failed') : null;
    rec.completedAt = this.clock.now();
    if (status === 'failed') this.add(live, 'error', rec.error ?? 'prediction failed');
    this.add(live, 'done', doneData(status));
    // Stored with the end: a replica that takes it over sends the webhook if this one cannot.
    if (rec.webhook && rec.webhookEvents.includes('completed')) rec.webhookPending = true;
    live.lane.lastActivityMs = this.clock.now();
    this.opts.metrics.predictions.inc({ deployment: live.lane.key, status });
    this.opts.metrics.duration.observe(
      { deployment: live.lane.key, status },
      Math.max(0, (rec.completedAt - rec.createdAt) / 1000),
    );
    this.opts.log.debug(
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
    void this.save(live).then((stored) => {
      if (!stored || this.lives.get(rec.id) !== live) return;
      this.lives.delete(rec.id);
      this.deliver(live);
      live.listeners.clear();
      this.sendCompleted(live);
      for (const w of live.waiters) w();
      live.waiters.clear();
      this.changed(rec);
    });
  }

  /** Sends the `completed` webhook of an ended prediction, then stores that it was sent. */
  sendCompleted(live: Live): void {
    const rec = live.rec;
    this.notify(rec, 'completed');
    if (!rec.webhookPending) return;
    void this.opts.webhooks.settled(rec.id).then(() => {
      rec.webhookPending = false;
      return this.save(live);
    });
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
    this.closed = true;
    for (const live of this.lives.values()) {
      live.saveTimer?.cancel();
      live.abort.abort(STOPPED);
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
