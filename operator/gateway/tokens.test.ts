import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/clock.ts';
import { TtlCache } from './auth.ts';
import { decodeCursor, encodeCursor, paginate } from './pagination.ts';
import {
  ANNOTATION_NAMESPACES,
  ANNOTATION_READ_ONLY,
  apiTokenFromSecret,
  apiTokenId,
  credentialOf,
  HASH_KEY,
  hashToken,
  mintToken,
  parseNamespaces,
  TOKEN_ID_LABEL,
  TOKEN_LABEL,
  tokenMatches,
} from './tokens.ts';
import { newWebhookKey } from './webhook-secret.ts';

describe('API tokens', () => {
  it('are mp_<12 hex id>_<43 base64url characters>, looked up by id', () => {
    const { token, id } = mintToken();
    expect(token).toMatch(/^mp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/);
    expect(apiTokenId(token)).toBe(id);
    expect(mintToken().token).not.toBe(token);
    expect(apiTokenId('mp_0123456789ab_short')).toBeUndefined();
    expect(apiTokenId('eyJhbGciOiJSUzI1NiJ9.e30.sig')).toBeUndefined();
    expect(apiTokenId(`${token}x`)).toBeUndefined();
  });

  it('match their stored SHA-256 only', () => {
    const { token } = mintToken();
    const hash = hashToken(token);
    expect(hash.length).toBe(32);
    expect(tokenMatches(token, hash)).toBe(true);
    expect(tokenMatches(mintToken().token, hash)).toBe(false);
    expect(tokenMatches(token, Buffer.alloc(3))).toBe(false);
  });

  it('are read from a Secret with scope and read-only flag; malformed Secrets are ignored', () => {
    const { token, id } = mintToken();
    const secret = {
      metadata: {
        name: 'modelplane-token-ci',
        labels: { [TOKEN_LABEL]: 'true', [TOKEN_ID_LABEL]: id },
        annotations: { [ANNOTATION_NAMESPACES]: 'a, b', [ANNOTATION_READ_ONLY]: 'true' },
      },
      data: { [HASH_KEY]: Buffer.from(hashToken(token).toString('hex')).toString('base64') },
    };
    const t = apiTokenFromSecret(secret);
    expect(t).toMatchObject({
      id,
      namespaces: ['a', 'b'],
      readOnly: true,
      secretName: 'modelplane-token-ci',
    });
    expect(tokenMatches(token, t!.hash)).toBe(true);
    expect(apiTokenFromSecret({ ...secret, data: {} })).toBeUndefined();
    expect(
      apiTokenFromSecret({ ...secret, metadata: { ...secret.metadata, labels: { [TOKEN_ID_LABEL]: id } } }),
    ).toBeUndefined();
  });

  it('scope to namespace names or * for all', () => {
    expect(parseNamespaces('a,b,a')).toEqual(['a', 'b']);
    expect(parseNamespaces('a,*')).toEqual(['*']);
    expect(() => parseNamespaces('')).toThrow('at least one namespace');
    expect(() => parseNamespaces('Bad_Name')).toThrow('"Bad_Name" is not a namespace name');
  });
});

describe('the Authorization header', () => {
  it('takes Bearer and Token, in any case; nothing is undefined; other shapes are a 401', () => {
    expect(credentialOf('Bearer abc')).toBe('abc');
    expect(credentialOf('Token abc')).toBe('abc');
    expect(credentialOf('bearer  abc ')).toBe('abc');
    expect(credentialOf(undefined)).toBeUndefined();
    expect(credentialOf('')).toBeUndefined();
    expect(() => credentialOf('Basic dXNlcjpwYXNz')).toThrow('must be "Bearer <token>" or "Token <token>"');
    expect(() => credentialOf('Bearer a b')).toThrow();
  });
});

describe('the review cache', () => {
  it('expires entries after the TTL and keeps at most max, dropping the oldest', async () => {
    const clock = new FakeClock(0);
    const cache = new TtlCache<number>(10_000, 2, clock);
    cache.set('a', 1);
    cache.set('b', 2);
    cache.set('c', 3);
    expect(cache.size).toBe(2);
    expect(cache.get('a')).toBeUndefined();
    expect(cache.get('c')).toBe(3);
    clock.advance(10_000);
    expect(cache.get('c')).toBeUndefined();
    let loads = 0;
    const load = async () => ++loads;
    expect(await cache.through('k', load)).toBe(1);
    expect(await cache.through('k', load)).toBe(1);
    clock.advance(10_001);
    expect(await cache.through('k', load)).toBe(2);
  });
});

describe('pagination', () => {
  const items = Array.from({ length: 7 }, (_, i) => ({ id: `item-${i}` }));
  const url = (cursor?: string) =>
    new URL(`https://api.example.com/v1/things?owner=x${cursor ? `&cursor=${cursor}` : ''}`);
  const cursorOf = (link: string | null) => new URL(link!).searchParams.get('cursor') ?? undefined;

  it('walks forward and back with absolute next/previous URLs that keep other parameters', () => {
    const opts = { key: (t: { id: string }) => t.id, pageSize: 3, order: 'asc' as const };
    const first = paginate(items, { ...opts, url: url() });
    expect(first.results.map((t) => t.id)).toEqual(['item-0', 'item-1', 'item-2']);
    expect(first.previous).toBeNull();
    expect(first.next).toMatch(/^https:\/\/api\.example\.com\/v1\/things\?owner=x&cursor=/);
    const second = paginate(items, { ...opts, url: url(cursorOf(first.next)) });
    expect(second.results.map((t) => t.id)).toEqual(['item-3', 'item-4', 'item-5']);
    const third = paginate(items, { ...opts, url: url(cursorOf(second.next)) });
    expect(third.results.map((t) => t.id)).toEqual(['item-6']);
    expect(third.next).toBeNull();
    const back = paginate(items, { ...opts, url: url(cursorOf(third.previous)) });
    expect(back.results.map((t) => t.id)).toEqual(['item-3', 'item-4', 'item-5']);
    const start = paginate(items, { ...opts, url: url(cursorOf(back.previous)) });
    expect(start.results.map((t) => t.id)).toEqual(['item-0', 'item-1', 'item-2']);
    expect(start.previous).toBeNull();
  });

  it('lists newest first by default and neither repeats nor skips when items arrive between pages', () => {
    const opts = { key: (t: { id: string }) => t.id, pageSize: 3 };
    const first = paginate(items, { ...opts, url: url() });
    expect(first.results.map((t) => t.id)).toEqual(['item-6', 'item-5', 'item-4']);
    const grown = [...items, { id: 'item-9' }];
    const second = paginate(grown, { ...opts, url: url(cursorOf(first.next)) });
    expect(second.results.map((t) => t.id)).toEqual(['item-3', 'item-2', 'item-1']);
  });

  it('refuses a cursor it did not make', () => {
    expect(() => paginate(items, { key: (t) => t.id, url: url('garbage') })).toThrow('cursor');
    expect(decodeCursor(encodeCursor({ d: 'a', k: 'x' }))).toEqual({ d: 'a', k: 'x' });
  });
});

describe('webhook signing keys', () => {
  it('are whsec_ and standard base64 of 24+ bytes with no other underscore', () => {
    const key = newWebhookKey();
    expect(key).toMatch(/^whsec_[A-Za-z0-9+/]+=*$/);
    expect(key.slice(6)).not.toContain('_');
    expect(Buffer.from(key.slice(6), 'base64').length).toBeGreaterThanOrEqual(24);
  });
});
