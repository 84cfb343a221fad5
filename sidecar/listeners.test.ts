/**
 * The sidecar's three listeners over loopback, on a fake clock against a fake model server:
 * the API's answers (created, held with `Prefer: wait`, streamed, canceled), its refusals as
 * problem+json with their statuses and titles, 404 and 405, the metrics endpoint, and the
 * bearer check of the Cog webhook listener.
 */
import { request } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { MAX_BODY_BYTES } from '../lib/http.ts';
import type { Listening } from './listeners.ts';
import { call, metricValue } from './testing/client.ts';
import { type UnitSidecar, unitSidecar } from './testing/fake-cog.ts';
import { openSse } from './testing/sse.ts';

const SCHEMA = {
  components: {
    schemas: {
      Input: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
      Output: { type: 'string' },
    },
  },
};

let running: UnitSidecar | undefined;
afterEach(async () => {
  await running?.sidecar.stop();
  running = undefined;
});

async function listening(
  opts: { ready?: boolean; webhookToken?: string; queueSize?: number } = {},
): Promise<{ u: UnitSidecar; at: Listening }> {
  const u = await unitSidecar(
    {
      host: '127.0.0.1',
      port: 0,
      metricsHost: '127.0.0.1',
      metricsPort: 0,
      webhookHost: '127.0.0.1',
      webhookPort: 0,
      webhookToken: opts.webhookToken,
      concurrency: 1,
      queueSize: opts.queueSize ?? 16,
    },
    { ready: opts.ready ?? true },
  );
  running = u;
  return { u, at: await u.sidecar.start() };
}

function expectProblem(
  r: { status: number; headers: Headers; body: unknown },
  status: number,
  title: string,
): void {
  expect(r.status).toBe(status);
  expect(r.headers.get('content-type')).toBe('application/problem+json');
  expect(r.body).toMatchObject({ status, title });
}

/** A POST that declares a body of `length` bytes and sends none of it. */
function declareBody(
  url: string,
  length: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; connection?: string }> {
  return new Promise((resolvePost, reject) => {
    const req = request(
      url,
      { method: 'POST', headers: { ...headers, 'content-length': String(length) } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          body += c;
        });
        res.on('end', () => {
          resolvePost({ status: res.statusCode ?? 0, body, connection: res.headers.connection });
          req.destroy();
        });
      },
    );
    req.on('error', reject);
    req.flushHeaders();
  });
}

describe('the API listener', () => {
  it('creates, holds with Prefer: wait, reads, streams and cancels predictions', async () => {
    const { u, at } = await listening();
    const held = call(
      'POST',
      `${at.api}/predictions`,
      { id: 'a', input: { text: 'hi' } },
      { prefer: 'wait=5' },
    );
    await vi.waitFor(() => expect(u.cog.created).toEqual(['a']));
    const running = await call('GET', `${at.api}/predictions/a`);
    expect(running.status).toBe(200);
    expect(running.headers.get('content-type')).toBe('application/json');
    expect(running.body).toMatchObject({ id: 'a', status: 'processing', input: { text: 'hi' } });
    expect(running.body.urls).toEqual({
      get: `${at.api}/predictions/a`,
      cancel: `${at.api}/predictions/a/cancel`,
      stream: `${at.api}/predictions/a/stream`,
    });
    const stream = await openSse(`${at.api}/predictions/a/stream`);
    u.cog.send('a', { status: 'processing', logs: 'step 1\n', output: ['x'] });
    u.cog.send('a', { status: 'succeeded', logs: 'step 1\n', output: ['x', 'y'] });
    const done = await held;
    expect(done.status).toBe(201);
    expect(done.headers.get('preference-applied')).toBe('wait=5');
    expect(done.body).toMatchObject({ id: 'a', status: 'succeeded', output: ['x', 'y'] });
    expect((await stream.events).map((e) => [e.id, e.event, e.data])).toEqual([
      ['1', 'logs', 'step 1\n'],
      ['2', 'output', 'x'],
      ['3', 'output', 'y'],
      ['4', 'done', '{}'],
    ]);
    // Idempotent by id: the same create answers 200 with the prediction made.
    const again = await call('POST', `${at.api}/predictions`, { id: 'a', input: { text: 'other' } });
    expect(again.status).toBe(200);
    expect(again.body).toMatchObject({ id: 'a', input: { text: 'hi' } });

    const b = await call('POST', `${at.api}/predictions`, { input: { text: 'hi' } });
    expect(b.status).toBe(201);
    expect(b.body.id).toMatch(/^[a-z2-7]{26}$/);
    const id = b.body.id as string;
    const canceling = call('POST', `${at.api}/predictions/${id}/cancel`);
    // The answer waits for the model server to confirm.
    await vi.waitFor(() => expect(u.cog.cancels).toEqual([id]));
    u.cog.send(id, { status: 'canceled' });
    expect(await canceling).toMatchObject({ status: 200, body: { id, status: 'canceled' } });
  });

  it('answers readiness, liveness, load, status and the schema', async () => {
    const { u, at } = await listening();
    expect(await call('GET', `${at.api}/ready`)).toMatchObject({
      status: 200,
      body: { ready: true, reason: 'Ready' },
    });
    expect(await call('GET', `${at.api}/live`)).toMatchObject({ status: 200, body: { live: true } });
    expect((await call('GET', `${at.api}/load`)).body).toMatchObject({ slots: 1, inflight: 0, ready: true });
    expect((await call('GET', `${at.api}/status`)).body).toMatchObject({
      ready: true,
      deployment: 'test-deployment',
      load: { slots: 1 },
    });
    expectProblem(await call('GET', `${at.api}/openapi.json`), 503, 'No schema');
    u.cog.schema = SCHEMA;
    u.cog.state = { status: 'READY', setup: { started_at: 'restarted', logs: '' } };
    await u.run(1000);
    expect(await call('GET', `${at.api}/openapi.json`)).toMatchObject({ status: 200, body: SCHEMA });
  });

  it('refuses bad requests as problem+json with their statuses and titles', async () => {
    const { u, at } = await listening({ queueSize: 0 });
    u.cog.schema = SCHEMA;
    u.cog.state = { status: 'READY', setup: { started_at: 'restarted', logs: '' } };
    await u.run(1000);
    const post = (body: string) =>
      fetch(`${at.api}/predictions`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
    const parse = async (r: Response) => ({ status: r.status, headers: r.headers, body: await r.json() });

    expectProblem(await parse(await post('{"input":')), 400, 'Malformed JSON');
    expectProblem(await parse(await post('[1]')), 400, 'Bad request');
    expectProblem(await call('POST', `${at.api}/predictions`, { id: 'no/slash' }), 400, 'Bad request');
    expectProblem(
      await call('POST', `${at.api}/predictions`, { input: { text: 'x' }, webhook: 'ftp://x' }),
      400,
      'Bad request',
    );
    // Nested deeper than any input needs (and than JSON.stringify can write): refused as it arrives.
    const deep = await parse(
      await post(`{"input":{"text":"x","n":${'['.repeat(200_000)}${']'.repeat(200_000)}}}`),
    );
    expectProblem(deep, 400, 'JSON nested too deeply');
    for (const webhook of [
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.1/hook',
      'http://[fd00::1]/',
    ]) {
      const refused = await call('POST', `${at.api}/predictions`, { input: { text: 'x' }, webhook });
      expectProblem(refused, 422, 'Invalid request');
      expect(refused.body.invalid_fields).toEqual([
        expect.objectContaining({
          field: 'webhook',
          description: expect.stringMatching(/may not point at a private/),
        }),
      ]);
    }
    const invalid = await call('POST', `${at.api}/predictions`, { input: { text: 3 } });
    expectProblem(invalid, 422, 'Invalid input');
    expect(invalid.body.invalid_fields).toEqual([expect.objectContaining({ field: 'input.text' })]);
    expectProblem(await call('POST', `${at.api}/predictions`, { input: 'text' }), 422, 'Invalid input');

    // The sidecar reads no more than the gateway does.
    const tooLarge = await declareBody(`${at.api}/predictions`, MAX_BODY_BYTES + 1);
    expect(tooLarge.status).toBe(413);
    expect(tooLarge.connection).toBe('close');
    expect(JSON.parse(tooLarge.body)).toMatchObject({ status: 413, title: 'Request body too large' });

    expect((await call('POST', `${at.api}/predictions`, { id: 'a', input: { text: 'x' } })).status).toBe(201);
    const full = await call('POST', `${at.api}/predictions`, { input: { text: 'x' } });
    expectProblem(full, 429, 'Too many requests');
    expect(full.headers.get('retry-after')).toBe('1');

    expectProblem(await call('GET', `${at.api}/predictions/nope`), 404, 'Prediction not found');
    expectProblem(await call('GET', `${at.api}/nothing/here`), 404, 'Not found');
    const wrongMethod = await call('DELETE', `${at.api}/predictions/a`);
    expectProblem(wrongMethod, 405, 'Method not allowed');
    expect(wrongMethod.headers.get('allow')).toBe('GET');
    expect((await call('GET', `${at.api}/predictions`)).headers.get('allow')).toBe('POST');
  });

  it('refuses predictions with 503, Retry-After and the reason while not ready', async () => {
    const { at } = await listening({ ready: false });
    const refused = await call('POST', `${at.api}/predictions`, { input: {} });
    expectProblem(refused, 503, 'Not ready');
    expect(refused.headers.get('retry-after')).toBe('1');
    expect(refused.body.reason).toBe('SettingUp');
    expect(await call('GET', `${at.api}/ready`)).toMatchObject({
      status: 503,
      body: { ready: false, reason: 'SettingUp' },
    });
  });
});

describe('the metrics listener', () => {
  it('serves GET /metrics, 405 for other methods, 404 elsewhere', async () => {
    const { at } = await listening();
    const res = await fetch(`${at.metrics}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/plain/);
    expect(metricValue(await res.text(), 'modelplane_ready', { deployment: 'test-deployment' })).toBe(1);
    expectProblem(await call('POST', `${at.metrics}/metrics`), 405, 'Method not allowed');
    const elsewhere = await call('GET', `${at.metrics}/`);
    expectProblem(elsewhere, 404, 'Not found');
    expect(elsewhere.body.detail).toBe('metrics are at GET /metrics');
  });
});

describe('the Cog webhook listener', () => {
  it('takes payloads only with the bearer token', async () => {
    const token = 'tok-0123456789';
    const { u, at } = await listening({ webhookToken: token });
    await call('POST', `${at.api}/predictions`, { id: 'a', input: {} });
    const payload = { id: 'a', status: 'processing', logs: 'hello\n' };
    expectProblem(await call('POST', `${at.webhook}/cog/a`, payload), 401, 'Unauthorized');
    expectProblem(
      await call('POST', `${at.webhook}/cog/a`, payload, { authorization: 'Bearer tok-9876543210' }),
      401,
      'Unauthorized',
    );
    expect(u.logs.filter((l) => l.msg === 'rejected a webhook without the right bearer token')).toHaveLength(
      2,
    );
    expect(u.sidecar.get('a')?.logs).toBe('');
    const ok = await call('POST', `${at.webhook}/cog/a`, payload, { authorization: `Bearer ${token}` });
    expect(ok.status).toBe(200);
    expect(u.sidecar.get('a')?.logs).toBe('hello\n');
    const auth = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const malformed = await fetch(`${at.webhook}/cog/a`, {
      method: 'POST',
      headers: auth,
      body: '{"status":',
    });
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toMatchObject({ title: 'Malformed JSON' });
    const tooLarge = await declareBody(`${at.webhook}/cog/a`, 256 * 1024 * 1024 + 1, auth);
    expect(tooLarge.status).toBe(413);
    expect(JSON.parse(tooLarge.body)).toMatchObject({ status: 413, title: 'Request body too large' });
    expectProblem(await call('GET', `${at.webhook}/cog/a`), 405, 'Method not allowed');
    expectProblem(await call('POST', `${at.webhook}/other`, payload), 404, 'Not found');
  });
});
