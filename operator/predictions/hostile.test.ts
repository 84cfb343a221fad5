/**
 * What a hostile caller sends must not take the operator down: a prediction whose input no
 * JSON.stringify can write (nested 200,000 levels deep) with a webhook ends like any other,
 * its webhook is logged and dropped, and no promise is left rejected. What a hostile (or
 * differently configured) instance sends must not make the operator hold more than its output
 * cap: past it the prediction fails and the instance is told to cancel it.
 */
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { engineOnFakeClock, type FakeEngine, NS } from './testing.ts';

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

describe('an instance sending more output than the operator keeps', () => {
  const A = { id: 'a', url: 'http://a' };
  const tooLarge =
    /^the output is larger than this deployment keeps \(1\.[0-9] KiB, more than 1 KiB; --max-output-bytes\)$/;

  it('fails the prediction when its streamed items go past the cap, and cancels it there', async () => {
    t = engineOnFakeClock({ engine: { maxOutputBytes: 1024 } });
    t.endpoints.set(NS, 'd', [A]);
    const { record } = await t.create();
    await t.settle();
    t.instances.output(record.id, 'x'.repeat(600));
    await t.settle();
    expect((await t.engine.get(record.id))?.status).toBe('processing');
    t.instances.output(record.id, 'y'.repeat(600));
    await t.settle();
    const got = await t.engine.get(record.id);
    expect(got).toMatchObject({ status: 'failed', output: null });
    expect(got?.error).toMatch(tooLarge);
    expect(t.instances.calls).toContain(`cancel http://a ${record.id}`);
    // The event past the cap is not among the prediction's events.
    const events = await t.events(record.id);
    expect(events.filter((e) => e.event === 'output').map((e) => e.data.length)).toEqual([600]);
    expect(events.at(-2)).toMatchObject({ event: 'error', data: expect.stringMatching(tooLarge) });
  });

  it('fails the prediction when the final record brings an output past the cap', async () => {
    t = engineOnFakeClock({ engine: { maxOutputBytes: 1024 } });
    t.endpoints.set(NS, 'd', [A]);
    const { record } = await t.create();
    await t.settle();
    t.instances.end(record.id, { status: 'succeeded', output: 'z'.repeat(1500) });
    await t.settle();
    const got = await t.engine.get(record.id);
    expect(got).toMatchObject({ status: 'failed', output: null });
    expect(got?.error).toMatch(tooLarge);
  });

  it('keeps an output within the cap', async () => {
    t = engineOnFakeClock({ engine: { maxOutputBytes: 1024 } });
    t.endpoints.set(NS, 'd', [A]);
    const { record } = await t.create();
    await t.settle();
    t.instances.output(record.id, 'x'.repeat(500));
    t.instances.end(record.id, { status: 'succeeded', output: ['x'.repeat(500)] });
    await t.settle();
    expect(await t.engine.get(record.id)).toMatchObject({ status: 'succeeded', output: ['x'.repeat(500)] });
  });
});
