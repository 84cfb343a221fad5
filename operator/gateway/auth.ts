/**
 * Who is calling, and what may they do.
 *
 * - API tokens (`mp_<id>_<secret>`, see tokens.ts) are looked up by id in an informer's cache
 *   of the token Secrets, and compared by SHA-256 in constant time. They act in the
 *   namespaces their Secret lists (`*`: all), read-only (`get`, `list`) when marked so.
 *   Deleting the Secret revokes the token as soon as the watch delivers the deletion.
 * - Any other bearer token is a Kubernetes token (a ServiceAccount token, or whatever the API
 *   server authenticates): a TokenReview says who it is, then a SubjectAccessReview per check
 *   says whether that user may `verb` the `modelplane.dev` `resource` in a namespace. Both
 *   answers are cached for `cacheTtlMs` (10 s), keyed by the SHA-256 of the token, never the
 *   token itself, in caches of bounded size. A token the API server refused is remembered
 *   apart (`negativeTtlMs`, 60 s), so a flood of made-up tokens evicts no good answer, and
 *   TokenReviews for tokens in neither cache are rate limited, per client address and in all
 *   (`reviewLimit`): past it the caller gets a 429 with `Retry-After`, and the API server sees
 *   none of the flood.
 * - Without an Authorization header a request is refused (401) unless anonymous access is
 *   allowed for some namespaces; the anonymous caller then acts in those namespaces only.
 */

import { createHash } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { GROUP } from '../../crds/index.ts';
import { type Clock, realClock } from '../../lib/clock.ts';
import { HttpError } from '../../lib/http.ts';
import type { Secret } from '../resources.ts';
import type { Informer, KubeClient } from '../runtime/index.ts';
import {
  type ApiToken,
  apiTokenFromSecret,
  apiTokenId,
  credentialOf,
  TOKEN_ID_LABEL,
  tokenMatches,
} from './tokens.ts';
import type { Principal, Verb } from './types.ts';

/** What the server learns about an authenticated caller. */
export interface Caller {
  principal: Principal;
  authorize(verb: Verb, resource: string, namespace: string): Promise<void>;
  namespacesFor(verb: Verb, resource: string): Promise<'all' | string[]>;
}

export interface AuthenticatorOptions {
  client: KubeClient;
  /** The token Secrets (labelled modelplane.dev/api-token=true) of the token namespace. */
  tokens: Informer<Secret>;
  /** The namespace the token Secrets live in (for principal names). */
  tokenNamespace: string;
  /** Audiences a Kubernetes token must be for (TokenReview `spec.audiences`); empty: the API server's. */
  tokenReviewAudiences?: string[];
  /** Namespaces an anonymous caller may act in; empty or undefined: anonymous callers are refused. */
  allowAnonymous?: string[];
  /**
   * Namespaces worth asking about when a Kubernetes user may not act cluster-wide (those that
   * hold modelplane objects); its own namespace is always asked about too.
   */
  candidateNamespaces?: () => Iterable<string>;
  /** How long TokenReview and SubjectAccessReview answers are kept (default 10 s). */
  cacheTtlMs?: number;
  /** Most answers kept per cache (default 10 000). */
  maxCacheEntries?: number;
  /** How long a token the API server refused is remembered (default 60 s). */
  negativeTtlMs?: number;
  /**
   * TokenReviews for tokens not in a cache: per client address and in all, each a token
   * bucket (`perSecond` refill, `burst` size). Default 5/s burst 20 per address, 50/s burst
   * 200 in all; at most `maxCacheEntries` addresses are tracked.
   */
  reviewLimit?: { perAddress?: RateLimit; total?: RateLimit };
  /** When cached answers expire (the real clock by default). */
  clock?: Clock;
}

/** A token bucket's settings: `perSecond` tokens added each second, at most `burst` held. */
export interface RateLimit {
  perSecond: number;
  burst: number;
}

const DEFAULT_REVIEW_LIMIT = {
  perAddress: { perSecond: 5, burst: 20 },
  total: { perSecond: 50, burst: 200 },
};

const READ_VERBS: readonly Verb[] = ['get', 'list'];
const WWW_AUTHENTICATE = { 'www-authenticate': 'Bearer realm="modelplane"' };

function unauthorized(detail: string): HttpError {
  return new HttpError(401, 'Unauthorized', detail, {}, WWW_AUTHENTICATE);
}

export function forbidden(who: string, verb: Verb, resource: string, namespace: string, why = ''): HttpError {
  const where = namespace ? `in namespace "${namespace}"` : 'cluster-wide';
  return new HttpError(
    403,
    'Forbidden',
    `${who} may not ${verb} ${resource} ${where}${why ? `: ${why}` : ''}`,
    { verb, resource, namespace },
  );
}

/** A map whose entries expire, holding at most `max` of them (the oldest go first). */
export class TtlCache<V> {
  private readonly entries = new Map<string, { value: V; expires: number }>();
  private readonly ttlMs: number;
  private readonly max: number;
  private readonly clock: Clock;

  constructor(ttlMs: number, max: number, clock: Clock = realClock) {
    this.ttlMs = ttlMs;
    this.max = max;
    this.clock = clock;
  }

  get(key: string): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (e.expires <= this.clock.now()) {
      this.entries.delete(key);
      return undefined;
    }
    return e.value;
  }

  set(key: string, value: V): void {
    this.entries.delete(key);
    while (this.entries.size >= this.max) {
      const oldest = this.entries.keys().next().value;
      if (oldest === undefined) break;
      this.entries.delete(oldest);
    }
    this.entries.set(key, { value, expires: this.clock.now() + this.ttlMs });
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  /** The cached value, or the one `load` resolves to (kept; a rejection is not). */
  async through(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.get(key);
    if (hit !== undefined) return hit;
    const value = await load();
    this.set(key, value);
    return value;
  }
}

/**
 * Token buckets, one per key (at most `max` keys; the least recently used goes first, its
 * bucket full again when it comes back). `take` spends one token or says how many
 * milliseconds until one is there.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  private readonly limit: RateLimit;
  private readonly max: number;
  private readonly clock: Clock;

  constructor(limit: RateLimit, max: number, clock: Clock = realClock) {
    if (!(limit.perSecond > 0) || !(limit.burst >= 1))
      throw new Error('a rate limit needs perSecond > 0, burst >= 1');
    this.limit = limit;
    this.max = max;
    this.clock = clock;
  }

  /** The milliseconds to wait before `key` may go, or 0 when it may go now (then counted). */
  take(key: string): number {
    const now = this.clock.now();
    const { perSecond, burst } = this.limit;
    const b = this.buckets.get(key);
    const tokens = b ? Math.min(burst, b.tokens + ((now - b.at) / 1000) * perSecond) : burst;
    this.buckets.delete(key);
    while (this.buckets.size >= this.max) {
      const oldest = this.buckets.keys().next().value;
      if (oldest === undefined) break;
      this.buckets.delete(oldest);
    }
    if (tokens >= 1) {
      this.buckets.set(key, { tokens: tokens - 1, at: now });
      return 0;
    }
    this.buckets.set(key, { tokens, at: now });
    return Math.ceil(((1 - tokens) / perSecond) * 1000);
  }

  /** Gives back a token `take` spent (the request did not need it after all). */
  refund(key: string): void {
    const b = this.buckets.get(key);
    if (b) b.tokens = Math.min(this.limit.burst, b.tokens + 1);
  }

  get size(): number {
    return this.buckets.size;
  }
}

function tooManyReviews(waitMs: number): HttpError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new HttpError(
    429,
    'Too Many Requests',
    `too many requests with tokens the gateway does not know; retry after ${seconds} s`,
    {},
    { 'retry-after': String(seconds) },
  );
}

interface KubeUser {
  username: string;
  uid?: string;
  groups?: string[];
  extra?: Record<string, string[]>;
}

type Review = { ok: true; user: KubeUser } | { ok: false; error: string };

const SA_PREFIX = 'system:serviceaccount:';

/** The namespace of a ServiceAccount user name, undefined for other users. */
export function serviceAccountNamespace(username: string): string | undefined {
  if (!username.startsWith(SA_PREFIX)) return undefined;
  return username.slice(SA_PREFIX.length).split(':')[0] || undefined;
}

function sha256(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex');
}

export class Authenticator {
  private readonly opts: AuthenticatorOptions;
  private readonly reviews: TtlCache<Review>;
  /** Tokens the API server refused, apart so that a flood of them evicts no good answer. */
  private readonly refused: TtlCache<string>;
  private readonly perAddress: RateLimiter;
  private readonly total: RateLimiter;
  private readonly access: TtlCache<boolean>;
  private readonly byId = new Map<string, ApiToken>();

  constructor(opts: AuthenticatorOptions) {
    this.opts = opts;
    const ttl = opts.cacheTtlMs ?? 10_000;
    const max = opts.maxCacheEntries ?? 10_000;
    this.reviews = new TtlCache(ttl, max, opts.clock);
    this.access = new TtlCache(ttl, max, opts.clock);
    this.refused = new TtlCache(opts.negativeTtlMs ?? 60_000, max, opts.clock);
    const limit = opts.reviewLimit ?? {};
    this.perAddress = new RateLimiter(limit.perAddress ?? DEFAULT_REVIEW_LIMIT.perAddress, max, opts.clock);
    this.total = new RateLimiter(limit.total ?? DEFAULT_REVIEW_LIMIT.total, 1, opts.clock);
    const index = (s: Secret) => {
      const t = apiTokenFromSecret(s);
      if (t) this.byId.set(t.id, t);
    };
    const unindex = (s: Secret) => {
      const id = s.metadata?.labels?.[TOKEN_ID_LABEL];
      if (id && this.byId.get(id)?.secretName === s.metadata?.name) this.byId.delete(id);
    };
    opts.tokens.addEventHandler({
      onAdd: index,
      onUpdate: (old, cur) => {
        unindex(old);
        index(cur);
      },
      onDelete: unindex,
    });
  }

  /** The caller of a request; a 401 HttpError when it has no acceptable credential. */
  async authenticate(req: IncomingMessage): Promise<Caller> {
    const header = req.headers.authorization;
    const token = credentialOf(Array.isArray(header) ? header[0] : header);
    if (token === undefined) {
      const anon = this.opts.allowAnonymous ?? [];
      if (!anon.length) throw unauthorized('no API token: send "Authorization: Bearer <token>"');
      return this.scoped({ kind: 'anonymous', name: 'anonymous' }, anon, false, 'an anonymous caller');
    }
    const id = apiTokenId(token);
    if (id !== undefined) {
      const t = this.byId.get(id);
      if (!t || !tokenMatches(token, t.hash))
        throw unauthorized('the API token is not valid (unknown, revoked or mistyped)');
      return this.scoped(
        { kind: 'token', name: `token:${this.opts.tokenNamespace}/${t.name}` },
        t.namespaces,
        t.readOnly,
        `the API token "${t.name}"`,
      );
    }
    const key = sha256(token);
    const known = this.refused.get(key);
    if (known !== undefined) throw unauthorized(`the token was not accepted: ${known}`);
    let review = this.reviews.get(key);
    if (review === undefined) {
      this.admitReview(req.socket?.remoteAddress ?? '');
      review = await this.tokenReview(token);
      if (review.ok) this.reviews.set(key, review);
      else this.refused.set(key, review.error);
    }
    if (!review.ok) throw unauthorized(`the token was not accepted: ${review.error}`);
    return this.kubernetesCaller(key, review.user);
  }

  /** Counts one TokenReview against the caller's address and the total; a 429 past either. */
  private admitReview(address: string): void {
    const wait = this.perAddress.take(address);
    if (wait > 0) throw tooManyReviews(wait);
    const waitTotal = this.total.take('');
    if (waitTotal > 0) {
      this.perAddress.refund(address);
      throw tooManyReviews(waitTotal);
    }
  }

  private scoped(principal: Principal, namespaces: string[], readOnly: boolean, who: string): Caller {
    const all = namespaces.includes('*');
    return {
      principal,
      authorize: async (verb, resource, namespace) => {
        if (!all && !namespaces.includes(namespace))
          throw forbidden(who, verb, resource, namespace, `it may act in ${namespaces.join(', ')} only`);
        if (readOnly && !READ_VERBS.includes(verb))
          throw forbidden(who, verb, resource, namespace, 'it is read-only');
      },
      namespacesFor: async (verb) => {
        if (readOnly && !READ_VERBS.includes(verb)) return [];
        return all ? 'all' : [...namespaces];
      },
    };
  }

  private kubernetesCaller(tokenKey: string, user: KubeUser): Caller {
    const own = serviceAccountNamespace(user.username);
    const principal: Principal = {
      kind: own !== undefined ? 'serviceaccount' : 'user',
      name: user.username,
    };
    const allowed = (verb: Verb, resource: string, namespace: string) =>
      this.access.through(`${tokenKey}|${verb}|${resource}|${namespace}`, () =>
        this.subjectAccessReview(user, verb, resource, namespace),
      );
    return {
      principal,
      authorize: async (verb, resource, namespace) => {
        if (!(await allowed(verb, resource, namespace)))
          throw forbidden(user.username, verb, resource, namespace);
      },
      namespacesFor: async (verb, resource) => {
        if (await allowed(verb, resource, '')) return 'all';
        const candidates = new Set<string>(this.opts.candidateNamespaces?.() ?? []);
        if (own) candidates.add(own);
        const names = [...candidates].sort();
        const answers = await Promise.all(names.map((ns) => allowed(verb, resource, ns)));
        return names.filter((_, i) => answers[i]);
      },
    };
  }

  private async tokenReview(token: string): Promise<Review> {
    const res = await this.opts.client
      .request<{
        status?: { authenticated?: boolean; user?: KubeUser; error?: string };
      }>('POST', '/apis/authentication.k8s.io/v1/tokenreviews', {
        body: {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: {
            token,
            audiences: this.opts.tokenReviewAudiences?.length ? this.opts.tokenReviewAudiences : undefined,
          },
        },
      })
      .catch((err: Error) => {
        throw new HttpError(
          503,
          'Service Unavailable',
          `could not review the token: ${err.message}`,
          {},
          {
            'retry-after': '1',
          },
        );
      });
    const s = res?.status;
    if (s?.authenticated && s.user?.username) return { ok: true, user: s.user };
    return { ok: false, error: s?.error || 'the API server did not authenticate it' };
  }

  private async subjectAccessReview(
    user: KubeUser,
    verb: Verb,
    resource: string,
    namespace: string,
  ): Promise<boolean> {
    const res = await this.opts.client
      .request<{ status?: { allowed?: boolean } }>(
        'POST',
        '/apis/authorization.k8s.io/v1/subjectaccessreviews',
        {
          body: {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SubjectAccessReview',
            spec: {
              user: user.username,
              uid: user.uid,
              groups: user.groups,
              extra: user.extra,
              resourceAttributes: { group: GROUP, resource, verb, namespace: namespace || undefined },
            },
          },
        },
      )
      .catch((err: Error) => {
        throw new HttpError(
          503,
          'Service Unavailable',
          `could not check access: ${err.message}`,
          {},
          {
            'retry-after': '1',
          },
        );
      });
    return res?.status?.allowed === true;
  }
}
