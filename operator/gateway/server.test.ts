import type { IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpError, sendJson } from '../../lib/http.ts';
import { createLogger } from '../runtime/index.ts';
import type { Caller } from './auth.ts';
import { GatewayServer, Router } from './server.ts';
import type { Route } from './types.ts';

type Json = {
  [k: string]: unknown;
  baseUrl?: string;
  url?: string;
  detail?: string;
  title?: string;
  done?: boolean;
};
const json = async (r: Response | Promise<Response>): Promise<Json> => (await (await r).json()) as Json;

const noop: Route['handle'] = async (_req, res) => {
  res.writeHead(204).end();
};

describe('the router', () => {
  const routes: Route[] = [
    { method: 'GET', path: '/predictions', handle: noop },
    { method: 'POST', path: '/predictions', handle: noop },
    { method: 'GET', path: '/predictions/:id', handle: noop },
    { method: 'POST', path: '/predictions/:id/cancel', handle: noop },
    { method: 'GET', path: '/models/:owner/:name', handle: noop },
    { method: 'GET', path: '/models/:owner/:name/versions/:id', handle: noop },
    { method: 'GET', path: '/:a/:b/:c', handle: noop },
    { method: 'GET', path: '/deployments/:owner/:name/predictions', handle: noop },
  ];
  const router = new Router(routes);

  it('matches literal paths and binds :params, decoded', () => {
    const m = router.match('GET', '/models/acme/my%2Dmodel/versions/abc');
    expect(m.kind).toBe('found');
    if (m.kind !== 'found') return;
    expect(m.route.path).toBe('/models/:owner/:name/versions/:id');
    expect(m.params).toEqual({ owner: 'acme', name: 'my-model', id: 'abc' });
    const trailing = router.match('GET', '/predictions/');
    expect(trailing.kind === 'found' && trailing.route.path).toBe('/predictions');
  });

  it('prefers literal segments over parameters', () => {
    const m = router.match('GET', '/deployments/acme/llm/predictions');
    expect(m.kind === 'found' && m.route.path).toBe('/deployments/:owner/:name/predictions');
    const other = router.match('GET', '/x/y/z');
    expect(other.kind === 'found' && other.route.path).toBe('/:a/:b/:c');
  });

  it('tells an unknown path (404) from an unknown method (405 with the allowed ones)', () => {
    expect(router.match('GET', '/nothing').kind).toBe('not-found');
    expect(router.match('GET', '/predictions/1/cancel/more').kind).toBe('not-found');
    expect(router.match('DELETE', '/predictions')).toEqual({
      kind: 'method-not-allowed',
      allow: ['GET', 'POST'],
    });
  });

  it('refuses two routes for the same method and path shape', () => {
    expect(
      () =>
        new Router([
          { method: 'GET', path: '/a/:x', handle: noop },
          { method: 'GET', path: '/a/:y', handle: noop },
        ]),
    ).toThrow('two routes for GET /a/:y');
  });
});

class Lines extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
}

const SECRET = 'mp_0123456789ab_secretsecretsecretsecretsecretsecretsecre';

function caller(): Caller {
  return {
    principal: { kind: 'token', name: 'token:ns/test' },
    authorize: async (verb, resource, namespace) => {
      if (namespace !== 'mine')
        throw new HttpError(403, 'Forbidden', `may not ${verb} ${resource} in ${namespace}`);
    },
    namespacesFor: async () => ['mine'],
  };
}

describe('the gateway server', () => {
  let server: GatewayServer | undefined;
  afterEach(async () => {
    await server?.close(1_000);
    server = undefined;
  });

  async function start(routes: Route[], opts: { publicUrl?: string; trust?: boolean } = {}) {
    const out = new Lines();
    const registry = new Registry();
    server = new GatewayServer({
      routes,
      log: createLogger({ level: 'debug', destination: out }),
      registry,
      publicUrl: opts.publicUrl,
      trustForwardedHeaders: opts.trust,
      maxBodyBytes: 1024,
      authenticate: async (req: IncomingMessage) => {
        if (req.headers.authorization !== `Bearer ${SECRET}`)
          throw new HttpError(401, 'Unauthorized', 'bad token', {}, { 'www-authenticate': 'Bearer' });
        return caller();
      },
    });
    await server.listen(0, '127.0.0.1');
    return { url: server.url, out, registry };
  }

  const echo: Route = {
    method: 'GET',
    path: '/echo/:owner',
    async handle(_req, res, ctx, params) {
      await ctx.authorize('get', 'models', params.owner!);
      sendJson(res, 200, { baseUrl: ctx.baseUrl, principal: ctx.principal.name, owner: params.owner });
    },
  };
  const auth = { authorization: `Bearer ${SECRET}` };
  const withUrl: Route = {
    method: 'GET',
    path: '/url',
    async handle(_req, res, ctx) {
      sendJson(res, 200, { url: ctx.url.toString() });
    },
  };

  it('runs a route with the caller and an absolute base URL from the Host header', async () => {
    const { url } = await start([echo]);
    const res = await fetch(`${url}/v1/echo/mine`, { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ baseUrl: `${url}/v1`, principal: 'token:ns/test', owner: 'mine' });
  });

  it('builds the base URL from --public-url, or X-Forwarded-* only when trusted', async () => {
    const { url } = await start([echo], { publicUrl: 'https://models.example.com/' });
    const a = await json(fetch(`${url}/v1/echo/mine`, { headers: auth }));
    expect(a.baseUrl).toBe('https://models.example.com/v1');
    await server?.close(1_000);
    // Behind a path prefix, the request's URL keeps it (pagination links are built from it).
    const prefixed = await start([withUrl], { publicUrl: 'https://example.com/modelplane' });
    const p = await json(fetch(`${prefixed.url}/v1/url?cursor=abc`, { headers: auth }));
    expect(p.url).toBe('https://example.com/modelplane/v1/url?cursor=abc');
    await server?.close(1_000);
    const plain = await start([echo]);
    const fwd = { ...auth, 'x-forwarded-proto': 'https', 'x-forwarded-host': 'api.example.com' };
    const b = await json(fetch(`${plain.url}/v1/echo/mine`, { headers: fwd }));
    expect(b.baseUrl).toBe(`${plain.url}/v1`);
    await server?.close(1_000);
    const trusted = await start([echo], { trust: true });
    const c = await json(fetch(`${trusted.url}/v1/echo/mine`, { headers: fwd }));
    expect(c.baseUrl).toBe('https://api.example.com/v1');
  });

  it('answers problem+json: 401 with WWW-Authenticate, 403, 404, 405 and 413', async () => {
    const post: Route = { method: 'POST', path: '/echo/:owner', handle: noop };
    const { url } = await start([echo, post]);
    const unauth = await fetch(`${url}/v1/echo/mine`);
    expect(unauth.status).toBe(401);
    expect(unauth.headers.get('content-type')).toBe('application/problem+json');
    expect(unauth.headers.get('www-authenticate')).toBe('Bearer');
    expect(await unauth.json()).toEqual({ title: 'Unauthorized', detail: 'bad token', status: 401 });
    const denied = await fetch(`${url}/v1/echo/theirs`, { headers: auth });
    expect(denied.status).toBe(403);
    expect((await json(denied)).detail).toBe('may not get models in theirs');
    const missing = await fetch(`${url}/v1/nothing`, { headers: auth });
    expect(missing.status).toBe(404);
    expect((await json(missing)).title).toBe('Not found');
    const outside = await fetch(`${url}/echo/mine`, { headers: auth });
    expect(outside.status).toBe(404);
    const method = await fetch(`${url}/v1/echo/mine`, { method: 'DELETE', headers: auth });
    expect(method.status).toBe(405);
    expect(method.headers.get('allow')).toBe('GET, POST');
    const big = await fetch(`${url}/v1/echo/mine`, { method: 'POST', headers: auth, body: 'x'.repeat(2048) });
    expect(big.status).toBe(413);
    expect(await big.json()).toMatchObject({ status: 413 });
  });

  it('answers 500 without internals for a route that throws, and logs no token or path', async () => {
    const boom: Route = {
      method: 'GET',
      path: '/boom/:token',
      async handle() {
        throw new Error('internal detail');
      },
    };
    const { url, out, registry } = await start([boom]);
    const res = await fetch(`${url}/v1/boom/streamtoken123?sig=abc`, { headers: auth });
    expect(res.status).toBe(500);
    const body = await json(res);
    expect(body.title).toBe('Internal server error');
    expect(JSON.stringify(body)).not.toContain('internal detail');
    await fetch(`${url}/v1/boom/x`);
    const log = out.lines.join('\n');
    expect(log).toContain('"route":"/boom/:token"');
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain('streamtoken123');
    expect(log).not.toContain('sig=abc');
    const metrics = await registry.metrics();
    expect(metrics).toContain('modelplane_gateway_requests_total{route="GET /boom/:token",code="500"} 1');
    expect(metrics).toContain('modelplane_gateway_requests_total{route="GET /boom/:token",code="401"} 1');
    expect(metrics).toContain(
      'modelplane_gateway_request_duration_seconds_count{route="GET /boom/:token"} 2',
    );
  });

  it('skips authentication for a route with auth: false', async () => {
    const open: Route = {
      method: 'GET',
      path: '/open',
      auth: false,
      async handle(_req, res, ctx) {
        sendJson(res, 200, { principal: ctx.principal.kind });
      },
    };
    const { url } = await start([open]);
    const res = await fetch(`${url}/v1/open`);
    expect(await res.json()).toEqual({ principal: 'anonymous' });
  });

  it('on close ends event streams, lets other requests finish, and refuses new connections', async () => {
    let release: () => void = () => {};
    let entered: () => void = () => {};
    const inHandler = new Promise<void>((r) => {
      entered = r;
    });
    const slow: Route = {
      method: 'GET',
      path: '/slow',
      auth: false,
      async handle(_req, res) {
        await new Promise<void>((r) => {
          release = r;
          entered();
        });
        sendJson(res, 200, { done: true });
      },
    };
    const stream: Route = {
      method: 'GET',
      path: '/stream',
      auth: false,
      async handle(_req, res, ctx) {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': hello\n\n');
        expect(ctx.signal?.aborted).toBe(false);
      },
    };
    const { url } = await start([slow, stream]);
    const streamRes = await fetch(`${url}/v1/stream`);
    const reader = streamRes.body!.getReader();
    await reader.read();
    const slowRes = fetch(`${url}/v1/slow`);
    await inHandler;
    const closing = server!.close(5_000);
    // The stream ends (done) once shutdown begins.
    let ended = false;
    while (!ended) ended = (await reader.read()).done;
    release();
    expect((await json(slowRes)).done).toBe(true);
    await closing;
    await expect(fetch(`${url}/v1/slow`)).rejects.toThrow();
  });
});
