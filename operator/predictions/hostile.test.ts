/**
 * What a hostile caller sends must not take the operator down: a prediction whose input no
 * JSON.stringify can write (nested 200,000 levels deep) with a webhook ends like any other,
 * its webhook is logged and dropped, and no promise is left rejected.
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { engineOnFakeClock, type FakeEngine } from './testing.ts';

let t: FakeEngine | undefined;
afterEach(() => t?.engine.close());

function deep(n: number): unknown {
  let v: unknown = 0;
  for (let i = 0; i < n; i++) v = [v];
  return v;
}

describe('a hostile input', () => {
  it('ends with its webhook dropped, and nothing rejected unhandled', async () => {
    const rejections: unknown[] = [];
    const onRejection = (r: unknown) => rejections.push(r);
    process.on('unhandledRejection', onRejection);
    try {
      const registry = new Registry();
      t = engineOnFakeClock({ engine: { registry, secretFor: () => 'whsec_AAAA' } });
      const { record } = await t.create(
        { nested: deep(200_000) },
        { webhook: 'https://hooks.example/x', webhookEvents: ['start', 'completed'] },
      );
      const done = t.engine.waitDone(record.id, 60_000);
      await t.settle();
      await t.engine.cancel(record.id);
      await t.advance(1000);
      expect(await done).toBe(true);
      expect((await t.engine.get(record.id))?.status).toBe('canceled');
      await t.advance(1000);
      await new Promise((r) => setImmediate(r));
      expect(rejections).toEqual([]);
      const attempts = await registry.getSingleMetric('modelplane_webhook_attempts_total')!.get();
      expect(attempts.values).toContainEqual(
        expect.objectContaining({ labels: { event: 'completed', result: 'unserialisable' }, value: 1 }),
      );
    } finally {
      process.off('unhandledRejection', onRejection);
    }
  });
});
