/**
 * Stream URLs that carry their own token: the npm client fetches `urls.stream` without the
 * Authorization header, so the URL holds an expiry time (a day after the prediction was
 * created) and an HMAC-SHA256 of the prediction id and that time. Replicas that share the key (a Secret, or the one kept in the store)
 * serve each other's streams; a token past its expiry, or made with another key, is refused.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { type Clock, realClock } from '../../../lib/clock.ts';

export interface StreamTokenOptions {
  /** The HMAC key (default: random, for this process only). */
  key?: Buffer;
  /** How long after its prediction was created a token is good for (default 24 h). */
  ttlMs?: number;
  clock?: Clock;
}

export class StreamTokens {
  /** Made once: an HMAC keyed with a KeyObject skips building one per call. */
  private key: KeyObject;
  private readonly ttlMs: number;
  private readonly clock: Clock;

  constructor(opts: StreamTokenOptions = {}) {
    this.key = createSecretKey(opts.key ?? Buffer.from(crypto.getRandomValues(new Uint8Array(32))));
    this.ttlMs = opts.ttlMs ?? 86_400_000;
    this.clock = opts.clock ?? realClock;
  }

  /** Signs with `key` from now on (the shared one, once it is known). */
  setKey(key: Buffer): void {
    this.key = createSecretKey(key);
  }

  /** A token for prediction `id`, good until `expires` (epoch s; default now + the TTL). */
  token(id: string, expires = Math.ceil((this.clock.now() + this.ttlMs) / 1000)): string {
    return `${expires}.${this.mac(id, expires)}`;
  }

  verify(id: string, token: string | null | undefined): boolean {
    const m = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/.exec(token ?? '');
    if (!m) return false;
    const expires = Number(m[1]);
    if (expires * 1000 <= this.clock.now()) return false;
    const want = Buffer.from(this.mac(id, expires));
    const got = Buffer.from(m[2]!);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  /**
   * The stream URL of prediction `id` under the API base URL `baseUrl` (with `/v1`): the same
   * on every read of the prediction, good until TTL after its creation.
   */
  url(rec: { id: string; baseUrl: string; createdAt: number }): string {
    const expires = Math.ceil((rec.createdAt + this.ttlMs) / 1000);
    return `${rec.baseUrl}/predictions/${rec.id}/stream?token=${this.token(rec.id, expires)}`;
  }

  private mac(id: string, expires: number): string {
    return createHmac('sha256', this.key).update(`stream:${id}:${expires}`).digest('base64url');
  }
}
