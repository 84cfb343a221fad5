/**
 * For tests: the gateway's server with route groups mounted under `/v1` and a caller that may
 * do anything in the namespaces it is given, in place of the real authentication.
 */
import pino from 'pino';
import { HttpError } from '../../../lib/http.ts';
import type { Caller } from '../auth.ts';
import { GatewayServer } from '../server.ts';
import type { Routes } from '../types.ts';

export interface TestServer {
  server: GatewayServer;
  /** `http://127.0.0.1:<port>/v1` */
  baseUrl: string;
  close(): Promise<void>;
}

export async function serveRoutes(
  routes: Routes,
  opts: { namespaces?: 'all' | string[]; token?: string } = {},
): Promise<TestServer> {
  const namespaces = opts.namespaces ?? 'all';
  const allowed = (ns: string) => namespaces === 'all' || namespaces.includes(ns);
  const caller: Caller = {
    principal: { kind: 'user', name: 'test' },
    authorize: async (verb, resource, ns) => {
      if (!allowed(ns)) throw new HttpError(403, 'Forbidden', `may not ${verb} ${resource} in ${ns}`);
    },
    namespacesFor: async () => namespaces,
  };
  const server = new GatewayServer({
    routes: [routes],
    log: pino({ level: 'silent' }),
    authenticate: async (req) => {
      const auth = req.headers.authorization ?? '';
      if (opts.token && auth !== `Bearer ${opts.token}` && auth !== `Token ${opts.token}`)
        throw new HttpError(401, 'Unauthorized', 'a bearer token is required');
      return caller;
    },
  });
  await server.listen(0, '127.0.0.1');
  return { server, baseUrl: `${server.url}/v1`, close: () => server.close(0) };
}
