import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/clock.ts';
import {
  defaultRateLimiter,
  ExponentialBackoff,
  type QueueMetrics,
  TokenBucket,
  WorkQueue,
} from './workqueue.ts';

/** Lets pending promise callbacks run. */
const settle = () => new Promise((r) => setImmediate(r));

describe('ExponentialBackoff', () => {
  it('waits 5 ms, then doubles, capped at 1000 s', () => {
    const b = new ExponentialBackoff();
    const delays = Array.from({ length: 22 }, () => b.when('k'));
    expect(delays.slice(0, 6)).toEqual([5, 10, 20, 40, 80, 160]);
    expect(delays[17]).toBe(5 * 2 ** 17); // 655.36 s, the last one under the cap
    expect(delays.slice(18)).toEqual([1_000_000, 1_000_000, 1_000_000, 1_000_000]);
    expect(b.retries('k')).toBe(22);
  });

  it('keeps each key on its own, and forget starts a key over', () => {
    const b = new ExponentialBackoff();
    b.when('a');
    b.when('a');
    expect(b.when('b')).toBe(5);
    expect(b.when('a')).toBe(20);
    b.forget('a');
    expect(b.when('a')).toBe(5);
  });
});

describe('TokenBucket', () => {
  it('lets a burst of 100 through, then 10 per second', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(10, 100, clock);
    for (let i = 0; i < 100; i++) expect(bucket.when('k')).toBe(0);
    expect(bucket.when('k')).toBeCloseTo(100);
    expect(bucket.when('k')).toBeCloseTo(200);
    clock.advance(1_000); // ten tokens back, two of them already promised
    for (let i = 0; i < 8; i++) expect(bucket.when('k')).toBe(0);
    expect(bucket.when('k')).toBeCloseTo(100);
  });

  it('never holds more than the burst', () => {
    const clock = new FakeClock();
    const bucket = new TokenBucket(10, 100, clock);
    clock.advance(3_600_000);
    for (let i = 0; i < 100; i++) expect(bucket.when('k')).toBe(0);
    expect(bucket.when('k')).toBeGreaterThan(0);
  });
});

describe('defaultRateLimiter', () => {
  it('takes the larger of the per-key backoff and the shared bucket', () => {
    const clock = new FakeClock();
    const limiter = defaultRateLimiter(clock);
    expect(limiter.when('a')).toBe(5);
    expect(limiter.when('a')).toBe(10);
    // Exhaust the bucket with other keys: now the bucket's wait is the longer one.
    for (let i = 0; i < 98; i++) limiter.when(`k${i}`);
    expect(limiter.when('fresh')).toBeCloseTo(100);
    limiter.forget('a');
    expect(limiter.retries('a')).toBe(0);
  });
});

describe('WorkQueue', () => {
  it('hands keys out in order and drops duplicates of queued keys', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.length).toBe(0);
  });

  it('never hands a key to two workers: a key added while processed comes back after done', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    q.add('a');
    const first = await q.get();
    expect(first).toBe('a');
    q.add('a');
    q.add('a');
    let second: string | undefined;
    void q.get().then((k) => {
      second = k;
    });
    await settle();
    expect(second).toBeUndefined(); // 'a' is being processed; nothing else is queued
    expect(q.length).toBe(0);
    q.done('a');
    await settle();
    expect(second).toBe('a'); // once, though it was added twice
    q.done('a');
    expect(q.length).toBe(0);
  });

  it('wakes a waiting worker when a key arrives', async () => {
    const q = new WorkQueue({ clock: new FakeClock() });
    const got = q.get();
    q.add('x');
    expect(await got).toBe('x');
  });

  it('adds a key after a delay, keeping the earliest of several', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    q.addAfter('a', 1_000);
    q.addAfter('a', 300);
    q.addAfter('a', 2_000);
    expect(q.length).toBe(0);
    clock.advance(299);
    expect(q.length).toBe(0);
    clock.advance(1);
    expect(q.length).toBe(1);
    clock.advance(5_000);
    expect(q.length).toBe(1); // the later timers were dropped
    expect(await q.get()).toBe('a');
  });

  it('retries a failing key after 5 ms, 10 ms, 20 ms, and from 5 ms again once forgotten', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    const expectReadyAfter = async (ms: number) => {
      clock.advance(ms - 1);
      expect(q.length).toBe(0);
      clock.advance(1);
      expect(q.length).toBe(1);
      const key = await q.get();
      q.done(key!);
    };
    for (const ms of [5, 10, 20, 40]) {
      q.addRateLimited('k');
      await expectReadyAfter(ms);
    }
    expect(q.retries('k')).toBe(4);
    q.forget('k');
    q.addRateLimited('k');
    await expectReadyAfter(5);
  });

  it('on shut down, gives workers undefined, ignores adds and drops queued and delayed keys', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    const waiting = q.get();
    q.shutDown();
    expect(await waiting).toBeUndefined();
    const q2 = new WorkQueue({ clock });
    q2.add('queued');
    q2.addAfter('later', 100);
    q2.shutDown();
    q2.add('new');
    expect(await q2.get()).toBeUndefined();
    expect(q2.length).toBe(0);
    expect(clock.pending).toBe(0);
  });

  it('drains: waits for keys in flight to be done, and gives up at the deadline', async () => {
    const clock = new FakeClock();
    const q = new WorkQueue({ clock });
    q.add('a');
    q.add('b');
    const a = await q.get();
    const b = await q.get();
    let drained: boolean | undefined;
    void q.shutDownWithDrain(1_000).then((d) => {
      drained = d;
    });
    q.done(a!);
    await settle();
    expect(drained).toBeUndefined(); // 'b' still in flight
    q.done(b!);
    await settle();
    expect(drained).toBe(true);

    const q2 = new WorkQueue({ clock });
    q2.add('stuck');
    await q2.get();
    let result: boolean | undefined;
    void q2.shutDownWithDrain(1_000).then((d) => {
      result = d;
    });
    clock.advance(999);
    await settle();
    expect(result).toBeUndefined();
    clock.advance(1);
    await settle();
    expect(result).toBe(false);
  });

  it('reports adds, depth, retries and durations', async () => {
    const clock = new FakeClock();
    const seen = {
      added: 0,
      depth: [] as number[],
      retried: 0,
      queued: [] as number[],
      worked: [] as number[],
    };
    const metrics: QueueMetrics = {
      added: () => seen.added++,
      depth: (n) => seen.depth.push(n),
      retried: () => seen.retried++,
      queued: (s) => seen.queued.push(s),
      worked: (s) => seen.worked.push(s),
    };
    const q = new WorkQueue({ clock, metrics });
    q.add('a');
    q.add('a'); // a duplicate is not an add
    clock.advance(250);
    const key = await q.get();
    clock.advance(1_500);
    q.done(key!);
    q.addRateLimited('a');
    clock.advance(5);
    expect(seen.added).toBe(2);
    expect(seen.retried).toBe(1);
    expect(seen.queued).toEqual([0.25]);
    expect(seen.worked).toEqual([1.5]);
    expect(seen.depth.at(-1)).toBe(1);
  });
});
