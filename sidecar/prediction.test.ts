import { describe, expect, it } from 'vitest';
import { FakeClock } from '../lib/clock.ts';
import type { StreamEvent } from '../lib/prediction.ts';
import { applyCog, outputMode } from './cog-webhooks.ts';
import { Prediction } from './prediction.ts';

function fakeClock(): FakeClock {
  return new FakeClock(Date.parse('2026-01-01T00:00:00Z'));
}

function record(p: Prediction): StreamEvent[] {
  const seen: StreamEvent[] = [];
  p.subscribe((e) => seen.push(e));
  return seen;
}

describe('a prediction fed by Cog webhooks', () => {
  it('turns growing snapshots into ordered output and logs events, and ignores stale ones', () => {
    const clock = fakeClock();
    const p = new Prediction({ id: 'p1', input: { prompt: 'a b' }, clock });
    const events = record(p);
    clock.advance(100);
    p.markStarted();
    applyCog(p, { status: 'processing', logs: '' }, 'iterator');
    applyCog(p, { status: 'processing', logs: 'token 0\n' }, 'iterator');
    applyCog(p, { status: 'processing', logs: 'token 0\n', output: ['a '] }, 'iterator');
    applyCog(p, { status: 'processing', logs: 'token 0\ntoken 1\n', output: ['a '] }, 'iterator');
    // A stale snapshot arriving late changes nothing.
    applyCog(p, { status: 'processing', logs: 'token 0\n', output: [] }, 'iterator');
    clock.advance(400);
    // The terminal one overtakes the last progress update: its items fill in.
    const ended = applyCog(
      p,
      {
        status: 'succeeded',
        logs: 'token 0\ntoken 1\n',
        output: ['a ', 'b '],
        metrics: { predict_time: 0.401 },
      },
      'iterator',
    );
    expect(ended).toBe(true);
    expect(
      applyCog(
        p,
        { status: 'processing', logs: 'token 0\ntoken 1\nlate\n', output: ['a ', 'b ', 'c'] },
        'iterator',
      ),
    ).toBe(false);
    expect(events.map((e) => [e.id, e.event, e.data])).toEqual([
      [1, 'logs', 'token 0\n'],
      [2, 'output', 'a '],
      [3, 'logs', 'token 1\n'],
      [4, 'output', 'b '],
      [5, 'done', '{}'],
    ]);
    expect(p.status).toBe('succeeded');
    expect(p.output).toEqual(['a ', 'b ']);
    expect(p.logs).toBe('token 0\ntoken 1\n');
    expect(p.metrics.predict_time).toBe(0.401);
    expect(p.metrics.total_time).toBeCloseTo(0.5, 9);
    expect(p.metrics.queue_time).toBeCloseTo(0.1, 9);
    expect(p.toJSON().completed_at).toBe('2026-01-01T00:00:00.500Z');
  });

  it("keeps the metrics the model recorded beside its own timings, which a model's same-named ones do not replace", () => {
    const clock = fakeClock();
    const p = new Prediction({ id: 'pm', input: {}, clock });
    p.markStarted();
    clock.advance(200);
    applyCog(
      p,
      {
        status: 'succeeded',
        output: 'd c',
        metrics: { predict_time: 0.19, input_token_count: 4, output_token_count: 2, total_time: 99 },
      },
      'single',
    );
    expect(p.metrics).toEqual({
      input_token_count: 4,
      output_token_count: 2,
      predict_time: 0.19,
      total_time: 0.2,
      queue_time: 0,
    });
    expect(p.toJSON().metrics).toEqual(p.metrics);
  });

  it('sends a single output once, at the end, whatever came while running', () => {
    const p = new Prediction({ id: 'p2', input: {}, clock: fakeClock() });
    const events = record(p);
    p.markStarted();
    applyCog(p, { status: 'processing', logs: '', output: [[0.1, 0.2]] }, 'single');
    applyCog(p, { status: 'succeeded', output: [0.1, 0.2], metrics: { predict_time: 0.01 } }, 'single');
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ['output', '[0.1,0.2]'],
      ['done', '{}'],
    ]);
    expect(p.output).toEqual([0.1, 0.2]);
  });

  it('without a schema, keeps a single value that streamed in as one item from being sent twice', () => {
    const p = new Prediction({ id: 'p3', input: {}, clock: fakeClock() });
    const events = record(p);
    applyCog(p, { status: 'processing', logs: 'hi\n', output: ['hihi'] }, 'unknown');
    applyCog(
      p,
      { status: 'succeeded', logs: 'hi\n', output: 'hihi', metrics: { predict_time: 0.007 } },
      'unknown',
    );
    expect(events.map((e) => [e.event, e.data])).toEqual([
      ['logs', 'hi\n'],
      ['output', 'hihi'],
      ['done', '{}'],
    ]);
    expect(p.output).toBe('hihi');
  });

  it('ends failed with an error event, and canceled, with their done reasons', () => {
    const failed = new Prediction({ id: 'f', input: {}, clock: fakeClock() });
    const fe = record(failed);
    failed.markStarted();
    applyCog(failed, { status: 'failed', logs: 'about to fail\n', error: 'RuntimeError: boom' }, 'single');
    expect(fe.map((e) => [e.event, e.data])).toEqual([
      ['logs', 'about to fail\n'],
      ['error', 'RuntimeError: boom'],
      ['done', '{"reason":"error"}'],
    ]);
    expect(failed.error).toBe('RuntimeError: boom');

    const canceled = new Prediction({ id: 'c', input: {}, clock: fakeClock() });
    const ce = record(canceled);
    expect(canceled.end('canceled')).toBe(true);
    expect(canceled.end('failed', { error: 'too late' })).toBe(false);
    expect(ce.map((e) => e.event)).toEqual(['done']);
    expect(canceled.metrics.predict_time).toBe(0);
    expect(canceled.status).toBe('canceled');
  });

  it('uses the wall clock for predict_time when the model server gives none', () => {
    const clock = fakeClock();
    const p = new Prediction({ id: 'w', input: {}, clock });
    clock.advance(250);
    p.markStarted();
    clock.advance(1500);
    p.end('failed', { error: 'model server exited' });
    expect(p.metrics.predict_time).toBeCloseTo(1.5, 9);
    expect(p.metrics.queue_time).toBeCloseTo(0.25, 9);
    expect(p.metrics.total_time).toBeCloseTo(1.75, 9);
  });

  it('replays events after an id and resolves waiters when it ends, or at their time on the clock', async () => {
    const clock = fakeClock();
    const p = new Prediction({ id: 'r', input: {}, clock });
    applyCog(p, { status: 'processing', logs: 'one\n' }, 'iterator');
    applyCog(p, { status: 'processing', logs: 'one\ntwo\n' }, 'iterator');
    expect(p.eventsSince(1).map((e) => e.data)).toEqual(['two\n']);
    const timedOut = p.waitDone(1000);
    clock.advance(999);
    const early = await Promise.race([timedOut, Promise.resolve('pending')]);
    expect(early).toBe('pending');
    clock.advance(1);
    expect(await timedOut).toBe(false);
    const waiting = p.waitDone(10_000);
    p.end('succeeded');
    expect(await waiting).toBe(true);
  });

  it('reads the output mode from the OpenAPI schema', () => {
    const doc = (output: unknown) => ({ components: { schemas: { Output: output } } });
    expect(
      outputMode(doc({ type: 'array', items: { type: 'string' }, 'x-cog-array-type': 'iterator' })),
    ).toBe('iterator');
    expect(outputMode(doc({ type: 'array', items: { type: 'number' } }))).toBe('single');
    expect(outputMode(undefined)).toBe('unknown');
  });

  it('renders the hosted API shape with urls and no null url', () => {
    const p = new Prediction({ id: 'abc', input: { text: 'x' }, clock: fakeClock() });
    const json = p.toJSON({
      base: 'http://10.0.0.5:8080',
      version: 'v1',
      deployment: 'ns/d',
      hardware: 'gpu-t4',
    });
    expect(json).toMatchObject({
      id: 'abc',
      version: 'v1',
      status: 'starting',
      input: { text: 'x' },
      output: null,
      error: null,
      started_at: null,
      data_removed: false,
      source: 'api',
      deployment: 'ns/d',
      urls: {
        get: 'http://10.0.0.5:8080/predictions/abc',
        cancel: 'http://10.0.0.5:8080/predictions/abc/cancel',
        stream: 'http://10.0.0.5:8080/predictions/abc/stream',
      },
    });
    expect(p.toJSON()).not.toHaveProperty('urls');
  });
});

describe('a prediction bounded in bytes', () => {
  const bounds = { logBytes: 1000, outputBytes: 2000, eventBytes: 3000 };

  it('keeps the last bytes of its logs behind a marker, and folds growing snapshots on', () => {
    const p = new Prediction({ id: 'p1', input: {}, clock: fakeClock(), bounds });
    const line = `${'x'.repeat(99)}\n`;
    let all = '';
    for (let i = 0; i < 30; i++) {
      all += line;
      applyCog(p, { status: 'processing', logs: all }, 'iterator');
    }
    expect(p.logs).toBe(`[… 2000 bytes of earlier logs dropped …]\n${line.repeat(10)}`);
    // A stale snapshot changes nothing.
    applyCog(p, { status: 'processing', logs: line.repeat(3) }, 'iterator');
    applyCog(p, { status: 'succeeded', logs: all + line }, 'iterator');
    expect(p.logs).toBe(`[… 2100 bytes of earlier logs dropped …]\n${line.repeat(10)}`);
  });

  it('keeps stream events within their bound: the oldest go, ids stay', () => {
    const p = new Prediction({ id: 'p1', input: {}, clock: fakeClock(), bounds });
    for (let i = 0; i < 50; i++) p.appendLogs(`${'y'.repeat(99)}\n`);
    const kept = p.eventsSince(0);
    expect(kept).toHaveLength(30);
    expect(kept[0]!.id).toBe(21);
    expect(p.eventsSince(45).map((e) => e.id)).toEqual([46, 47, 48, 49, 50]);
  });

  it('fails when its single output is larger than the cap, keeping none of it', () => {
    const p = new Prediction({ id: 'p1', input: {}, clock: fakeClock(), bounds });
    const events = record(p);
    applyCog(p, { status: 'succeeded', output: 'z'.repeat(3000) }, 'single');
    expect(p.status).toBe('failed');
    expect(p.output).toBeNull();
    expect(p.error).toMatch(/output is larger than this deployment keeps \(2\.9 KiB, more than 2 KiB/);
    expect(events.map((e) => e.event)).toEqual(['error', 'done']);
  });

  it('stops keeping iterator items past the cap and fails at the end', () => {
    const p = new Prediction({ id: 'p1', input: {}, clock: fakeClock(), bounds });
    const items = Array.from({ length: 30 }, (_, i) => `${i}`.padEnd(100, '.'));
    applyCog(p, { status: 'processing', output: items.slice(0, 10) }, 'iterator');
    expect(p.items).toHaveLength(10);
    applyCog(p, { status: 'processing', output: items.slice(0, 25) }, 'iterator');
    expect(p.items).toHaveLength(0);
    expect(p.outputOverflow).toBe(true);
    applyCog(p, { status: 'succeeded', output: items }, 'iterator');
    expect(p.status).toBe('failed');
    expect(p.output).toBeNull();
    expect(p.error).toMatch(/more than 2 KiB/);
  });

  it('keeps output within the cap as it is', () => {
    const p = new Prediction({ id: 'p1', input: {}, clock: fakeClock(), bounds });
    applyCog(p, { status: 'succeeded', output: 'z'.repeat(1500) }, 'single');
    expect(p.status).toBe('succeeded');
    expect(p.output).toBe('z'.repeat(1500));
  });
});
