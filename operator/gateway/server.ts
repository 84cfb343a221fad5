/**
 * The gateway's HTTP server, on express (lib/express.ts): the route groups are mounted on one
 * express Router at `/v1`; each route authenticates its caller with the `authenticated`
 * middleware and reads a JSON body with `json`; every error is answered as
 * `application/problem+json`; requests are counted in Prometheus metrics by route template;
 * and it shuts down gracefully (stops accepting, ends event streams, lets in-flight requests
 * finish up to a timeout; routes that hold requests see `ctx.signal` abort).
 *
 * Logs carry the route's template, never the raw path or query (stream URLs carry their own
 * credential) and never a header.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import express, {
  type ErrorRequestHandler,
  type Request,
  type RequestHandler,
  type Response,
  type Router,
} from 'express';
import { Registry } from 'prom-client';
import {
  createApp,
  type DeclaredRoute,
  declaredRoutes,
  httpErrorOf,
  jsonBody,
  notFound,
  problemHandler,
  type RouteMetrics,
  routeLabel,
  routeMetricsOn,
} from '../../lib/express.ts';
import { HttpError, MAX_BODY_BYTES, MAX_JSON_DEPTH } from '../../lib/http.ts';
import { ApiError, type Logger } from '../runtime/index.ts';
import type { Caller } from './auth.ts';
import type { Principal, RequestContext, Routes, Verb } from './types.ts';

export const API_PREFIX = '/v1';
/** Largest request body by default (prediction inputs may carry data URIs). */
export const DEFAULT_MAX_BODY_BYTES = MAX_BODY_BYTES;

export interface GatewayServerOptions {
  /** The route groups, each adding its endpoints to the router mounted at `/v1`. */
  routes: readonly Routes[];
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
  /** True when `ready` would resolve at once: then it is not called (no promise per request). */
  isReady?: () => boolean;
}

/** The API server refused what the gateway sent on the caller's behalf: the caller's problem. */
function apiProblem(err: unknown): HttpError | undefined {
  if (!(err instanceof ApiError)) return undefined;
  if (err.code === 404) return new HttpError(404, 'Not found', 'the object does not exist');
  if (err.code === 409) return new HttpError(409, 'Conflict', apiMessage(err));
  if (err.code === 422 || err.code === 400) return new HttpError(422, 'Invalid request', apiMessage(err));
  if (err.code === 429)
    return new HttpError(429, 'Too many requests', 'the API server is busy', {}, { 'retry-after': '1' });
  return undefined;
}

/** The error a caller sees for anything a route throws. */
export function problemFor(err: unknown): HttpError {
  // A path segment that is not valid percent-encoding names no endpoint.
  if (err instanceof URIError) return new HttpError(404, 'Not found', 'no such endpoint');
  return (
    apiProblem(err) ??
    httpErrorOf(err) ??
    new HttpError(500, 'Internal server error', 'the gateway failed to answer; see its logs')
  );
}

/** The API server's own message, without the method and path the client prefixed it with. */
function apiMessage(err: ApiError): string {
  const prefix = `${err.method} ${err.path}: ${err.code}${err.reason ? ` ${err.reason}` : ''}: `;
  return err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
}

const HOST_RE = /^[A-Za-z0-9.-]+(:\d{1,5})?$|^\[[0-9A-Fa-f:.]+\](:\d{1,5})?$/;

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

const CONTEXT = 'modelplaneGateway';

/**
 * One request's context, made when it arrives; what costs something (the base URL, the
 * request's URL, a child logger) is made when first asked for. Its caller is anonymous, able
 * to do nothing, until the `authenticated` middleware sets it.
 */
class Exchange implements RequestContext {
  caller: Caller = UNAUTHENTICATED;
  private base: string | undefined;
  private absolute: URL | undefined;
  private logger: Logger | undefined;
  private readonly server: GatewayServer;
  private readonly req: Request;
  private requestId: string | undefined;

  constructor(server: GatewayServer, req: Request) {
    this.server = server;
    this.req = req;
  }

  /** The request's id in its log lines, made when first logged. */
  private get id(): string {
    this.requestId ??= randomUUID();
    return this.requestId;
  }

  get principal(): Principal {
    return this.caller.principal;
  }

  authorize(verb: Verb, resource: string, namespace: string): Promise<void> {
    return this.caller.authorize(verb, resource, namespace);
  }

  namespacesFor(verb: Verb, resource: string): Promise<'all' | string[]> {
    return this.caller.namespacesFor(verb, resource);
  }

  get baseUrl(): string {
    this.base ??= this.server.baseUrl(this.req);
    return this.base;
  }

  /** The request's absolute URL as the caller reached it (behind --public-url's path too). */
  get url(): URL {
    this.absolute ??= new URL(`${this.baseUrl}${this.req.originalUrl.slice(API_PREFIX.length)}`);
    return this.absolute;
  }

  /** The gateway's logger with the request's id, its route template and caller once known. */
  get log(): Logger {
    if (this.logger) return this.logger;
    const route = (this.req.route as { path?: unknown } | undefined)?.path;
    const bindings: Record<string, unknown> = { request: this.id };
    if (typeof route === 'string') {
      bindings.method = this.req.method;
      bindings.route = route;
    }
    if (this.caller !== UNAUTHENTICATED) bindings.principal = this.caller.principal.name;
    this.logger = this.server.log.child(bindings);
    return this.logger;
  }

  get signal(): AbortSignal {
    return this.server.signal;
  }

  /** Logs the request once, on its child logger when one was made, else with its bindings. */
  logRequest(status: number, ms: number): void {
    if (this.logger) {
      this.logger.info({ status, ms }, 'request');
      return;
    }
    const route = (this.req.route as { path?: unknown } | undefined)?.path;
    const line: Record<string, unknown> = { request: this.id };
    if (typeof route === 'string') {
      line.method = this.req.method;
      line.route = route;
    }
    if (this.caller !== UNAUTHENTICATED) line.principal = this.caller.principal.name;
    line.status = status;
    line.ms = ms;
    this.server.log.info(line, 'request');
  }
}

/** The context of a request the gateway serves: its caller, URLs, logger and shutdown signal. */
export function context(res: Response): RequestContext {
  return exchange(res);
}

function exchange(res: Response): Exchange {
  const x = res.locals[CONTEXT] as Exchange | undefined;
  if (!x) throw new Error('not a request of the gateway server');
  return x;
}

export class GatewayServer {
  /** The gateway's logger; each request logs with a child of it (`context(res).log`). */
  readonly log: Logger;
  private readonly opts: GatewayServerOptions;
  private readonly metrics: RouteMetrics;
  private readonly server: Server;
  private readonly inflight = new Set<ServerResponse>();
  private readonly shutdown = new AbortController();
  private readonly maxBodyBytes: number;
  private readonly api: Router;

  constructor(opts: GatewayServerOptions) {
    this.opts = opts;
    this.log = opts.log.child({ component: 'gateway' });
    this.maxBodyBytes = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
    this.metrics = routeMetricsOn(opts.registry ?? new Registry(), 'modelplane_gateway', 'the gateway');
    const api: Router = express.Router({ caseSensitive: true });
    this.api = api;
    const middleware = {
      authenticated: this.authenticated,
      authenticatedStream: this.authenticatedStream,
      json: jsonBody({ limit: this.maxBodyBytes, maxDepth: MAX_JSON_DEPTH }),
    };
    for (const add of opts.routes) add(api, middleware);
    const app = createApp();
    app.enable('case sensitive routing');
    app.use(this.track);
    app.use(API_PREFIX, api, notFound());
    app.use(notFound(`no such endpoint: the API is served under ${API_PREFIX}`));
    app.use(this.refused, problemHandler());
    this.server = createServer(app);
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

  /** Every method and path the API declares, `/v1` included. */
  routes(): DeclaredRoute[] {
    return declaredRoutes(this.api, API_PREFIX);
  }

  /** Aborted when the server begins to shut down. */
  get signal(): AbortSignal {
    return this.shutdown.signal;
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

  /** Absolute base URL of the API for a request, `/v1` included. */
  baseUrl(req: IncomingMessage): string {
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

  /**
   * The first middleware: gives the request its context, keeps it among those in flight, and
   * when it closes counts it by route and status and logs it once.
   */
  private readonly track: RequestHandler = (req, res, next) => {
    const started = process.hrtime.bigint();
    const x = new Exchange(this, req);
    res.locals[CONTEXT] = x;
    this.inflight.add(res);
    res.once('close', () => {
      this.inflight.delete(res);
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = routeLabel(req, res);
      this.metrics.requests.inc({ route, code: String(res.statusCode) });
      this.metrics.duration.observe({ route }, seconds);
      // One line, with the bindings the request's child logger would carry, without making
      // one (a child logger per request was the costliest part of logging it).
      if (this.log.isLevelEnabled('info')) x.logRequest(res.statusCode, Math.round(seconds * 1000));
    });
    if (this.shutdown.signal.aborted) res.setHeader('connection', 'close');
    next();
  };

  /**
   * A route's middleware: refuses a body declared over the limit (413, before anything is
   * looked up or read), waits until the gateway is ready, then authenticates the caller (401).
   */
  private readonly authenticated: RequestHandler = async (req, res, next) => {
    const length = req.headers['content-length'];
    if (length !== undefined && Number(length) > this.maxBodyBytes)
      throw new HttpError(413, 'Request body too large', `the body is over ${this.maxBodyBytes} bytes`);
    if (this.opts.ready && !this.opts.isReady?.()) await this.opts.ready();
    exchange(res).caller = await this.opts.authenticate(req);
    next();
  };

  /** `authenticated` for a route that limits its streamed body itself. */
  private readonly authenticatedStream: RequestHandler = async (req, res, next) => {
    if (this.opts.ready && !this.opts.isReady?.()) await this.opts.ready();
    exchange(res).caller = await this.opts.authenticate(req);
    next();
  };

  /** Before the problem handler: maps an error to the caller's problem and logs it. */
  private readonly refused: ErrorRequestHandler = (err, _req, res, next) => {
    const problem = problemFor(err);
    const log = exchange(res).log;
    if (problem.status >= 500) log.error({ err }, 'request failed');
    else log.debug({ status: problem.status, detail: problem.message }, 'request refused');
    next(problem);
  };
}
