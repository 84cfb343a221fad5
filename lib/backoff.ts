/**
 * Exponential backoff with jitter: every retry of the operator and the sidecar (reconnecting
 * to the API server, to a model server, redelivering a webhook) waits by one of these.
 */
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
    const base = Math.min(this.initialMs * 2 ** this.attempt, this.maxMs);
    this.attempt++;
    return Math.round(base * (1 + 0.2 * this.random()));
  }

  reset(): void {
    this.attempt = 0;
  }
}
