/**
 * The sidecar's three HTTP listeners: the prediction API (`:8080`, its routes in api.ts),
 * the Prometheus metrics (`:9090`, `GET /metrics`), and the listener on loopback where the
 * Cog server sends its webhooks (`POST /cog/{id}`, with the pod's bearer token).
 *
 * Each is an express app (lib/express.ts) that answers alike: other methods on a route are
 * 405, other paths 404, and every error is `application/problem+json`.
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Express, RequestHandler } from 'express';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { createApp, httpErrorOf, methodNotAllowed, notFound, problemHandler } from '../lib/express.ts';
import { HttpError, readJson } from '../lib/http.ts';
import type { CogPayload } from './cog-webhooks.ts';

/**
 * The most a Cog webhook may carry: it holds the whole output so far, file outputs included
 * as data URLs when the model server has no upload URL.
 */
const MAX_COG_PAYLOAD = 256 * 1024 * 1024;

export interface Listening {
  api: string;
  metrics: string;
  webhook: string;
  /** Where the model server uploads output files (uploads.ts), once open. */
  upload?: string;
}

export interface ListenerSettings {
  host: string;
  port: number;
  metricsHost: string;
  metricsPort: number;
  webhookHost: string;
  webhookPort: number;
  /** The bearer token the Cog server's webhooks must carry; none takes any. */
  webhookToken: string | undefined;
}

export interface ListenerHandlers {
  /** Declares the prediction API's routes on `app`. */
  api(app: Express): void;
  /** The metrics text and its content type. */
  metrics(): Promise<{ contentType: string; text: string }>;
  /** One webhook of the Cog server, for prediction `id`. */
  cogWebhook(id: string, payload: CogPayload): void;
}

export class Listeners {
  private readonly settings: ListenerSettings;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly handlers: ListenerHandlers;
  private servers: Server[] = [];

  constructor(deps: { settings: ListenerSettings; log: Logger; clock: Clock }, handlers: ListenerHandlers) {
    this.settings = deps.settings;
    this.log = deps.log;
    this.clock = deps.clock;
    this.handlers = handlers;
  }

  /** Opens the three listeners; answers their URLs. */
  async open(): Promise<Listening> {
    const s = this.settings;
    const webhookServer = createServer(
      this.app('no such endpoint; webhooks go to POST /cog/{id}', (app) => this.cogWebhookRoute(app)),
    );
    this.servers.push(webhookServer);
    const hook = await listen(webhookServer, s.webhookHost, s.webhookPort);
    if (!isLoopback(s.webhookHost)) {
      this.log.warn({ webhookHost: s.webhookHost }, 'the webhook listener is not on a loopback address');
    }
    const api = createServer(this.app('no such endpoint', (app) => this.handlers.api(app)));
    api.keepAliveTimeout = 65_000;
    this.servers.push(api);
    const apiAddress = await listen(api, s.host, s.port);
    const metrics = createServer(this.app('metrics are at GET /metrics', (app) => this.metricsRoute(app)));
    this.servers.push(metrics);
    const met = await listen(metrics, s.metricsHost, s.metricsPort);
    return {
      api: `http://${hostForUrl(s.host)}:${apiAddress.port}`,
      metrics: `http://${hostForUrl(s.metricsHost)}:${met.port}`,
      webhook: `http://${hostForUrl(s.webhookHost)}:${hook.port}`,
    };
  }

  /** Closes the listeners; connections still open a second later are cut. */
  async close(): Promise<void> {
    await Promise.all(
      this.servers.splice(0).map(
        (srv) =>
          new Promise<void>((resolveClosed) => {
            const cut = this.clock.setTimer(() => srv.closeAllConnections(), 1000);
            srv.close(() => {
              cut.cancel();
              resolveClosed();
            });
            srv.closeIdleConnections();
          }),
      ),
    );
  }

  /** An app with the routes `declare` makes; other paths are 404 with `detail`. */
  private app(detail: string, declare: (app: Express) => void): Express {
    const app = createApp();
    declare(app);
    app.use(notFound(detail));
    app.use(problemHandler({ log: this.log, toProblem }));
    return app;
  }

  private metricsRoute(app: Express): void {
    app
      .route('/metrics')
      .get(async (_req, res) => {
        const { contentType, text } = await this.handlers.metrics();
        res.writeHead(200, { 'content-type': contentType });
        res.end(text);
      })
      .all(methodNotAllowed);
  }

  private cogWebhookRoute(app: Express): void {
    app
      .route('/cog/:id')
      .post(this.bearer(), async (req, res) => {
        // Three or more of these a prediction: the light reader costs less than jsonBody.
        const payload = (await readJson(req, MAX_COG_PAYLOAD)) as CogPayload;
        res.writeHead(200, { 'content-length': '0' }).end();
        this.handlers.cogWebhook(req.params.id, payload);
      })
      .all(methodNotAllowed);
  }

  /** Refuses (401) a webhook without the pod's bearer token, before its body is read. */
  private bearer(): RequestHandler {
    const token = this.settings.webhookToken;
    const want = Buffer.from(`Bearer ${token}`);
    return (req, _res, next) => {
      if (!token) return next();
      const got = Buffer.from(req.headers.authorization ?? '');
      if (got.length === want.length && timingSafeEqual(got, want)) return next();
      this.log.warn('rejected a webhook without the right bearer token');
      next(new HttpError(401, 'Unauthorized', "webhooks need the pod's bearer token (WEBHOOK_AUTH_TOKEN)"));
    };
  }
}

/**
 * The sidecar's errors as callers have always seen them: `HttpError`s and body errors as
 * lib/express.ts makes them, a 4xx raised by express itself (a path that does not decode)
 * with its status, anything else a 500 `Internal error` with its message.
 */
function toProblem(err: unknown): HttpError {
  const known = httpErrorOf(err);
  if (known) return known;
  const status = (err as { status?: unknown } | null)?.status;
  const message = err instanceof Error ? err.message : String(err);
  if (typeof status === 'number' && status >= 400 && status < 500)
    return new HttpError(status, 'Bad request', message);
  return new HttpError(500, 'Internal error', message);
}

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** A listening address as a URL host: the wildcard addresses as their loopback. */
export function hostForUrl(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function listen(server: Server, host: string, port: number): Promise<AddressInfo> {
  return new Promise((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolveListen(server.address() as AddressInfo);
    });
  });
}
