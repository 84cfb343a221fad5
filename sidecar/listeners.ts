/**
 * The sidecar's three HTTP listeners: the prediction API (`:8080`, its routes in api.ts),
 * the Prometheus metrics (`:9090`, `GET /metrics`), and the listener on loopback where the
 * Cog server sends its webhooks (`POST /cog/{id}`, with the pod's bearer token).
 */
import { timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from 'pino';
import type { Clock } from '../lib/clock.ts';
import { HttpError, sendProblem } from '../lib/http.ts';
import type { CogPayload } from './cog-webhooks.ts';

export interface Listening {
  api: string;
  metrics: string;
  webhook: string;
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
  /** The prediction API. */
  api(req: IncomingMessage, res: ServerResponse): Promise<void>;
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
    const webhookServer = createServer((req, res) => this.onCogWebhook(req, res));
    this.servers.push(webhookServer);
    const hook = await listen(webhookServer, s.webhookHost, s.webhookPort);
    if (!isLoopback(s.webhookHost)) {
      this.log.warn({ webhookHost: s.webhookHost }, 'the webhook listener is not on a loopback address');
    }
    const api = createServer((req, res) => {
      this.handlers.api(req, res).catch((err: unknown) => this.fail(res, err));
    });
    api.keepAliveTimeout = 65_000;
    this.servers.push(api);
    const apiAddress = await listen(api, s.host, s.port);
    const metrics = createServer((req, res) => {
      this.onMetrics(req, res).catch((err: unknown) => this.fail(res, err));
    });
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

  private fail(res: ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (err instanceof HttpError) {
      sendProblem(res, err);
      return;
    }
    this.log.error({ err: (err as Error).message, stack: (err as Error).stack }, 'request failed');
    sendProblem(res, new HttpError(500, 'Internal error', (err as Error).message));
  }

  private async onMetrics(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://sidecar').pathname;
    if (req.method !== 'GET' || path !== '/metrics') {
      throw new HttpError(404, 'Not found', 'metrics are at GET /metrics');
    }
    const { contentType, text } = await this.handlers.metrics();
    res.writeHead(200, { 'content-type': contentType });
    res.end(text);
  }

  private authorized(req: IncomingMessage): boolean {
    const token = this.settings.webhookToken;
    if (!token) return true;
    const got = Buffer.from(req.headers.authorization ?? '');
    const want = Buffer.from(`Bearer ${token}`);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  private onCogWebhook(req: IncomingMessage, res: ServerResponse): void {
    if (req.method !== 'POST' || !req.url?.startsWith('/cog/')) {
      res.writeHead(404).end();
      return;
    }
    if (!this.authorized(req)) {
      this.log.warn('rejected a webhook without the right bearer token');
      res.writeHead(401).end();
      return;
    }
    const id = decodeURIComponent(req.url.slice('/cog/'.length).split('?')[0] ?? '');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-length': '0' }).end();
      let payload: CogPayload;
      try {
        payload = JSON.parse(Buffer.concat(chunks).toString('utf8')) as CogPayload;
      } catch {
        this.log.warn({ prediction: id }, 'unreadable webhook from the model server');
        return;
      }
      this.handlers.cogWebhook(id, payload);
    });
  }
}

function isLoopback(host: string): boolean {
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
