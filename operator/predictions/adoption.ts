/**
 * Replicas and adoption: every replica tells the store it is alive (a heartbeat each
 * `heartbeatMs`); the unfinished predictions of a replica silent for `staleMs` (killed, out of
 * memory, its node lost) or that left are adopted by one of the others, which takes each over
 * (`takeOver`: followed again on its instance, or queued again). A store one process uses
 * alone (embedded, memory) has no other replica: whatever another process drove is adopted
 * at once, so a restarted operator picks up where the killed one stopped.
 */
import type { Logger } from 'pino';
import { Backoff } from '../../lib/backoff.ts';
import { type Clock, sleep } from '../../lib/clock.ts';
import type { PredictionStore, StoredPrediction } from './store.ts';

export interface AdoptionTiming {
  /** Between two heartbeats (default 1 s). */
  heartbeatMs: number;
  /** A replica silent this long has stopped (default 5 s). */
  staleMs: number;
}

export interface AdoptionOptions extends Partial<AdoptionTiming> {
  replica: string;
  /** The open store (undefined until it opens). */
  store: () => PredictionStore | undefined;
  clock: Clock;
  log: Logger;
  /** Drives an adopted prediction from now on. */
  takeOver(rec: StoredPrediction): Promise<void>;
}

export class Adoption {
  private readonly opts: AdoptionOptions;
  private readonly timing: AdoptionTiming;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  /** Why the last heartbeat failed; undefined after one succeeded. */
  private failure: string | undefined = 'no heartbeat yet';
  /** Adopted, not taken over yet (the store failed meanwhile): tried again. */
  private readonly retry: StoredPrediction[] = [];

  constructor(opts: AdoptionOptions) {
    this.opts = opts;
    this.timing = { heartbeatMs: opts.heartbeatMs ?? 1000, staleMs: opts.staleMs ?? 5000 };
  }

  /** Why this replica cannot use the store now; undefined when it can. */
  problem(): string | undefined {
    return this.failure && `the prediction store cannot be reached: ${this.failure}`;
  }

  /**
   * Runs `open` (until it succeeds), then heartbeats and adopts until `stop`. Resolves after
   * the first try of `open`, whether it opened or not (it is tried again meanwhile).
   */
  run(open: () => Promise<void>): Promise<void> {
    let tried!: () => void;
    const first = new Promise<void>((r) => {
      tried = r;
    });
    this.running ??= this.loop(open, tried).finally(tried);
    return first;
  }

  private async loop(open: () => Promise<void>, tried: () => void): Promise<void> {
    const { clock, log } = this.opts;
    const signal = this.abort.signal;
    const backoff = new Backoff(200, 5000);
    while (!signal.aborted) {
      try {
        await open();
        tried();
        break;
      } catch (err) {
        this.failure = (err as Error).message;
        log.warn({ err: this.failure }, 'cannot open the prediction store; trying again');
        tried();
        await sleep(backoff.next(), signal, clock);
      }
    }
    while (!signal.aborted) {
      const store = this.opts.store();
      if (!store) return;
      try {
        await store.heartbeat(this.opts.replica);
        if (this.failure) log.info('the prediction store answers');
        this.failure = undefined;
        const adopted = await store.adopt(this.opts.replica, store.exclusive ? 0 : this.timing.staleMs);
        if (adopted.length)
          log.info({ predictions: adopted.length }, 'adopting the predictions of a replica that stopped');
        for (const rec of [...this.retry.splice(0), ...adopted]) {
          if (signal.aborted) break;
          try {
            await this.opts.takeOver(rec);
          } catch (err) {
            log.warn(
              { prediction: rec.id, err: (err as Error).message },
              'cannot take a prediction over yet',
            );
            this.retry.push(rec);
          }
        }
      } catch (err) {
        if (!this.failure) log.warn({ err: (err as Error).message }, 'the prediction store does not answer');
        this.failure = (err as Error).message;
      }
      await sleep(this.timing.heartbeatMs, signal, clock);
    }
  }

  /** Stops heartbeating and leaves: what this replica still drives may be adopted at once. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.running?.catch(() => {});
    const store = this.opts.store();
    if (!store || this.failure) return;
    await store
      .leave(this.opts.replica)
      .catch((err: unknown) =>
        this.opts.log.warn({ err: (err as Error).message }, 'cannot tell the store this replica left'),
      );
  }
}
