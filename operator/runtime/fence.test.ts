import { describe, expect, it } from 'vitest';
import { Fence, FencedError, isFenced } from './fence.ts';

function fenceAt(start: number) {
  let now = start;
  const fence = new Fence({ now: () => now });
  return { fence, set: (t: number) => (now = t) };
}

describe('Fence', () => {
  it('refuses writes before the first term', () => {
    const { fence } = fenceAt(1_000);
    expect(() => fence.check('PATCH /x')).toThrow(FencedError);
    expect(fence.signal.aborted).toBe(true);
    expect(fence.open).toBe(false);
  });

  it('passes writes during a term and refuses them once its deadline passed, by the clock alone', () => {
    const { fence, set } = fenceAt(1_000);
    const term = fence.begin(4_000);
    expect(() => fence.check('PATCH /x')).not.toThrow();
    set(3_999);
    expect(() => fence.check('PATCH /x')).not.toThrow();
    // A process resumed after a pause: no timer has run, the clock says the lease may be gone.
    set(4_000);
    expect(() => fence.check('PATCH /x')).toThrow(/could have expired/);
    expect(term.aborted).toBe(true);
    expect(isFenced(term.reason)).toBe(true);
  });

  it('moves the deadline forward on renewal, never back', () => {
    const { fence, set } = fenceAt(0);
    fence.begin(3_000);
    fence.extend(5_000);
    fence.extend(4_000);
    expect(fence.validUntil).toBe(5_000);
    set(4_500);
    expect(() => fence.check('PUT /y')).not.toThrow();
    fence.end('lost the lease');
    expect(() => fence.check('PUT /y')).toThrow(/does not lead/);
  });

  it('aborts the term when the deadline passes on the timer', async () => {
    const fence = new Fence();
    const term = fence.begin(Date.now() + 20);
    await new Promise<void>((resolve) => term.addEventListener('abort', () => resolve(), { once: true }));
    expect(fence.open).toBe(false);
  });

  it('ends the old term when a new one begins; the new one is open', () => {
    const { fence } = fenceAt(0);
    const first = fence.begin(Number.POSITIVE_INFINITY);
    const second = fence.begin(Number.POSITIVE_INFINITY);
    expect(first.aborted).toBe(true);
    expect(second.aborted).toBe(false);
    expect(fence.open).toBe(true);
  });
});
