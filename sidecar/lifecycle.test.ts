/**
 * A prediction's life in the sidecar on a fake clock, against a fake model server: queued,
 * dispatched, streamed, finished and metered; canceled at each step; the predict timeout;
 * the model server's 409; its own refusal of the input; retention.
 */
import { describe, expect, it } from 'vitest';
import type { StreamEvent } from '../lib/prediction.ts';
import type { NewPrediction } from './api.ts';
import type { Prediction } from './prediction.ts';
import { metricValue } from './testing/client.ts';
import { type UnitSidecar, unitSidecar } from './testing/fake-cog.ts';

async function create(u: UnitSidecar, id: string, more: Partial<NewPrediction> = {}): Promise<Prediction> {
  const { prediction, refused } = await u.sidecar.create({ id, input: { prompt: id }, ...more });
  expect(refused).toBeUndefined();
  return prediction;
}

function record(p: Prediction): Array<[string, string]> {
  const seen: Array<[string, string]> = [];
  p.subscribe((e: StreamEvent) => seen.push([e.event, e.data]));
  return seen;
}

describe('the lifecycle of a prediction (progress: webhook)', () => {
  it('queues, dispatches, streams Cog webhooks as events, finishes, and meters and prices it', async () => {
    const u = await unitSidecar({ concurrency: 1, queueSize: 2 });
    expect(u.sidecar.readiness()).toEqual({
      ready: true,
      reason: 'Ready',
      message: 'the model server is ready',
    });
    const a = await create(u, 'a');
    const b = await create(u, 'b');
    expect(a.status).toBe('processing');
    expect(b.status).toBe('starting');
    expect(u.cog.created).toEqual(['a']);
    expect(u.cog.creates[0]!.webhook).toMatch(/\/cog\/a$/);
    expect(u.sidecar.load()).toMatchObject({
      slots: 1,
      inflight: 1,
      busy_slots: 1,
      queued: 1,
      accepting: true,
    });
    const events = record(a);

    await u.run(500);
    u.cog.send('a', { status: 'processing', logs: 'token 0\n', output: ['x '] });
    await u.run(1000);
    // Stale and repeated snapshots change nothing.
    u.cog.send('a', { status: 'processing', logs: '', output: [] });
    u.cog.send('a', { status: 'processing', logs: 'token 0\ntoken 1\n', output: ['x ', 'y '] });
    await u.run(500);
    u.cog.send('a', {
      status: 'succeeded',
      logs: 'token 0\ntoken 1\n',
      output: ['x ', 'y '],
      metrics: { predict_time: 1.9 },
    });
    await u.flush();
    expect(events).toEqual([
      ['logs', 'token 0\n'],
      ['output', 'x '],
      ['logs', 'token 1\n'],
      ['output', 'y '],
      ['done', '{}'],
    ]);
    expect(u.sidecar.view(a)).toMatchObject({
      id: 'a',
      status: 'succeeded',
      output: ['x ', 'y '],
      logs: 'token 0\ntoken 1\n',
      error: null,
      version: 'test-version',
      deployment: 'test-deployment',
      hardware: 'gpu-t4',
      created_at: '2026-01-01T00:00:00.000Z',
      started_at: '2026-01-01T00:00:00.000Z',
      completed_at: '2026-01-01T00:00:02.000Z',
      metrics: { predict_time: 1.9, total_time: 2, queue_time: 0 },
      cost: '0.0004275',
    });

    // The queued one goes to the freed slot at once; without a figure from the model server
    // its predict_time is the sidecar's own clock.
    expect(u.cog.created).toEqual(['a', 'b']);
    expect(b.status).toBe('processing');
    await u.run(1000);
    u.cog.send('b', { status: 'succeeded', output: ['z'] });
    await u.flush();
    expect(u.sidecar.view(b)).toMatchObject({
      status: 'succeeded',
      started_at: '2026-01-01T00:00:02.000Z',
      metrics: { predict_time: 1, total_time: 3, queue_time: 2 },
      cost: '0.000225',
    });

    const status = u.sidecar.status();
    expect(status).toMatchObject({
      predictions: { succeeded: 2, failed: 0, canceled: 0 },
      billable_seconds: '2.9',
      cost: '0.0006525',
      state: 'idle',
      instance_seconds: { setup: 0, idle: 0, busy: 3, down: 0 },
      uptime_seconds: 3,
    });
    await u.run(1000);
    expect(u.sidecar.status().instance_seconds).toEqual({ setup: 0, idle: 1, busy: 3, down: 0 });
    const text = await u.sidecar.metrics.registry.metrics();
    expect(metricValue(text, 'modelplane_predictions_total', { status: 'succeeded' })).toBe(2);
    expect(metricValue(text, 'modelplane_billable_seconds_total')).toBeCloseTo(2.9, 9);
    expect(metricValue(text, 'modelplane_cost_total')).toBeCloseTo(0.0006525, 12);
    expect(metricValue(text, 'modelplane_instance_seconds_total', { state: 'busy' })).toBe(3);
    expect(u.logs.filter((l) => l.msg === 'prediction finished').map((l) => l.prediction)).toEqual([
      'a',
      'b',
    ]);
  });

  it('refuses past the queue with 429, and answers a failure of the model with an error event', async () => {
    const u = await unitSidecar({ concurrency: 1, queueSize: 1 });
    const a = await create(u, 'a');
    await create(u, 'b');
    await expect(u.sidecar.create({ id: 'c', input: {} })).rejects.toMatchObject({
      status: 429,
      headers: { 'retry-after': '1' },
    });
    expect(u.sidecar.load()).toMatchObject({ accepting: false });
    const events = record(a);
    u.cog.send('a', { status: 'failed', logs: 'about to fail\n', error: 'RuntimeError: boom' });
    await u.flush();
    expect(a.error).toBe('RuntimeError: boom');
    expect(events).toEqual([
      ['logs', 'about to fail\n'],
      ['error', 'RuntimeError: boom'],
      ['done', '{"reason":"error"}'],
    ]);
    expect(u.sidecar.status()).toMatchObject({ predictions: { failed: 1 } });
  });

  it('answers the model server’s refusal of the input at once and keeps no record', async () => {
    const u = await unitSidecar();
    u.cog.answers.push({
      kind: 'invalid',
      body: { detail: [{ loc: ['body', 'input', 'text'], msg: 'Field required', type: 'missing' }] },
    });
    const r = await u.sidecar.create({ id: 'bad', input: {} });
    expect(r.refused).toHaveLength(1);
    expect(r.refused![0]!.field).toBe('input.text');
    expect(u.sidecar.get('bad')).toBeUndefined();
    expect(u.sidecar.load()).toMatchObject({ busy_slots: 0 });
  });

  it('keeps a prediction queued while the model server answers 409, retrying with backoff on the clock', async () => {
    const u = await unitSidecar({ concurrency: 2 });
    await create(u, 'a');
    u.cog.answers.push({ kind: 'busy' }, { kind: 'busy' });
    const b = await create(u, 'b');
    expect(b.status).toBe('starting');
    expect(u.sidecar.load()).toMatchObject({ inflight: 1, queued: 1 });
    // Backoff from 2 ms, doubling (plus up to 20 %): the second try after 2 ms, the third 4-5 ms later.
    await u.run(1, 1);
    expect(u.cog.created).toEqual(['a', 'b']);
    await u.run(2, 1);
    expect(u.cog.created).toEqual(['a', 'b', 'b']);
    expect(b.status).toBe('starting');
    await u.run(2, 1);
    expect(u.cog.created).toEqual(['a', 'b', 'b']);
    await u.run(2, 1);
    expect(u.cog.created).toEqual(['a', 'b', 'b', 'b']);
    expect(b.status).toBe('processing');
    expect(b.metrics).toEqual({});
    expect(u.logs.filter((l) => l.msg === 'model server busy (409); requeued')).toHaveLength(2);
  });

  it('prices a prediction per unit of the metrics the model recorded, when its version says so', async () => {
    const u = await unitSidecar({ pricing: { perUnit: { output_token_count: '0.0000015' } } });
    const a = await create(u, 'a');
    u.cog.send('a', { status: 'processing' });
    await u.run(2000);
    u.cog.send('a', {
      status: 'succeeded',
      output: 'x',
      metrics: { predict_time: 2, output_token_count: 12 },
    });
    await u.flush();
    expect(a.metrics).toMatchObject({ output_token_count: 12, predict_time: 2 });
    // 12 tokens × 0.0000015, and no hardware time: perUnit alone replaces it.
    expect(a.cost).toBe('0.000018');
    expect(u.sidecar.status()).toMatchObject({
      cost: '0.000018',
      pricing: { perUnit: { output_token_count: '0.0000015' } },
    });
  });

  it('forgets a finished prediction after the retention', async () => {
    const u = await unitSidecar({ retention: 60 });
    await create(u, 'a');
    u.cog.send('a', { status: 'succeeded', output: 'ok' });
    await u.run(59_000, 1000);
    expect(u.sidecar.get('a')?.status).toBe('succeeded');
    await u.run(1000);
    expect(u.sidecar.get('a')).toBeUndefined();
  });

  it('past the retention cap forgets the oldest finished predictions, those already read first', async () => {
    const u = await unitSidecar({ retainMax: 2 });
    for (const id of ['a', 'b', 'c']) {
      await create(u, id);
      u.cog.send(id, { status: 'succeeded', output: id });
      await u.flush();
    }
    // a, the oldest, unread, goes: the cap is 2.
    expect(u.sidecar.get('a')).toBeUndefined();
    expect(u.logs.some((l) => l.msg?.includes('before its final record was read'))).toBe(true);
    // c read: it goes before b, which is older but unread.
    u.sidecar.read(u.sidecar.get('c')!);
    await create(u, 'd');
    u.cog.send('d', { status: 'succeeded', output: 'd' });
    await u.flush();
    expect(u.sidecar.get('b')?.status).toBe('succeeded');
    expect(u.sidecar.get('c')).toBeUndefined();
    expect(u.sidecar.get('d')?.status).toBe('succeeded');
  });

  it('past the retention byte cap forgets the oldest finished predictions', async () => {
    const u = await unitSidecar({ retainBytes: 5000 });
    for (const id of ['a', 'b', 'c']) {
      await create(u, id);
      u.cog.send(id, { status: 'succeeded', output: 'o'.repeat(2000), logs: `${id}\n` });
      await u.flush();
    }
    // Each holds ~4 KB (its output, and the output event again): one at a time fits.
    expect(u.sidecar.get('a')).toBeUndefined();
    expect(u.sidecar.get('b')).toBeUndefined();
    expect(u.sidecar.get('c')?.output).toBe('o'.repeat(2000));
  });
});

describe('the lifecycle of a prediction (progress: final)', () => {
  it('holds one create per prediction and takes its final state from the answer', async () => {
    const u = await unitSidecar({ progress: 'final', concurrency: 1 });
    const a = await create(u, 'a');
    const b = await create(u, 'b');
    expect(a.status).toBe('processing');
    expect(u.cog.creates[0]).toMatchObject({ id: 'a', webhook: undefined });
    const events = record(a);
    await u.run(1500);
    u.cog.answer('a', {
      kind: 'finished',
      body: {
        id: 'a',
        status: 'succeeded',
        output: 'done',
        logs: 'working\n',
        metrics: { predict_time: 1.4 },
      },
    });
    await u.flush();
    expect(events).toEqual([
      ['logs', 'working\n'],
      ['output', 'done'],
      ['done', '{}'],
    ]);
    expect(a.metrics).toEqual({ predict_time: 1.4, total_time: 1.5, queue_time: 0 });
    expect(a.cost).toBe('0.000315');
    expect(u.cog.created).toEqual(['a', 'b']);
    // A broken answer (no final state) fails it.
    u.cog.answer('b', { kind: 'finished', body: { id: 'b', status: 'processing' } });
    await u.flush();
    expect(b.error).toBe('the model server answered without a final state (processing)');
  });
});

describe('cancel', () => {
  it('cancels a queued prediction at once, without the model server', async () => {
    const u = await unitSidecar({ concurrency: 1 });
    await create(u, 'a');
    const b = await create(u, 'b');
    await u.run(700);
    await u.sidecar.cancel(b);
    expect(u.sidecar.view(b)).toMatchObject({
      status: 'canceled',
      started_at: null,
      completed_at: '2026-01-01T00:00:00.700Z',
      metrics: { predict_time: 0, queue_time: 0.7, total_time: 0.7 },
      cost: '0',
    });
    expect(u.cog.cancels).toEqual([]);
    expect(u.cog.created).toEqual(['a']);
    expect(u.sidecar.load()).toMatchObject({ queued: 0 });
    expect(u.sidecar.status()).toMatchObject({ predictions: { canceled: 1 } });
  });

  it('cancels a dispatched prediction as soon as the model server has accepted it', async () => {
    const u = await unitSidecar();
    u.cog.answers.push('hold');
    const pending = u.sidecar.create({ id: 'a', input: {} });
    await u.flush();
    const a = u.sidecar.get('a')!;
    expect(a.status).toBe('starting');
    await u.sidecar.cancel(a);
    expect(a.status).toBe('starting');
    expect(u.cog.cancels).toEqual([]);
    u.cog.answer('a', { kind: 'accepted', body: { id: 'a', status: 'starting' } });
    await pending;
    await u.flush();
    expect(u.cog.cancels).toEqual(['a']);
    u.cog.send('a', { status: 'canceled' });
    await u.flush();
    expect(a.status).toBe('canceled');
    expect(u.sidecar.load()).toMatchObject({ busy_slots: 0 });
  });

  it('cancels a running prediction on the model server, repeating until it confirms', async () => {
    const u = await unitSidecar({ concurrency: 1 });
    const a = await create(u, 'a');
    const b = await create(u, 'b');
    await u.run(2000);
    let answered = false;
    const canceling = u.sidecar.cancel(a).then(() => {
      answered = true;
    });
    await u.flush();
    expect(u.cog.cancels).toEqual(['a']);
    // The answer waits up to a second for the confirmation; the cancel is sent again each second.
    await u.run(900);
    expect(answered).toBe(false);
    await u.run(100);
    await canceling;
    expect(a.status).toBe('processing');
    expect(u.cog.cancels).toEqual(['a', 'a']);
    await u.run(1000);
    expect(u.cog.cancels).toEqual(['a', 'a', 'a']);
    u.cog.send('a', { status: 'canceled', metrics: { predict_time: 3.01 } });
    await u.flush();
    expect(a.status).toBe('canceled');
    expect(a.cost).toBe('0.00067725');
    // The slot is free: the queued one runs, and the cancel is not repeated.
    expect(b.status).toBe('processing');
    await u.run(3000);
    expect(u.cog.cancels).toEqual(['a', 'a', 'a']);
  });
});

describe('the predict timeout', () => {
  it('fails a prediction at its deadline, cancels it, and keeps its slot until the model server lets go', async () => {
    const u = await unitSidecar({ concurrency: 1, predictTimeout: 5 });
    const a = await create(u, 'a');
    const b = await create(u, 'b');
    await u.run(4900);
    expect(a.status).toBe('processing');
    await u.run(100);
    expect(a.status).toBe('failed');
    expect(a.error).toBe(
      'prediction timed out: it ran longer than the predict timeout of 5 s and was canceled',
    );
    expect(a.metrics.predict_time).toBe(5);
    expect(a.cost).toBe('0.001125');
    expect(u.cog.cancels).toEqual(['a']);
    expect(u.sidecar.load()).toMatchObject({ inflight: 0, busy_slots: 1, available: 0, queued: 1 });
    await u.run(2000);
    expect(b.status).toBe('starting');
    // Late webhooks of the timed-out one change nothing; its end frees the slot.
    u.cog.send('a', { status: 'processing', logs: 'still going\n' });
    u.cog.send('a', { status: 'canceled' });
    await u.flush();
    expect(a.status).toBe('failed');
    expect(a.logs).toBe('');
    expect(b.status).toBe('processing');
    expect(u.logs.some((l) => l.msg === 'the model server finished a timed-out prediction')).toBe(true);
  });
});
