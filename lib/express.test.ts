import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createApp,
  httpErrorOf,
  jsonBody,
  methodNotAllowed,
  notFound,
  problemHandler,
  routeMetrics,
  routeMetricsOn,
} from './express.ts';
import { HttpError } from './http.ts';

let server: Server | undefined;
afterEach(async () => {
  const s = server;
  server = undefined;
  if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
});

async function serve(app: ReturnType<typeof createApp>): Promise<string> {
  server = createServer(app);
  const s = server;
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
}

function app(registry = new Registry(), logged: string[] = []) {
  const a = createApp();
  a.use(routeMetrics({ registry, prefix: 'test', subject: 'the test server' }));
  a.route('/echo').post(jsonBody({ limit: 64 }), (req, res) => {
    res.json({ body: req.body });
  });
  a.route('/shallow').post(jsonBody({ limit: 4 * 1024 * 1024, maxDepth: 4 }), (req, res) => {
    res.json({ body: req.body });
  });
  a.route('/things/:id')
    .get((req, res) => {
      res.json({ id: req.params.id });
    })
    .post(async (req) => {
      throw new HttpError(422, 'Invalid input', `thing ${req.params.id} is not right`, {
        invalid_fields: [{ type: 'required', field: 'input.text', description: 'text is required' }],
      });
    })
    .delete(() => {
      throw new Error('database on fire');
    })
    .all(methodNotAllowed);
  a.get('/busy', () => {
    throw new RangeError('slow down');
  });
  a.use(notFound());
  a.use(
    problemHandler({
      log: {
        error: (_o, msg) => logged.push(`error: ${msg}`),
        debug: (_o, msg) => logged.push(`debug: ${msg}`),
      },
      toProblem: (err) =>
        err instanceof RangeError ? new HttpError(429, 'Too many requests', err.message) : undefined,
    }),
  );
  return a;
}

async function problem(res: Response): Promise<Record<string, unknown>> {
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  return (await res.json()) as Record<string, unknown>;
}

describe('express building blocks', () => {
  it('parses JSON bodies of any content type, an empty one as {}', async () => {
    const base = await serve(app());
    const post = (body: string | Uint8Array | undefined, headers: Record<string, string> = {}) =>
      fetch(`${base}/echo`, { method: 'POST', body, headers });
    expect(await (await post('{"a":1}', { 'content-type': 'application/json' })).json()).toEqual({
      body: { a: 1 },
    });
    // curl -d sends a form content type; the body is JSON all the same.
    expect(
      await (await post('[1,2]', { 'content-type': 'application/x-www-form-urlencoded' })).json(),
    ).toEqual({ body: [1, 2] });
    expect(await (await post(undefined)).json()).toEqual({ body: {} });
    expect(await (await post('"text"')).json()).toEqual({ body: 'text' });
    const zipped = await post(gzipSync('{"z":true}'), { 'content-encoding': 'gzip' });
    expect(await zipped.json()).toEqual({ body: { z: true } });
  });

  it('answers 400 for a body nested deeper than maxDepth, however deep', async () => {
    const base = await serve(app());
    const ok = await fetch(`${base}/shallow`, { method: 'POST', body: '{"a":[[{"b":1}]]}' });
    expect(await ok.json()).toEqual({ body: { a: [[{ b: 1 }]] } });
    for (const body of ['{"a":[[{"b":[]}]]}', `${'['.repeat(200_000)}${']'.repeat(200_000)}`]) {
      const res = await fetch(`${base}/shallow`, { method: 'POST', body });
      expect(res.status).toBe(400);
      expect(await problem(res)).toEqual({
        title: 'JSON nested too deeply',
        detail: 'the body nests arrays and objects more than 4 levels deep',
        status: 400,
        max_depth: 4,
      });
    }
  });

  it('answers 413 over the byte limit and 400 for malformed JSON, as problem+json', async () => {
    const base = await serve(app());
    const big = await fetch(`${base}/echo`, { method: 'POST', body: JSON.stringify({ x: 'y'.repeat(100) }) });
    expect(big.status).toBe(413);
    expect(big.headers.get('connection')).toBe('close');
    expect(await problem(big)).toEqual({
      title: 'Request body too large',
      detail: 'the body is over 64 bytes',
      status: 413,
    });
    // Without a Content-Length the limit is found while reading.
    const chunks = new ReadableStream({
      start(c) {
        c.enqueue(new TextEncoder().encode(`{"x":"${'y'.repeat(100)}"}`));
        c.close();
      },
    });
    const streamed = await fetch(`${base}/echo`, {
      method: 'POST',
      body: chunks,
      duplex: 'half',
    } as RequestInit);
    expect(streamed.status).toBe(413);
    expect(await problem(streamed)).toMatchObject({ title: 'Request body too large', status: 413 });
    const bad = await fetch(`${base}/echo`, { method: 'POST', body: '{nope' });
    expect(bad.status).toBe(400);
    const body = await problem(bad);
    expect(body).toMatchObject({ title: 'Malformed JSON', status: 400 });
    expect(body.detail).toMatch(/^the body is not JSON: /);
  });

  it('turns HttpError, the server’s own errors and anything else into problems', async () => {
    const logged: string[] = [];
    const a = app(new Registry(), logged);
    const base = await serve(a);
    const invalid = await fetch(`${base}/things/7`, { method: 'POST' });
    expect(invalid.status).toBe(422);
    expect(await problem(invalid)).toEqual({
      title: 'Invalid input',
      detail: 'thing 7 is not right',
      status: 422,
      invalid_fields: [{ type: 'required', field: 'input.text', description: 'text is required' }],
    });
    const broken = await fetch(`${base}/things/7`, { method: 'DELETE' });
    expect(broken.status).toBe(500);
    expect(await problem(broken)).toEqual({
      title: 'Internal server error',
      detail: 'the server failed to answer; see its logs',
      status: 500,
    });
    const busy = await fetch(`${base}/busy`);
    expect(busy.status).toBe(429);
    expect(await problem(busy)).toEqual({ title: 'Too many requests', detail: 'slow down', status: 429 });
    expect(logged).toEqual(['debug: request refused', 'error: request failed', 'debug: request refused']);
  });

  it('answers 404 for an unknown path and 405 with Allow for an unknown method', async () => {
    const base = await serve(app());
    const missing = await fetch(`${base}/nothing/here`);
    expect(missing.status).toBe(404);
    expect(await problem(missing)).toEqual({ title: 'Not found', detail: 'no such endpoint', status: 404 });
    const method = await fetch(`${base}/things/1`, { method: 'PUT' });
    expect(method.status).toBe(405);
    expect(method.headers.get('allow')).toBe('DELETE, GET, POST');
    expect(await problem(method)).toMatchObject({
      status: 405,
      detail: 'this endpoint answers DELETE, GET, POST, not PUT',
    });
    expect(method.headers.get('x-powered-by')).toBeNull();
    const ok = await fetch(`${base}/things/1`);
    expect(ok.headers.get('etag')).toBeNull();
  });

  it('counts requests by route pattern and status code, never by raw path', async () => {
    const registry = new Registry();
    const base = await serve(app(registry));
    await fetch(`${base}/things/1`);
    await fetch(`${base}/things/2`);
    await fetch(`${base}/things/2`, { method: 'POST' });
    await fetch(`${base}/things/2`, { method: 'PATCH' });
    await fetch(`${base}/secret-token-in-a-path`);
    await new Promise((r) => setTimeout(r, 20)); // the close events
    const counts = (await registry.getSingleMetric('test_requests_total')?.get())?.values.map((v) => [
      v.labels.route,
      v.labels.code,
      v.value,
    ]);
    expect(counts).toEqual([
      ['GET /things/:id', '200', 2],
      ['POST /things/:id', '422', 1],
      ['unmatched', '405', 1],
      ['unmatched', '404', 1],
    ]);
    const text = await registry.metrics();
    expect(text).toContain('# HELP test_requests_total HTTP requests the test server answered');
    expect(text).toContain('test_request_duration_seconds_count{route="GET /things/:id"} 2');
    expect(text).not.toContain('secret');
    // Two servers on one registry share the metrics.
    expect(routeMetricsOn(registry, 'test').requests).toBe(registry.getSingleMetric('test_requests_total'));
  });

  it('maps body-parser errors by their type', () => {
    const err = (type: string, status: number) =>
      Object.assign(new Error(`${type} happened`), { type, status });
    expect(httpErrorOf(err('encoding.unsupported', 415))).toMatchObject({ status: 415 });
    expect(httpErrorOf(err('request.aborted', 400))).toMatchObject({ status: 400, title: 'Bad request' });
    expect(httpErrorOf(err('stream.encoding.set', 500))).toBeUndefined();
    expect(httpErrorOf(new Error('plain'))).toBeUndefined();
    // A gzip body that does not inflate: zlib's error, marked by body-parser as the client's.
    const zlib = Object.assign(new Error('incorrect header check'), {
      code: 'Z_DATA_ERROR',
      status: 400,
      expose: true,
    });
    expect(httpErrorOf(zlib)).toMatchObject({ status: 400, title: 'Bad request' });
  });
});
