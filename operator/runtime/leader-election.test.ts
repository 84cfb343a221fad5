import { describe, expect, it } from 'vitest';
import { decide, microTime, nextSpec, releasedSpec, validateTiming } from './leader-election.ts';

const T0 = Date.parse('2026-01-01T00:00:00Z');

describe('decide', () => {
  const held = { holderIdentity: 'b', leaseDurationSeconds: 15, renewTime: microTime(T0) };

  it('creates a missing lease and renews its own', () => {
    expect(decide('a', undefined, 0, T0)).toBe('create');
    expect(decide('a', { ...held, holderIdentity: 'a' }, T0, T0 + 60_000)).toBe('renew');
  });

  it('acquires a released lease at once', () => {
    expect(decide('a', { leaseDurationSeconds: 1 }, T0, T0)).toBe('acquire');
    expect(decide('a', { holderIdentity: '', leaseDurationSeconds: 15 }, T0, T0)).toBe('acquire');
  });

  it("waits out another holder's lease duration, counted from when it saw the record change", () => {
    // First seen at T0 + 5 s: its renewTime in the past does not shorten the wait (clocks differ).
    const seen = T0 + 5_000;
    expect(decide('a', held, seen, seen + 14_999)).toBe('held');
    expect(decide('a', held, seen, seen + 15_000)).toBe('acquire');
  });
});

describe('nextSpec', () => {
  it('creates with no transitions, takes over with one more, renews only renewTime', () => {
    const created = nextSpec('a', undefined, 'create', T0, 15_000);
    expect(created).toEqual({
      holderIdentity: 'a',
      leaseDurationSeconds: 15,
      acquireTime: '2026-01-01T00:00:00.000000Z',
      renewTime: '2026-01-01T00:00:00.000000Z',
      leaseTransitions: 0,
    });
    const renewed = nextSpec('a', created, 'renew', T0 + 2_000, 15_000);
    expect(renewed).toEqual({ ...created, renewTime: '2026-01-01T00:00:02.000000Z' });
    const taken = nextSpec('b', renewed, 'acquire', T0 + 30_000, 15_000);
    expect(taken).toMatchObject({
      holderIdentity: 'b',
      leaseTransitions: 1,
      acquireTime: microTime(T0 + 30_000),
    });
  });

  it('rounds the duration up to whole seconds, at least one', () => {
    expect(nextSpec('a', undefined, 'create', T0, 2_500).leaseDurationSeconds).toBe(3);
    expect(nextSpec('a', undefined, 'create', T0, 10).leaseDurationSeconds).toBe(1);
  });
});

describe('releasedSpec', () => {
  it('clears the holder and keeps the transition count', () => {
    const spec = releasedSpec({ holderIdentity: 'a', leaseDurationSeconds: 15, leaseTransitions: 4 }, T0);
    expect(spec.holderIdentity).toBeUndefined();
    expect(spec.leaseTransitions).toBe(4);
    expect(decide('b', spec, T0, T0)).toBe('acquire');
  });
});

describe('microTime', () => {
  it('writes six fractional digits', () => {
    expect(microTime(T0 + 123)).toBe('2026-01-01T00:00:00.123000Z');
  });
});

describe('validateTiming', () => {
  it("accepts client-go's defaults and rejects inconsistent timings", () => {
    expect(() =>
      validateTiming({ leaseDurationMs: 15_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }),
    ).not.toThrow();
    expect(() =>
      validateTiming({ leaseDurationMs: 10_000, renewDeadlineMs: 10_000, retryPeriodMs: 2_000 }),
    ).toThrow(/leaseDuration/);
    expect(() =>
      validateTiming({ leaseDurationMs: 15_000, renewDeadlineMs: 2_000, retryPeriodMs: 2_000 }),
    ).toThrow(/renewDeadline/);
  });
});
