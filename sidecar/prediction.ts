/**
 * One prediction as the sidecar keeps it: the record callers read (shaped like the hosted
 * prediction API's object, built by lib/prediction.ts), its timestamps (the Cog server sends
 * none, so they come from the sidecar's clock), and the ordered stream of `output`, `logs`,
 * `error` and `done` events. What the Cog server reports is folded in by cog-webhooks.ts.
 */

import { boundLogs, byteLength, jsonBytes, MAX_OUTPUT_BYTES, outputTooLarge } from '../lib/bounded.ts';
import { type Clock, realClock } from '../lib/clock.ts';
import type { InvalidField } from '../lib/openapi-input.ts';
import {
  doneData,
  isTerminal,
  outputText,
  type PredictionMetrics,
  type PredictionObject,
  type PredictionStatus,
  predictionObject,
  type StreamEvent,
  type StreamEventName,
  type TerminalStatus,
  WEBHOOK_EVENTS,
} from '../lib/prediction.ts';

/** A stream event with the output item it carries (`output` events), for the create stream. */
export type PredictionEvent = StreamEvent & { value?: unknown };

type Listener = (e: PredictionEvent) => void;

export interface PredictionInit {
  id: string;
  input: Record<string, unknown>;
  clock?: Clock;
  /** Caller's webhook and the events it wants; delivered by the sidecar. */
  webhook?: string;
  webhookEventsFilter?: string[];
  /** The caller asked for live events (`stream: true`). */
  stream?: boolean;
  /** Where its output files go (`<url>/<filename>`): the gateway's signed upload URL. */
  uploadUrl?: string | undefined;
  /** Bounds in bytes (DEFAULT_BOUNDS when not given). */
  bounds?: Partial<PredictionBounds>;
}

/** What one prediction may hold in memory, in bytes. */
export interface PredictionBounds {
  /** Logs kept: the last ones, behind a marker line counting those dropped. */
  logBytes: number;
  /** Output: past it the prediction ends `failed`. */
  outputBytes: number;
  /** Stream events kept for replay: the oldest go first (ids stay as they were). */
  eventBytes: number;
}

export const DEFAULT_BOUNDS: PredictionBounds = {
  logBytes: 1 << 20,
  outputBytes: MAX_OUTPUT_BYTES,
  eventBytes: 32 << 20,
};

export class Prediction {
  readonly id: string;
  readonly input: Record<string, unknown>;
  readonly webhook: string | undefined;
  readonly webhookEventsFilter: string[];
  /** The caller asked for live events. */
  readonly stream: boolean;
  readonly uploadUrl: string | undefined;
  status: PredictionStatus = 'starting';
  output: unknown = null;
  /** Its logs: the last `bounds.logBytes` bytes, after a marker line when earlier ones were dropped. */
  logs = '';
  /** Characters of the model server's logs taken in so far (its webhooks carry all of them). */
  logsSeen = 0;
  /** Bytes of output taken in (items sent, or the final value). */
  outputBytes = 0;
  /** The output went past `bounds.outputBytes`: no more is kept and it ends `failed`. */
  outputOverflow = false;
  /** Its final record was read (or its `completed` webhook sent): first to go past the retention cap. */
  collected = false;
  readonly bounds: PredictionBounds;
  error: string | null = null;
  /** Epoch ms. */
  readonly createdAt: number;
  startedAt: number | undefined;
  completedAt: number | undefined;
  metrics: PredictionMetrics = {};
  /** Exact cost, a decimal string in the price's currency; set when it ends. */
  cost: string | undefined;
  /** Set when the model server took it (monotonic ms). */
  dispatchedMono: number | undefined;
  readonly createdMono: number;
  completedMono: number | undefined;
  /** Asked to stop: queued ones end at once, running ones when the model server confirms. */
  cancelRequested = false;
  /** Why the model server refused the input, when it did. */
  invalidFields: InvalidField[] | undefined;

  private readonly clock: Clock;
  private readonly events: PredictionEvent[] = [];
  /** Ids given so far; bytes of the data of the events kept. */
  private lastEventId = 0;
  private eventBytes = 0;
  /** Listeners that want live events (event streams opened by callers). */
  private watchers = 0;
  private readonly listeners = new Set<Listener>();
  private readonly doneWaiters: Array<() => void> = [];
  private readonly sent: unknown[] = [];

  constructor(init: PredictionInit) {
    this.id = init.id;
    this.input = init.input;
    this.webhook = init.webhook;
    this.webhookEventsFilter = init.webhookEventsFilter ?? [...WEBHOOK_EVENTS];
    this.stream = init.stream === true;
    this.uploadUrl = init.uploadUrl;
    this.bounds = { ...DEFAULT_BOUNDS, ...init.bounds };
    this.clock = init.clock ?? realClock;
    this.createdAt = this.clock.now();
    this.createdMono = this.clock.mono();
  }

  get terminal(): boolean {
    return isTerminal(this.status);
  }

  /**
   * Something wants its logs and output as they happen: the caller asked (`stream: true`),
   * its webhook wants `output` or `logs` events, or an event stream is open on it.
   */
  wantsLive(): boolean {
    if (this.stream || this.watchers > 0) return true;
    if (!this.webhook) return false;
    return this.webhookEventsFilter.includes('output') || this.webhookEventsFilter.includes('logs');
  }

  /** The model server accepted it: it holds a slot and runs. */
  markStarted(): void {
    if (this.terminal || this.startedAt !== undefined) return;
    this.startedAt = this.clock.now();
    this.dispatchedMono = this.clock.mono();
    this.status = 'processing';
  }

  /** Back to waiting: the model server turned it away after all (busy, not ready). */
  unstart(): void {
    if (this.terminal) return;
    this.startedAt = undefined;
    this.dispatchedMono = undefined;
    this.status = 'starting';
  }

  /** Output items sent so far (each an `output` event). */
  get items(): readonly unknown[] {
    return this.sent;
  }

  /** New log text (an extension of `logs`): kept and sent as a `logs` event. */
  appendLogs(delta: string): void {
    if (this.terminal || !delta) return;
    this.logsSeen += delta.length;
    this.logs = boundLogs(this.logs + delta, this.bounds.logBytes);
    // One event holds at most the logs' bound (its tail, marked, when larger).
    this.emit('logs', boundLogs(delta, this.bounds.logBytes));
  }

  /**
   * Counts `bytes` more of output against the cap; false (and the output marked overflowed)
   * when it goes past.
   */
  takeOutput(bytes: number): boolean {
    if (this.outputOverflow) return false;
    this.outputBytes += bytes;
    if (this.outputBytes <= this.bounds.outputBytes) return true;
    this.outputOverflow = true;
    this.output = null;
    this.sent.length = 0;
    return false;
  }

  /** One more output item: the output becomes the items so far, and the item is sent. */
  pushItem(item: unknown): void {
    if (!this.takeOutput(jsonBytes(item))) return;
    this.sent.push(item);
    this.output = [...this.sent];
    this.emit('output', outputText(item), item);
  }

  /** Sends `value` as one `output` event (the output itself is set by the caller). */
  sendOutput(value: unknown): void {
    this.emit('output', outputText(value), value);
  }

  /** The error it ends with when its output went past the cap. */
  overflowError(): string {
    return outputTooLarge(this.outputBytes, this.bounds.outputBytes);
  }

  /**
   * Ends the prediction (once). `predictTime` is the model server's figure in seconds; without
   * it the sidecar's own clock from start to now stands in. `modelMetrics` are the metrics the
   * model recorded itself (Cog's `record_metric`): they join the timings in `metrics`.
   */
  end(
    status: TerminalStatus,
    opts: {
      error?: string | null;
      predictTime?: number;
      modelMetrics?: Record<string, unknown> | undefined;
    } = {},
  ): boolean {
    if (this.terminal) return false;
    this.status = status;
    this.error = status === 'failed' ? (opts.error ?? 'prediction failed') : null;
    this.completedAt = this.clock.now();
    this.completedMono = this.clock.mono();
    const ran = this.dispatchedMono === undefined ? 0 : (this.completedMono - this.dispatchedMono) / 1000;
    const predict = opts.predictTime ?? ran;
    const queuedUntil = this.dispatchedMono ?? this.completedMono;
    this.metrics = {
      ...opts.modelMetrics,
      predict_time: predict,
      total_time: (this.completedMono - this.createdMono) / 1000,
      queue_time: (queuedUntil - this.createdMono) / 1000,
    };
    if (status === 'failed') this.emit('error', this.error ?? 'prediction failed');
    this.emit('done', doneData(status));
    for (const w of this.doneWaiters.splice(0)) w();
    return true;
  }

  /** Wall-clock seconds the model server has held it so far (0 when not started). */
  runningSeconds(): number {
    if (this.dispatchedMono === undefined) return 0;
    return ((this.completedMono ?? this.clock.mono()) - this.dispatchedMono) / 1000;
  }

  private emit(event: StreamEventName, data: string, value?: unknown): void {
    const id = ++this.lastEventId;
    const e: PredictionEvent = value === undefined ? { id, event, data } : { id, event, data, value };
    this.events.push(e);
    // Kept for replay within the bound: the oldest go first (the last one always stays).
    this.eventBytes += byteLength(data);
    while (this.eventBytes > this.bounds.eventBytes && this.events.length > 1) {
      this.eventBytes -= byteLength(this.events.shift()!.data);
    }
    for (const l of this.listeners) l(e);
  }

  /**
   * Events after `afterId` (0 = all) that are still kept: past the event bound the oldest
   * are gone, and a replay starts at the first one kept.
   */
  eventsSince(afterId: number): PredictionEvent[] {
    const first = this.events[0]?.id ?? 1;
    return this.events.slice(Math.max(0, afterId - first + 1));
  }

  /** Bytes it holds in logs, output and kept events (roughly what retaining it costs). */
  heldBytes(): number {
    return byteLength(this.logs) + this.outputBytes + this.eventBytes;
  }

  /**
   * Calls `fn` for every event from now on; returns the unsubscribe function. `watch`: a
   * caller's event stream, which wants the events live.
   */
  subscribe(fn: Listener, watch = false): () => void {
    this.listeners.add(fn);
    if (watch) this.watchers++;
    return () => {
      if (this.listeners.delete(fn) && watch) this.watchers--;
    };
  }

  /** Resolves when it has ended, or after `ms` (then false). */
  waitDone(ms: number): Promise<boolean> {
    if (this.terminal) return Promise.resolve(true);
    return new Promise((resolveDone) => {
      const timer = this.clock.setTimer(() => {
        const i = this.doneWaiters.indexOf(onDone);
        if (i >= 0) this.doneWaiters.splice(i, 1);
        resolveDone(false);
      }, ms);
      const onDone = () => {
        timer.cancel();
        resolveDone(true);
      };
      this.doneWaiters.push(onDone);
    });
  }

  /** The object callers read. `base` is the sidecar's URL, for `urls`. */
  toJSON(
    extra: { base?: string; version?: string; deployment?: string; hardware?: string } = {},
  ): PredictionObject {
    const self = extra.base ? `${extra.base}/predictions/${encodeURIComponent(this.id)}` : undefined;
    return predictionObject({
      id: this.id,
      version: extra.version ?? '',
      input: this.input,
      output: this.output,
      logs: this.logs,
      error: this.error,
      status: this.status,
      createdAt: this.createdAt,
      startedAt: this.startedAt,
      completedAt: this.completedAt,
      metrics: this.metrics,
      cost: this.cost,
      deployment: extra.deployment,
      hardware: extra.hardware,
      urls: self ? { get: self, cancel: `${self}/cancel`, stream: `${self}/stream` } : undefined,
    });
  }
}
