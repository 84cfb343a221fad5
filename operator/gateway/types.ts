/**
 * What the gateway's HTTP server gives every route: the authenticated caller, a way to check
 * what it may do, and the absolute base URL of the API. Routes are grouped by area (models,
 * deployments, predictions, ...) and mounted under `/v1` by the server.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
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

export interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path under `/v1` with `:name` parameters, e.g. `/predictions/:id/cancel`. */
  path: string;
  /**
   * false for a route that carries its own credential (the SSE stream URL with its signed
   * token): the server then neither requires nor checks the Authorization header.
   */
  auth?: boolean;
  handle(
    req: IncomingMessage,
    res: ServerResponse,
    ctx: RequestContext,
    params: Record<string, string>,
  ): Promise<void>;
}
