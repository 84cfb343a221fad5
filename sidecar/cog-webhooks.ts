/**
 * The Cog server's webhook payloads folded into predictions.
 *
 * Cog's webhooks carry the whole state so far (all logs, all output items), not deltas, and
 * the server sends them concurrently, so they can arrive out of order: a stale snapshot may
 * follow a newer one and the terminal one may overtake the last progress update. Events are
 * therefore derived by growth: logs that extend what is known, output items past those
 * already sent, nothing after the terminal state. A held create's answer (`--progress
 * final`) is folded the same way.
 */
import type { Logger } from 'pino';
import { jsonBytes } from '../lib/bounded.ts';
import { isTerminal, modelMetrics } from '../lib/prediction.ts';
import type { Prediction } from './prediction.ts';
import type { Slots } from './slots.ts';

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

/**
 * Folds one Cog payload into `p`. Returns true when it ended the prediction. Payloads after
 * the end, and stale ones, change nothing.
 */
export function applyCog(p: Prediction, payload: CogPayload, mode: OutputMode): boolean {
  if (p.terminal) return false;
  const status = payload.status;
  if (status === 'processing' || status === 'starting') p.markStarted();
  const logs = payload.logs;
  // Only what extends the logs taken in so far (they are kept bounded, so counted by length).
  if (typeof logs === 'string' && logs.length > p.logsSeen) {
    p.appendLogs(logs.slice(p.logsSeen));
  }
  if (!isTerminal(status)) {
    if (mode !== 'single' && Array.isArray(payload.output) && payload.output.length > p.items.length) {
      for (const item of payload.output.slice(p.items.length)) p.pushItem(item);
    }
    return false;
  }
  settleOutput(p, payload.output, mode);
  const predictTime = payload.metrics?.predict_time;
  // Output past the cap: it ends failed (with no output), whatever the model server says.
  const overflow = p.outputOverflow && status === 'succeeded';
  p.end(overflow ? 'failed' : status, {
    error: overflow ? p.overflowError() : status === 'failed' ? (payload.error ?? 'prediction failed') : null,
    predictTime: typeof predictTime === 'number' && Number.isFinite(predictTime) ? predictTime : undefined,
    modelMetrics: modelMetrics(payload.metrics),
  });
  return true;
}

/** The output of a prediction that has just ended, with the events of what had not been sent. */
function settleOutput(p: Prediction, final: unknown, mode: OutputMode): void {
  if (p.outputOverflow) return;
  if (final === undefined || final === null) {
    if (mode === 'iterator' || p.items.length > 0) p.output = [...p.items];
    return;
  }
  if (mode === 'iterator' && Array.isArray(final)) {
    for (const item of final.slice(p.items.length)) p.pushItem(item);
    if (!p.outputOverflow) p.output = final;
    return;
  }
  if (mode === 'single') {
    if (!p.takeOutput(jsonBytes(final))) return;
    p.output = final;
    p.sendOutput(final);
    return;
  }
  // No schema: what streamed in while running decides how the final value reads.
  const sent = p.items;
  if (Array.isArray(final) && sent.length > 0 && sent.every((x, i) => deepEqual(x, final[i]))) {
    for (const item of final.slice(sent.length)) p.pushItem(item);
    if (p.outputOverflow) return;
  } else if (!(sent.length === 1 && deepEqual(sent[0], final))) {
    // A final value unlike the items: it replaces them, and counts in their stead.
    p.outputBytes = 0;
    if (!p.takeOutput(jsonBytes(final))) return;
    p.sendOutput(final);
  }
  p.output = final;
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

export interface CogWebhookEvents {
  /** `p` started running (its first sign of life from the model server). */
  started(p: Prediction): void;
  /** `p` ended. */
  ended(p: Prediction): void;
}

/** Routes each payload the Cog server sends to its prediction and its slot. */
export class CogWebhooks {
  private readonly slots: Slots;
  private readonly find: (id: string) => Prediction | undefined;
  private readonly mode: () => OutputMode;
  private readonly log: Logger;
  private readonly events: CogWebhookEvents;

  constructor(
    deps: {
      slots: Slots;
      /** The prediction with this id, if the sidecar still keeps it. */
      find(id: string): Prediction | undefined;
      /** The output mode of the model being served. */
      mode(): OutputMode;
      log: Logger;
    },
    events: CogWebhookEvents,
  ) {
    this.slots = deps.slots;
    this.find = deps.find;
    this.mode = deps.mode;
    this.log = deps.log;
    this.events = events;
  }

  /** Folds one payload for prediction `id`. */
  apply(id: string, payload: CogPayload): void {
    const slot = this.slots.get(id);
    const terminal = isTerminal(payload.status);
    if (slot?.zombie) {
      if (terminal) {
        this.slots.release(id);
        this.log.info(
          { prediction: id, status: payload.status },
          'the model server finished a timed-out prediction',
        );
        this.slots.slotFreed();
      }
      return;
    }
    const p = this.find(id);
    if (!p || p.terminal) return;
    const before = p.startedAt;
    const ended = applyCog(p, payload, this.mode());
    if (before === undefined && p.startedAt !== undefined) this.events.started(p);
    if (ended) {
      this.slots.release(id);
      this.events.ended(p);
      this.slots.slotFreed();
    }
  }
}
