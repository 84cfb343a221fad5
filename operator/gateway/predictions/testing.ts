/**
 * For tests: a small HTTP server that mounts routes under `/v1` with a caller that may do
 * anything in the namespaces it is given (the gateway's real server adds authentication).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { HttpError, sendProblem } from '../../../lib/http.ts';
import type { RequestContext, Route } from '../types.ts';

export interface TestServer {
  server: Server;
  /** `http://127.0.0.1:<port>/v1` */
  baseUrl: string;
  close(): Promise<void>;
}

function match(route: Route, method: string, path: string): Record<string, string> | undefined {
  if (route.method !== method) return undefined;
  const want = route.path.split('/').filter(Boolean);
  const got = path.split('/').filter(Boolean);
  if (want.length !== got.length) return undefined;
  const params: Record<string, string> = {};
  for (let i = 0; i < want.length; i++) {
    const w = want[i]!;
    if (w.startsWith(':')) params[w.slice(1)] = decodeURIComponent(got[i]!);
    else if (w !== got[i]) return undefined;
  }
  return params;
}

export async function serveRoutes(
  routes: Route[],
  opts: { namespaces?: 'all' | string[]; token?: string } = {},
): Promise<TestServer> {
  const namespaces = opts.namespaces ?? 'all';
  const log = pino({ level: 'silent' });
  let baseUrl = '';
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', baseUrl || 'http://127.0.0.1');
    const run = async () => {
      if (!url.pathname.startsWith('/v1/')) throw new HttpError(404, 'Not found', 'not under /v1');
      const path = url.pathname.slice(3);
      for (const route of routes) {
        const params = match(route, req.method ?? 'GET', path);
        if (!params) continue;
        if (route.auth !== false && opts.token) {
          const auth = req.headers.authorization ?? '';
          if (auth !== `Bearer ${opts.token}` && auth !== `Token ${opts.token}`)
            throw new HttpError(401, 'Unauthorized', 'a bearer token is required');
        }
        const allowed = (ns: string) => namespaces === 'all' || namespaces.includes(ns);
        const ctx: RequestContext = {
          principal: { kind: 'user', name: 'test' },
          authorize: async (verb, resource, ns) => {
            if (!allowed(ns)) throw new HttpError(403, 'Forbidden', `may not ${verb} ${resource} in ${ns}`);
          },
          namespacesFor: async () => namespaces,
          baseUrl,
          url,
          log,
        };
        return route.handle(req, res, ctx, params);
      }
      throw new HttpError(404, 'Not found', `no route for ${req.method} ${url.pathname}`);
    };
    run().catch((err: unknown) => {
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendProblem(
        res,
        err instanceof HttpError ? err : new HttpError(500, 'Internal error', (err as Error).message),
      );
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  baseUrl = `http://127.0.0.1:${port}/v1`;
  return {
    server,
    baseUrl,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
