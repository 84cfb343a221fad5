/**
 * Stream URLs that carry their own token: the npm client fetches `urls.stream` without the
 * Authorization header, so the URL holds an HMAC-SHA256 of the prediction id. Replicas that
 * share the key serve each other's streams.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';

export class StreamTokens {
  /** Made once: an HMAC keyed with a KeyObject skips building one per call. */
  private readonly key: KeyObject;

  /** `key`: the HMAC key (default: random, for this process only). */
  constructor(key?: Buffer) {
    this.key = createSecretKey(key ?? Buffer.from(crypto.getRandomValues(new Uint8Array(32))));
  }

  token(id: string): string {
    return createHmac('sha256', this.key).update(`stream:${id}`).digest('base64url');
  }

  verify(id: string, token: string | null | undefined): boolean {
    if (!token) return false;
    const want = Buffer.from(this.token(id));
    const got = Buffer.from(token);
    return got.length === want.length && timingSafeEqual(got, want);
  }

  /** The stream URL of prediction `id` under the API base URL `baseUrl` (with `/v1`). */
  url(rec: { id: string; baseUrl: string }): string {
    return `${rec.baseUrl}/predictions/${rec.id}/stream?token=${this.token(rec.id)}`;
  }
}
