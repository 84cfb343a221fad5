/**
 * One prediction as the sidecar keeps it: the record callers read (shaped like the hosted
 * prediction API's object), its timestamps (the Cog server sends none), and the ordered
 * stream of `output`, `logs`, `error` and `done` events derived from the Cog server's
 * webhooks.
 *
 * Cog's webhooks carry the whole state so far (all logs, all output items), not deltas, and
 * the server sends them concurrently, so they can arrive out of order: a stale snapshot may
 * follow a newer one and the terminal one may overtake the last progress update. Events are
 * therefore derived by growth: logs that extend what is known, output items past those
 * already sent, nothing after the terminal state.
 */

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
} from '../lib/prediction.ts';

/** A Cog server's webhook payload (and its async PUT answer). */
export interface CogPayload {
  id?: string;
  status?: string;
  output?: unknown;
  logs?: string;
  error?: string | null;
  metrics?: Record<string, unknown>;
}

/**
 * How the model's output streams, from its OpenAPI `Output` schema: `iterator` (a generator:
 * each item is an `output` event), `single` (one value, sent once at the end), or `unknown`
 * (no schema: items that arrive while running are events, and the final value fills in).
 */
export type OutputMode = 'iterator' | 'single' | 'unknown';

export function outputMode(openapi: unknown): OutputMode {
  const out = (openapi as { components?: { schemas?: { Output?: Record<string, unknown> } } } | undefined)
    ?.components?.schemas?.Output;
  if (!out || typeof out !== 'object') return 'unknown';
  return out['x-cog-array-type'] === 'iterator' ? 'iterator' : 'single';
}

function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((x, i) => deepEqual(x, b[i]));
  }
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  return (
    ka.length === kb.length &&
    ka.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
  );
}

type Listener = (e: StreamEvent) => void;

export interface PredictionInit {
  id: string;
  input: Record<string, unknown>;
  clock?: Clock;
  /** Caller's webhook and the events it wants; delivered by the sidecar. */
  webhook?: string;
  webhookEventsFilter?: string[];
}

export class Prediction {
  readonly id: string;
  readonly input: Record<string, unknown>;
  readonly webhook: string | undefined;
  readonly webhookEventsFilter: string[];
  status: PredictionStatus = 'starting';
  output: unknown = null;
  logs = '';
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
  private readonly events: StreamEvent[] = [];
  private readonly listeners = new Set<Listener>();
  private readonly doneWaiters: Array<() => void> = [];
  private readonly items: unknown[] = [];

  constructor(init: PredictionInit) {
    this.id = init.id;
    this.input = init.input;
    this.webhook = init.webhook;
    this.webhookEventsFilter = init.webhookEventsFilter ?? ['start', 'output', 'logs', 'completed'];
    this.clock = init.clock ?? realClock;
    this.createdAt = this.clock.now();
    this.createdMono = this.clock.mono();
  }

  get terminal(): boolean {
    return isTerminal(this.status);
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

  /**
   * Folds in one Cog webhook payload. Returns true when it ended the prediction. Payloads
   * after the end, and stale ones, change nothing.
   */
  applyCog(p: CogPayload, mode: OutputMode): boolean {
    if (this.terminal) return false;
    const status = p.status;
    if (status === 'processing' || status === 'starting') this.markStarted();
    if (typeof p.logs === 'string' && p.logs.length > this.logs.length && p.logs.startsWith(this.logs)) {
      const delta = p.logs.slice(this.logs.length);
      this.logs = p.logs;
      this.emit('logs', delta);
    }
    if (!isTerminal(status)) {
      if (mode !== 'single' && Array.isArray(p.output) && p.output.length > this.items.length) {
        for (const item of p.output.slice(this.items.length)) this.pushItem(item);
      }
      return false;
    }
    this.settleOutput(p.output, mode);
    const predictTime = p.metrics?.predict_time;
    this.end(status, {
      error: status === 'failed' ? (p.error ?? 'prediction failed') : null,
      predictTime: typeof predictTime === 'number' && Number.isFinite(predictTime) ? predictTime : undefined,
    });
    return true;
  }

  private pushItem(item: unknown): void {
    this.items.push(item);
    this.output = [...this.items];
    this.emit('output', outputText(item));
  }

  private settleOutput(final: unknown, mode: OutputMode): void {
    if (final === undefined || final === null) {
      if (mode === 'iterator' || this.items.length > 0) this.output = [...this.items];
      return;
    }
    if (mode === 'iterator' && Array.isArray(final)) {
      for (const item of final.slice(this.items.length)) this.pushItem(item);
      this.output = final;
      return;
    }
    if (mode === 'single') {
      this.output = final;
      this.emit('output', outputText(final));
      return;
    }
    // No schema: what streamed in while running decides how the final value reads.
    const sent = this.items;
    if (Array.isArray(final) && sent.length > 0 && sent.every((x, i) => deepEqual(x, final[i]))) {
      for (const item of final.slice(sent.length)) this.pushItem(item);
    } else if (!(sent.length === 1 && deepEqual(sent[0], final))) {
      this.emit('output', outputText(final));
    }
    this.output = final;
  }

  /**
   * Ends the prediction (once). `predictTime` is the model server's figure in seconds; without
   * it the sidecar's own clock from start to now stands in.
   */
  end(status: TerminalStatus, opts: { error?: string | null; predictTime?: number } = {}): boolean {
    if (this.terminal) return false;
    this.status = status;
    this.error = status === 'failed' ? (opts.error ?? 'prediction failed') : null;
    this.completedAt = this.clock.now();
    this.completedMono = this.clock.mono();
    const ran = this.dispatchedMono === undefined ? 0 : (this.completedMono - this.dispatchedMono) / 1000;
    const predict = opts.predictTime ?? ran;
    const queuedUntil = this.dispatchedMono ?? this.completedMono;
    this.metrics = {
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

  private emit(event: StreamEventName, data: string): void {
    const e: StreamEvent = { id: this.events.length + 1, event, data };
    this.events.push(e);
    for (const l of this.listeners) l(e);
  }

  /** Events after `afterId` (0 = all). */
  eventsSince(afterId: number): StreamEvent[] {
    return this.events.slice(Math.max(0, afterId));
  }

  /** Calls `fn` for every event from now on; returns the unsubscribe function. */
  subscribe(fn: Listener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** Resolves when it has ended, or after `ms` (then false). */
  waitDone(ms: number): Promise<boolean> {
    if (this.terminal) return Promise.resolve(true);
    return new Promise((resolveDone) => {
      const timer = setTimeout(() => {
        const i = this.doneWaiters.indexOf(onDone);
        if (i >= 0) this.doneWaiters.splice(i, 1);
        resolveDone(false);
      }, ms);
      const onDone = () => {
        clearTimeout(timer);
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
      ...this,
      version: extra.version ?? '',
      metrics: this.metrics,
      deployment: extra.deployment,
      hardware: extra.hardware,
      urls: self ? { get: self, cancel: `${self}/cancel`, stream: `${self}/stream` } : undefined,
    });
  }
}
