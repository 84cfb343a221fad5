/**
 * Time spent in each state of an instance, on one monotonic clock (`now`, in ms: the
 * sidecar's `Clock.mono`): the state changes at instants, so the per-state totals always add
 * up to the time since the clock started.
 */
export class StateClock<S extends string> {
  private current: S;
  private since: number;
  private readonly startedAt: number;
  private readonly totals = new Map<S, number>();
  private readonly states: readonly S[];
  private readonly now: () => number;
  private frozenAt: number | undefined;

  constructor(initial: S, states: readonly S[], now: () => number) {
    this.states = states;
    this.now = now;
    this.current = initial;
    this.startedAt = this.now();
    this.since = this.startedAt;
    for (const s of states) this.totals.set(s, 0);
  }

  get state(): S {
    return this.current;
  }

  /** Stops the clock now: the totals stay what they are (the instance's last figures). */
  freeze(): void {
    this.frozenAt ??= this.now();
  }

  get frozen(): boolean {
    return this.frozenAt !== undefined;
  }

  private time(): number {
    return this.frozenAt ?? this.now();
  }

  /** Moves to `next` now; a move to the current state changes nothing. */
  enter(next: S): void {
    if (next === this.current || this.frozenAt !== undefined) return;
    const t = this.now();
    this.totals.set(this.current, (this.totals.get(this.current) ?? 0) + (t - this.since));
    this.current = next;
    this.since = t;
  }

  /** Seconds per state up to now, including the open interval of the current state. */
  seconds(): Record<S, number> {
    const t = this.time();
    const out = {} as Record<S, number>;
    for (const s of this.states) {
      const open = s === this.current ? t - this.since : 0;
      out[s] = ((this.totals.get(s) ?? 0) + open) / 1000;
    }
    return out;
  }

  /** Seconds since the clock started. */
  elapsed(): number {
    return (this.time() - this.startedAt) / 1000;
  }
}
