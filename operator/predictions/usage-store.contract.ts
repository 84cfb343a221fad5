/**
 * The contract of a `UsageStore`, as tests: the memory store (usage-store.test.ts) and the
 * SQL stores (operator/store/) run the same suite from a factory that opens an empty store.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { PredictionStore } from './store.ts';
import { type InstanceSample, USAGE_BUCKET_MS } from './usage-store.ts';

/** 2026-01-01T00:00:00Z, the start of a bucket. */
const T = Date.parse('2026-01-01T00:00:00Z');

let seq = 0;
export function sample(over: Partial<InstanceSample> = {}): InstanceSample {
  seq++;
  return {
    instance: `uid-${seq}`,
    pod: `dep-abc-${seq}`,
    namespace: 'ns',
    deployment: 'dep',
    model: 'ns/model',
    hardware: 'gpu-t4',
    pricePerSecond: '0.000225',
    ms: { setup: 0, idle: 0, busy: 0, down: 0 },
    predictions: 0,
    predictionCost: '0',
    at: T,
    ...over,
  };
}

export function usageContract(name: string, factory: { open(): Promise<PredictionStore> }): void {
  describe(`${name}: the UsageStore contract`, () => {
    const opened: PredictionStore[] = [];
    const open = async () => {
      const s = await factory.open();
      opened.push(s);
      return s.usage;
    };
    afterEach(async () => {
      for (const s of opened.splice(0).reverse()) await s.close();
    });
    const all = { since: 0, until: T + 10 * 86_400_000, namespaces: 'all' as const };

    it('adds what grew since the last reading to the bucket of the reading, once', async () => {
      const u = await open();
      const first = sample({ ms: { setup: 4000, idle: 1000, busy: 0, down: 0 }, at: T + 5000 });
      expect((await u.recordInstance(first)).ms).toEqual({ setup: 4000, idle: 1000, busy: 0, down: 0 });
      const second = {
        ...first,
        ms: { setup: 4000, idle: 3000, busy: 2500, down: 0 },
        predictions: 2,
        predictionCost: '0.0005625',
        at: T + 10_000,
      };
      expect(await u.recordInstance(second)).toEqual({
        ms: { setup: 0, idle: 2000, busy: 2500, down: 0 },
        predictions: 2,
        predictionCost: '0.0005625',
      });
      // The same reading again (another replica, or after a restart) adds nothing.
      expect(await u.recordInstance(second)).toEqual({
        ms: { setup: 0, idle: 0, busy: 0, down: 0 },
        predictions: 0,
        predictionCost: '0',
      });
      // A reading in the next bucket goes there.
      await u.recordInstance({ ...second, ms: { ...second.ms, idle: 4000 }, at: T + USAGE_BUCKET_MS + 1 });
      const buckets = await u.buckets(all);
      expect(buckets.map((b) => [b.start, b.ms, b.predictions, b.predictionCost])).toEqual([
        [T, { setup: 4000, idle: 3000, busy: 2500, down: 0 }, 2, '0.0005625'],
        [T + USAGE_BUCKET_MS, { setup: 0, idle: 1000, busy: 0, down: 0 }, 0, '0'],
      ]);
      expect(buckets[0]).toMatchObject({
        namespace: 'ns',
        deployment: 'dep',
        model: 'ns/model',
        hardware: 'gpu-t4',
      });
    });

    it('counts a restarted sidecar (smaller figures) as new time', async () => {
      const u = await open();
      const s = sample({
        ms: { setup: 1000, idle: 9000, busy: 0, down: 0 },
        predictions: 3,
        predictionCost: '0.3',
      });
      await u.recordInstance(s);
      const again = await u.recordInstance({
        ...s,
        ms: { setup: 500, idle: 100, busy: 0, down: 0 },
        predictions: 1,
        predictionCost: '0.1',
        at: T + 20_000,
      });
      expect(again).toEqual({
        ms: { setup: 500, idle: 100, busy: 0, down: 0 },
        predictions: 1,
        predictionCost: '0.1',
      });
      const [b] = await u.buckets(all);
      expect(b).toMatchObject({
        ms: { setup: 1500, idle: 9100, busy: 0, down: 0 },
        predictions: 4,
        predictionCost: '0.4',
      });
    });

    it('keeps every instance, ended ones too, and filters by period and namespace', async () => {
      const u = await open();
      const gone = sample({ ms: { setup: 1000, idle: 2000, busy: 3000, down: 0 }, at: T + 1000 });
      await u.recordInstance(gone);
      await u.recordInstance({ ...gone, at: T + 2000, ended: true });
      const other = sample({
        namespace: 'other',
        at: T + 3000,
        ms: { setup: 10, idle: 0, busy: 0, down: 0 },
      });
      await u.recordInstance(other);
      const listed = await u.instances(all);
      expect(listed.map((i) => [i.instance, i.ended, i.firstSeen, i.lastSeen])).toEqual([
        [gone.instance, true, T + 1000, T + 2000],
        [other.instance, false, T + 3000, T + 3000],
      ]);
      expect(listed[0]).toMatchObject({ pod: gone.pod, ms: gone.ms, pricePerSecond: '0.000225' });
      // An ended instance stays ended.
      await u.recordInstance({ ...gone, at: T + 2500 });
      expect((await u.instances(all))[0]?.ended).toBe(true);
      expect((await u.instances({ ...all, namespaces: ['other'] })).map((i) => i.instance)).toEqual([
        other.instance,
      ]);
      expect(await u.instances({ ...all, since: T + 2600 })).toHaveLength(1);
      expect(await u.buckets({ ...all, namespaces: ['nobody'] })).toEqual([]);
      expect(await u.buckets({ ...all, until: T })).toEqual([]);
    });

    it('counts a reading recorded by several callers at once once', async () => {
      const u = await open();
      const s = sample({
        ms: { setup: 1000, idle: 1000, busy: 1000, down: 0 },
        predictions: 1,
        predictionCost: '0.5',
      });
      await Promise.all([u.recordInstance(s), u.recordInstance(s), u.recordInstance(s)]);
      const [b] = await u.buckets(all);
      expect(b).toMatchObject({ ms: s.ms, predictions: 1, predictionCost: '0.5' });
    });

    it('counts predictions per model over every bucket (run_count)', async () => {
      const u = await open();
      const a = sample({ model: 'ns/a', predictions: 2, ms: { setup: 1, idle: 0, busy: 0, down: 0 } });
      await u.recordInstance(a);
      await u.recordInstance({ ...a, predictions: 5, at: T + USAGE_BUCKET_MS });
      await u.recordInstance(sample({ model: 'ns/b', predictions: 1 }));
      expect(await u.runCounts()).toEqual({ 'ns/a': 5, 'ns/b': 1 });
    });

    it('purges old buckets and ended instances', async () => {
      const u = await open();
      const s = sample({ ms: { setup: 1, idle: 0, busy: 0, down: 0 }, ended: true });
      await u.recordInstance(s);
      const live = sample({ ms: { setup: 1, idle: 0, busy: 0, down: 0 } });
      await u.recordInstance(live);
      expect(await u.purgeUsage(T + USAGE_BUCKET_MS)).toBe(2);
      expect(await u.buckets(all)).toEqual([]);
      expect((await u.instances(all)).map((i) => i.instance)).toEqual([live.instance]);
    });
  });
}
