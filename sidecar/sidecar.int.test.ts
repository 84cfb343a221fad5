/**
 * The sidecar against real Cog servers (the `cog` package from PyPI) running the example
 * models of examples/models/. Needs the venv of `make python`.
 */
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../harness/processes.ts';
import { readSse } from '../lib/http.ts';
import type { SidecarConfig } from './config.ts';
import { format, fromNumber, multiply, parseDecimal } from './decimal.ts';
import type { SidecarOptions } from './sidecar.ts';
import { call, metricValue } from './testing/client.ts';
import {
  type ModelServer,
  type ModelServerOptions,
  modelsDir,
  startModelServer,
} from './testing/model-server.ts';
import { type RunningSidecar, startSidecar } from './testing/sidecar.ts';
import { openSse } from './testing/sse.ts';

type P = {
  id: string;
  status: string;
  output: unknown;
  logs: string;
  error: string | null;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  metrics: { predict_time?: number; total_time?: number; queue_time?: number };
  cost?: string;
  urls?: { get: string; cancel: string; stream: string };
  [k: string]: unknown;
};

const PRICE = '0.000225';
const PROGRESS = ['webhook', 'final'] as const;
const owned: ModelServer[] = [];
const sidecars: RunningSidecar[] = [];
const shared: Record<string, ModelServer> = {};

async function model(name: string, opts: ModelServerOptions = {}): Promise<ModelServer> {
  const s = await startModelServer(name, { throttleSeconds: 0, ...opts });
  owned.push(s);
  return s;
}

async function sidecar(
  modelUrl: string,
  overrides: Partial<SidecarConfig> = {},
  opts: SidecarOptions = {},
  { ready = true } = {},
): Promise<RunningSidecar> {
  const sc = await startSidecar(modelUrl, { pricePerSecond: PRICE, ...overrides }, opts);
  sidecars.push(sc);
  if (ready) await waitReady(sc);
  return sc;
}

async function waitReady(sc: RunningSidecar): Promise<void> {
  await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).status === 200, {
    timeoutMs: 60_000,
  });
}

const predict = (sc: RunningSidecar, body: Record<string, unknown>, headers: Record<string, string> = {}) =>
  call<P>('POST', `${sc.api}/predictions`, body, headers);
const get = (sc: RunningSidecar, id: string, wait?: number) =>
  call<P>('GET', `${sc.api}/predictions/${id}`, undefined, wait ? { prefer: `wait=${wait}` } : {});

async function until(sc: RunningSidecar, id: string, statuses: string[], timeoutMs = 30_000): Promise<P> {
  return waitFor(
    `prediction ${id} to be ${statuses.join(' or ')}`,
    async () => {
      const r = await get(sc, id);
      return statuses.includes(r.body.status) ? r.body : undefined;
    },
    { timeoutMs },
  );
}

beforeAll(async () => {
  const specs: Array<[string, ModelServerOptions]> = [
    ['echo', { concurrency: 4 }],
    ['sleep', { concurrency: 2 }],
    ['fail', {}],
    ['stream', {}],
    ['embed', {}],
  ];
  await Promise.all(
    specs.map(async ([name, opts]) => {
      shared[name] = await model(name, opts);
    }),
  );
  await Promise.all(Object.values(shared).map((s) => s.waitFor(['READY'], 120_000)));
}, 180_000);

afterEach(async () => {
  await Promise.all(sidecars.splice(0).map((s) => s.stop()));
});

afterAll(async () => {
  await Promise.all(owned.splice(0).map((s) => s.stop()));
});

describe.each(PROGRESS)('predictions through the sidecar (progress: %s)', (progress) => {
  it('runs a prediction and answers in the hosted API shape, idempotently by id', async () => {
    const sc = await sidecar(shared.echo!.url, { progress, concurrency: 4 });
    const r = await predict(
      sc,
      { id: `${progress}-echo-1`, input: { text: 'hi', repeat: 2 } },
      { prefer: 'wait=30' },
    );
    expect(r.status).toBe(201);
    expect(r.headers.get('preference-applied')).toBe('wait=30');
    const p = r.body;
    expect(p).toMatchObject({
      id: `${progress}-echo-1`,
      status: 'succeeded',
      output: 'hihi',
      error: null,
      version: 'test-version',
      deployment: 'test-deployment',
      source: 'api',
      data_removed: false,
      input: { text: 'hi', repeat: 2 },
    });
    expect(p.logs).toContain('echo: 2 characters, 2 times');
    const created = Date.parse(p.created_at);
    const started = Date.parse(p.started_at!);
    const completed = Date.parse(p.completed_at!);
    expect(created).toBeLessThanOrEqual(started);
    expect(started).toBeLessThanOrEqual(completed);
    expect(p.metrics.predict_time).toBeGreaterThan(0);
    expect(p.metrics.total_time).toBeGreaterThanOrEqual(p.metrics.queue_time!);
    expect(p.cost).toBe(format(multiply(fromNumber(p.metrics.predict_time!, 6), parseDecimal(PRICE))));
    expect(p.urls?.get).toBe(`${sc.api}/predictions/${progress}-echo-1`);

    const again = await get(sc, `${progress}-echo-1`);
    expect(again.body).toEqual(p);
    const dup = await predict(sc, { id: `${progress}-echo-1`, input: { text: 'other' } });
    expect(dup.status).toBe(200);
    expect(dup.body.created_at).toBe(p.created_at);
    expect(dup.body.output).toBe('hihi');
  });

  it('fails a prediction whose model raises, with the error, the logs and an error event', async () => {
    const sc = await sidecar(shared.fail!.url, { progress });
    const r = await predict(sc, { input: { message: 'the GPU caught fire' } }, { prefer: 'wait=30' });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('failed');
    expect(r.body.error).toContain('the GPU caught fire');
    const events = await (await openSse(`${sc.api}/predictions/${r.body.id}/stream`)).events;
    if (progress === 'webhook') {
      expect(r.body.logs).toContain('about to fail');
      expect(events.map((e) => e.event)).toEqual(['logs', 'error', 'done']);
    } else {
      // Cog's held (synchronous) answer for a failed prediction carries no logs.
      expect(events.map((e) => e.event)).toEqual(['error', 'done']);
    }
    expect(events.at(-2)!.data).toContain('the GPU caught fire');
    expect(events.at(-1)!.data).toBe('{"reason":"error"}');
    const metrics = await (await fetch(`${sc.metrics}/metrics`)).text();
    expect(metricValue(metrics, 'modelplane_predictions_total', { status: 'failed' })).toBe(1);
  });

  it('refuses invalid input with 422 problem+json and invalid_fields, keeping no record', async () => {
    const sc = await sidecar(shared.echo!.url, { progress });
    const missing = await predict(sc, { id: `${progress}-bad-1`, input: { repeat: 0 } });
    expect(missing.status).toBe(422);
    expect(missing.headers.get('content-type')).toBe('application/problem+json');
    expect(missing.body).toMatchObject({ status: 422, title: 'Invalid input' });
    expect(missing.body.invalid_fields).toEqual([
      { type: 'required', field: 'input.text', description: 'text is required' },
      { type: 'minimum', field: 'input.repeat', description: 'input.repeat must be at least 1' },
    ]);
    const wrongType = await predict(sc, { input: { text: 5 } });
    expect(wrongType.status).toBe(422);
    expect(wrongType.body.invalid_fields).toEqual([
      { type: 'type', field: 'input.text', description: 'input.text must be of type string' },
    ]);
    expect((await get(sc, `${progress}-bad-1`)).status).toBe(404);
  });

  it('returns a 384-dimension sentence embedding that matches sentence-transformers', async () => {
    const sc = await sidecar(shared.embed!.url, { progress });
    const ref = JSON.parse(readFileSync(join(modelsDir, 'embed', 'reference.json'), 'utf8')) as {
      sentences: string[];
      embeddings: number[][];
    };
    const vectors: number[][] = [];
    for (const text of ref.sentences.slice(0, 3)) {
      const r = await predict(sc, { input: { text } }, { prefer: 'wait=60' });
      expect(r.body.status).toBe('succeeded');
      vectors.push(r.body.output as number[]);
    }
    const dot = (a: number[], b: number[]) => a.reduce((s, x, i) => s + x * b[i]!, 0);
    for (const [i, v] of vectors.entries()) {
      expect(v).toHaveLength(384);
      expect(v.every((x) => typeof x === 'number' && Number.isFinite(x))).toBe(true);
      expect(Math.sqrt(dot(v, v))).toBeCloseTo(1, 5);
      expect(dot(v, ref.embeddings[i]!)).toBeGreaterThan(0.9999);
    }
    // Two sentences that mean the same are closer than one about something else.
    expect(dot(vectors[0]!, vectors[1]!)).toBeGreaterThan(dot(vectors[0]!, vectors[2]!) + 0.3);
  });
});

describe.each(PROGRESS)('concurrency and the queue (progress: %s)', (progress) => {
  it('runs up to its slots at once', async () => {
    const sc = await sidecar(shared.sleep!.url, { progress, concurrency: 2 });
    const t0 = performance.now();
    const [a, b] = await Promise.all([
      predict(sc, { input: { seconds: 1 } }, { prefer: 'wait=30' }),
      predict(sc, { input: { seconds: 1 } }, { prefer: 'wait=30' }),
    ]);
    const elapsed = (performance.now() - t0) / 1000;
    expect(a!.body.status).toBe('succeeded');
    expect(b!.body.status).toBe('succeeded');
    expect(elapsed).toBeLessThan(1.8);
  });

  it('queues beyond the slots, refuses past the queue with 429 and Retry-After, and runs the queue in order', async () => {
    const sc = await sidecar(shared.sleep!.url, { progress, concurrency: 1, queueSize: 2 });
    const a = await predict(sc, { id: `${progress}-q-a`, input: { seconds: 1 } });
    const b = await predict(sc, { id: `${progress}-q-b`, input: { seconds: 0.2 } });
    const c = await predict(sc, { id: `${progress}-q-c`, input: { seconds: 0.2 } });
    expect([a.status, b.status, c.status]).toEqual([201, 201, 201]);
    expect(b.body.status).toBe('starting');
    const full = await predict(sc, { id: `${progress}-q-d`, input: { seconds: 0.2 } });
    expect(full.status).toBe(429);
    expect(full.headers.get('content-type')).toBe('application/problem+json');
    expect(full.headers.get('retry-after')).toBe('1');
    const load = await call('GET', `${sc.api}/load`);
    expect(load.body).toMatchObject({ slots: 1, inflight: 1, queued: 2, queue_size: 2, accepting: false });
    const done = [
      await until(sc, `${progress}-q-a`, ['succeeded']),
      await until(sc, `${progress}-q-b`, ['succeeded']),
      await until(sc, `${progress}-q-c`, ['succeeded']),
    ];
    const completed = done.map((p) => Date.parse(p.completed_at!));
    expect(completed[0]).toBeLessThanOrEqual(completed[1]!);
    expect(completed[1]).toBeLessThanOrEqual(completed[2]!);
    expect(done[1]!.metrics.queue_time).toBeGreaterThan(0.8);
    expect(done[1]!.metrics.predict_time).toBeLessThan(1);
  });

  it('keeps a prediction queued here while the model server answers 409 (all its slots busy)', async () => {
    const ms = await model('sleep', { concurrency: 1 });
    await ms.waitFor();
    // The sidecar believes in two slots; the model server has one.
    const sc = await sidecar(ms.url, { progress, concurrency: 2 });
    const a = await predict(sc, { id: `${progress}-b-a`, input: { seconds: 1 } });
    const b = await predict(sc, { id: `${progress}-b-b`, input: { seconds: 0.1 } });
    expect(a.status).toBe(201);
    expect(b.status).toBe(201);
    const pa = await until(sc, `${progress}-b-a`, ['succeeded']);
    const pb = await until(sc, `${progress}-b-b`, ['succeeded']);
    expect(Date.parse(pb.started_at!)).toBeGreaterThanOrEqual(Date.parse(pa.completed_at!) - 50);
    expect(readFileSync(sc.logFile, 'utf8')).toContain('model server busy (409); requeued');
  });
});

describe.each(PROGRESS)('cancel and timeouts (progress: %s)', (progress) => {
  it('cancels a queued prediction at once and a running one on the model server', async () => {
    const sc = await sidecar(shared.sleep!.url, { progress, concurrency: 1 });
    await predict(sc, { id: `${progress}-c-run`, input: { seconds: 30 } });
    await predict(sc, { id: `${progress}-c-queued`, input: { seconds: 30 } });
    await until(sc, `${progress}-c-run`, ['processing']);
    const queued = await call<P>('POST', `${sc.api}/predictions/${progress}-c-queued/cancel`);
    expect(queued.status).toBe(200);
    expect(queued.body).toMatchObject({ status: 'canceled', started_at: null });
    const t0 = performance.now();
    const running = await call<P>('POST', `${sc.api}/predictions/${progress}-c-run/cancel`);
    expect(running.status).toBe(200);
    const p = await until(sc, `${progress}-c-run`, ['canceled'], 10_000);
    expect((performance.now() - t0) / 1000).toBeLessThan(5);
    expect(p.metrics.predict_time).toBeLessThan(5);
    // The slot is free again.
    const next = await predict(sc, { input: { seconds: 0.1 } }, { prefer: 'wait=30' });
    expect(next.body.status).toBe('succeeded');
  });

  it('cancels a prediction that runs past the predict timeout and fails it with a clear error', async () => {
    const sc = await sidecar(shared.sleep!.url, { progress, concurrency: 1, predictTimeout: 1 });
    const t0 = performance.now();
    const r = await predict(sc, { input: { seconds: 30 } }, { prefer: 'wait=30' });
    expect((performance.now() - t0) / 1000).toBeLessThan(5);
    expect(r.body.status).toBe('failed');
    expect(r.body.error).toBe(
      'prediction timed out: it ran longer than the predict timeout of 1 s and was canceled',
    );
    expect(r.body.metrics.predict_time).toBeGreaterThanOrEqual(0.99);
    const next = await predict(sc, { input: { seconds: 0.1 } }, { prefer: 'wait=30' });
    expect(next.body.status).toBe('succeeded');
  });
});

describe.each(PROGRESS)('failures of the model server (progress: %s)', (progress) => {
  it('fails what it ran with "model server exited" and turns not ready when the model server is killed', async () => {
    const ms = await model('sleep', { concurrency: 1 });
    await ms.waitFor();
    const sc = await sidecar(ms.url, { progress, concurrency: 1 });
    await predict(sc, { id: `${progress}-k-run`, input: { seconds: 30 } });
    await predict(sc, { id: `${progress}-k-queued`, input: { seconds: 30 } });
    await until(sc, `${progress}-k-run`, ['processing']);
    await waitFor('the model server to run it', async () => (await ms.health()).status === 'BUSY');
    ms.process.signal('SIGKILL');
    const p = await until(sc, `${progress}-k-run`, ['failed'], 10_000);
    expect(p.error).toBe('model server exited');
    const q = await until(sc, `${progress}-k-queued`, ['failed'], 10_000);
    expect(q.error).toBe('model server exited before the prediction started');
    const ready = await call('GET', `${sc.api}/ready`);
    expect(ready.status).toBe(503);
    expect(ready.body).toMatchObject({ ready: false, reason: 'ModelServerExited' });
    const refused = await predict(sc, { input: { seconds: 1 } });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ title: 'Not ready', reason: 'ModelServerExited' });
  });

  it('fails what a restarted model server lost, then takes predictions again once it is ready', async () => {
    const port = await freePort();
    const first = await model('sleep', { port });
    await first.waitFor();
    // Health checks far apart, so the restart can fall between two of them.
    const sc = await sidecar(first.url, { progress, healthInterval: 1 });
    await predict(sc, { id: `${progress}-r-run`, input: { seconds: 30 } });
    await waitFor('the model server to run it', async () => (await first.health()).status === 'BUSY');
    first.process.signal('SIGKILL');
    await first.process.exited;
    first.process.signalGroup('SIGKILL');
    const second = await model('sleep', { port });
    const p = await until(sc, `${progress}-r-run`, ['failed'], 20_000);
    expect(p.error).toMatch(/^model server exited/);
    await second.waitFor();
    await waitReady(sc);
    const next = await predict(sc, { input: { seconds: 0.1 } }, { prefer: 'wait=30' });
    expect(next.body.status).toBe('succeeded');
  });

  it('reports a failed setup as not ready, with the setup logs', async () => {
    const ms = await model('setup-fail');
    const sc = await sidecar(ms.url, { progress }, {}, { ready: false });
    const r = await waitFor('reason SetupFailed', async () => {
      const res = await call('GET', `${sc.api}/ready`);
      return res.body.reason === 'SetupFailed' ? res : undefined;
    });
    expect(r.status).toBe(503);
    expect(String(r.body.message)).toContain('weights not found');
    expect(String(r.body.setup_logs)).toContain('weights not found: this model fails its setup on purpose');
    const refused = await predict(sc, { input: {} });
    expect(refused.status).toBe(503);
    expect(refused.body.reason).toBe('SetupFailed');
    const status = await call<{ state: string; setup: { logs: string } }>('GET', `${sc.api}/status`);
    expect(status.body.state).toBe('down');
    expect(readFileSync(sc.logFile, 'utf8')).toMatch(
      /"setupLogs":"[^"]*weights not found[^"]*".*"msg":"model setup failed"/,
    );
  });

  it('reports a setup timeout, and becomes ready if the model server comes up after all', async () => {
    const port = await freePort();
    const sc = await sidecar(
      `http://127.0.0.1:${port}`,
      { progress, setupTimeout: 0.5 },
      {},
      { ready: false },
    );
    const r = await waitFor('reason SetupTimeout', async () => {
      const res = await call('GET', `${sc.api}/ready`);
      return res.body.reason === 'SetupTimeout' ? res : undefined;
    });
    expect(r.status).toBe(503);
    expect(r.body.message).toBe('the model server was not ready within the setup timeout of 0.5 s');
    const ms = await model('echo', { port });
    await ms.waitFor();
    await waitReady(sc);
  });
});

describe('streaming', () => {
  it('streams output and logs as they happen, in order, with ids, and replays after Last-Event-ID', async () => {
    const sc = await sidecar(shared.stream!.url);
    const words = ['one', 'two', 'three', 'four', 'five'];
    const r = await predict(sc, { input: { prompt: words.join(' '), delay: 0.2 } });
    expect(r.status).toBe(201);
    const stream = await openSse(`${sc.api}/predictions/${r.body.id}/stream`);
    const events = await stream.events;
    expect(events.at(-1)).toMatchObject({ event: 'done', data: '{}' });
    expect(new Set(events.map((e) => e.event))).toEqual(new Set(['output', 'logs', 'done']));
    expect(events.map((e) => Number(e.id))).toEqual(events.map((_, i) => i + 1));
    expect(events.filter((e) => e.event === 'output').map((e) => e.data)).toEqual(words.map((w) => `${w} `));
    expect(events.filter((e) => e.event === 'logs').map((e) => e.data)).toEqual(
      words.map((_, i) => `token ${i}\n`),
    );
    // Live, not at the end: the first token came well before the prediction finished.
    const firstOutput = events.find((e) => e.event === 'output')!;
    expect(events.at(-1)!.at - firstOutput.at).toBeGreaterThan(500);
    // Each token's log line comes before the token itself.
    for (const w of words.slice(0, 4)) {
      const out = events.findIndex((e) => e.event === 'output' && e.data === `${w} `);
      const log = events.findIndex((e) => e.event === 'logs' && e.data === `token ${words.indexOf(w)}\n`);
      expect(log).toBeLessThan(out);
    }
    const replay = await (
      await openSse(`${sc.api}/predictions/${r.body.id}/stream`, { 'last-event-id': '3' })
    ).events;
    expect(replay.map((e) => e.id)).toEqual(events.slice(3).map((e) => e.id));
    const p = (await get(sc, r.body.id)).body;
    expect(p.output).toEqual(words.map((w) => `${w} `));
  });

  it('with progress final, sends the same events in the same order when the prediction ends', async () => {
    const sc = await sidecar(shared.stream!.url, { progress: 'final' });
    const words = ['one', 'two', 'three'];
    const r = await predict(sc, { input: { prompt: words.join(' '), delay: 0.05 } }, { prefer: 'wait=30' });
    expect(r.body.status).toBe('succeeded');
    const events = await (await openSse(`${sc.api}/predictions/${r.body.id}/stream`)).events;
    expect(events.filter((e) => e.event === 'output').map((e) => e.data)).toEqual(words.map((w) => `${w} `));
    expect(
      events
        .filter((e) => e.event === 'logs')
        .map((e) => e.data)
        .join(''),
    ).toBe('token 0\ntoken 1\ntoken 2\n');
    expect(events.at(-1)).toMatchObject({ event: 'done', data: '{}' });
  });

  it('sends keep-alive comments while nothing happens', async () => {
    const sc = await sidecar(shared.sleep!.url, {}, { keepAliveSeconds: 0.1 });
    const r = await predict(sc, { input: { seconds: 0.6 } });
    const stream = await openSse(`${sc.api}/predictions/${r.body.id}/stream`);
    const events = await stream.events;
    expect(stream.comments.filter((c) => c === ': keep-alive').length).toBeGreaterThanOrEqual(2);
    // "sleeping", then "awake" when it is done.
    expect(events.map((e) => e.event)).toEqual(['logs', 'logs', 'output', 'done']);
  });
});

describe('webhooks', () => {
  it('takes model server webhooks only with its bearer token', async () => {
    const token = 'tok-0123456789';
    const ms = await model('echo', { webhookToken: token });
    await ms.waitFor();
    const sc = await sidecar(ms.url, { webhookToken: token });
    const r = await predict(sc, { input: { text: 'authorized' } }, { prefer: 'wait=30' });
    expect(r.body.status).toBe('succeeded');
    const fake = { id: r.body.id, status: 'failed', error: 'forged', logs: '' };
    const none = await fetch(`${sc.webhook}/cog/${r.body.id}`, {
      method: 'POST',
      body: JSON.stringify(fake),
    });
    expect(none.status).toBe(401);
    const wrong = await fetch(`${sc.webhook}/cog/${r.body.id}`, {
      method: 'POST',
      headers: { authorization: 'Bearer tok-9876543210' },
      body: JSON.stringify(fake),
    });
    expect(wrong.status).toBe(401);
  });

  it('delivers start, output and completed webhooks to the caller, retrying the terminal one', async () => {
    const received: Array<{ status: string; output: unknown; cost?: string }> = [];
    let completedAttempts = 0;
    const receiver: Server = createServer((req: IncomingMessage, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          status: string;
          output: unknown;
        };
        if (body.status === 'succeeded' && ++completedAttempts === 1) {
          res.writeHead(500).end();
          return;
        }
        received.push(body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const sc = await sidecar(shared.stream!.url, {}, { webhookThrottleMs: 0 });
      const r = await predict(
        sc,
        { input: { prompt: 'x y', delay: 0.1 }, webhook: hook },
        { prefer: 'wait=30' },
      );
      expect(r.body.status).toBe('succeeded');
      await waitFor('the completed webhook', () => received.some((b) => b.status === 'succeeded'));
      expect(completedAttempts).toBe(2);
      expect(received[0]!.status).toBe('processing');
      const last = received.at(-1)!;
      expect(last).toMatchObject({ status: 'succeeded', output: ['x ', 'y '] });
      expect(last.cost).toBe(r.body.cost);
      expect(received.some((b) => b.status === 'processing' && Array.isArray(b.output))).toBe(true);
    } finally {
      receiver.close();
    }
  });
});

describe.each(PROGRESS)('metering (progress: %s)', (progress) => {
  it('meters a 2 s sleep within 1 % of the model server’s own predict_time, and prices it exactly', async () => {
    const direct = await call<{ status: string; metrics: { predict_time: number } }>(
      'POST',
      `${shared.sleep!.url}/predictions`,
      { input: { seconds: 2 } },
    );
    expect(direct.body.status).toBe('succeeded');
    const own = direct.body.metrics.predict_time;
    const sc = await sidecar(shared.sleep!.url, { progress });
    const r = await predict(sc, { input: { seconds: 2 } }, { prefer: 'wait=30' });
    expect(r.body.status).toBe('succeeded');
    const metered = r.body.metrics.predict_time!;
    // The reference is the model server's own figure for the same work, never the nominal 2 s:
    // on a loaded machine a 2 s sleep takes longer, for the model server and the meter alike.
    expect(Math.abs(metered - own) / own).toBeLessThan(0.01);
    expect(metered).toBeLessThanOrEqual(r.body.metrics.total_time!);
    const billed = fromNumber(metered, 6);
    expect(r.body.cost).toBe(format(multiply(billed, parseDecimal(PRICE))));
    const text = await (await fetch(`${sc.metrics}/metrics`)).text();
    const labels = { deployment: 'test-deployment', version: 'test-version', hardware: 'gpu-t4' };
    expect(metricValue(text, 'modelplane_billable_seconds_total', labels)).toBeCloseTo(metered, 6);
    expect(metricValue(text, 'modelplane_cost_total', labels)).toBeCloseTo(Number(r.body.cost), 12);
    expect(
      metricValue(text, 'modelplane_prediction_duration_seconds_count', { ...labels, status: 'succeeded' }),
    ).toBe(1);
    const status = await call<{ billable_seconds: string; cost: string }>('GET', `${sc.api}/status`);
    expect(status.body.billable_seconds).toBe(format(billed));
    expect(status.body.cost).toBe(r.body.cost);
  });

  it('counts instance seconds by state that add up to the wall time within 1 %', async () => {
    const ms = await model('sleep');
    const sc = await sidecar(ms.url, { progress }, {}, { ready: false });
    const scrape = async () => {
      const before = performance.now();
      const text = await (await fetch(`${sc.metrics}/metrics`)).text();
      const after = performance.now();
      const s = (state: string) => metricValue(text, 'modelplane_instance_seconds_total', { state });
      return {
        at: (before + after) / 2,
        setup: s('setup'),
        idle: s('idle'),
        busy: s('busy'),
        down: s('down'),
      };
    };
    const first = await scrape();
    await waitReady(sc);
    const r = await predict(sc, { input: { seconds: 1.5 } }, { prefer: 'wait=30' });
    expect(r.body.status).toBe('succeeded');
    // Let the instance sit idle for a second of its own clock, then read again.
    const idleBefore = (await scrape()).idle;
    await waitFor('a second of idle time', async () => (await scrape()).idle >= idleBefore + 1);
    const last = await scrape();
    const wall = (last.at - first.at) / 1000;
    const delta = (k: 'setup' | 'idle' | 'busy' | 'down') => last[k] - first[k];
    const sum = delta('setup') + delta('idle') + delta('busy') + delta('down');
    expect(wall).toBeGreaterThan(2.5);
    expect(Math.abs(sum - wall) / wall).toBeLessThan(0.01);
    expect(delta('setup')).toBeGreaterThan(0);
    expect(delta('idle')).toBeGreaterThan(0.9);
    expect(delta('busy')).toBeGreaterThanOrEqual(r.body.metrics.predict_time! - 0.05);
    expect(delta('down')).toBe(0);
  });
});

/** `POST /predictions` asking for the create's event stream: its status and frames. */
async function createStream(
  sc: RunningSidecar,
  body: Record<string, unknown>,
): Promise<{ status: number; frames: Array<{ id?: string; event: string; data: unknown }> }> {
  const res = await fetch(`${sc.api}/predictions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'text/event-stream' },
    body: JSON.stringify(body),
  });
  expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
  const frames = [];
  for await (const block of readSse(res.body!)) {
    frames.push({ id: block.id, event: block.event, data: JSON.parse(block.data ?? 'null') as unknown });
  }
  return { status: res.status, frames };
}

describe('progress auto and the create stream', () => {
  it('holds the predictions of a fast model once measured, and answers a create with its whole life', async () => {
    const sc = await sidecar(shared.echo!.url, { concurrency: 4 });
    for (let i = 0; i < 4; i++) {
      const r = await predict(sc, { input: { text: 'x' } }, { prefer: 'wait=30' });
      expect(r.body.status).toBe('succeeded');
    }
    const { status, frames } = await createStream(sc, { id: 'cs-1', input: { text: 'hi', repeat: 2 } });
    expect(status).toBe(201);
    expect(frames.map((f) => f.event)).toEqual(['accepted', 'logs', 'output', 'prediction']);
    expect(frames[0]!.data).toMatchObject({ status: 'processing' });
    expect(frames[1]).toMatchObject({ id: '1', data: expect.stringContaining('echo: 2 characters') });
    expect(frames[2]).toMatchObject({ id: '2', data: 'hihi' });
    const final = frames[3]!.data as P;
    expect(final).toMatchObject({ id: 'cs-1', status: 'succeeded', output: 'hihi' });
    expect(final.input).toBeUndefined();
    expect(final.cost).toBe(
      format(multiply(fromNumber(final.metrics.predict_time!, 6), parseDecimal(PRICE))),
    );
    // The first ones were followed by webhook (nothing measured yet), then held.
    const st = await call<{ progress: { mode: string; live: number; held: number } }>(
      'GET',
      `${sc.api}/status`,
    );
    expect(st.body.progress).toMatchObject({ mode: 'auto', live: 3, held: 2 });
    // The same id again: the same final record, from the start of its events.
    const again = await createStream(sc, { id: 'cs-1', input: { text: 'hi', repeat: 2 } });
    expect(again.status).toBe(200);
    expect(again.frames.at(-1)!.data).toEqual(final);
  });

  it('streams output items as JSON values in the create stream of an iterator model, followed live', async () => {
    const sc = await sidecar(shared.stream!.url);
    const { frames } = await createStream(sc, { input: { prompt: 'a b c', delay: 0 } });
    const items = frames.filter((f) => f.event === 'output').map((f) => f.data);
    expect(items).toEqual(['a ', 'b ', 'c ']);
    // Lines the model logs close together may come in one webhook of the model server: one event.
    expect(
      frames
        .filter((f) => f.event === 'logs')
        .map((f) => f.data)
        .join(''),
    ).toBe('token 0\ntoken 1\ntoken 2\n');
    const final = frames.at(-1)!.data as P;
    expect(final.status).toBe('succeeded');
    expect(final.output).toEqual(items);
    const st = await call<{ progress: { live: number; held: number } }>('GET', `${sc.api}/status`);
    expect(st.body.progress).toMatchObject({ live: 1, held: 0 });
  });

  it('keeps the logs of a failing model: the failures it measured make it follow the next ones live', async () => {
    const sc = await sidecar(shared.fail!.url);
    for (let i = 0; i < 5; i++) {
      const r = await predict(sc, { input: { message: `boom ${i}` } }, { prefer: 'wait=30' });
      expect(r.body.status).toBe('failed');
      expect(r.body.logs).toContain('about to fail');
    }
    const st = await call<{ progress: { live: number; held: number } }>('GET', `${sc.api}/status`);
    expect(st.body.progress).toMatchObject({ live: 5, held: 0 });
  });

  it('skips its own input check for a caller that checked the input (the model server refuses it)', async () => {
    const sc = await sidecar(shared.echo!.url, { progress: 'webhook' });
    const r = await predict(sc, { input: { repeat: 0 } }, { 'x-modelplane-input-checked': '1' });
    expect(r.status).toBe(422);
    // The model server's own words, not the sidecar's ("text is required", "... must be at least 1").
    expect(r.body.invalid_fields).toEqual([
      {
        type: 'invalid',
        field: 'input.repeat',
        description: 'input.repeat: 0 is less than the minimum of 1',
      },
      { type: 'required', field: 'input.text', description: 'input.text: Field required' },
    ]);
  });
});
