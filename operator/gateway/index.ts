/**
 * The gateway: the prediction API under `/v1`, served on every replica of the operator.
 *
 * `addGateway(manager, opts)` builds it on a manager (its caches become informers that run
 * on every replica; its server starts and stops with the manager) and returns it. Prediction
 * routes (and any others) come in through `opts.routes`, which may be a function of the
 * gateway so that they can use its caches, client and webhook secrets.
 */
import { HttpError } from '../../lib/http.ts';
import type { KubeClient, Manager } from '../runtime/index.ts';
import { accountRoutes } from './account.ts';
import { Authenticator, type AuthenticatorOptions } from './auth.ts';
import { GatewayCaches } from './caches.ts';
import { deploymentRoutes } from './deployments.ts';
import { modelRoutes } from './models.ts';
import { GatewayServer } from './server.ts';
import type { Routes } from './types.ts';
import { setWebhookSecrets, WebhookSecrets } from './webhook-secret.ts';

export interface GatewayOptions {
  /** Where to listen (default 0.0.0.0:8000; port 0 picks a free one). */
  address?: { host?: string; port: number };
  /** Base URL callers reach the API at, without `/v1` (default: from each request's Host). */
  publicUrl?: string;
  /** Believe X-Forwarded-Proto and X-Forwarded-Host (only behind a proxy that sets them). */
  trustForwardedHeaders?: boolean;
  /** Namespace of the API token Secrets and webhook signing Secrets (the operator's). */
  tokenNamespace: string;
  /** Namespaces callers without a token may act in (default none: a token is required). */
  allowAnonymous?: string[];
  /** Audiences Kubernetes tokens must carry (TokenReview); default: the API server's. */
  tokenReviewAudiences?: string[];
  /** More route groups, e.g. the prediction endpoints. */
  routes?: Routes[] | ((gateway: Gateway) => Routes[]);
  /** How long in-flight requests may finish on shutdown (default: the manager's timeout). */
  shutdownTimeoutMs?: number;
  maxBodyBytes?: number;
  /** How long TokenReview and SubjectAccessReview answers are kept (default 10 s). */
  authCacheTtlMs?: number;
  /** Rate limits on TokenReviews for unknown tokens (see AuthenticatorOptions.reviewLimit). */
  authReviewLimit?: AuthenticatorOptions['reviewLimit'];
  /** Items per list page (default 100). */
  pageSize?: number;
  /** Predictions of a model (`namespace/name`) in the usage records: its run_count (default 0). */
  runCount?: (model: string) => number;
}

export interface Gateway {
  readonly client: KubeClient;
  readonly caches: GatewayCaches;
  readonly auth: Authenticator;
  readonly webhookSecrets: WebhookSecrets;
  /** Set once the manager has started the gateway. */
  readonly server: GatewayServer;
  /** `http://host:port` it listens on, once started. */
  readonly url: string;
}

export const DEFAULT_GATEWAY_ADDRESS = { host: '0.0.0.0', port: 8000 };

export function addGateway(manager: Manager, opts: GatewayOptions): Gateway {
  const client = manager.client;
  const caches = new GatewayCaches(manager, opts.tokenNamespace);
  const auth = new Authenticator({
    client,
    tokens: caches.tokens,
    tokenNamespace: opts.tokenNamespace,
    tokenReviewAudiences: opts.tokenReviewAudiences,
    allowAnonymous: opts.allowAnonymous,
    candidateNamespaces: () => caches.namespaces(),
    cacheTtlMs: opts.authCacheTtlMs,
    reviewLimit: opts.authReviewLimit,
  });
  const webhookSecrets = new WebhookSecrets(client, opts.tokenNamespace);
  setWebhookSecrets(webhookSecrets);
  let server: GatewayServer | undefined;
  const gateway: Gateway = {
    client,
    caches,
    auth,
    webhookSecrets,
    get server() {
      if (!server) throw new Error('the gateway is built when the manager starts');
      return server;
    },
    get url() {
      return gateway.server.url;
    },
  };
  const extra = typeof opts.routes === 'function' ? opts.routes(gateway) : (opts.routes ?? []);
  const routes: Routes[] = [
    modelRoutes({ caches, client, pageSize: opts.pageSize, runCount: opts.runCount }),
    deploymentRoutes({ caches, client, pageSize: opts.pageSize }),
    accountRoutes({ caches, webhookSecrets }),
    ...extra,
  ];
  server = new GatewayServer({
    routes,
    authenticate: (req) => auth.authenticate(req),
    log: manager.log,
    publicUrl: opts.publicUrl,
    trustForwardedHeaders: opts.trustForwardedHeaders,
    registry: manager.metrics.registry,
    maxBodyBytes: opts.maxBodyBytes,
    isReady: () => caches.hasSynced(),
    ready: () =>
      caches.synced().catch((err: Error) => {
        throw new HttpError(
          503,
          'Service unavailable',
          `the gateway is starting: ${err.message}`,
          {},
          {
            'retry-after': '1',
          },
        );
      }),
  });
  const address = opts.address ?? DEFAULT_GATEWAY_ADDRESS;
  manager.addRunnable({
    name: 'gateway',
    start: () => gateway.server.listen(address.port, address.host ?? DEFAULT_GATEWAY_ADDRESS.host),
    stop: (timeoutMs) => gateway.server.close(opts.shutdownTimeoutMs ?? timeoutMs),
  });
  return gateway;
}

export { Authenticator, type Caller } from './auth.ts';
export { GatewayCaches } from './caches.ts';
export { type Page, paginate } from './pagination.ts';
export { context, GatewayServer } from './server.ts';
export type { Principal, RequestContext, RouteMiddleware, Routes, Verb } from './types.ts';
export { webhookSecret } from './webhook-secret.ts';
