/**
 * A fence for the leader's writes. A term opens when this replica acquires the Lease and
 * lasts until a deadline on its own clock (the last renewal it sent plus the renew deadline,
 * which is shorter than the lease duration, so the term ends before any other candidate may
 * take the Lease over). Renewing moves the deadline; losing the Lease, shutting down or the
 * deadline passing ends the term.
 *
 * A client made with `KubeClient.fenced(fence)` checks the fence before each write and again
 * just before it sends it, and aborts writes in flight when the term ends. The deadline is
 * checked against the clock at the moment of writing, not only by a timer: a process paused
 * (SIGSTOP, a long GC pause, a frozen VM) whose clock jumped past the deadline refuses its
 * next write before any timer has had a chance to run.
 */

export class FencedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FencedError';
  }
}

export const isFenced = (err: unknown): boolean =>
  err instanceof FencedError || (err instanceof Error && err.cause instanceof FencedError);

/** What a fenced client needs of a fence. */
export interface WriteFence {
  /** Throws FencedError unless a term is open and its deadline has not passed. */
  check(what: string): void;
  /** Aborts when the current term ends (already aborted when none is open). */
  readonly signal: AbortSignal;
}

const closedSignal = AbortSignal.abort(new FencedError('not leading'));

export class Fence implements WriteFence {
  private term: AbortController | undefined;
  private deadline = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly now: () => number;

  constructor(opts: { now?: () => number } = {}) {
    this.now = opts.now ?? Date.now;
  }

  /** True while a term is open and its deadline has not passed. */
  get open(): boolean {
    return this.term !== undefined && !this.term.signal.aborted && this.now() < this.deadline;
  }

  /** When the current term ends unless renewed (ms since the epoch; Infinity for never). */
  get validUntil(): number {
    return this.term ? this.deadline : 0;
  }

  get signal(): AbortSignal {
    return this.term?.signal ?? closedSignal;
  }

  /** Opens a term lasting until `validUntil` (ends the previous one first). */
  begin(validUntil: number): AbortSignal {
    this.end('a new term began');
    this.term = new AbortController();
    this.extend(validUntil);
    return this.term.signal;
  }

  /** Moves the current term's deadline (never backwards). */
  extend(validUntil: number): void {
    if (!this.term || this.term.signal.aborted) return;
    this.deadline = Math.max(this.deadline, validUntil);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (Number.isFinite(this.deadline)) this.arm();
  }

  /** Ends the current term: its signal aborts and fenced writes fail until the next term. */
  end(reason = 'the term ended'): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const term = this.term;
    if (term && !term.signal.aborted) term.abort(new FencedError(reason));
  }

  check(what: string): void {
    if (!this.term || this.term.signal.aborted)
      throw new FencedError(`${what}: refused, this replica does not lead`);
    if (this.now() >= this.deadline) {
      this.end('the lease could have expired');
      throw new FencedError(`${what}: refused, this replica's lease could have expired`);
    }
  }

  private arm(): void {
    const term = this.term;
    // setTimeout holds at most ~24.8 days; re-arm past that.
    const ms = Math.min(Math.max(0, this.deadline - this.now()), 2 ** 31 - 1);
    this.timer = setTimeout(() => {
      if (this.term !== term) return;
      if (this.now() >= this.deadline) this.end('the lease could have expired');
      else this.arm();
    }, ms);
    this.timer.unref?.();
  }
}
