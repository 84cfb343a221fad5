/** The memory store: the PredictionStore contract, and its bound on what it keeps. */
import { describe, expect, it } from 'vitest';
import { storeContract, storedRecord } from './store.contract.ts';
import { MemoryStore } from './store.ts';

storeContract('MemoryStore', { open: async () => new MemoryStore() });

describe('the memory store', () => {
  it('evicts the oldest finished first when over its bound, keeping unfinished ones', async () => {
    const s = new MemoryStore({ maxRecords: 3 });
    const [run1, old, recent, run2, run3, run4] = [
      storedRecord(),
      storedRecord({ status: 'failed', completedAt: 1 }),
      storedRecord({ status: 'succeeded', completedAt: 2 }),
      storedRecord(),
      storedRecord(),
      storedRecord(),
    ];
    for (const r of [run1!, old!, recent!, run2!]) await s.insert(r, 'r');
    expect(await s.get(old!.id)).toBeUndefined();
    expect(s.size).toBe(3);
    await s.insert(run3!, 'r');
    expect(await s.get(recent!.id)).toBeUndefined();
    await s.insert(run4!, 'r');
    const kept = await Promise.all([run1!, run2!, run3!, run4!].map((r) => s.get(r.id)));
    expect(kept.every(Boolean)).toBe(true);
  });
});
