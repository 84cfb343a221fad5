/**
 * The prediction routes of the gateway (mounted under `/v1`): create (by version, model or
 * deployment), list, get, cancel, and the signed event stream.
 */
import type { Request, Response } from 'express';
import { methodNotAllowed } from '../../../lib/express.ts';
import { HttpError, invalid, sendEventStream, sendJson } from '../../../lib/http.ts';
import { isTerminal, type StreamEvent } from '../../../lib/prediction.ts';
import {
  type Catalog,
  type DeploymentView,
  decodeCursor,
  type PredictionEngine,
  type StoredPrediction,
} from '../../predictions/index.ts';
import { storePage, storePosition } from '../pagination.ts';
import { context } from '../server.ts';
import type { RequestContext, Routes } from '../types.ts';
import { parseCancelAfter, parsePreferWait, parseVersionRef, parseWebhook } from './parse.ts';
import type { StreamTokens } from './stream-token.ts';

const PAGE_SIZE = 100;
/** Event streams of one prediction one replica serves at once; more get 429. */
export const MAX_STREAMS_PER_PREDICTION = 16;
const KEEP_ALIVE_MS = 15_000;

export interface PredictionRoutesOptions {
  engine: PredictionEngine;
  catalog: Catalog;
  /** Checks the token of a stream URL (the engine's `streamUrl` made it). */
  tokens: StreamTokens;
  /** Seconds between SSE keep-alive comments (default 15). */
  keepAliveMs?: number;
  /**
   * The input as the model server gets it: references to files of this API replaced by their
   * signed URLs (files.ts). Default: as given.
   */
  resolveInput?: (input: unknown, namespace: string, ctx: RequestContext) => Promise<unknown>;
}

function unprocessable(detail: string): HttpError {
  return invalid([{ type: 'invalid', field: 'version', description: detail }], { title: 'Unprocessable' });
}

/** The best of several deployments running one version: the model's own, then the most ready. */
function pick(candidates: DeploymentView[], preferred?: string): DeploymentView | undefined {
  const own = candidates.find((d) => d.name === preferred);
  if (own) return own;
  return [...candidates].sort(
    (a, b) =>
      (b.readyInstances ?? 0) - (a.readyInstances ?? 0) ||
      a.namespace.localeCompare(b.namespace) ||
      a.name.localeCompare(b.name),
  )[0];
}

/** The JSON object body the `json` middleware read (400 when it is not an object). */
function body(req: Request): Record<string, unknown> {
  const b: unknown = req.body;
  if (typeof b !== 'object' || b === null || Array.isArray(b))
    throw new HttpError(400, 'Bad request', 'the body must be a JSON object');
  return b as Record<string, unknown>;
}

/** A time query parameter (RFC 3339), as epoch ms; a 400 when it is not one. */
function parseTime(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  const t = Date.parse(v);
  if (!Number.isFinite(t))
    throw invalid([
      {
        type: 'format',
        field: name,
        description: `${name} must be an RFC 3339 time, e.g. 2026-01-02T15:04:05Z`,
      },
    ]);
  return t;
}

function header(req: Request, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

export function predictionRoutes(opts: PredictionRoutesOptions): Routes {
  const { engine, catalog, tokens } = opts;
  const keepAliveMs = opts.keepAliveMs ?? KEEP_ALIVE_MS;
  /** Event streams open on this replica, per prediction. */
  const streams = new Map<string, number>();

  /** The deployment serving model `owner/name` (its spec.deployment). */
  function modelDeployment(owner: string, name: string): string {
    const model = catalog.model(owner, name);
    if (!model) throw new HttpError(404, 'Model not found', `model ${owner}/${name} does not exist`);
    if (!model.deployment)
      throw unprocessable(
        `model ${owner}/${name} has no deployment: set its spec.deployment to a Deployment that runs it, or post to /deployments/{owner}/{name}/predictions`,
      );
    if (!catalog.deployment(owner, model.deployment))
      throw unprocessable(
        `model ${owner}/${name} names deployment ${model.deployment} in spec.deployment, which does not exist; create it`,
      );
    return model.deployment;
  }

  async function create(
    req: Request,
    res: Response,
    ctx: RequestContext,
    b: Record<string, unknown>,
    target: { namespace: string; deployment: string; viaDeployment: boolean },
  ): Promise<void> {
    const wait = parsePreferWait(req.headers.prefer);
    const cancelAfterMs = parseCancelAfter(req.headers['cancel-after']);
    const { webhook, events } = parseWebhook(b.webhook, b.webhook_events_filter, engine.egress);
    const key = header(req, 'idempotency-key');
    if (key !== undefined && (key.length === 0 || key.length > 255))
      throw new HttpError(400, 'Bad request', 'Idempotency-Key must be 1-255 characters');
    const input = opts.resolveInput ? await opts.resolveInput(b.input, target.namespace, ctx) : b.input;
    const { record, replayed } = await engine.create({
      ...target,
      input,
      webhook,
      webhookEvents: events,
      idempotencyKey: key,
      cancelAfterMs,
      stream: b.stream === true,
      baseUrl: ctx.baseUrl,
    });
    const headers: Record<string, string> = {};
    if (replayed) headers['idempotent-replayed'] = 'true';
    if (wait !== undefined) {
      await engine.waitDone(record.id, wait * 1000, ctx.signal);
      headers['preference-applied'] = `wait=${wait}`;
    }
    const view = engine.view(record, ctx.baseUrl);
    // Both official clients treat a held answer that is not `starting` as final.
    if (wait !== undefined && !isTerminal(view.status)) view.status = 'starting';
    headers.location = view.urls.get;
    sendJson(res, 201, view, headers);
  }

  /** Reads a prediction the caller may `verb`; 404 for one it may not see. */
  async function visible(ctx: RequestContext, id: string, verb: 'get'): Promise<StoredPrediction> {
    const rec = await engine.get(id);
    const notFound = new HttpError(404, 'Prediction not found', `no prediction "${id}"`);
    if (!rec) throw notFound;
    try {
      await ctx.authorize(verb, 'predictions', rec.namespace);
    } catch (err) {
      if (err instanceof HttpError && err.status === 403) throw notFound;
      throw err;
    }
    return rec;
  }

  return (api, { authenticated, json }) => {
    api
      .route('/predictions')
      .post(authenticated, json, async (req, res) => {
        const ctx = context(res);
        const b = body(req);
        const ref = parseVersionRef(b.version);
        if (ref.kind === 'model') {
          await ctx.authorize('create', 'predictions', ref.owner);
          const deployment = modelDeployment(ref.owner, ref.name);
          return create(req, res, ctx, b, { namespace: ref.owner, deployment, viaDeployment: false });
        }
        if (ref.kind === 'model-version') {
          await ctx.authorize('create', 'predictions', ref.owner);
          const model = catalog.model(ref.owner, ref.name);
          const candidates = catalog
            .deploymentsRunning(ref.id, [ref.owner])
            .filter((d) => d.model === ref.name);
          const d = pick(candidates, model?.deployment);
          if (!d)
            throw unprocessable(
              `no deployment runs version ${ref.id} of model ${ref.owner}/${ref.name}; create one (a Deployment with spec.version naming this version)`,
            );
          return create(req, res, ctx, b, {
            namespace: d.namespace,
            deployment: d.name,
            viaDeployment: false,
          });
        }
        const namespaces = await ctx.namespacesFor('create', 'predictions');
        const d = pick(catalog.deploymentsRunning(ref.id, namespaces));
        if (!d)
          throw unprocessable(
            `no deployment runs version ${ref.id}${namespaces === 'all' ? '' : ` in a namespace you may create predictions in (${namespaces.join(', ') || 'none'})`}; create one (a Deployment with spec.version naming this version)`,
          );
        await ctx.authorize('create', 'predictions', d.namespace);
        return create(req, res, ctx, b, { namespace: d.namespace, deployment: d.name, viaDeployment: false });
      })
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const q = ctx.url.searchParams;
        const namespaces = await ctx.namespacesFor('list', 'predictions');
        // `cursor=<position>` pages on (older), `cursor=b.<position>` back (newer).
        const page = await engine.list({
          namespaces,
          limit: PAGE_SIZE,
          ...storePosition(ctx.url, (p) => decodeCursor(p) !== undefined),
          createdAfter: parseTime(q, 'created_after'),
          createdBefore: parseTime(q, 'created_before'),
        });
        sendJson(
          res,
          200,
          storePage(ctx.url, page, (r) => engine.view(r, ctx.baseUrl)),
        );
      })
      .all(methodNotAllowed);

    api
      .route('/models/:owner/:name/predictions')
      .post(authenticated, json, async (req, res) => {
        const ctx = context(res);
        const { owner, name } = req.params;
        await ctx.authorize('create', 'predictions', owner);
        const b = body(req);
        const deployment = modelDeployment(owner, name);
        return create(req, res, ctx, b, { namespace: owner, deployment, viaDeployment: false });
      })
      .all(methodNotAllowed);

    api
      .route('/deployments/:owner/:name/predictions')
      .post(authenticated, json, async (req, res) => {
        const ctx = context(res);
        const { owner, name } = req.params;
        await ctx.authorize('create', 'predictions', owner);
        const b = body(req);
        if (!catalog.deployment(owner, name))
          throw new HttpError(404, 'Deployment not found', `deployment ${owner}/${name} does not exist`);
        return create(req, res, ctx, b, { namespace: owner, deployment: name, viaDeployment: true });
      })
      .all(methodNotAllowed);

    api
      .route('/predictions/:id')
      .get(authenticated, async (req, res) => {
        const ctx = context(res);
        const rec = await visible(ctx, req.params.id, 'get');
        sendJson(res, 200, engine.view(rec, ctx.baseUrl));
      })
      .all(methodNotAllowed);

    api
      .route('/predictions/:id/cancel')
      .post(authenticated, async (req, res) => {
        const ctx = context(res);
        const rec = await visible(ctx, req.params.id, 'get');
        await ctx.authorize('create', 'predictions', rec.namespace);
        const after = (await engine.cancel(rec.id)) ?? rec;
        sendJson(res, 200, engine.view(after, ctx.baseUrl));
      })
      .all(methodNotAllowed);

    // The stream URL carries its own credential (a signed token): no Authorization header.
    api
      .route('/predictions/:id/stream')
      .get(async (req, res) => {
        const ctx = context(res);
        const { id } = req.params;
        const gone = new HttpError(
          404,
          'Stream not found',
          'no stream at this URL (the token does not match or has expired, or the prediction is gone)',
        );
        if (!tokens.verify(id, ctx.url.searchParams.get('token'))) throw gone;
        const open = streams.get(id) ?? 0;
        if (open >= MAX_STREAMS_PER_PREDICTION)
          throw new HttpError(
            429,
            'Too many streams',
            `${open} streams of this prediction are open on this replica, the most it serves`,
            {},
            { 'retry-after': '1' },
          );
        streams.set(id, open + 1);
        res.once('close', () => {
          const n = (streams.get(id) ?? 1) - 1;
          if (n > 0) streams.set(id, n);
          else streams.delete(id);
        });
        const last = Number(header(req, 'last-event-id') ?? 0);
        const pending: StreamEvent[] = [];
        let send: ((e: StreamEvent) => void) | undefined;
        const sub = await engine.stream(id, Number.isFinite(last) ? last : 0, (e) =>
          send ? send(e) : pending.push(e),
        );
        if (!sub) throw gone;
        sendEventStream(req, res, {
          keepAliveMs,
          events: (_afterId, s) => {
            send = s;
            // Events read while the past ones were: in order, after them.
            const past = [...sub.past, ...pending.splice(0)].sort((a, b) => a.id - b.id);
            return { past, unsubscribe: sub.unsubscribe };
          },
          signal: ctx.signal,
        });
      })
      .all(methodNotAllowed);
  };
}
