/**
 * `--progress auto` on a fake clock against a fake model server: which predictions are held
 * (one synchronous create, no webhook) and which are followed live (async, by webhook).
 */
import { describe, expect, it } from 'vitest';
import type { NewPrediction } from './api.ts';
import { Prediction } from './prediction.ts';
import { ProgressPolicy, WARMUP, WINDOW } from './progress.ts';
import { type UnitSidecar, unitSidecar } from './testing/fake-cog.ts';

const schema = (output: Record<string, unknown>) => ({
  components: { schemas: { Input: { type: 'object', properties: {} }, Output: output } },
});
const SINGLE = schema({ type: 'string' });
const ITERATOR = schema({ type: 'array', items: { type: 'string' }, 'x-cog-array-type': 'iterator' });

/** A sidecar whose model server serves `doc` as its schema, seen by the sidecar. */
async function withSchema(doc: unknown): Promise<UnitSidecar> {
  const u = await unitSidecar({ concurrency: 4 }, { ready: false });
  u.cog.schema = doc;
  u.cog.state = { status: 'READY', setup: { started_at: '2026-01-01T00:00:00.000000+00:00', logs: '' } };
  await u.run(600);
  expect(u.sidecar.ready()).toBe(true);
  return u;
}

async function create(u: UnitSidecar, id: string, more: Partial<NewPrediction> = {}): Promise<Prediction> {
  const { prediction } = await u.sidecar.create({ id, input: {}, ...more });
  return prediction;
}

/** Whether the model server was asked for prediction `id` with a webhook (live). */
const live = (u: UnitSidecar, id: string) => u.cog.creates.find((c) => c.id === id)?.webhook !== undefined;

/** Runs one prediction to its end: `seconds` on the model server, ending `status`. */
async function runOne(
  u: UnitSidecar,
  id: string,
  seconds: number,
  status = 'succeeded',
): Promise<Prediction> {
  const p = await create(u, id);
  await u.run(seconds * 1000);
  const body = { id, status, output: 'ok', logs: '', error: status === 'failed' ? 'boom' : null };
  if (live(u, id)) u.cog.send(id, body);
  else u.cog.answer(id, { kind: 'finished', body });
  await u.flush();
  expect(p.status).toBe(status);
  return p;
}

describe('--progress auto', () => {
  it('follows the first predictions live, then holds those of a fast model', async () => {
    const u = await withSchema(SINGLE);
    for (let i = 0; i < WARMUP; i++) await runOne(u, `warm-${i}`, 0.1);
    expect(u.cog.creates.map((c) => c.webhook !== undefined)).toEqual(Array(WARMUP).fill(true));
    const p = await runOne(u, 'fast', 0.1);
    expect(live(u, 'fast')).toBe(false);
    expect(p.output).toBe('ok');
    expect(u.sidecar.status()).toMatchObject({ progress: { mode: 'auto', measured: WARMUP + 1 } });
  });

  it('follows live what a caller wants live: a logs or output webhook, stream: true', async () => {
    const u = await withSchema(SINGLE);
    for (let i = 0; i < WARMUP; i++) await runOne(u, `warm-${i}`, 0.1);
    await create(u, 'hook-logs', { webhook: 'https://example.com/h', webhookEventsFilter: ['logs'] });
    await create(u, 'hook-done', { webhook: 'https://example.com/h', webhookEventsFilter: ['completed'] });
    await create(u, 'streamed', { stream: true });
    await create(u, 'plain');
    expect(['hook-logs', 'hook-done', 'streamed', 'plain'].map((id) => live(u, id))).toEqual([
      true,
      false,
      true,
      false,
    ]);
  });

  it('follows live every prediction of a model whose output is an iterator', async () => {
    const u = await withSchema(ITERATOR);
    for (let i = 0; i < WARMUP + 2; i++) await runOne(u, `it-${i}`, 0.1);
    expect(u.cog.creates.every((c) => c.webhook !== undefined)).toBe(true);
  });

  it('follows live after a long or failed prediction, until the window has none', async () => {
    const u = await withSchema(SINGLE);
    for (let i = 0; i < WARMUP; i++) await runOne(u, `warm-${i}`, 0.1);
    await runOne(u, 'long', u.config.liveAfter + 0.5);
    expect(live(u, 'long')).toBe(false);
    for (let i = 0; i < WINDOW; i++) {
      await runOne(u, `after-long-${i}`, 0.1);
      expect(live(u, `after-long-${i}`)).toBe(true);
    }
    await runOne(u, 'held-again', 0.1);
    expect(live(u, 'held-again')).toBe(false);
    const failed = await runOne(u, 'fails', 0.1, 'failed');
    expect(failed.error).toBe('boom');
    expect(u.logs.some((l) => l.prediction === 'fails' && /carries no logs/.test(l.msg))).toBe(true);
    await runOne(u, 'after-failure', 0.1);
    expect(live(u, 'after-failure')).toBe(true);
  });

  it('cancels a held prediction on the model server by its id', async () => {
    const u = await withSchema(SINGLE);
    for (let i = 0; i < WARMUP; i++) await runOne(u, `warm-${i}`, 0.1);
    const p = await create(u, 'held');
    expect(live(u, 'held')).toBe(false);
    const canceling = u.sidecar.cancel(p);
    await u.flush();
    expect(u.cog.cancels).toEqual(['held']);
    u.cog.answer('held', { kind: 'finished', body: { id: 'held', status: 'canceled' } });
    await canceling;
    expect(p.status).toBe('canceled');
  });
});

describe('ProgressPolicy counts', () => {
  it('counts a prediction sent again (the model server was busy) once', () => {
    const policy = new ProgressPolicy({ progress: 'auto', liveAfter: 1 });
    const p = new Prediction({ id: 'again', input: {} });
    expect(policy.live(p, 'single')).toBe(true);
    expect(policy.live(p, 'single')).toBe(true);
    expect(policy.live(new Prediction({ id: 'other', input: {} }), 'single')).toBe(true);
    expect(policy.summary()).toMatchObject({ live: 2, held: 0 });
  });
});
