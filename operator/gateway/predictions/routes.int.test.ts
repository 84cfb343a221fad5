/**
 * The prediction engine and routes against real sidecars in front of real Cog servers (the
 * example models), with each deployment's endpoints given explicitly. Needs `make python`.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { validateWebhook } from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, waitFor } from '../../../harness/processes.ts';
import { EgressPolicy } from '../../../lib/egress.ts';
import { PREDICTION_ID } from '../../../lib/prediction.ts';
import { call, metricValue } from '../../../sidecar/testing/client.ts';
import { type ModelServer, modelsDir, startModelServer } from '../../../sidecar/testing/model-server.ts';
import {
  type RunningSidecar,
  type SidecarProcess,
  spawnSidecar,
  startSidecar,
} from '../../../sidecar/testing/sidecar.ts';
import { openSse } from '../../../sidecar/testing/sse.ts';
import {
  type DeploymentView,
  PredictionEngine,
  type PredictionView,
  StaticCatalog,
  StaticEndpoints,
} from '../../predictions/index.ts';
import { MAX_STREAMS_PER_PREDICTION, predictionRoutes } from './routes.ts';
import { StreamTokens } from './stream-token.ts';
import { serveRoutes, type TestServer } from './testing.ts';

const NS = 'team';
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const vid = (c: string) => c.repeat(64);
const schema = (model: string) =>
  JSON.parse(readFileSync(join(modelsDir, model, '.cog', 'openapi_schema.json'), 'utf8')) as unknown;

type P = PredictionView & { detail?: string; invalid_fields?: unknown[] };

const servers: ModelServer[] = [];
const sidecars: RunningSidecar[] = [];
const processes: SidecarProcess[] = [];
const catalog = new StaticCatalog();
const endpoints = new StaticEndpoints();
const registry = new Registry();
const pokes: string[] = [];
const tokens = new StreamTokens();
let engine: PredictionEngine;
let gw: TestServer;
const sc: Record<string, RunningSidecar> = {};

function deployment(name: string, model: string, over: Partial<DeploymentView> = {}): DeploymentView {
  const d: DeploymentView = {
    namespace: NS,
    name,
    model,
    versionId: vid(name[0]!),
    openapi: schema(model),
    maxConcurrency: 1,
    maxLength: 1000,
    maxWaitSeconds: 60,
    readyInstances: 1,
    ...over,
  };
  catalog.setDeployment(d);
  return d;
}

async function sidecarFor(model: ModelServer, concurrency: number): Promise<RunningSidecar> {
  const s = await startSidecar(model.url, { concurrency, queueSize: 64 });
  sidecars.push(s);
  await waitFor('the sidecar to be ready', async () => (await fetch(`${s.api}/ready`)).status === 200, {
    timeoutMs: 60_000,
  });
  return s;
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  call<P>('POST', `${gw.baseUrl}${path}`, body, headers);
const get = (path: string) => call<P>('GET', `${gw.baseUrl}${path}`);

async function until(id: string, statuses: string[], timeoutMs = 30_000): Promise<P> {
  return waitFor(
    `prediction ${id} to be ${statuses.join(' or ')}`,
    async () => {
      const r = await get(`/predictions/${id}`);
      return statuses.includes(r.body.status) ? r.body : undefined;
    },
    { timeoutMs },
  );
}

beforeAll(async () => {
  const specs: [string, number][] = [
    ['echo', 16],
    ['sleep', 2],
    ['fail', 1],
    ['stream', 1],
  ];
  const started = await Promise.all(
    specs.map(async ([name, concurrency]) => {
      const s = await startModelServer(name, { concurrency, throttleSeconds: 0 });
      servers.push(s);
      return s;
    }),
  );
  await Promise.all(started.map((s) => s.waitFor(['READY'], 120_000)));
  const [echo, sleep, fail, stream] = started as [ModelServer, ModelServer, ModelServer, ModelServer];
  // Two instances share the echo server's 16 slots, 8 each.
  sc.echo1 = await sidecarFor(echo, 8);
  sc.echo2 = await sidecarFor(echo, 8);
  sc.sleep = await sidecarFor(sleep, 2);
  sc.fail = await sidecarFor(fail, 1);
  sc.stream = await sidecarFor(stream, 1);

  deployment('echo', 'echo', { maxConcurrency: 8 });
  deployment('sleep', 'sleep', { maxConcurrency: 2, maxLength: 3 });
  deployment('fail', 'fail');
  deployment('stream', 'stream');
  deployment('nocheck', 'echo', { versionId: vid('9'), openapi: undefined, maxConcurrency: 8 });
  catalog.setModel(NS, 'echo', { deployment: 'echo' });
  catalog.setModel(NS, 'orphan', {});
  endpoints.set(NS, 'echo', [
    { id: 'echo-1', url: sc.echo1!.api },
    { id: 'echo-2', url: sc.echo2.api },
  ]);
  endpoints.set(NS, 'nocheck', [{ id: 'echo-1', url: sc.echo1.api }]);
  endpoints.set(NS, 'sleep', [{ id: 'sleep-1', url: sc.sleep.api }]);
  endpoints.set(NS, 'fail', [{ id: 'fail-1', url: sc.fail.api }]);
  endpoints.set(NS, 'stream', [{ id: 'stream-1', url: sc.stream.api }]);

  engine = new PredictionEngine({
    catalog,
    endpoints,
    registry,
    streamUrl: (rec) => tokens.url(rec),
    log: pino({ level: 'silent' }),
    secretFor: () => SECRET,
    // The webhook receivers of these tests listen on loopback.
    webhookOptions: { retryBaseMs: 50, egress: new EgressPolicy(['127.0.0.0/8']) },
  });
  engine.onPoke((ns, name) => pokes.push(`${ns}/${name}`));
  gw = await serveRoutes(predictionRoutes({ engine, catalog, tokens, keepAliveMs: 200 }));
}, 240_000);

afterAll(async () => {
  engine?.close();
  await gw?.close();
  await Promise.all(processes.map((p) => p.process.stop()));
  await Promise.all(sidecars.map((s) => s.stop()));
  await Promise.all(servers.map((s) => s.stop()));
});

describe('predictions through the gateway engine', () => {
  it('runs a prediction on a deployment and answers in the API shape', async () => {
    const r = await post(
      `/deployments/${NS}/echo/predictions`,
      { input: { text: 'hi', repeat: 2 } },
      { prefer: 'wait=30' },
    );
    expect(r.status).toBe(201);
    expect(r.headers.get('preference-applied')).toBe('wait=30');
    const p = r.body;
    expect(p.id).toMatch(PREDICTION_ID);
    expect(p).toMatchObject({
      status: 'succeeded',
      output: 'hihi',
      error: null,
      model: `${NS}/echo`,
      version: vid('e'),
      deployment: `${NS}/echo`,
      source: 'api',
      data_removed: false,
      input: { text: 'hi', repeat: 2 },
    });
    expect(p.logs).toContain('echo: 2 characters, 2 times');
    expect(Date.parse(p.created_at)).toBeLessThanOrEqual(Date.parse(p.started_at!));
    expect(Date.parse(p.started_at!)).toBeLessThanOrEqual(Date.parse(p.completed_at!));
    expect(p.metrics.predict_time).toBeGreaterThan(0);
    expect(p.metrics.total_time).toBeGreaterThanOrEqual(p.metrics.predict_time!);
    expect(p.urls.get).toBe(`${gw.baseUrl}/predictions/${p.id}`);
    expect(p.urls.cancel).toBe(`${gw.baseUrl}/predictions/${p.id}/cancel`);
    expect(p.urls.stream).toMatch(new RegExp(`^${gw.baseUrl}/predictions/${p.id}/stream\\?token=`));

    const again = await get(`/predictions/${p.id}`);
    expect(again.body).toEqual(p);
    const list = await get('/predictions');
    expect(list.body).toMatchObject({ previous: null });
    expect((list.body as unknown as { results: P[] }).results[0]!.id).toBe(p.id);
  });

  it('resolves a version id, owner/name:id and owner/name, and says when nothing runs a version', async () => {
    for (const version of [vid('e'), `${NS}/echo:${vid('e')}`, `${NS}/echo`]) {
      const r = await post(
        '/predictions',
        { version, input: { text: version.slice(0, 3) } },
        { prefer: 'wait=30' },
      );
      expect(r.status, version).toBe(201);
      expect(r.body).toMatchObject({ status: 'succeeded', output: version.slice(0, 3), version: vid('e') });
      expect('deployment' in r.body).toBe(false);
    }
    const viaModel = await post(
      `/models/${NS}/echo/predictions`,
      { input: { text: 'm' } },
      { prefer: 'wait=30' },
    );
    expect(viaModel.body).toMatchObject({ status: 'succeeded', output: 'm', model: `${NS}/echo` });

    const none = await post('/predictions', { version: vid('0'), input: {} });
    expect(none.status).toBe(422);
    expect(none.headers.get('content-type')).toBe('application/problem+json');
    expect(none.body.detail).toContain(`no deployment runs version ${vid('0')}`);
    expect(none.body.detail).toContain('create one');
    const orphan = await post(`/models/${NS}/orphan/predictions`, { input: {} });
    expect(orphan.status).toBe(422);
    expect(orphan.body.detail).toContain('has no deployment');
    expect((await post(`/deployments/${NS}/nope/predictions`, { input: {} })).status).toBe(404);
    expect((await get('/predictions/aaaaaaaaaaaaaaaaaaaaaaaaaa')).status).toBe(404);
  });

  it('fails a prediction whose model raises, with its error and logs', async () => {
    const r = await post(
      `/deployments/${NS}/fail/predictions`,
      { input: { message: 'the GPU caught fire' } },
      { prefer: 'wait=30' },
    );
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('failed');
    expect(r.body.error).toContain('the GPU caught fire');
    expect(r.body.logs).toContain('about to fail');
  });

  it('refuses invalid input with 422 invalid_fields, its own check or the instance’s', async () => {
    const r = await post(`/deployments/${NS}/echo/predictions`, { input: { repeat: 0 } });
    expect(r.status).toBe(422);
    expect(r.headers.get('content-type')).toBe('application/problem+json');
    expect(r.body.invalid_fields).toEqual([
      { type: 'required', field: 'input.text', description: 'text is required' },
      { type: 'minimum', field: 'input.repeat', description: 'input.repeat must be at least 1' },
    ]);
    // No schema known to the gateway: the sidecar's 422 comes through the same way.
    const passed = await post(`/deployments/${NS}/nocheck/predictions`, { input: { text: 5 } });
    expect(passed.status).toBe(422);
    expect(passed.body.invalid_fields).toEqual([
      { type: 'type', field: 'input.text', description: 'input.text must be of type string' },
    ]);
  });

  it('refuses a deep body (400) and a webhook to a refused address (422 on webhook), and serves on', async () => {
    const nested = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    const deep = await fetch(`${gw.baseUrl}/deployments/${NS}/echo/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: `{"input":{"text":"x","n":${nested}},"webhook":"https://hooks.example/x"}`,
    });
    expect(deep.status).toBe(400);
    expect(deep.headers.get('content-type')).toBe('application/problem+json');
    expect(await deep.json()).toMatchObject({ title: 'JSON nested too deeply', status: 400 });
    // Loopback is allowed in these tests; metadata and private addresses still are not.
    for (const webhook of [
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/hook',
      'http://[fe80::1]/',
    ]) {
      const r = await post(`/deployments/${NS}/echo/predictions`, { input: { text: 'x' }, webhook });
      expect(r.status).toBe(422);
      expect(r.headers.get('content-type')).toBe('application/problem+json');
      expect(r.body.invalid_fields).toEqual([
        expect.objectContaining({
          field: 'webhook',
          description: expect.stringMatching(/may not point at a private/),
        }),
      ]);
    }
    const ok = await post(`/deployments/${NS}/echo/predictions`, { input: { text: 'still up' } });
    expect(ok.status).toBe(201);
    expect((await until(ok.body.id, ['succeeded'])).status).toBe('succeeded');
  });

  it('queues beyond the concurrency, reports demand, and refuses past spec.queue.maxLength with 429', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const r = await post(`/deployments/${NS}/sleep/predictions`, { input: { seconds: 1.5 } });
      expect(r.status).toBe(201);
      ids.push(r.body.id);
    }
    const d = engine.demand().find((x) => x.name === 'sleep')!;
    expect(d).toMatchObject({ namespace: NS, queued: 3, inflight: 2, perPod: { 'sleep-1': 2 } });
    expect(d.lastActivityMs).toBeGreaterThan(0);
    const full = await post(`/deployments/${NS}/sleep/predictions`, { input: { seconds: 1 } });
    expect(full.status).toBe(429);
    expect(full.headers.get('retry-after')).toBe('1');
    expect(full.body.detail).toContain('maxLength');
    const done = await Promise.all(ids.map((id) => until(id, ['succeeded'], 30_000)));
    // FIFO: the third started when one of the first two had finished.
    const firstEnd = Math.min(...done.slice(0, 2).map((p) => Date.parse(p.completed_at!)));
    expect(Date.parse(done[2]!.started_at!)).toBeGreaterThanOrEqual(firstEnd - 50);
    const metrics = await registry.metrics();
    expect(
      metricValue(metrics, 'modelplane_gateway_predictions_total', {
        deployment: `${NS}/sleep`,
        status: 'succeeded',
      }),
    ).toBeGreaterThanOrEqual(5);
  });

  it('holds a prediction while no instance is ready, pokes, and runs it when one turns ready', async () => {
    deployment('late', 'echo', { versionId: vid('1'), maxConcurrency: 8 });
    const before = pokes.length;
    const r = await post(`/deployments/${NS}/late/predictions`, { input: { text: 'late' } });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('starting');
    expect(pokes.slice(before)).toContain(`${NS}/late`);
    expect(engine.demand().find((x) => x.name === 'late')).toMatchObject({ queued: 1, inflight: 0 });
    endpoints.set(NS, 'late', [{ id: 'late-1', url: sc.echo2!.api }]);
    const p = await until(r.body.id, ['succeeded']);
    expect(p.output).toBe('late');
  });

  it('fails a held prediction at spec.queue.maxWaitSeconds with the reason, and tells its webhook', async () => {
    deployment('cold', 'echo', {
      versionId: vid('2'),
      maxWaitSeconds: 1,
      readyInstances: 0,
      conditions: [
        {
          type: 'Ready',
          status: 'False',
          reason: 'InsufficientInstances',
          message: '0 of 1 instances ready',
        },
        {
          type: 'Degraded',
          status: 'True',
          reason: 'InsufficientCapacity',
          message: 'no node with a free nvidia.com/gpu matches the hardware class gpu-t4',
        },
      ],
    });
    const hook = await receiver();
    const r = await post(`/deployments/${NS}/cold/predictions`, {
      input: { text: 'x' },
      webhook: hook.url,
      webhook_events_filter: ['completed'],
    });
    const p = await until(r.body.id, ['failed'], 10_000);
    expect(p.error).toContain(`no instance of deployment ${NS}/cold became ready within 1 s`);
    expect(p.error).toContain('InsufficientCapacity: no node with a free nvidia.com/gpu');
    const got = await waitFor('the terminal webhook', () =>
      hook.got.find((g) => JSON.parse(g.body).status === 'failed'),
    );
    expect(JSON.parse(got.body).error).toBe(p.error);
    hook.close();
  });

  it('cancels a queued prediction at once and a running one on its instance', async () => {
    const running = await post(`/deployments/${NS}/sleep/predictions`, { input: { seconds: 30 } });
    const running2 = await post(`/deployments/${NS}/sleep/predictions`, { input: { seconds: 30 } });
    const queued = await post(`/deployments/${NS}/sleep/predictions`, { input: { seconds: 30 } });
    expect(queued.body.status).toBe('starting');
    const c1 = await post(`/predictions/${queued.body.id}/cancel`, {});
    expect(c1.status).toBe(200);
    expect(c1.body).toMatchObject({ id: queued.body.id, status: 'canceled', error: null });
    await until(running.body.id, ['processing']);
    await post(`/predictions/${running.body.id}/cancel`, {});
    await post(`/predictions/${running2.body.id}/cancel`, {});
    const p = await until(running.body.id, ['canceled'], 10_000);
    expect(p.completed_at).not.toBeNull();
    await until(running2.body.id, ['canceled'], 10_000);
  });

  it('cancels at the Cancel-After deadline, and refuses one under 5 s', async () => {
    const bad = await post(
      `/deployments/${NS}/sleep/predictions`,
      { input: { seconds: 1 } },
      { 'cancel-after': '2s' },
    );
    expect(bad.status).toBe(422);
    const r = await post(
      `/deployments/${NS}/sleep/predictions`,
      { input: { seconds: 60 } },
      { 'cancel-after': '5s' },
    );
    const p = await until(r.body.id, ['canceled'], 15_000);
    const took = Date.parse(p.completed_at!) - Date.parse(p.created_at);
    expect(took).toBeGreaterThanOrEqual(5000);
    expect(took).toBeLessThan(9000);
  });

  it('answers a Prefer: wait that runs out with status starting', async () => {
    const r = await post(
      `/deployments/${NS}/sleep/predictions`,
      { input: { seconds: 3 } },
      { prefer: 'wait=1' },
    );
    expect(r.status).toBe(201);
    expect(r.headers.get('preference-applied')).toBe('wait=1');
    expect(r.body.status).toBe('starting');
    const real = await get(`/predictions/${r.body.id}`);
    expect(real.body.status).toBe('processing');
    await until(r.body.id, ['succeeded']);
  });

  it('streams output and logs in order over SSE with a signed URL, and resumes after Last-Event-ID', async () => {
    const r = await post(`/deployments/${NS}/stream/predictions`, {
      input: { prompt: 'one two three', delay: 0.3 },
    });
    const stream = await openSse(r.body.urls.stream!);
    // While it runs, GET shows the output so far.
    const partial = await waitFor('partial output while processing', async () => {
      const p = (await get(`/predictions/${r.body.id}`)).body;
      return p.status === 'processing' && Array.isArray(p.output) && p.output.length > 0 ? p : undefined;
    });
    expect((partial.output as string[])[0]).toBe('one ');
    expect(partial.logs).toContain('token 0');
    const events = await stream.events;
    // The stream lasted about a second; keep-alives come every 200 ms here.
    expect(stream.comments.length).toBeGreaterThan(0);
    expect(stream.comments.every((c) => c.startsWith(':'))).toBe(true);
    const names = events.map((e) => e.event);
    expect(names.at(-1)).toBe('done');
    expect(events.at(-1)!.data).toBe('{}');
    expect(events.filter((e) => e.event === 'output').map((e) => e.data)).toEqual(['one ', 'two ', 'three ']);
    expect(
      events
        .filter((e) => e.event === 'logs')
        .map((e) => e.data)
        .join(''),
    ).toContain('token 2');
    expect(new Set(names)).toEqual(new Set(['output', 'logs', 'done']));
    expect(events.map((e) => Number(e.id))).toEqual(events.map((_, i) => i + 1));
    const resumed = await (await openSse(r.body.urls.stream!, { 'last-event-id': '2' })).events;
    expect(resumed.map((e) => e.id)).toEqual(events.slice(2).map((e) => e.id));
    const forged = await fetch(r.body.urls.stream!.replace(/token=.*/, 'token=forged'));
    expect(forged.status).toBe(404);
    const p = await until(r.body.id, ['succeeded']);
    expect(p.output).toEqual(['one ', 'two ', 'three ']);
  });

  it('serves at most MAX_STREAMS_PER_PREDICTION streams of one prediction at once; more get 429', async () => {
    const r = await post(`/deployments/${NS}/stream/predictions`, {
      input: { prompt: 'a b c d e f g h', delay: 0.5 },
    });
    const url = r.body.urls.stream!;
    const open = new AbortController();
    try {
      const streams = [];
      for (let i = 0; i < MAX_STREAMS_PER_PREDICTION; i++) {
        const res = await fetch(url, { signal: open.signal });
        expect(res.status).toBe(200);
        streams.push(res);
      }
      const extra = await fetch(url);
      expect(extra.status).toBe(429);
      expect(extra.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      expect(extra.headers.get('retry-after')).toBe('1');
      expect(((await extra.json()) as { title: string }).title).toBe('Too many streams');
    } finally {
      open.abort();
    }
    // Closed streams free their places.
    await waitFor('a stream to be served again', async () => {
      const again = new AbortController();
      const res = await fetch(url, { signal: again.signal });
      again.abort();
      return res.status === 200;
    });
    await until(r.body.id, ['succeeded']);
  });

  it('sends webhooks signed with the namespace secret, as GET returns the prediction', async () => {
    const hook = await receiver();
    const r = await post(`/deployments/${NS}/stream/predictions`, {
      input: { prompt: 'a b', delay: 0.1 },
      webhook: hook.url,
    });
    await until(r.body.id, ['succeeded']);
    await engine.drainWebhooks();
    const bodies = hook.got.map((g) => JSON.parse(g.body) as P);
    expect(bodies[0]!.status).toBe('processing');
    expect(bodies.at(-1)!.status).toBe('succeeded');
    expect(bodies.at(-1)).toEqual((await get(`/predictions/${r.body.id}`)).body);
    for (const g of hook.got) {
      expect(
        await validateWebhook(
          { headers: g.headers as Record<string, string>, body: g.body } as never,
          SECRET,
        ),
      ).toBe(true);
    }
    const tampered = { ...hook.got[0]!, body: hook.got[0]!.body.replace('processing', 'succeeded') };
    expect(
      await validateWebhook(
        { headers: tampered.headers as Record<string, string>, body: tampered.body } as never,
        SECRET,
      ),
    ).toBe(false);
    hook.close();
  });

  it('returns the first prediction for a repeated Idempotency-Key, even when sent at once', async () => {
    const key = `key-${Date.now()}`;
    const [a, b, c] = await Promise.all(
      [1, 2, 3].map(() =>
        post(`/deployments/${NS}/echo/predictions`, { input: { text: 'once' } }, { 'idempotency-key': key }),
      ),
    );
    expect(new Set([a!.body.id, b!.body.id, c!.body.id]).size).toBe(1);
    expect([a, b, c].filter((x) => x!.headers.get('idempotent-replayed') === 'true')).toHaveLength(2);
    const other = await post(
      `/deployments/${NS}/echo/predictions`,
      { input: { text: 'twice' } },
      { 'idempotency-key': `${key}-2` },
    );
    expect(other.body.id).not.toBe(a!.body.id);
  });

  it('sends a prediction to another instance when one refuses connections', async () => {
    const dead = `http://127.0.0.1:${await freePort()}`;
    deployment('flaky', 'echo', { versionId: vid('3'), maxConcurrency: 8 });
    endpoints.set(NS, 'flaky', [
      { id: 'flaky-dead', url: dead },
      { id: 'flaky-live', url: sc.echo1!.api },
    ]);
    const results = await Promise.all(
      [1, 2, 3].map((i) =>
        post(`/deployments/${NS}/flaky/predictions`, { input: { text: `f${i}` } }, { prefer: 'wait=30' }),
      ),
    );
    for (const [i, r] of results.entries())
      expect(r.body).toMatchObject({ status: 'succeeded', output: `f${i + 1}` });
  });

  it('fails a prediction whose instance is killed mid-run, naming the instance', async () => {
    const ms = await startModelServer('sleep', { concurrency: 1, throttleSeconds: 0 });
    servers.push(ms);
    await ms.waitFor(['READY'], 120_000);
    const proc = await spawnSidecar(['--model-url', ms.url, '--concurrency', '1']);
    processes.push(proc);
    await waitFor('the sidecar to be ready', async () => (await fetch(`${proc.api}/ready`)).status === 200, {
      timeoutMs: 60_000,
    });
    deployment('doomed', 'sleep', { versionId: vid('4') });
    endpoints.set(NS, 'doomed', [{ id: 'doomed-pod-7', url: proc.api }]);
    const r = await post(`/deployments/${NS}/doomed/predictions`, { input: { seconds: 60 } });
    await until(r.body.id, ['processing']);
    proc.process.signalGroup('SIGKILL');
    const p = await until(r.body.id, ['failed'], 15_000);
    expect(p.error).toContain('instance doomed-pod-7');
    expect(p.error).toContain('went away while running the prediction');
  });

  it('drains on shutdown: running ones finish, held ones fail saying why, new ones get 503', async () => {
    deployment('frozen', 'echo', { versionId: vid('5'), maxWaitSeconds: 60 });
    const second = new PredictionEngine({ catalog, endpoints, log: pino({ level: 'silent' }) });
    const base = { namespace: NS, baseUrl: gw.baseUrl };
    const running = (await second.create({ ...base, deployment: 'sleep', input: { seconds: 1 } })).record;
    const held = (await second.create({ ...base, deployment: 'frozen', input: { text: 'x' } })).record;
    expect(running.status).toBe('processing');
    expect(held.status).toBe('starting');
    const drained = second.drain(3_000);
    await expect(
      second.create({ ...base, deployment: 'echo', input: { text: 'late' } }),
    ).rejects.toMatchObject({
      status: 503,
    });
    await drained;
    expect(await second.get(running.id)).toMatchObject({ status: 'succeeded', output: 'slept 1 s' });
    expect(await second.get(held.id)).toMatchObject({
      status: 'failed',
      error: 'the gateway shut down before an instance took the prediction',
    });
  });

  it('runs 200 concurrent predictions over two instances, none lost', async () => {
    const n = 200;
    const results = await Promise.all(
      Array.from({ length: n }, (_, i) =>
        post(`/deployments/${NS}/echo/predictions`, { input: { text: `n${i}` } }, { prefer: 'wait=60' }),
      ),
    );
    const ids = new Set(results.map((r) => r.body.id));
    expect(ids.size).toBe(n);
    const final = await Promise.all(
      results.map((r) => until(r.body.id, ['succeeded', 'failed', 'canceled'], 60_000)),
    );
    expect(final.filter((p) => p.status === 'succeeded')).toHaveLength(n);
    final.forEach((p, i) => {
      expect(p.output).toBe(`n${i}`);
    });
    const d = engine.demand().find((x) => x.name === 'echo')!;
    expect(d).toMatchObject({ queued: 0, inflight: 0 });
    // The list pages through all of them, newest first, with absolute next URLs.
    type Page = { status: number; body: { previous: string | null; next: string | null; results: P[] } };
    const listed: P[] = [];
    const pages: Page[] = [];
    let next: string | null = `${gw.baseUrl}/predictions`;
    while (next) {
      const page: Page = await call('GET', next);
      expect(page.status).toBe(200);
      pages.push(page);
      listed.push(...page.body.results);
      next = page.body.next;
      if (next) expect(next.startsWith(`${gw.baseUrl}/predictions?cursor=`)).toBe(true);
    }
    // And back: the last page's `previous` is the page before it, the first page has none.
    expect(pages.length).toBeGreaterThan(1);
    expect(pages[0]!.body.previous).toBeNull();
    const back: Page = await call('GET', pages.at(-1)!.body.previous!);
    expect(back.body.results.map((p) => p.id)).toEqual(pages.at(-2)!.body.results.map((p) => p.id));
    expect((await call('GET', `${gw.baseUrl}/predictions?cursor=b.garbage`)).status).toBe(400);
    expect(new Set(listed.map((p) => p.id)).size).toBe(listed.length);
    expect(listed.map((p) => p.id)).toEqual(expect.arrayContaining([...ids]));
    const times = listed.map((p) => Date.parse(p.created_at));
    expect(times).toEqual([...times].sort((a, b) => b - a));
  }, 120_000);
});

async function receiver() {
  const got: { headers: Record<string, string | string[] | undefined>; body: string }[] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => {
      body += c;
    });
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    got,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`,
    close: () => server.close(),
  };
}
