/**
 * The pieces every modelplane HTTP server builds on with express 5, so that they all answer
 * alike: JSON bodies under a byte limit, errors as `application/problem+json`, 404 and 405 as
 * problems too, and request metrics by route pattern. A server is put together as:
 *
 * ```ts
 * const app = createApp();
 * app.use(routeMetrics({ registry, prefix: 'modelplane_gateway', subject: 'the gateway' }));
 * app.route('/predictions').post(jsonBody({ limit }), create).get(list).all(methodNotAllowed);
 * app.use(notFound());
 * app.use(problemHandler({ log }));
 * ```
 *
 * Route handlers may be async and throw `HttpError` (lib/http.ts): express 5 passes a rejected
 * promise to the error handler.
 */
import express, {
  type ErrorRequestHandler,
  type Express,
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
} from 'express';
import { Counter, Histogram, type Registry } from 'prom-client';
import { HttpError, nestedDeeperThan, sendProblem, tooDeep } from './http.ts';

/** An express app with the `X-Powered-By` header and ETags (and so 304 answers) off. */
export function createApp(): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  return app;
}

/**
 * Parses a JSON body of at most `limit` bytes into `req.body`, whatever its Content-Type says
 * (`curl -d` sends a form type): any JSON value, an empty body read as `{}`. A body declared
 * over the limit is refused before it is read (413); one that turns out over it, or is not
 * JSON (400), goes to the error handler as body-parser's error. With `maxDepth`, a body that
 * nests arrays and objects deeper is a 400 (see MAX_JSON_DEPTH in lib/http.ts).
 */
export function jsonBody(opts: { limit: number; maxDepth?: number }): RequestHandler {
  const parse = express.json({ limit: opts.limit, strict: false, type: () => true });
  return (req, res, next) => {
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > opts.limit) return next(tooLarge(opts.limit));
    parse(req, res, (err?: unknown) => {
      if (err) return next(err);
      req.body ??= {};
      if (opts.maxDepth !== undefined && nestedDeeperThan(req.body, opts.maxDepth)) {
        req.body = {};
        return next(tooDeep(opts.maxDepth));
      }
      next();
    });
  };
}

function tooLarge(limit: number | undefined): HttpError {
  return new HttpError(
    413,
    'Request body too large',
    limit === undefined ? 'the body is too large' : `the body is over ${limit} bytes`,
  );
}

/** body-parser's errors carry `type` and `status`; see its README. */
interface BodyParserError extends Error {
  type: string;
  status: number;
  limit?: number;
}

function isBodyParserError(err: unknown): err is BodyParserError {
  return (
    err instanceof Error &&
    typeof (err as Partial<BodyParserError>).type === 'string' &&
    typeof (err as Partial<BodyParserError>).status === 'number'
  );
}

/**
 * The problem a caller sees for `err`: an `HttpError` as it is, a body-parser error with its
 * own status (413 too large, 400 not JSON or cut short, 415 an unknown charset or encoding),
 * `undefined` for anything else.
 */
export function httpErrorOf(err: unknown): HttpError | undefined {
  if (err instanceof HttpError) return err;
  if (!(err instanceof Error)) return undefined;
  const e = err as Partial<BodyParserError> & { expose?: unknown };
  switch (e.type) {
    case 'entity.too.large':
      return tooLarge(e.limit);
    case 'entity.parse.failed':
      return new HttpError(400, 'Malformed JSON', `the body is not JSON: ${err.message}`);
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return new HttpError(415, 'Unsupported media type', err.message);
  }
  // Other body-parser errors, and errors it passes on marked as the client's (http-errors'
  // `expose`): a gzip body that does not inflate, say.
  const clients = isBodyParserError(err) || e.expose === true;
  return clients && typeof e.status === 'number' && e.status >= 400 && e.status < 500
    ? new HttpError(e.status, 'Bad request', err.message)
    : undefined;
}

/** What the error handler logs with; a pino logger fits. */
export interface ProblemLog {
  error(obj: object, msg: string): void;
  debug(obj: object, msg: string): void;
}

/**
 * The last middleware: answers any error as `application/problem+json`
 * `{title, detail, status, ...extra}` with the `HttpError`'s headers. `toProblem` maps errors
 * of the server's own kinds (an API server's refusal, say) and is asked first; anything left
 * is a 500 whose cause goes to `log`. A request whose body was not read is answered with
 * `Connection: close` rather than drained; a response already under way is cut.
 */
export function problemHandler(
  opts: { log?: ProblemLog; toProblem?: (err: unknown) => HttpError | undefined } = {},
): ErrorRequestHandler {
  return (err: unknown, req: Request, res: Response, _next: NextFunction) => {
    const problem =
      opts.toProblem?.(err) ??
      httpErrorOf(err) ??
      new HttpError(500, 'Internal server error', 'the server failed to answer; see its logs');
    if (problem.status >= 500) opts.log?.error({ err, path: req.path }, 'request failed');
    else opts.log?.debug({ status: problem.status, detail: problem.message }, 'request refused');
    if (res.headersSent) {
      res.destroy();
      return;
    }
    if (!req.complete) res.setHeader('connection', 'close');
    sendProblem(res, problem);
  };
}

/** The last route middleware: 404 problem for any path no route took. */
export function notFound(detail = 'no such endpoint'): RequestHandler {
  return (_req, _res, next) => next(new HttpError(404, 'Not found', detail));
}

/** The methods a route declared (`app.route(path).get(...).post(...)`), sorted. */
function declaredMethods(req: Request): string[] {
  const methods = (req.route as { methods?: Record<string, boolean> } | undefined)?.methods ?? {};
  return Object.keys(methods)
    .filter((m) => m !== '_all' && methods[m])
    .map((m) => m.toUpperCase())
    .sort();
}

/**
 * Ends a route's chain, `app.route(path).get(h).post(h).all(methodNotAllowed)`: any other
 * method is a 405 problem with `Allow` listing the route's methods. Its requests count as
 * `unmatched` in `routeMetrics`, as a path no route takes does.
 */
export const methodNotAllowed: RequestHandler = (req, res, next) => {
  const allow = declaredMethods(req);
  res.locals[UNMATCHED] = true;
  next(
    new HttpError(
      405,
      'Method not allowed',
      `this endpoint answers ${allow.join(', ')}, not ${req.method}`,
      {},
      { allow: allow.join(', ') },
    ),
  );
};

const UNMATCHED = 'modelplaneUnmatchedRoute';

/** The metrics `routeMetrics` records, on one registry. */
export interface RouteMetrics {
  requests: Counter<'route' | 'code'>;
  duration: Histogram<'route'>;
}

/**
 * `<prefix>_requests_total{route, code}` and `<prefix>_request_duration_seconds{route}` on
 * `registry`, made once per registry and name (a second call returns the same ones).
 */
export function routeMetricsOn(registry: Registry, prefix: string, subject = 'the server'): RouteMetrics {
  const requestsName = `${prefix}_requests_total`;
  const durationName = `${prefix}_request_duration_seconds`;
  const requests =
    (registry.getSingleMetric(requestsName) as Counter<'route' | 'code'> | undefined) ??
    new Counter({
      name: requestsName,
      help: `HTTP requests ${subject} answered, by route (method and path template) and status code`,
      labelNames: ['route', 'code'],
      registers: [registry],
    });
  const duration =
    (registry.getSingleMetric(durationName) as Histogram<'route'> | undefined) ??
    new Histogram({
      name: durationName,
      help: 'Time from request to the end of the response, by route (streams included)',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    });
  return { requests, duration };
}

/**
 * The first middleware: when a response closes (finished, failed or cut), counts it by route
 * and status code and observes its duration. The route label is `<METHOD> <pattern>`, the
 * pattern as the route was declared on its router (`GET /predictions/:id` for a route on a
 * router mounted at `/v1`), never the raw path; `unmatched` when no route took the request
 * (404) or the route does not answer its method (405). The same metric names and labels as
 * the gateway's hand-written router recorded (`prefix: 'modelplane_gateway'`).
 */
export function routeMetrics(opts: { registry: Registry; prefix: string; subject?: string }): RequestHandler {
  const m = routeMetricsOn(opts.registry, opts.prefix, opts.subject);
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.once('close', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      m.requests.inc({ route: routeLabel(req, res), code: String(res.statusCode) });
      m.duration.observe({ route: routeLabel(req, res) }, seconds);
    });
    next();
  };
}

/** `<METHOD> <pattern>` of the route that took the request, or `unmatched`. */
export function routeLabel(req: Request, res: Response): string {
  const path = (req.route as { path?: unknown } | undefined)?.path;
  if (res.locals[UNMATCHED] || typeof path !== 'string') return 'unmatched';
  return `${req.method} ${path}`;
}

/** A route an express app or router declares: an upper-case method and its path template. */
export interface DeclaredRoute {
  method: string;
  path: string;
}

/**
 * Every method and path `router` (an app's `router`, or a Router) declares with
 * `route(path).get(...)...`, read from its stack: what a test enumerates to cover every
 * route, including ones added later. `all(...)` handlers (the 405s) are not methods.
 */
export function declaredRoutes(router: { stack: unknown[] }, prefix = ''): DeclaredRoute[] {
  type Layer = { route?: { path: unknown; methods?: Record<string, boolean> } };
  const out: DeclaredRoute[] = [];
  for (const layer of router.stack as Layer[]) {
    const route = layer.route;
    if (!route || typeof route.path !== 'string') continue;
    for (const [method, on] of Object.entries(route.methods ?? {}))
      if (on && method !== '_all') out.push({ method: method.toUpperCase(), path: `${prefix}${route.path}` });
  }
  return out;
}
