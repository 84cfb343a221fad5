/**
 * Demand from the other operator replicas: each serves its gateway's demand at
 * `GET /autoscaler/demand` on its health and metrics server, and the leader scrapes every
 * peer it finds by listing the operator's pods.
 *
 * Authentication: the caller sends its ServiceAccount token as a bearer token; the server
 * checks it with a TokenReview and accepts only the user it was configured with (by default
 * its own ServiceAccount, which every replica shares). A review is cached for a minute, so a
 * scrape per second costs about one TokenReview a minute per peer.
 *
 * Each endpoint is a small express app (lib/express.ts) mounted on the manager's server at its
 * path: errors are problem+json, other methods 405, and requests are counted by route.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Express, RequestHandler } from 'express';
import type { ITokenReview } from 'kubernetes-models/authentication.k8s.io/v1/TokenReview';
import type { Registry } from 'prom-client';
import {
  createApp,
  jsonBody,
  methodNotAllowed,
  notFound,
  problemHandler,
  routeMetrics,
} from '../../lib/express.ts';
import { HttpError } from '../../lib/http.ts';
import type { DeploymentDemand } from '../predictions/demand.ts';
import { Pods } from '../resources.ts';
import type { KubeClient, Logger } from '../runtime/index.ts';
import { parseDemandList } from './sum.ts';

export const DEMAND_PATH = '/autoscaler/demand';
export const POKE_PATH = '/autoscaler/poke';
export const SA_TOKEN_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/token';
export const DEFAULT_PEER_SELECTOR = 'app.kubernetes.io/name=modelplane,app.kubernetes.io/component=operator';

/** The `sub` claim of a ServiceAccount token (`system:serviceaccount:<ns>:<name>`), unverified. */
export function tokenSubject(token: string): string | undefined {
  const payload = token.split('.')[1];
  if (!payload) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { sub?: unknown };
    return typeof claims.sub === 'string' ? claims.sub : undefined;
  } catch {
    return undefined;
  }
}

/** A token read from a file, re-read every minute (projected tokens rotate). */
export function fileToken(path: string): () => string {
  let cached = '';
  let readAt = 0;
  return () => {
    if (!cached || Date.now() - readAt > 60_000) {
      cached = readFileSync(path, 'utf8').trim();
      readAt = Date.now();
    }
    return cached;
  };
}

/** Checks bearer tokens with the TokenReview API. */
export class TokenReviewAuthenticator {
  private readonly client: KubeClient;
  private readonly allowed: ReadonlySet<string>;
  private readonly cacheMs: number;
  private readonly cache = new Map<string, { ok: boolean; at: number }>();

  constructor(client: KubeClient, allowedUsers: readonly string[], opts: { cacheMs?: number } = {}) {
    this.client = client;
    this.allowed = new Set(allowedUsers);
    this.cacheMs = opts.cacheMs ?? 60_000;
  }

  /** Whether `token` authenticates as one of the allowed users. */
  async check(token: string): Promise<boolean> {
    const key = createHash('sha256').update(token).digest('hex');
    const hit = this.cache.get(key);
    if (hit && Date.now() - hit.at < this.cacheMs) return hit.ok;
    const review = await this.client.request<ITokenReview>(
      'POST',
      '/apis/authentication.k8s.io/v1/tokenreviews',
      {
        body: { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token } },
      },
    );
    const user = review.status?.user?.username;
    const ok = review.status?.authenticated === true && user !== undefined && this.allowed.has(user);
    if (this.cache.size > 1024) this.cache.clear();
    this.cache.set(key, { ok, at: Date.now() });
    return ok;
  }
}

/** Refuses a caller without a bearer token `authenticate` accepts: 401, 403, or 503 when it cannot tell. */
function bearerAuth(authenticate: (token: string) => Promise<boolean>): RequestHandler {
  return async (req, _res, next) => {
    const auth = req.headers.authorization ?? '';
    const token = /^Bearer\s+(.+)$/i.exec(auth)?.[1]?.trim();
    if (!token)
      throw new HttpError(401, 'Unauthorized', 'send the operator ServiceAccount token as a bearer token');
    let ok = false;
    try {
      ok = await authenticate(token);
    } catch {
      throw new HttpError(503, 'Service Unavailable', 'the token could not be reviewed; try again');
    }
    if (!ok) throw new HttpError(403, 'Forbidden', 'this token is not the operator ServiceAccount');
    next();
  };
}

/**
 * An app for one peer endpoint: `route` declares it; other methods are 405, other paths 404,
 * errors problem+json; with a registry, requests are counted as
 * `modelplane_autoscaler_peer_requests_total{route, code}` (and a duration histogram).
 */
function peerApp(registry: Registry | undefined, route: (app: Express) => void): Express {
  const app = createApp();
  if (registry)
    app.use(
      routeMetrics({
        registry,
        prefix: 'modelplane_autoscaler_peer',
        subject: 'the autoscaler peer endpoints',
      }),
    );
  route(app);
  app.use(notFound());
  app.use(problemHandler());
  return app;
}

/** `GET /autoscaler/demand`: this replica's demand, for a caller the authenticator accepts. */
export function demandHandler(opts: {
  demand: () => DeploymentDemand[];
  authenticate: (token: string) => Promise<boolean>;
  identity: string;
  /** Where to count the requests (the manager's registry); none counted without it. */
  registry?: Registry;
}): Express {
  return peerApp(opts.registry, (app) => {
    app
      .route(DEMAND_PATH)
      .get(bearerAuth(opts.authenticate), (_req, res) => {
        res.set('cache-control', 'no-store').json({ identity: opts.identity, demand: opts.demand() });
      })
      .all(methodNotAllowed);
  });
}

/**
 * `POST /autoscaler/poke` with `{"namespace", "name"}`: another replica's gateway holds a
 * request with no ready instance; the leader decides for that deployment at once. Answers
 * 202 when this replica's autoscaler runs (it leads), 409 otherwise.
 */
export function pokeHandler(opts: {
  poke: (namespace: string, name: string) => boolean;
  authenticate: (token: string) => Promise<boolean>;
  /** Where to count the requests (the manager's registry); none counted without it. */
  registry?: Registry;
}): Express {
  return peerApp(opts.registry, (app) => {
    app
      .route(POKE_PATH)
      .post(bearerAuth(opts.authenticate), jsonBody({ limit: 4096 }), (req, res) => {
        const body = req.body as { namespace?: unknown; name?: unknown } | null;
        if (
          typeof body?.namespace !== 'string' ||
          typeof body.name !== 'string' ||
          !body.namespace ||
          !body.name
        )
          throw new HttpError(422, 'Unprocessable Entity', 'namespace and name must be non-empty strings');
        if (!opts.poke(body.namespace, body.name))
          throw new HttpError(
            409,
            'Conflict',
            'this replica does not run the autoscaler now (it is not the leader)',
          );
        res.status(202).json({});
      })
      .all(methodNotAllowed);
  });
}

export interface PeerScraperOptions {
  client: KubeClient;
  /** Where the operator's pods are. */
  namespace: string;
  labelSelector: string;
  /** This replica's pod name: skipped. */
  selfPod: string | undefined;
  /** The peers' health and metrics port (a container port named `metrics` wins). */
  port: number;
  /** The bearer token to send. */
  token: () => string;
  /** How long the peer list is reused (default 10 s). */
  listIntervalMs?: number;
  /** A scrape's timeout (default 500 ms). */
  timeoutMs?: number;
  /** How long a peer's last answer stands in for one that fails (default 5 s). */
  staleMs?: number;
  log: Logger;
}

/** Scrapes every other operator replica's demand. */
export class PeerScraper {
  private readonly opts: PeerScraperOptions;
  private peers: { name: string; url: string }[] = [];
  private listedAt = 0;
  private readonly last = new Map<string, { at: number; demand: DeploymentDemand[] }>();
  private readonly warnedAt = new Map<string, number>();

  constructor(opts: PeerScraperOptions) {
    this.opts = opts;
  }

  /** The demand lists of every peer that answered (or answered lately). */
  async scrape(): Promise<DeploymentDemand[][]> {
    await this.refreshPeers();
    const now = Date.now();
    const staleMs = this.opts.staleMs ?? 5_000;
    const results = await Promise.all(
      this.peers.map(async (peer) => {
        try {
          const demand = await this.fetchPeer(peer.url);
          this.last.set(peer.name, { at: now, demand });
          return demand;
        } catch (err) {
          this.warn(peer.name, err);
          const prev = this.last.get(peer.name);
          return prev && now - prev.at <= staleMs ? prev.demand : [];
        }
      }),
    );
    for (const name of this.last.keys()) if (!this.peers.some((p) => p.name === name)) this.last.delete(name);
    return results;
  }

  private async refreshPeers(): Promise<void> {
    if (Date.now() - this.listedAt < (this.opts.listIntervalMs ?? 10_000)) return;
    try {
      const { items } = await this.opts.client.list(Pods, {
        namespace: this.opts.namespace,
        labelSelector: this.opts.labelSelector,
      });
      this.peers = items
        .filter((p) => p.metadata?.name && p.metadata.name !== this.opts.selfPod && p.status?.podIP)
        .map((p) => {
          const named = p.spec?.containers
            ?.flatMap((c) => c.ports ?? [])
            .find((port) => port.name === 'metrics')?.containerPort;
          const ip = p.status?.podIP as string;
          const host = ip.includes(':') ? `[${ip}]` : ip;
          return {
            name: p.metadata?.name as string,
            url: `http://${host}:${named ?? this.opts.port}${DEMAND_PATH}`,
          };
        });
      this.listedAt = Date.now();
    } catch (err) {
      this.warn('(list)', err);
    }
  }

  private async fetchPeer(url: string): Promise<DeploymentDemand[]> {
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${this.opts.token()}`, accept: 'application/json' },
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 500),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${res.status}: ${text.slice(0, 200)}`);
    return parseDemandList(JSON.parse(text));
  }

  /** At most one warning per peer a minute. */
  private warn(peer: string, err: unknown): void {
    const at = this.warnedAt.get(peer) ?? 0;
    if (Date.now() - at < 60_000) return;
    this.warnedAt.set(peer, Date.now());
    this.opts.log.warn({ peer, err }, 'could not read a peer replica’s demand');
  }
}

export interface PokeForwarderOptions {
  client: KubeClient;
  namespace: string;
  /** The Lease holder's identity (the leader's pod name, as POD_NAME sets it). */
  leader: () => string | undefined;
  /** True while this process leads (its own autoscaler takes pokes). */
  isLeader: () => boolean;
  port: number;
  token: () => string;
  timeoutMs?: number;
  log: Logger;
}

/**
 * Sends this replica's pokes to the leader's `/autoscaler/poke`, so a request held on any
 * replica is decided on at once. At most one poke per deployment is in flight.
 */
export class PokeForwarder {
  private readonly opts: PokeForwarderOptions;
  private readonly inFlight = new Set<string>();
  private leaderUrl: { name: string; url: string; at: number } | undefined;
  private warnedAt = 0;

  constructor(opts: PokeForwarderOptions) {
    this.opts = opts;
  }

  /** Forwards a poke unless this replica leads; never throws. */
  forward(namespace: string, name: string): Promise<void> {
    if (this.opts.isLeader()) return Promise.resolve();
    const key = `${namespace}/${name}`;
    if (this.inFlight.has(key)) return Promise.resolve();
    this.inFlight.add(key);
    return this.send(namespace, name)
      .catch((err) => {
        if (Date.now() - this.warnedAt > 60_000) {
          this.warnedAt = Date.now();
          this.opts.log.warn(
            { err },
            'could not pass a poke to the leader; it sees the demand at its next tick',
          );
        }
      })
      .finally(() => this.inFlight.delete(key));
  }

  private async send(namespace: string, name: string): Promise<void> {
    const url = await this.url();
    if (!url) return;
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.opts.token()}`, 'content-type': 'application/json' },
      body: JSON.stringify({ namespace, name }),
      signal: AbortSignal.timeout(this.opts.timeoutMs ?? 500),
    });
    await res.arrayBuffer();
    if (res.status !== 202) {
      this.leaderUrl = undefined; // the leader may have moved
      throw new Error(`the leader answered ${res.status}`);
    }
  }

  /** The leader pod's poke URL, looked up again when the leader changes or every 30 s. */
  private async url(): Promise<string | undefined> {
    const leader = this.opts.leader();
    if (!leader) return undefined;
    const cached = this.leaderUrl;
    if (cached && cached.name === leader && Date.now() - cached.at < 30_000) return cached.url;
    const pod = await this.opts.client.find(Pods, leader, this.opts.namespace);
    const ip = pod?.status?.podIP;
    if (!pod || !ip) return undefined;
    const named = pod.spec?.containers
      ?.flatMap((c) => c.ports ?? [])
      .find((p) => p.name === 'metrics')?.containerPort;
    const host = ip.includes(':') ? `[${ip}]` : ip;
    const url = `http://${host}:${named ?? this.opts.port}${POKE_PATH}`;
    this.leaderUrl = { name: leader, url, at: Date.now() };
    return url;
  }
}
