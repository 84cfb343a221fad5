import { describe, expect, it } from 'vitest';
import { Backoff } from './backoff.ts';

describe('Backoff', () => {
  it('doubles from the initial delay up to the cap, adding up to 20% jitter, and resets', () => {
    const none = new Backoff(800, 30_000, () => 0);
    expect(Array.from({ length: 8 }, () => none.next())).toEqual([
      800, 1600, 3200, 6400, 12800, 25600, 30000, 30000,
    ]);
    none.reset();
    expect(none.next()).toBe(800);
    const most = new Backoff(800, 30_000, () => 1);
    expect(most.next()).toBe(960);
  });
});
