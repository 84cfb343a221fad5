/**
 * Concurrency: at most `concurrency` predictions on the model server (its slots), up to
 * `queueSize` more waiting here in order. Each one is sent with the idempotent
 * `PUT /predictions/{id}`; a model server that answers 409 (every slot taken) or 503 keeps
 * it queued here and is tried again (after a backoff for 409). A prediction running past the
 * predict timeout is failed and canceled on the model server, and its slot stays taken (a
 * zombie) until the model server confirms.
 */
import type { Logger } from 'pino';
import { Backoff } from '../lib/backoff.ts';
import type { Clock, Timer } from '../lib/clock.ts';
import { fromCogDetail } from '../lib/openapi-input.ts';
import { type CogClient, type CreateResult, Unreachable } from './cog-client.ts';
import type { Prediction } from './prediction.ts';

export interface Slot {
  prediction: Prediction;
  /** Ended here (predict timeout) while the model server still runs it. */
  zombie: boolean;
  /** The predict timeout. */
  timer?: Timer;
  /** Repeats the cancel until the model server confirms it. */
  cancelTimer?: Timer;
}

/** How often a cancel is repeated while the model server has not confirmed it. */
const CANCEL_REPEAT_MS = 1000;

/** What became of one create on the model server. */
export type DispatchOutcome = 'accepted' | 'requeued' | 'invalid' | 'failed';

export interface SlotSettings {
  /** Slots of the model server. */
  concurrency: number;
  /** Predictions waiting here at most. */
  queueSize: number;
  /** Seconds a prediction may run; 0 for no limit. */
  predictTimeout: number;
}

export interface SlotEvents {
  /** `p` started running on the model server. */
  started(p: Prediction): void;
  /** `p` ended. */
  ended(p: Prediction): void;
  /** A held create answered with the final state of prediction `id`. */
  payload(id: string, body: Record<string, unknown>): void;
  /** Slots were taken or freed. */
  changed(): void;
  /** Dispatch has caught up (a drain may be done). */
  settled(): void;
}

/** The model server as the slots need it. */
export interface ModelServerState {
  readonly ready: boolean;
  /** A health check now. */
  check(): Promise<void>;
}

export class Slots {
  private readonly queue: Prediction[] = [];
  private readonly slots = new Map<string, Slot>();
  private readonly cog: CogClient;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly settings: SlotSettings;
  private readonly model: ModelServerState;
  private readonly webhookUrl: (id: string) => string;
  private readonly live: (p: Prediction) => boolean;
  private readonly events: SlotEvents;
  /** The model server answered 409: hold dispatch until the backoff ends or a slot frees. */
  private serverBusy = false;
  private readonly busyBackoff = new Backoff(2, 1000);
  private busyRetryMs = 0;
  private busyTimer: Timer | undefined;
  private stopped = false;

  constructor(
    deps: {
      cog: CogClient;
      clock: Clock;
      log: Logger;
      settings: SlotSettings;
      model: ModelServerState;
      /** Where the model server sends the webhooks of prediction `id`. */
      webhookUrl(id: string): string;
      /** Whether `p` is followed live (async create, webhooks) rather than held (progress.ts). */
      live(p: Prediction): boolean;
    },
    events: SlotEvents,
  ) {
    this.cog = deps.cog;
    this.clock = deps.clock;
    this.log = deps.log;
    this.settings = deps.settings;
    this.model = deps.model;
    this.webhookUrl = deps.webhookUrl;
    this.live = deps.live;
    this.events = events;
  }

  // --- state -----------------------------------------------------------------------------

  /** Slots taken on the model server (timed-out leftovers included). */
  get used(): number {
    return this.slots.size;
  }

  /** Predictions waiting here. */
  get queued(): number {
    return this.queue.length;
  }

  /** Predictions the model server is running for callers (not counting timed-out leftovers). */
  inflight(): number {
    let n = 0;
    for (const s of this.slots.values()) if (!s.zombie) n++;
    return n;
  }

  get(id: string): Slot | undefined {
    return this.slots.get(id);
  }

  /** The predictions running for callers and those queued. */
  pending(): Prediction[] {
    return [...[...this.slots.values()].filter((s) => !s.zombie).map((s) => s.prediction), ...this.queue];
  }

  /** Nothing queued and nothing running for a caller. */
  idle(): boolean {
    if (this.queue.length > 0) return false;
    for (const s of this.slots.values()) if (!s.zombie && !s.prediction.terminal) return false;
    return true;
  }

  /** A new prediction would run at once. */
  private free(): boolean {
    return this.slots.size < this.settings.concurrency && this.queue.length === 0 && !this.serverBusy;
  }

  /** A new prediction would be refused: no free slot and the queue full. */
  full(): boolean {
    return !this.free() && this.queue.length >= this.settings.queueSize;
  }

  /** For the gateway's dispatch; `ready` says whether the instance takes predictions. */
  load(ready: boolean): Record<string, unknown> {
    const used = this.slots.size;
    const { concurrency, queueSize } = this.settings;
    return {
      slots: concurrency,
      inflight: this.inflight(),
      busy_slots: used,
      available: Math.max(0, concurrency - used),
      queued: this.queue.length,
      queue_size: queueSize,
      // Whether a prediction sent now would be taken (run at once or queued) rather than refused.
      accepting: ready && (used < concurrency || this.queue.length < queueSize),
      ready,
    };
  }

  // --- taking and sending predictions -----------------------------------------------------

  /**
   * Runs `p` at once when a slot is free, else queues it. An async (live) create answers at
   * once, so its outcome (`invalid` included) is returned; a held one goes on by itself
   * (`sent`).
   */
  async submit(p: Prediction): Promise<'queued' | 'sent' | DispatchOutcome> {
    if (!this.free()) {
      this.queue.push(p);
      this.log.debug({ prediction: p.id, queued: this.queue.length }, 'queued');
      return 'queued';
    }
    this.slots.set(p.id, { prediction: p, zombie: false });
    this.events.changed();
    const live = this.live(p);
    if (live) return this.dispatch(p, live);
    void this.dispatch(p, live);
    return 'sent';
  }

  /** Sends queued predictions to free slots. */
  pump(): void {
    while (
      this.model.ready &&
      !this.stopped &&
      !this.serverBusy &&
      this.queue.length > 0 &&
      this.slots.size < this.settings.concurrency
    ) {
      const p = this.queue.shift()!;
      if (p.terminal) continue;
      this.slots.set(p.id, { prediction: p, zombie: false });
      void this.dispatch(p, this.live(p));
    }
    this.events.changed();
    this.events.settled();
  }

  /**
   * Creates `p` on the model server; its slot is already reserved. `live`: async, its
   * progress by webhook; otherwise one held request that answers when it ends.
   */
  private async dispatch(p: Prediction, live: boolean): Promise<DispatchOutcome> {
    const held = !live;
    if (held) {
      // A held request: the prediction runs from the moment it is sent.
      p.markStarted();
      this.events.started(p);
      this.armTimeout(p);
    }
    let r: CreateResult;
    try {
      r = await this.cog.create(p.id, p.input, held ? undefined : this.webhookUrl(p.id));
    } catch (err) {
      if (held && err instanceof Unreachable && err.afterSend) {
        // The model server took the request and the connection broke while it ran.
        this.release(p.id);
        if (p.end('failed', { error: 'model server exited' })) this.events.ended(p);
        this.log.warn(
          { prediction: p.id, err: err.message },
          'the model server dropped a running prediction',
        );
        // Let the health check say whether it is gone before sending it more.
        void this.model.check().then(() => this.pump());
        return 'failed';
      }
      this.requeue(p);
      this.log.warn(
        { prediction: p.id, err: (err as Error).message },
        'could not reach the model server; requeued',
      );
      void this.model.check();
      return 'requeued';
    }
    switch (r.kind) {
      case 'accepted': {
        this.busyBackoff.reset();
        const slot = this.slots.get(p.id);
        if (p.terminal || !slot) return 'accepted'; // its terminal webhook came first
        const before = p.startedAt;
        p.markStarted();
        if (before === undefined) this.events.started(p);
        this.armTimeout(p);
        if (p.cancelRequested) void this.cancelOnServer(p.id);
        return 'accepted';
      }
      case 'finished':
        this.events.payload(p.id, r.body);
        if (p.status === 'failed' && !p.logs && !p.invalidFields) {
          this.log.warn(
            { prediction: p.id },
            "a held prediction failed: the model server's answer carries no logs (they are in the model container's log under this prediction_id); the next predictions are followed live",
          );
        }
        if (!p.terminal) {
          // A held request answers with the final state; anything else is a broken answer.
          this.release(p.id);
          if (
            p.end('failed', {
              error: `the model server answered without a final state (${String(r.body.status)})`,
            })
          ) {
            this.events.ended(p);
          }
          this.pump();
        }
        return 'accepted';
      case 'busy':
        // Every slot of the model server is taken (one is still being released, or a canceled
        // prediction is winding down): wait here and try again, backing off until one frees.
        this.requeue(p);
        this.onServerBusy();
        this.log.debug({ prediction: p.id, retryMs: this.busyRetryMs }, 'model server busy (409); requeued');
        return 'requeued';
      case 'not-ready':
        this.requeue(p);
        this.log.warn({ prediction: p.id, message: r.message }, 'model server not ready (503); requeued');
        void this.model.check();
        return 'requeued';
      case 'invalid': {
        this.release(p.id);
        const fields = fromCogDetail(r.body);
        p.invalidFields = fields;
        p.end('failed', { error: `invalid input: ${fields.map((f) => f.description).join('; ')}` });
        this.events.ended(p);
        this.pump();
        return 'invalid';
      }
      case 'error':
        this.release(p.id);
        p.end('failed', { error: r.message });
        this.events.ended(p);
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

  private onServerBusy(): void {
    this.serverBusy = true;
    this.busyRetryMs = this.busyBackoff.next();
    this.busyTimer?.cancel();
    this.busyTimer = this.clock.setTimer(() => this.clearServerBusy(), this.busyRetryMs);
  }

  private clearServerBusy(): void {
    this.busyTimer?.cancel();
    this.busyTimer = undefined;
    this.serverBusy = false;
    this.pump();
  }

  /** A prediction left its slot on the model server: dispatch again at once, backoff reset. */
  slotFreed(): void {
    this.busyBackoff.reset();
    this.clearServerBusy();
  }

  // --- deadlines and cancels --------------------------------------------------------------

  private armTimeout(p: Prediction): void {
    const slot = this.slots.get(p.id);
    if (!slot || slot.timer || this.settings.predictTimeout <= 0) return;
    slot.timer = this.clock.setTimer(() => this.onPredictTimeout(p), this.settings.predictTimeout * 1000);
  }

  private onPredictTimeout(p: Prediction): void {
    const slot = this.slots.get(p.id);
    if (!slot || p.terminal) return;
    slot.timer = undefined;
    slot.zombie = true; // the slot stays taken until the model server confirms the cancel
    void this.cancelOnServer(p.id);
    const limit = this.settings.predictTimeout;
    p.end('failed', {
      error: `prediction timed out: it ran longer than the predict timeout of ${limit} s and was canceled`,
    });
    this.events.ended(p);
  }

  /**
   * Cancels `p` (not yet ended): a queued one ends now (`ended`); a running one is canceled on
   * the model server (`on-server`), which confirms with its terminal state; one whose create
   * is under way is canceled as soon as the model server accepts it (`pending`).
   */
  async cancel(p: Prediction): Promise<'ended' | 'on-server' | 'pending'> {
    p.cancelRequested = true;
    const queued = this.queue.indexOf(p);
    if (queued >= 0) {
      this.queue.splice(queued, 1);
      p.end('canceled');
      this.events.ended(p);
      return 'ended';
    }
    if (this.slots.has(p.id) && p.startedAt !== undefined) {
      await this.cancelOnServer(p.id);
      return 'on-server';
    }
    return 'pending';
  }

  /**
   * Asks the model server to cancel, and asks again every second until the prediction has
   * left its slot: a cancel that reaches the server before its worker has begun the
   * prediction can be lost.
   */
  private async cancelOnServer(id: string): Promise<void> {
    const slot = this.slots.get(id);
    if (!slot) return;
    if (!slot.cancelTimer) this.repeatCancel(id, slot);
    await this.sendCancel(id);
  }

  private repeatCancel(id: string, slot: Slot): void {
    slot.cancelTimer = this.clock.setTimer(() => {
      if (this.slots.get(id) !== slot) return;
      this.log.debug({ prediction: id }, 'repeating cancel');
      void this.sendCancel(id);
      this.repeatCancel(id, slot);
    }, CANCEL_REPEAT_MS);
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

  /** Frees the slot of `id`. */
  release(id: string): void {
    const slot = this.slots.get(id);
    if (!slot) return;
    slot.timer?.cancel();
    slot.cancelTimer?.cancel();
    this.slots.delete(id);
    this.events.changed();
  }

  /** Fails every prediction the model server held or would have run. */
  failAll(error: string): void {
    for (const [id, slot] of [...this.slots]) {
      this.release(id);
      if (slot.prediction.end('failed', { error })) this.events.ended(slot.prediction);
    }
    for (const p of this.queue.splice(0)) {
      if (p.end('failed', { error: `${error} before the prediction started` })) this.events.ended(p);
    }
    this.events.changed();
    this.events.settled();
  }

  /** Stops dispatching and frees every slot (what was running is not ended). */
  stop(): void {
    this.stopped = true;
    this.busyTimer?.cancel();
    for (const id of [...this.slots.keys()]) this.release(id);
  }
}
