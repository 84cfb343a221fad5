/**
 * Exponential backoff: every retry of the operator, the sidecar and the harness (reconnecting
 * to the API server, to a model server, redelivering a webhook, requeueing a key, restarting
 * a container) waits by this formula.
 */

/** The delay before retry number `attempt` (0 = the first): `initialMs * 2^attempt`, at most `maxMs`. */
export function exponentialDelay(attempt: number, initialMs: number, maxMs: number): number {
  return Math.min(initialMs * 2 ** attempt, maxMs);
}

/** Successive delays with up to 20% jitter added, for one thing being retried. */
export class Backoff {
  private readonly initialMs: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private attempt = 0;

  constructor(initialMs = 800, maxMs = 30_000, random: () => number = Math.random) {
    this.initialMs = initialMs;
    this.maxMs = maxMs;
    this.random = random;
  }

  /** The next delay: `initial * 2^attempt` capped at `max`, then up to 20% jitter added. */
  next(): number {
    const base = exponentialDelay(this.attempt, this.initialMs, this.maxMs);
    this.attempt++;
    return Math.round(base * (1 + 0.2 * this.random()));
  }

  reset(): void {
    this.attempt = 0;
  }
}
