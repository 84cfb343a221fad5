import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/clock.ts';
import { RateLimiter, TtlCache } from './auth.ts';

describe('RateLimiter', () => {
  it('lets a burst through, then says how long until the next token', () => {
    const clock = new FakeClock(1_000);
    const limiter = new RateLimiter({ perSecond: 5, burst: 3 }, 10, clock);
    expect([limiter.take('a'), limiter.take('a'), limiter.take('a')]).toEqual([0, 0, 0]);
    expect(limiter.take('a')).toBe(200);
    // Another key has its own bucket.
    expect(limiter.take('b')).toBe(0);
    clock.advance(199);
    expect(limiter.take('a')).toBeGreaterThan(0);
    clock.advance(1);
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(200);
  });

  it('refills no further than the burst', () => {
    const clock = new FakeClock();
    const limiter = new RateLimiter({ perSecond: 10, burst: 2 }, 10, clock);
    limiter.take('a');
    clock.advance(60_000);
    expect([limiter.take('a'), limiter.take('a')]).toEqual([0, 0]);
    expect(limiter.take('a')).toBe(100);
  });

  it('gives a refunded token back', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, 10, new FakeClock());
    expect(limiter.take('a')).toBe(0);
    limiter.refund('a');
    expect(limiter.take('a')).toBe(0);
    expect(limiter.take('a')).toBe(1_000);
  });

  it('tracks at most `max` keys, however many callers come', () => {
    const limiter = new RateLimiter({ perSecond: 1, burst: 1 }, 100, new FakeClock());
    for (let i = 0; i < 10_000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(100);
  });

  it('refuses settings that would never let anything through', () => {
    expect(() => new RateLimiter({ perSecond: 0, burst: 1 }, 1)).toThrow(/perSecond/);
    expect(() => new RateLimiter({ perSecond: 1, burst: 0 }, 1)).toThrow(/burst/);
  });
});

describe('TtlCache', () => {
  it('holds at most `max` entries and forgets them after the TTL', () => {
    const clock = new FakeClock();
    const cache = new TtlCache<string>(1_000, 3, clock);
    for (const k of ['a', 'b', 'c', 'd']) cache.set(k, k);
    expect(cache.size).toBe(3);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('d')).toBe('d');
    clock.advance(1_000);
    expect(cache.get('d')).toBeUndefined();
  });
});
