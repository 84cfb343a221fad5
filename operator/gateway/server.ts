/**
 * The gateway's HTTP server: mounts `Route[]` under `/v1`, authenticates each request,
 * answers errors as `application/problem+json`, counts requests in Prometheus metrics, and
 * shuts down gracefully (stops accepting, ends event streams, lets in-flight requests finish
 * up to a timeout; routes that hold requests see `ctx.signal` abort).
 *
 * Logs carry the route's template, never the raw path or query (stream URLs carry their own
 * credential) and never a header.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Histogram, type Registry } from 'prom-client';
import { HttpError, sendProblem } from '../../lib/http.ts';
import { ApiError, type Logger } from '../runtime/index.ts';
import type { Caller } from './auth.ts';
import type { RequestContext, Route } from './types.ts';

export const API_PREFIX = '/v1';
/** Largest request body by default (prediction inputs may carry data URIs). */
export const DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024;

type Method = Route['method'];

interface Compiled {
  route: Route;
  segments: string[];
  /** How many segments are literal: the more, the more specific. */
  literals: number;
}

export type Match =
  | { kind: 'found'; route: Route; params: Record<string, string> }
  | { kind: 'not-found' }
  | { kind: 'method-not-allowed'; allow: Method[] };

function split(path: string): string[] {
  return path.split('/').filter((s) => s !== '');
}

/** Matches a method and a path (below `/v1`) to a route, with `:param` segments. */
export class Router {
  private readonly compiled: Compiled[];

  constructor(routes: readonly Route[]) {
    const seen = new Set<string>();
    this.compiled = routes.map((route) => {
      const segments = split(route.path);
      const shape = `${route.method} /${segments.map((s) => (s.startsWith(':') ? ':' : s)).join('/')}`;
      if (seen.has(shape)) throw new Error(`two routes for ${route.method} ${route.path}`);
      seen.add(shape);
      return { route, segments, literals: segments.filter((s) => !s.startsWith(':')).length };
    });
  }

  get routes(): Route[] {
    return this.compiled.map((c) => c.route);
  }

  match(method: string, path: string): Match {
    let parts: string[];
    try {
      parts = split(path).map(decodeURIComponent);
    } catch {
      return { kind: 'not-found' };
    }
    const candidates: { c: Compiled; params: Record<string, string> }[] = [];
    for (const c of this.compiled) {
      if (c.segments.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < parts.length && ok; i++) {
        const seg = c.segments[i]!;
        if (seg.startsWith(':')) params[seg.slice(1)] = parts[i]!;
        else ok = seg === parts[i];
      }
      if (ok) candidates.push({ c, params });
    }
    if (!candidates.length) return { kind: 'not-found' };
    // Literal segments win over parameters: /predictions/:id/cancel before /:a/:b/:c.
    const forMethod = candidates
      .filter((x) => x.c.route.method === method)
      .sort((a, b) => b.c.literals - a.c.literals);
    const best = forMethod[0];
    if (best) return { kind: 'found', route: best.c.route, params: best.params };
    return {
      kind: 'method-not-allowed',
      allow: [...new Set(candidates.map((x) => x.c.route.method))].sort(),
    };
  }
}

export interface GatewayServerOptions {
  routes: readonly Route[];
  authenticate(req: IncomingMessage): Promise<Caller>;
  log: Logger;
  /** Where the API is reached from outside, e.g. `https://models.example.com` (without `/v1`). */
  publicUrl?: string;
  /** Believe X-Forwarded-Proto/-Host (only behind a proxy that sets them). */
  trustForwardedHeaders?: boolean;
  /** Prometheus registry for the request metrics. */
  registry?: Registry;
  maxBodyBytes?: number;
  /** Awaited before an authenticated route runs (e.g. the caches' first sync). */
  ready?: () => Promise<void>;
}

class GatewayMetrics {
  readonly requests: Counter<'route' | 'code'>;
  readonly duration: Histogram<'route'>;

  constructor(registry: Registry | undefined) {
    const registers = registry ? [registry] : [];
    const existingCounter = registry?.getSingleMetric('modelplane_gateway_requests_total');
    const existingHistogram = registry?.getSingleMetric('modelplane_gateway_request_duration_seconds');
    this.requests =
      (existingCounter as Counter<'route' | 'code'> | undefined) ??
      new Counter({
        name: 'modelplane_gateway_requests_total',
        help: 'HTTP requests the gateway answered, by route (method and path template) and status code',
        labelNames: ['route', 'code'],
        registers,
      });
    this.duration =
      (existingHistogram as Histogram<'route'> | undefined) ??
      new Histogram({
        name: 'modelplane_gateway_request_duration_seconds',
        help: 'Time from request to the end of the response, by route (streams included)',
        labelNames: ['route'],
        buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
        registers,
      });
  }
}

/** The error a caller sees for anything a route throws. */
export function problemFor(err: unknown): HttpError {
  if (err instanceof HttpError) return err;
  if (err instanceof ApiError) {
    // The API server refused what the gateway sent on the caller's behalf.
    if (err.code === 404) return new HttpError(404, 'Not found', 'the object does not exist');
    if (err.code === 409) return new HttpError(409, 'Conflict', apiMessage(err));
    if (err.code === 422 || err.code === 400) return new HttpError(422, 'Invalid request', apiMessage(err));
    if (err.code === 429)
      return new HttpError(429, 'Too many requests', 'the API server is busy', {}, { 'retry-after': '1' });
  }
  return new HttpError(500, 'Internal server error', 'the gateway failed to answer; see its logs');
}

/** The API server's own message, without the method and path the client prefixed it with. */
function apiMessage(err: ApiError): string {
  const prefix = `${err.method} ${err.path}: ${err.code}${err.reason ? ` ${err.reason}` : ''}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

const HOST_RE = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

export class GatewayServer {
  readonly router: Router;
  private readonly opts: GatewayServerOptions;
  private readonly metrics: GatewayMetrics;
  private readonly server: Server;
  private readonly inflight = new Set<ServerResponse>();
  private readonly shutdown = new AbortController();
  private readonly log: Logger;

  constructor(opts: GatewayServerOptions) {
    this.opts = opts;
    this.router = new Router(opts.routes);
    this.metrics = new GatewayMetrics(opts.registry);
    this.log = opts.log.child({ component: 'gateway' });
    this.server = createServer((req, res) => {
      void this.handle(req, res);
    });
  }

  get address(): AddressInfo | undefined {
    const a = this.server.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  /** `http://host:port` of the listening server (loopback when bound to every address). */
  get url(): string {
    const a = this.address;
    if (!a) throw new Error('the gateway is not listening');
    const host = a.address === '0.0.0.0' || a.address === '::' ? '127.0.0.1' : a.address;
    return `http://${host.includes(':') ? `[${host}]` : host}:${a.port}`;
  }

  listen(port: number, host = '0.0.0.0'): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        this.log.info({ address: this.address }, 'gateway listening');
        resolve();
      });
    });
  }

  /**
   * Stops accepting connections, ends event streams, lets other requests finish for up to
   * `timeoutMs`, then closes whatever is left.
   */
  async close(timeoutMs = 30_000): Promise<void> {
    if (!this.server.listening && !this.inflight.size) return;
    this.shutdown.abort();
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    // A response whose headers are out but whose body is not finished is a stream (SSE):
    // end it cleanly now rather than cut it at the deadline.
    for (const res of this.inflight) if (res.headersSent && !res.writableEnded) res.end();
    const deadline = Date.now() + timeoutMs;
    while (this.inflight.size && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    if (this.inflight.size)
      this.log.warn({ requests: this.inflight.size }, 'shutdown timeout: closing open requests');
    this.server.closeAllConnections();
    await closed;
  }

  private baseUrl(req: IncomingMessage): string {
    if (this.opts.publicUrl) return `${this.opts.publicUrl.replace(/\/+$/, '')}${API_PREFIX}`;
    const first = (h: string | string[] | undefined) => (Array.isArray(h) ? h[0] : h)?.split(',')[0]?.trim();
    const trust = this.opts.trustForwardedHeaders === true;
    let proto = trust ? first(req.headers['x-forwarded-proto']) : undefined;
    if (proto !== 'http' && proto !== 'https')
      proto = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    let host = (trust ? first(req.headers['x-forwarded-host']) : undefined) ?? req.headers.host;
    if (!host || !HOST_RE.test(host)) {
      const local = req.socket.localAddress ?? '127.0.0.1';
      host = `${local.includes(':') ? `[${local}]` : local}:${req.socket.localPort}`;
    }
    return `${proto}://${host}${API_PREFIX}`;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    let routeLabel = 'unmatched';
    this.inflight.add(res);
    const requestId = randomUUID();
    let log = this.log.child({ request: requestId });
    res.on('close', () => {
      this.inflight.delete(res);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      this.metrics.requests.inc({ route: routeLabel, code: String(res.statusCode) });
      this.metrics.duration.observe({ route: routeLabel }, seconds);
      log.info({ status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });
    if (this.shutdown.signal.aborted) res.setHeader('connection', 'close');
    try {
      const pathname = (req.url ?? '/').split('?')[0] ?? '/';
      if (pathname !== API_PREFIX && !pathname.startsWith(`${API_PREFIX}/`))
        throw new HttpError(404, 'Not found', `no such endpoint: the API is served under ${API_PREFIX}`);
      const m = this.router.match(method, pathname.slice(API_PREFIX.length));
      if (m.kind === 'not-found') throw new HttpError(404, 'Not found', 'no such endpoint');
      if (m.kind === 'method-not-allowed')
        throw new HttpError(
          405,
          'Method not allowed',
          `this endpoint answers ${m.allow.join(', ')}, not ${method}`,
          {},
          { allow: m.allow.join(', ') },
        );
      const { route, params } = m;
      routeLabel = `${route.method} ${route.path}`;
      log = log.child({ method, route: route.path });
      const max = this.opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
      const length = Number(req.headers['content-length'] ?? 0);
      if (length > max) throw new HttpError(413, 'Request body too large', `the body is over ${max} bytes`);
      const baseUrl = this.baseUrl(req);
      // The request's absolute URL as the caller reached it (behind --public-url's path too).
      const url = new URL(`${baseUrl}${(req.url ?? API_PREFIX).slice(API_PREFIX.length)}`);
      let caller: Caller = UNAUTHENTICATED;
      if (route.auth !== false) {
        if (this.opts.ready) await this.opts.ready();
        caller = await this.opts.authenticate(req);
        log = log.child({ principal: caller.principal.name });
      }
      const ctx: RequestContext = {
        principal: caller.principal,
        authorize: caller.authorize,
        namespacesFor: caller.namespacesFor,
        baseUrl,
        url,
        log,
        signal: this.shutdown.signal,
      };
      await route.handle(req, res, ctx, params);
    } catch (err) {
      const problem = problemFor(err);
      if (problem.status >= 500) log.error({ err }, 'request failed');
      else log.debug({ status: problem.status, detail: problem.message }, 'request refused');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      // The body of a refused request is not read: close the connection rather than drain it.
      if (!req.complete) res.setHeader('connection', 'close');
      sendProblem(res, problem);
    }
  }
}

const UNAUTHENTICATED: Caller = {
  principal: { kind: 'anonymous', name: 'anonymous' },
  authorize: async (verb, resource, namespace) => {
    throw new HttpError(
      403,
      'Forbidden',
      `this URL grants no access to ${verb} ${resource} in "${namespace}"`,
    );
  },
  namespacesFor: async () => [],
};
