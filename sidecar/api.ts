/**
 * The routes of the pod's prediction API (`:8080`): create, get, cancel and stream
 * predictions, readiness, liveness, load, status and the model's schema. Only HTTP lives
 * here (checking the request, `Prefer: wait`, answering); what a route does is the
 * `PredictionService`'s. The routes are declared on an express app (lib/express.ts) that
 * listeners.ts makes and ends with the 404 and problem+json handlers.
 */
import type { Express, Request, Response } from 'express';
import type { Clock, Timer } from '../lib/clock.ts';
import type { EgressPolicy } from '../lib/egress.ts';
import { jsonBody, methodNotAllowed } from '../lib/express.ts';
import {
  HttpError,
  invalid,
  invalidInput,
  MAX_BODY_BYTES,
  MAX_JSON_DEPTH,
  preferWait,
  sendEventStream,
  sendJson,
} from '../lib/http.ts';
import { type InvalidField, validateInput } from '../lib/openapi-input.ts';
import { newPredictionId, type PredictionObject, WEBHOOK_EVENTS } from '../lib/prediction.ts';
import type { Prediction, PredictionEvent } from './prediction.ts';

const MAX_WAIT_SECONDS = 600;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
/**
 * Set by a caller that has checked the input against the same schema (the gateway): the
 * sidecar does not check it again. The model server's own check stays the authority.
 */
export const INPUT_CHECKED = 'x-modelplane-input-checked';

export interface NewPrediction {
  id: string;
  input: Record<string, unknown>;
  webhook?: string | undefined;
  webhookEventsFilter?: string[] | undefined;
  /** The caller asked for live events. */
  stream?: boolean | undefined;
  /** Where its output files are uploaded (the gateway's signed URL). */
  uploadUrl?: string | undefined;
}

/** What the routes call. */
export interface PredictionService {
  /** The prediction with this id, while it is kept. */
  get(id: string): Prediction | undefined;
  /** Throws a 503 problem while the instance takes no predictions (not ready, draining). */
  checkAccepting(): void;
  /** The model server's OpenAPI document, once it has served one. */
  openapi(): unknown;
  /** Which addresses callers' webhooks may reach. */
  readonly egress: EgressPolicy;
  /**
   * Takes a new prediction (429 when the queue is full). `refused` holds why the model server
   * refused its input, when it did at once (the prediction is then not kept).
   */
  create(req: NewPrediction): Promise<{ prediction: Prediction; refused?: InvalidField[] }>;
  /** Cancels it: a queued one at once, a running one on the model server. */
  cancel(p: Prediction): Promise<void>;
  /** A caller has read the final record of `p`. */
  read(p: Prediction): void;
  view(p: Prediction, base?: string): PredictionObject;
  readiness(): { ready: boolean; reason: string; message: string };
  setupLogs(): string;
  live(): boolean;
  load(): Record<string, unknown>;
  status(): Record<string, unknown>;
}

export class ApiRoutes {
  private readonly service: PredictionService;
  private readonly clock: Clock;
  private readonly keepAliveMs: number;
  /** The sidecar's own address, for `urls` when a request has no Host. */
  private readonly fallbackHost: string;
  private readonly streams = new Set<Response>();
  /** Why a request's Authorization is not the operator's, or undefined when it is; none: the API is open. */
  private readonly authenticate: ((authorization: string | undefined) => string | undefined) | undefined;

  constructor(
    service: PredictionService,
    opts: {
      clock: Clock;
      keepAliveMs: number;
      fallbackHost: string;
      authenticate?: ((authorization: string | undefined) => string | undefined) | undefined;
    },
  ) {
    this.service = service;
    this.authenticate = opts.authenticate;
    this.clock = opts.clock;
    this.keepAliveMs = opts.keepAliveMs;
    this.fallbackHost = opts.fallbackHost;
  }

  /**
   * Declares the API's routes on `app`; another method on one of their paths is a 405.
   * Handlers throw `HttpError`s (express passes them to the app's error handler).
   */
  declare(app: Express): void {
    const s = this.service;
    const auth = this.authenticate;
    // Only the operator may call: every route needs its token, except GET /ready and /live,
    // the kubelet's probes, which without it answer the status code and nothing more.
    if (auth)
      app.use((req, res, next) => {
        const why = auth(req.headers.authorization);
        if (why === undefined) return next();
        if (req.method === 'GET' && (req.path === '/ready' || req.path === '/live')) {
          res.locals.anonymous = true;
          return next();
        }
        next(
          new HttpError(
            401,
            'Unauthorized',
            `the sidecar API serves the modelplane operator only: ${why}`,
            {},
            {
              'www-authenticate': 'Bearer realm="modelplane-sidecar"',
            },
          ),
        );
      });
    app
      .route('/predictions')
      .post(jsonBody({ limit: MAX_BODY_BYTES, maxDepth: MAX_JSON_DEPTH }), (req, res) =>
        this.create(req, res),
      )
      .all(methodNotAllowed);
    app
      .route('/predictions/:id')
      .get((req, res) => this.get(req, res))
      .all(methodNotAllowed);
    app
      .route('/predictions/:id/cancel')
      .post((req, res) => this.cancel(req, res))
      .all(methodNotAllowed);
    app
      .route('/predictions/:id/stream')
      .get((req, res) => this.stream(req, res))
      .all(methodNotAllowed);
    app
      .route('/ready')
      .get((_req, res) => {
        const r = s.readiness();
        if (res.locals.anonymous) return sendJson(res, r.ready ? 200 : 503, { ready: r.ready });
        const body = r.ready ? r : { ...r, setup_logs: s.setupLogs() || undefined };
        sendJson(res, r.ready ? 200 : 503, body);
      })
      .all(methodNotAllowed);
    app
      .route('/live')
      .get((_req, res) => sendJson(res, s.live() ? 200 : 503, { live: s.live() }))
      .all(methodNotAllowed);
    app
      .route('/load')
      .get((_req, res) => sendJson(res, 200, s.load()))
      .all(methodNotAllowed);
    app
      .route('/status')
      .get((_req, res) => sendJson(res, 200, s.status()))
      .all(methodNotAllowed);
    app
      .route('/openapi.json')
      .get((_req, res) => {
        const doc = s.openapi();
        if (!doc) throw new HttpError(503, 'No schema', 'the model server has not served an OpenAPI schema');
        sendJson(res, 200, doc);
      })
      .all(methodNotAllowed);
  }

  /** Ends every open event stream. */
  closeStreams(): void {
    for (const res of this.streams) res.end();
  }

  private base(req: Request): string {
    return `http://${req.headers.host ?? this.fallbackHost}`;
  }

  private find(id: string): Prediction {
    const p = this.service.get(id);
    if (!p) throw new HttpError(404, 'Prediction not found', `no prediction "${id}" on this instance`);
    return p;
  }

  /**
   * Answers with `p`; when the answer holds its final state, notes (once the answer has gone
   * out) that its caller has read it.
   */
  private answer(
    res: Response,
    status: number,
    p: Prediction,
    base: string,
    headers: Record<string, string> = {},
  ): void {
    if (p.terminal) res.once('finish', () => this.service.read(p));
    sendJson(res, status, this.service.view(p, base), headers);
  }

  private async create(req: Request, res: Response): Promise<void> {
    const body: unknown = req.body;
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw new HttpError(400, 'Bad request', 'the body must be a JSON object');
    }
    const b = body as Record<string, unknown>;
    const wait = preferWait(req.headers.prefer, MAX_WAIT_SECONDS);
    const applied: Record<string, string> =
      wait !== undefined ? { 'preference-applied': `wait=${wait}` } : {};
    const base = this.base(req);
    const id = b.id === undefined ? newPredictionId() : b.id;
    if (typeof id !== 'string' || !ID.test(id)) {
      throw new HttpError(400, 'Bad request', 'id must be 1-128 letters, digits, "_", "-" or "."');
    }
    const streamed = wantsEventStream(req.headers.accept);
    const existing = this.service.get(id);
    if (existing) {
      // Idempotent: the same id answers with the prediction already made.
      if (streamed) {
        this.createStream(res, 200, existing);
        return;
      }
      if (wait !== undefined) await existing.waitDone(wait * 1000);
      this.answer(res, 200, existing, base, applied);
      return;
    }
    this.service.checkAccepting();
    const input = b.input ?? {};
    if (typeof input !== 'object' || input === null || Array.isArray(input)) {
      throw invalidInput([{ type: 'type', field: 'input', description: 'input must be a JSON object' }]);
    }
    if (req.headers[INPUT_CHECKED] === undefined) {
      const problems = validateInput(input, this.service.openapi());
      if (problems.length) throw invalidInput(problems);
    }
    const stream = b.stream;
    if (stream !== undefined && typeof stream !== 'boolean') {
      throw new HttpError(400, 'Bad request', 'stream must be true or false');
    }
    const webhook = b.webhook;
    if (webhook !== undefined && (typeof webhook !== 'string' || !/^https?:\/\//.test(webhook))) {
      throw new HttpError(400, 'Bad request', 'webhook must be an http(s) URL');
    }
    const refusedHook =
      webhook !== undefined && URL.canParse(webhook) && this.service.egress.literalRefusal(new URL(webhook));
    if (refusedHook)
      throw invalid([
        {
          type: 'invalid',
          field: 'webhook',
          description: `webhook may not point at a private, loopback or link-local address: ${refusedHook}`,
        },
      ]);
    const uploadUrl = b.output_upload_url;
    if (uploadUrl !== undefined && (typeof uploadUrl !== 'string' || !/^https?:\/\//.test(uploadUrl))) {
      throw new HttpError(400, 'Bad request', 'output_upload_url must be an http(s) URL');
    }
    const filter = b.webhook_events_filter;
    if (
      filter !== undefined &&
      (!Array.isArray(filter) || !filter.every((f) => (WEBHOOK_EVENTS as readonly unknown[]).includes(f)))
    ) {
      throw new HttpError(
        400,
        'Bad request',
        'webhook_events_filter may hold start, output, logs and completed',
      );
    }
    const { prediction: p, refused } = await this.service.create({
      id,
      input: input as Record<string, unknown>,
      webhook: webhook as string | undefined,
      webhookEventsFilter: filter as string[] | undefined,
      stream,
      uploadUrl: uploadUrl as string | undefined,
    });
    if (refused) throw invalidInput(refused);
    if (streamed) {
      this.createStream(res, 201, p);
      return;
    }
    if (wait !== undefined) await p.waitDone(wait * 1000);
    this.answer(res, 201, p, base, applied);
  }

  /**
   * The answer of a create that asked for `text/event-stream`: the whole life of the
   * prediction in one exchange. An `accepted` event (`{status, started_at}`), then its
   * `logs` and `output` events (ids as on `/stream`; data JSON: the log text, the output
   * item), then a `prediction` event with the final record (without `input`), and the end.
   */
  private createStream(res: Response, status: number, p: Prediction): void {
    res.writeHead(status, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    let ended = false;
    let keepAlive: Timer | undefined;
    let unsubscribe: (() => void) | undefined;
    const close = () => {
      ended = true;
      keepAlive?.cancel();
      unsubscribe?.();
    };
    const finish = () => {
      if (ended) return;
      close();
      res.once('finish', () => this.service.read(p));
      const { input: _, ...final } = this.service.view(p);
      res.end(`event: prediction\ndata: ${JSON.stringify(final)}\n\n`);
    };
    const send = (e: PredictionEvent) => {
      if (ended) return;
      if (e.event === 'done') {
        // Its cost and the rest of its end are set once the ending code has run.
        queueMicrotask(finish);
        return;
      }
      if (e.event === 'error') return; // the final record says it
      const data = JSON.stringify(e.event === 'output' && 'value' in e ? e.value : e.data);
      res.write(`id: ${e.id}\nevent: ${e.event}\ndata: ${data}\n\n`);
    };
    res.on('close', close);
    const started = p.startedAt === undefined ? null : new Date(p.startedAt).toISOString();
    res.write(`event: accepted\ndata: {"status":"${p.status}","started_at":${JSON.stringify(started)}}\n\n`);
    for (const e of p.eventsSince(0)) send(e);
    if (p.terminal) {
      queueMicrotask(finish);
      return;
    }
    unsubscribe = p.subscribe(send);
    const beat = () => {
      keepAlive = this.clock.setTimer(() => {
        if (ended) return;
        res.write(': keep-alive\n\n');
        beat();
      }, this.keepAliveMs);
    };
    beat();
  }

  private async get(req: Request<{ id: string }>, res: Response): Promise<void> {
    const p = this.find(req.params.id);
    const wait = preferWait(req.headers.prefer, MAX_WAIT_SECONDS);
    if (wait !== undefined) await p.waitDone(wait * 1000);
    this.answer(res, 200, p, this.base(req));
  }

  private async cancel(req: Request<{ id: string }>, res: Response): Promise<void> {
    const p = this.find(req.params.id);
    await this.service.cancel(p);
    this.answer(res, 200, p, this.base(req));
  }

  private stream(req: Request<{ id: string }>, res: Response): void {
    const p = this.find(req.params.id);
    this.streams.add(res);
    res.on('close', () => this.streams.delete(res));
    sendEventStream(req, res, {
      keepAliveMs: this.keepAliveMs,
      clock: this.clock,
      // A stream stays open until its done event, even one opened after that event.
      events: (afterId, send) => ({ past: p.eventsSince(afterId), unsubscribe: p.subscribe(send, true) }),
    });
  }
}

/** Whether an `Accept` header asks for server-sent events. */
function wantsEventStream(accept: string | undefined): boolean {
  return accept?.includes('text/event-stream') === true;
}
