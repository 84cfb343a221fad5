/**
 * What the gateway's HTTP server gives every route: the authenticated caller, a way to check
 * what it may do, and the absolute base URL of the API. Routes are grouped by area (models,
 * deployments, predictions, ...); each group adds its routes to the express Router that the
 * server mounts at `/v1`.
 */
import type { RequestHandler, Router } from 'express';
import type { Logger } from 'pino';

export type Verb = 'get' | 'list' | 'create' | 'update' | 'patch' | 'delete';

/** Who made a request. */
export interface Principal {
  kind: 'serviceaccount' | 'user' | 'token' | 'anonymous';
  /** `system:serviceaccount:<ns>:<name>`, a user name, or `token:<namespace>/<name>` for API tokens. */
  name: string;
}

export interface RequestContext {
  principal: Principal;
  /**
   * Resolves when the caller may `verb` the modelplane.dev `resource` (plural, e.g.
   * `predictions`) in `namespace`; throws a 403 HttpError (problem+json) otherwise.
   */
  authorize(verb: Verb, resource: string, namespace: string): Promise<void>;
  /** The namespaces the caller may `verb` `resource` in: every one (`'all'`) or a list. */
  namespacesFor(verb: Verb, resource: string): Promise<'all' | string[]>;
  /** Absolute base URL of the API, `/v1` included, without a trailing slash. */
  baseUrl: string;
  url: URL;
  log: Logger;
  /**
   * Aborted when the server shuts down: a route that holds a request (Prefer: wait) or
   * streams (SSE) ends it then. (The server also ends open event streams itself.)
   */
  signal?: AbortSignal;
}

/** The middleware a route group puts in front of its handlers. */
export interface RouteMiddleware {
  /**
   * Refuses a body declared over the limit (413), waits for the gateway's caches (503), then
   * authenticates the caller (401); `context(res)` then carries the caller. Every route has
   * it except one that carries its own credential (the SSE stream URL with its signed token).
   */
  authenticated: RequestHandler;
  /**
   * `authenticated` without the body limit, for a route that streams its body and limits it
   * itself (file uploads).
   */
  authenticatedStream: RequestHandler;
  /** Reads a JSON body under the server's byte limit into `req.body` (413, or 400 for bad JSON). */
  json: RequestHandler;
}

/**
 * A group of routes: adds them to `api`, the Router at `/v1`, with paths such as
 * `/predictions/:id/cancel`; each path's chain ends with `methodNotAllowed` (lib/express.ts).
 * A handler reads its request's context with `context(res)` (server.ts).
 */
export type Routes = (api: Router, middleware: RouteMiddleware) => void;
