import type { IncomingMessage } from 'node:http';
import { Writable } from 'node:stream';
import express, { type RequestHandler } from 'express';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { methodNotAllowed } from '../../lib/express.ts';
import { HttpError, sendJson } from '../../lib/http.ts';
import { createLogger } from '../runtime/index.ts';
import { accountRoutes } from './account.ts';
import type { Caller } from './auth.ts';
import { deploymentRoutes } from './deployments.ts';
import { fileRoutes } from './files.ts';
import { modelRoutes } from './models.ts';
import { predictionRoutes } from './predictions/routes.ts';
import { context, GatewayServer } from './server.ts';
import type { Routes } from './types.ts';
import { usageRoutes } from './usage.ts';

type Json = {
  [k: string]: unknown;
  baseUrl?: string;
  url?: string;
  detail?: string;
  title?: string;
  done?: boolean;
};
const json = async (r: Response | Promise<Response>): Promise<Json> => (await (await r).json()) as Json;

describe("the gateway's routes", () => {
  // The real route groups, mounted with marker middleware so that their chains can be read.
  const authenticated: RequestHandler = (_req, _res, next) => next();
  const body: RequestHandler = (_req, _res, next) => next();
  const api = express.Router();
  const none = {} as never;
  const groups: Routes[] = [
    modelRoutes({ caches: none, client: none }),
    deploymentRoutes({ caches: none, client: none }),
    accountRoutes({ caches: none, webhookSecrets: none }),
    predictionRoutes({ engine: none, catalog: none, tokens: none }),
    usageRoutes({ usage: () => undefined }),
    fileRoutes({ files: none, prediction: none }),
  ];
  const authenticatedStream: RequestHandler = (_req, _res, next) => next();
  for (const add of groups) add(api, { authenticated, authenticatedStream, json: body });
  type Layer = { method?: string; handle: unknown };
  const routes = (api.stack as { route?: { path: string; stack: Layer[] } }[]).flatMap((l) =>
    l.route ? [l.route] : [],
  );

  it('authenticate every caller, except on the signed URLs that carry their own credential', () => {
    const unauthenticated = routes.flatMap((r) => {
      const methods = new Set(r.stack.flatMap((l) => (l.method && l.method !== '_all' ? [l.method] : [])));
      return [...methods]
        .filter(
          (m) =>
            !r.stack.some(
              (l) => l.method === m && (l.handle === authenticated || l.handle === authenticatedStream),
            ),
        )
        .map((m) => `${m.toUpperCase()} ${r.path}`);
    });
    expect(routes.length).toBeGreaterThan(10);
    expect(unauthenticated.sort()).toEqual([
      'GET /files/:id/download/:token',
      'GET /predictions/:id/stream',
      'PUT /files/outputs/:prediction/:token/:name',
    ]);
  });

  it('declare each path once, ending with a 405 for other methods', () => {
    const shapes = routes.map((r) => r.path.replace(/:\w+/g, ':'));
    expect(new Set(shapes).size).toBe(shapes.length);
    for (const r of routes) expect(r.stack.at(-1)?.handle).toBe(methodNotAllowed);
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

  async function start(routes: Routes[], opts: { publicUrl?: string; trust?: boolean } = {}) {
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

  const echo: Routes = (api, { authenticated, json }) => {
    api
      .route('/echo/:owner')
      .get(authenticated, async (req, res) => {
        const ctx = context(res);
        await ctx.authorize('get', 'models', req.params.owner);
        sendJson(res, 200, { baseUrl: ctx.baseUrl, principal: ctx.principal.name, owner: req.params.owner });
      })
      .post(authenticated, json, (req, res) => {
        sendJson(res, 200, { body: req.body as unknown });
      })
      .all(methodNotAllowed);
  };
  const auth = { authorization: `Bearer ${SECRET}` };
  const withUrl: Routes = (api, { authenticated }) => {
    api.get('/url', authenticated, (_req, res) => {
      sendJson(res, 200, { url: context(res).url.toString() });
    });
  };

  it('runs a route with the caller and an absolute base URL from the Host header', async () => {
    const { url } = await start([echo]);
    const res = await fetch(`${url}/v1/echo/mine`, { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ baseUrl: `${url}/v1`, principal: 'token:ns/test', owner: 'mine' });
  });

  it('binds :params decoded, takes a trailing slash, and matches paths case by case', async () => {
    const { url } = await start([echo]);
    const a = await json(fetch(`${url}/v1/echo/mi%6Ee/`, { headers: auth }));
    expect(a.owner).toBe('mine');
    expect((await fetch(`${url}/V1/echo/mine`, { headers: auth })).status).toBe(404);
    expect((await fetch(`${url}/v1/ECHO/mine`, { headers: auth })).status).toBe(404);
    const bad = await fetch(`${url}/v1/echo/%E0%A4%A`, { headers: auth });
    expect(bad.status).toBe(404);
    expect(bad.headers.get('content-type')).toBe('application/problem+json');
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

  it('answers problem+json: 401 with WWW-Authenticate, 403, 404, 405, 400 and 413', async () => {
    const { url } = await start([echo]);
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
    expect(await missing.json()).toEqual({ title: 'Not found', detail: 'no such endpoint', status: 404 });
    const outside = await fetch(`${url}/echo/mine`, { headers: auth });
    expect(outside.status).toBe(404);
    expect((await json(outside)).detail).toBe('no such endpoint: the API is served under /v1');
    const method = await fetch(`${url}/v1/echo/mine`, { method: 'DELETE', headers: auth });
    expect(method.status).toBe(405);
    expect(method.headers.get('allow')).toBe('GET, POST');
    expect(await method.json()).toEqual({
      title: 'Method not allowed',
      detail: 'this endpoint answers GET, POST, not DELETE',
      status: 405,
    });
    const post = (body: string, headers: Record<string, string> = auth) =>
      fetch(`${url}/v1/echo/mine`, { method: 'POST', headers, body });
    expect(await json(post('{"a":1}'))).toEqual({ body: { a: 1 } });
    const malformed = await post('{"a":');
    expect(malformed.status).toBe(400);
    expect((await json(malformed)).title).toBe('Malformed JSON');
    // A body declared over the limit is refused before the caller is looked up.
    for (const headers of [auth, {}]) {
      const big = await post('x'.repeat(2048), headers);
      expect(big.status).toBe(413);
      expect(await big.json()).toEqual({
        title: 'Request body too large',
        detail: 'the body is over 1024 bytes',
        status: 413,
      });
    }
    // One that turns out over it as it is read, too.
    const chunked = await fetch(`${url}/v1/echo/mine`, {
      method: 'POST',
      headers: auth,
      body: new Blob(['{"a":"', 'x'.repeat(2048), '"}']).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect((await json(chunked)).detail).toBe('the body is over 1024 bytes');
  });

  it('answers 500 without internals for a route that throws, and logs no token or path', async () => {
    const boom: Routes = (api, { authenticated }) => {
      api.get('/boom/:token', authenticated, () => {
        throw new Error('internal detail');
      });
    };
    const { url, out, registry } = await start([boom]);
    const res = await fetch(`${url}/v1/boom/streamtoken123?sig=abc`, { headers: auth });
    expect(res.status).toBe(500);
    const body = await json(res);
    expect(body.title).toBe('Internal server error');
    expect(JSON.stringify(body)).not.toContain('internal detail');
    await fetch(`${url}/v1/boom/x`);
    await fetch(`${url}/v1/nothing/here`);
    const log = out.lines.join('\n');
    expect(log).toContain('"route":"/boom/:token"');
    expect(log).toContain('"principal":"token:ns/test"');
    expect(log).toContain('internal detail');
    expect(log).not.toContain(SECRET);
    expect(log).not.toContain('streamtoken123');
    expect(log).not.toContain('sig=abc');
    expect(log).not.toContain('nothing/here');
    const metrics = await registry.metrics();
    expect(metrics).toContain('modelplane_gateway_requests_total{route="GET /boom/:token",code="500"} 1');
    expect(metrics).toContain('modelplane_gateway_requests_total{route="GET /boom/:token",code="401"} 1');
    expect(metrics).toContain('modelplane_gateway_requests_total{route="unmatched",code="404"} 1');
    expect(metrics).toContain(
      'modelplane_gateway_request_duration_seconds_count{route="GET /boom/:token"} 2',
    );
  });

  it('leaves the caller anonymous, able to do nothing, on a route without authentication', async () => {
    const open: Routes = (api) => {
      api.get('/open', async (_req, res) => {
        const ctx = context(res);
        const may = await ctx.authorize('get', 'models', 'mine').then(
          () => true,
          () => false,
        );
        sendJson(res, 200, { principal: ctx.principal.kind, may });
      });
    };
    const { url } = await start([open]);
    const res = await fetch(`${url}/v1/open`);
    expect(await res.json()).toEqual({ principal: 'anonymous', may: false });
  });

  it('on close ends event streams, lets other requests finish, and refuses new connections', async () => {
    let release: () => void = () => {};
    let entered: () => void = () => {};
    const inHandler = new Promise<void>((r) => {
      entered = r;
    });
    const routes: Routes = (api) => {
      api.get('/slow', async (_req, res) => {
        await new Promise<void>((r) => {
          release = r;
          entered();
        });
        sendJson(res, 200, { done: true });
      });
      api.get('/stream', (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(': hello\n\n');
        expect(context(res).signal?.aborted).toBe(false);
      });
    };
    const { url } = await start([routes]);
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
