/**
 * How each prediction is followed on the model server: held (one synchronous
 * `PUT /predictions/{id}` that answers with the final state) or live (an async create whose
 * progress comes by webhook). A held prediction costs the Cog server no webhook client
 * (coglet 0.23 builds one, with the system's TLS roots, for every prediction that has a
 * webhook: milliseconds of CPU each), but brings its logs and output only at the end, and a
 * failed one's answer carries no logs at all. So with `--progress auto` a prediction is
 * followed live when any of these holds, and held otherwise:
 *
 * - the model's output is an iterator, or its schema says nothing about its output;
 * - its caller asked for live events: a webhook filter with `output` or `logs`, `stream:
 *   true` on the create, or an event stream opened while it waited in the queue;
 * - fewer than WARMUP predictions have ended since the sidecar started (nothing measured yet);
 * - one of the last WINDOW predictions ran `--live-after` seconds or longer (live logs
 *   matter), or failed (the next failure's logs then come with it).
 *
 * `--progress webhook` follows every prediction live, `--progress final` holds every one.
 */
import type { OutputMode } from './cog-webhooks.ts';
import type { Progress } from './config.ts';
import type { Prediction } from './prediction.ts';

/** Predictions measured before any is held. */
export const WARMUP = 3;
/** How many recent predictions the rule looks at. */
export const WINDOW = 8;

export class ProgressPolicy {
  private readonly mode: Progress;
  private readonly liveAfter: number;
  /** Ring of the last WINDOW predictions: true when one needs the next ones followed live. */
  private readonly recent: boolean[] = [];
  private next = 0;
  private ended = 0;
  /** How many of `recent` are true. */
  private flagged = 0;
  /** Predictions followed live and held so far. */
  private readonly counts = { live: 0, held: 0 };

  constructor(settings: { progress: Progress; liveAfter: number }) {
    this.mode = settings.progress;
    this.liveAfter = settings.liveAfter;
  }

  /** Predictions counted already: one sent again (the model server was busy, 409) counts once. */
  private readonly counted = new WeakSet<Prediction>();

  /** Whether `p` is followed live (by webhook) rather than held. */
  live(p: Prediction, output: OutputMode): boolean {
    const live = this.decide(p, output);
    if (!this.counted.has(p)) {
      this.counted.add(p);
      this.counts[live ? 'live' : 'held']++;
    }
    return live;
  }

  private decide(p: Prediction, output: OutputMode): boolean {
    if (this.mode !== 'auto') return this.mode === 'webhook';
    if (output !== 'single') return true;
    if (p.wantsLive()) return true;
    return this.ended < WARMUP || this.flagged > 0;
  }

  /** Notes a prediction that ended on the model server: how long it ran and how it ended. */
  record(p: Prediction): void {
    const flag = p.status === 'failed' || p.runningSeconds() >= this.liveAfter;
    if (this.recent.length < WINDOW) this.recent.push(flag);
    else {
      if (this.recent[this.next]) this.flagged--;
      this.recent[this.next] = flag;
      this.next = (this.next + 1) % WINDOW;
    }
    if (flag) this.flagged++;
    this.ended++;
  }

  /** For `GET /status`. */
  summary(): Record<string, unknown> {
    return {
      mode: this.mode,
      live_after: this.liveAfter,
      measured: this.ended,
      recent_long_or_failed: this.flagged,
      ...this.counts,
    };
  }
}
