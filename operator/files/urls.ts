/**
 * Signed file URLs: a download URL works without the API token (the official clients fetch
 * output files without it; a model pod fetches input files without it), because it carries an
 * expiry time and an HMAC-SHA256 of the file id and that time, in its path (Cog keeps only the
 * path of the URL its upload endpoint answers with). An upload URL of a prediction's output
 * files is signed the same way for the prediction id. A URL made with another key, altered, or
 * past its expiry is refused.
 */
import { createHmac, createSecretKey, type KeyObject, timingSafeEqual } from 'node:crypto';
import { type Clock, realClock } from '../../lib/clock.ts';

export type Verdict = 'ok' | 'expired' | 'forged';

const TOKEN = /^(\d{1,12})\.([A-Za-z0-9_-]{43})$/;

export class FileUrls {
  private key: KeyObject;
  private readonly clock: Clock;

  constructor(opts: { key?: Buffer; clock?: Clock } = {}) {
    this.key = createSecretKey(opts.key ?? Buffer.from(crypto.getRandomValues(new Uint8Array(32))));
    this.clock = opts.clock ?? realClock;
  }

  /** Signs with `key` from now on (the one every replica shares, once known). */
  setKey(key: Buffer): void {
    this.key = createSecretKey(createHmac('sha256', key).update('modelplane files').digest());
  }

  /** `<expiry>.<mac>` for `what` (e.g. `download:<id>`), good until `expiresMs`. */
  token(what: string, expiresMs: number): string {
    const expires = Math.ceil(expiresMs / 1000);
    return `${expires}.${this.mac(what, expires)}`;
  }

  verify(what: string, token: string | undefined): Verdict {
    const m = TOKEN.exec(token ?? '');
    if (!m) return 'forged';
    const expires = Number(m[1]);
    const want = Buffer.from(this.mac(what, expires));
    const got = Buffer.from(m[2]!);
    if (got.length !== want.length || !timingSafeEqual(got, want)) return 'forged';
    return expires * 1000 <= this.clock.now() ? 'expired' : 'ok';
  }

  /** The download URL of file `id` under the API base URL `baseUrl` (with `/v1`). */
  download(baseUrl: string, id: string, expiresMs: number): string {
    return `${baseUrl}/files/${id}/download/${this.token(`download:${id}`, expiresMs)}`;
  }

  /** The URL a prediction's output files are uploaded under (`<url>/<filename>`). */
  upload(baseUrl: string, prediction: string, expiresMs: number): string {
    return `${baseUrl}/files/outputs/${prediction}/${this.token(`upload:${prediction}`, expiresMs)}`;
  }

  private mac(what: string, expires: number): string {
    return createHmac('sha256', this.key).update(`${what}:${expires}`).digest('base64url');
  }
}
