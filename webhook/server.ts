/**
 * The webhook's HTTPS server: `POST /validate` answers AdmissionReviews with the verdict of
 * rules.ts. It starts listening with its first serving certificate and swaps in each new
 * one for new connections (connections already open finish on the old one, which is still
 * valid), so a rotation drops no admission. Metrics carry controller-runtime's names.
 */

import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Request, Response } from 'express';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { EgressPolicy } from '../lib/egress.ts';
import { createApp, jsonBody, methodNotAllowed, notFound, problemHandler } from '../lib/express.ts';
import { HttpError } from '../lib/http.ts';
import { WEBHOOK_PATH } from './configuration.ts';
import type { ServingCert } from './keeper.ts';
import { answer, isOurs, readReview } from './review.ts';
import { type Lookup, review } from './rules.ts';

/** AdmissionReviews carry the object and its old self: room for two of etcd's 1.5 MiB. */
const BODY_LIMIT = 4 * 1024 * 1024;

interface LogLike {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

export interface WebhookServerOptions {
  host: string;
  port: number;
  lookup: Lookup;
  log: LogLike;
  registry: Registry;
  /** Where Predictions' webhooks may go (default: public addresses only). */
  egress?: EgressPolicy;
}

export class WebhookServer {
  private readonly opts: WebhookServerOptions;
  private server: Server | undefined;
  private listening: Promise<void> | undefined;
  private readonly requests: Counter<'webhook' | 'code'>;
  private readonly latency: Histogram<'webhook'>;
  private readonly inFlight: Gauge<'webhook'>;
  /** The serial number of the certificate being served. */
  servedCert: string | undefined;

  constructor(opts: WebhookServerOptions) {
    this.opts = opts;
    this.requests = new Counter({
      name: 'controller_runtime_webhook_requests_total',
      help: 'Admission requests answered, by HTTP status code.',
      labelNames: ['webhook', 'code'],
      registers: [opts.registry],
    });
    this.latency = new Histogram({
      name: 'controller_runtime_webhook_latency_seconds',
      help: 'Time to answer an admission request.',
      labelNames: ['webhook'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [opts.registry],
    });
    this.inFlight = new Gauge({
      name: 'controller_runtime_webhook_requests_in_flight',
      help: 'Admission requests being answered.',
      labelNames: ['webhook'],
      registers: [opts.registry],
    });
  }

  /** True once it listens with a certificate. */
  get ready(): boolean {
    return this.server?.listening === true;
  }

  get address(): AddressInfo | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a : undefined;
  }

  /** Serves `cert` from now on: starts listening with the first one. */
  async useCertificate(cert: ServingCert): Promise<void> {
    if (this.server) {
      this.server.setSecureContext({ cert: cert.cert, key: cert.key });
      this.opts.log.info({}, 'webhook serving certificate swapped in');
      return;
    }
    const server = createServer({ cert: cert.cert, key: cert.key, keepAliveTimeout: 60_000 }, this.app());
    server.headersTimeout = 10_000;
    server.requestTimeout = 30_000;
    this.server = server;
    this.listening = new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        this.opts.log.info({ address: this.address }, 'webhook serving');
        resolve();
      });
    });
    await this.listening;
  }

  /** Stops accepting connections and ends the open ones once their requests are answered. */
  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await this.listening?.catch(() => undefined);
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeIdleConnections();
    });
  }

  private app() {
    const app = createApp();
    app
      .route(WEBHOOK_PATH)
      .post(jsonBody({ limit: BODY_LIMIT }), (req, res) => this.validate(req, res))
      .all(methodNotAllowed);
    app.use(notFound());
    app.use(problemHandler({ log: this.opts.log }));
    return app;
  }

  private async validate(req: Request, res: Response): Promise<void> {
    const labels = { webhook: WEBHOOK_PATH };
    const end = this.latency.startTimer(labels);
    this.inFlight.inc(labels);
    try {
      const request = readReview(req.body);
      if (typeof request === 'string') {
        this.requests.inc({ ...labels, code: '400' });
        throw new HttpError(400, 'Bad request', request);
      }
      let verdict = { refusals: [] as string[], warnings: [] as string[] };
      if (isOurs(request)) {
        try {
          verdict = await review(
            {
              kind: request.kind.kind,
              operation: request.operation,
              namespace: request.namespace,
              object: request.object ?? undefined,
              oldObject: request.oldObject ?? undefined,
            },
            this.opts.lookup,
            { egress: this.opts.egress },
          );
        } catch (err) {
          // A rule that cannot be judged (a lookup failed) is no refusal.
          this.opts.log.error(
            { err, kind: request.kind.kind, name: request.name },
            'an admission check failed',
          );
          verdict.warnings.push(
            `modelplane could not check this ${request.kind.kind}: ${(err as Error).message}`,
          );
        }
      }
      if (verdict.refusals.length)
        this.opts.log.debug(
          {
            kind: request.kind.kind,
            namespace: request.namespace,
            name: request.name,
            refusals: verdict.refusals,
          },
          'admission refused',
        );
      this.requests.inc({ ...labels, code: '200' });
      res.json(answer(request.uid, verdict));
    } finally {
      this.inFlight.dec(labels);
      end();
    }
  }
}
