/**
 * The credential the operator puts on its calls to a model pod's sidecar API: a short-lived
 * token for one pod address, signed with the operator's Ed25519 key. Only the operator holds
 * the private key (a Secret in its own namespace); each sidecar gets the public key by
 * environment (`MODELPLANE_OPERATOR_KEY`, no secret in it) and accepts a token only for its
 * own address (`MODELPLANE_POD_IP` and its port), before it expires.
 *
 * Form: `mps1.<payload>.<signature>`, both base64url; the payload is `{"aud":"<ip>:<port>","exp":<unix s>}`.
 */
import { createPublicKey, type KeyObject, sign, verify } from 'node:crypto';

const PREFIX = 'mps1';
/** Accepted lateness of the signer's clock against the sidecar's. */
const SKEW_SECONDS = 60;

/** `<ip>:<port>` as a URL's host writes it (IPv6 in brackets): the audience of a pod's tokens. */
export function podAudience(ip: string, port: number | string): string {
  return ip.includes(':') && !ip.startsWith('[') ? `[${ip}]:${port}` : `${ip}:${port}`;
}

/** A token for `aud`, valid until `expSeconds` (unix seconds). */
export function signSidecarToken(privateKey: KeyObject, aud: string, expSeconds: number): string {
  const payload = Buffer.from(JSON.stringify({ aud, exp: Math.floor(expSeconds) })).toString('base64url');
  const sig = sign(null, Buffer.from(`${PREFIX}.${payload}`), privateKey).toString('base64url');
  return `${PREFIX}.${payload}.${sig}`;
}

/** The public key of `MODELPLANE_OPERATOR_KEY` (base64 SPKI DER); throws on anything else. */
export function operatorPublicKey(base64: string): KeyObject {
  const key = createPublicKey({ key: Buffer.from(base64, 'base64'), format: 'der', type: 'spki' });
  if (key.asymmetricKeyType !== 'ed25519') throw new Error('the operator key must be an Ed25519 public key');
  return key;
}

/** The public key as `MODELPLANE_OPERATOR_KEY` carries it. */
export function publicKeyText(key: KeyObject): string {
  return key.export({ format: 'der', type: 'spki' }).toString('base64');
}

/**
 * Why `token` is not good for `aud` at `nowSeconds`, or undefined when it is: signed by the
 * key, for this audience, not expired.
 */
export function checkSidecarToken(
  publicKey: KeyObject,
  token: string,
  aud: string,
  nowSeconds: number,
): string | undefined {
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== PREFIX) return 'not a modelplane operator token';
  const [, payload, sig] = parts as [string, string, string];
  if (!verify(null, Buffer.from(`${PREFIX}.${payload}`), publicKey, Buffer.from(sig, 'base64url')))
    return 'the signature does not match the operator key';
  let claims: { aud?: unknown; exp?: unknown };
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
  } catch {
    return 'the token does not parse';
  }
  if (claims.aud !== aud) return 'the token is for another pod';
  if (typeof claims.exp !== 'number' || claims.exp + SKEW_SECONDS < nowSeconds)
    return 'the token has expired';
  return undefined;
}
