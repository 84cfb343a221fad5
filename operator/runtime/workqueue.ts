/**
 * The work queue between informers and reconcilers, shaped like client-go's:
 *
 * - it holds keys (`namespace/name`), never objects, so a burst of events for one object
 *   becomes one reconcile;
 * - a key is handed to one worker at a time: a key added while it is being processed is
 *   queued again when that worker calls `done`;
 * - failures are retried with per-key exponential backoff (5 ms doubling, capped at 1000 s)
 *   under an overall token bucket (10 per second, bursts of 100), the larger delay winning.
 */
import { exponentialDelay } from '../../lib/backoff.ts';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';

/** How long to wait before retrying a key; `forget` resets a key's history. */
export interface RateLimiter {
  when(key: string): number;
  forget(key: string): void;
  retries(key: string): number;
}

/** Per-key delay `baseMs * 2^failures`, capped at `maxMs`. */
export class ExponentialBackoff implements RateLimiter {
  private readonly failures = new Map<string, number>();
  private readonly baseMs: number;
  private readonly maxMs: number;

  constructor(baseMs = 5, maxMs = 1_000_000) {
    this.baseMs = baseMs;
    this.maxMs = maxMs;
  }

  when(key: string): number {
    const n = this.failures.get(key) ?? 0;
    this.failures.set(key, n + 1);
    return exponentialDelay(n, this.baseMs, this.maxMs);
  }

  forget(key: string): void {
    this.failures.delete(key);
  }

  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }
}

/**
 * A token bucket shared by every key: `burst` tokens, refilled at `qps` per second. Taking a
 * token when none is left reserves a future one and returns how long to wait for it.
 */
export class TokenBucket implements RateLimiter {
  private readonly qps: number;
  private readonly burst: number;
  private readonly clock: Clock;
  private tokens: number;
  private last: number;

  constructor(qps = 10, burst = 100, clock: Clock = realClock) {
    this.qps = qps;
    this.burst = burst;
    this.clock = clock;
    this.tokens = burst;
    this.last = clock.now();
  }

  when(_key: string): number {
    const now = this.clock.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.qps);
    this.last = now;
    this.tokens -= 1;
    return this.tokens >= 0 ? 0 : (-this.tokens / this.qps) * 1000;
  }

  forget(_key: string): void {}

  retries(_key: string): number {
    return 0;
  }
}

/** The longest delay of several limiters (each one is consulted every time). */
export class MaxOf implements RateLimiter {
  private readonly limiters: RateLimiter[];

  constructor(...limiters: RateLimiter[]) {
    this.limiters = limiters;
  }

  when(key: string): number {
    return Math.max(...this.limiters.map((l) => l.when(key)));
  }

  forget(key: string): void {
    for (const l of this.limiters) l.forget(key);
  }

  retries(key: string): number {
    return Math.max(...this.limiters.map((l) => l.retries(key)));
  }
}

/** client-go's default controller rate limiter. */
export function defaultRateLimiter(clock: Clock = realClock): RateLimiter {
  return new MaxOf(new ExponentialBackoff(5, 1_000_000), new TokenBucket(10, 100, clock));
}

/** What a queue reports; `metrics.ts` binds it to Prometheus. */
export interface QueueMetrics {
  added(): void;
  depth(n: number): void;
  retried(): void;
  /** Seconds a key waited in the queue before a worker took it. */
  queued(seconds: number): void;
  /** Seconds a worker spent on a key. */
  worked(seconds: number): void;
}

export interface WorkQueueOptions {
  clock?: Clock;
  rateLimiter?: RateLimiter;
  metrics?: QueueMetrics;
}

export class WorkQueue {
  private readonly clock: Clock;
  private readonly limiter: RateLimiter;
  private readonly metrics: QueueMetrics | undefined;
  /** Keys ready to hand out, oldest first. */
  private readonly ready: string[] = [];
  /** Keys that need processing: in `ready`, or to be re-queued when their worker is done. */
  private readonly dirty = new Set<string>();
  /** Keys a worker holds. */
  private readonly processing = new Set<string>();
  /** Delayed adds, at most one timer per key (the earliest). */
  private readonly delayed = new Map<string, { at: number; timer: Timer }>();
  private readonly addedAt = new Map<string, number>();
  private readonly startedAt = new Map<string, number>();
  private readonly getters: ((key: string | undefined) => void)[] = [];
  private idleWaiters: (() => void)[] = [];
  private shuttingDown = false;

  constructor(opts: WorkQueueOptions = {}) {
    this.clock = opts.clock ?? realClock;
    this.limiter = opts.rateLimiter ?? defaultRateLimiter(this.clock);
    this.metrics = opts.metrics;
  }

  /** Keys waiting for a worker (not counting delayed adds or keys being processed). */
  get length(): number {
    return this.ready.length;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown;
  }

  /** Queues `key` unless it is already queued; a key being processed is queued again when done. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.metrics?.added();
    this.dirty.add(key);
    this.addedAt.set(key, this.clock.now());
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Adds `key` after `ms`; of several delayed adds of one key the earliest wins. */
  addAfter(key: string, ms: number): void {
    if (this.shuttingDown) return;
    if (ms <= 0) {
      this.add(key);
      return;
    }
    const at = this.clock.now() + ms;
    const existing = this.delayed.get(key);
    if (existing && existing.at <= at) return;
    existing?.timer.cancel();
    const timer = this.clock.setTimer(() => {
      this.delayed.delete(key);
      this.add(key);
    }, ms);
    this.delayed.set(key, { at, timer });
  }

  /** Adds `key` after its rate-limited delay: the retry path for a failed reconcile. */
  addRateLimited(key: string): void {
    if (this.shuttingDown) return;
    this.metrics?.retried();
    this.addAfter(key, this.limiter.when(key));
  }

  /** Clears `key`'s failure history: call after it was processed successfully. */
  forget(key: string): void {
    this.limiter.forget(key);
  }

  /** How many times `key` has been retried since it was last forgotten. */
  retries(key: string): number {
    return this.limiter.retries(key);
  }

  /**
   * The next key to process, waiting for one if none is ready; `undefined` once the queue is
   * shut down. The caller must call `done(key)` when it has finished with it.
   */
  get(): Promise<string | undefined> {
    if (this.shuttingDown) return Promise.resolve(undefined);
    const key = this.ready.shift();
    if (key !== undefined) return Promise.resolve(this.take(key));
    return new Promise((resolve) => this.getters.push(resolve));
  }

  /** Marks `key` as no longer processed; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    if (!this.processing.delete(key)) return;
    const started = this.startedAt.get(key);
    this.startedAt.delete(key);
    if (started !== undefined) this.metrics?.worked((this.clock.now() - started) / 1000);
    if (this.shuttingDown) {
      if (this.processing.size === 0) this.wakeIdle();
      return;
    }
    if (this.dirty.has(key)) this.push(key);
  }

  /**
   * Stops the queue: new adds are ignored, delayed adds are dropped, and workers waiting in
   * `get` (and every later `get`) receive `undefined`. Keys not yet handed out are dropped
   * too: reconciles are level-triggered, so whoever starts next lists everything again.
   */
  shutDown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) timer.cancel();
    this.delayed.clear();
    this.ready.length = 0;
    for (const key of this.dirty) if (!this.processing.has(key)) this.addedAt.delete(key);
    this.dirty.clear();
    this.metrics?.depth(0);
    for (const resolve of this.getters.splice(0)) resolve(undefined);
    if (this.processing.size === 0) this.wakeIdle();
  }

  /**
   * Shuts the queue down and waits until every key being processed is `done`, or `timeoutMs`
   * passes. Resolves true when it drained, false on the deadline.
   */
  async shutDownWithDrain(timeoutMs: number): Promise<boolean> {
    this.shutDown();
    if (this.processing.size === 0) return true;
    return new Promise((resolve) => {
      const timer = this.clock.setTimer(() => {
        this.idleWaiters = this.idleWaiters.filter((w) => w !== onIdle);
        resolve(false);
      }, timeoutMs);
      const onIdle = () => {
        timer.cancel();
        resolve(true);
      };
      this.idleWaiters.push(onIdle);
    });
  }

  private push(key: string): void {
    const getter = this.getters.shift();
    if (getter) {
      getter(this.take(key));
      return;
    }
    this.ready.push(key);
    this.metrics?.depth(this.ready.length);
  }

  private take(key: string): string {
    this.dirty.delete(key);
    this.processing.add(key);
    const now = this.clock.now();
    const added = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (added !== undefined) this.metrics?.queued((now - added) / 1000);
    this.startedAt.set(key, now);
    this.metrics?.depth(this.ready.length);
    return key;
  }

  private wakeIdle(): void {
    for (const wake of this.idleWaiters.splice(0)) wake();
  }
}
