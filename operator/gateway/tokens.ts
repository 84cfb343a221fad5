/**
 * API tokens: `mp_<id>_<secret>`, where `id` (12 hex characters) names the token and
 * `secret` (32 random bytes, base64url) proves it. The gateway keeps only the SHA-256 of the
 * whole token, in a Secret labelled `modelplane.dev/api-token: "true"` in the token namespace
 * (the operator's), together with the namespaces the token may act in (`*` for all) and
 * whether it is read-only. Deleting the Secret revokes the token.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { GROUP, LABEL } from '../../crds/index.ts';
import { HttpError } from '../../lib/http.ts';
import { type Secret, Secrets } from '../resources.ts';
import { isConflict, type KubeClient } from '../runtime/index.ts';

export const TOKEN_PREFIX = 'mp_';
const TOKEN_RE = /^mp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$/;

export const TOKEN_LABEL = LABEL.apiToken;
export const TOKEN_ID_LABEL = `${GROUP}/api-token-id`;
export const ANNOTATION_NAMESPACES = `${GROUP}/namespaces`;
export const ANNOTATION_READ_ONLY = `${GROUP}/read-only`;
export const ANNOTATION_TOKEN_NAME = `${GROUP}/token-name`;
/** The key of the token's SHA-256 (hex) in the Secret's data. */
export const HASH_KEY = 'sha256';
export const TOKEN_FIELD_MANAGER = 'modelplane-token';

/** What an API token may do, read from its Secret. */
export interface ApiToken {
  /** The name given at creation (`modelplane token create NAME`). */
  name: string;
  id: string;
  /** Namespaces it may act in; `['*']` for all. */
  namespaces: string[];
  readOnly: boolean;
  /** SHA-256 of the whole token. */
  hash: Buffer;
  secretName: string;
  createdAt: string | undefined;
}

export function mintToken(): { token: string; id: string } {
  const id = randomBytes(6).toString('hex');
  return { id, token: `${TOKEN_PREFIX}${id}_${randomBytes(32).toString('base64url')}` };
}

/** The id of a well-formed API token, undefined for anything else. */
export function apiTokenId(token: string): string | undefined {
  return TOKEN_RE.exec(token)?.[1];
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/** Constant-time comparison of a presented token with a stored hash. */
export function tokenMatches(token: string, hash: Buffer): boolean {
  const presented = hashToken(token);
  return hash.length === presented.length && timingSafeEqual(presented, hash);
}

/**
 * The credential of an `Authorization` header: `Bearer <t>` or `Token <t>` (any case).
 * Undefined when there is no header; a 401 for any other shape.
 */
export function credentialOf(header: string | undefined): string | undefined {
  if (header === undefined || header.trim() === '') return undefined;
  const m = /^\s*(bearer|token)\s+(\S+)\s*$/i.exec(header);
  if (!m) {
    throw new HttpError(
      401,
      'Unauthorized',
      'the Authorization header must be "Bearer <token>" or "Token <token>"',
      {},
      { 'www-authenticate': 'Bearer realm="modelplane"' },
    );
  }
  return m[2];
}

export function secretNameFor(name: string): string {
  return `modelplane-token-${name}`;
}

const NAME_RE = /^[a-z0-9]([-a-z0-9]{0,44}[a-z0-9])?$/;
const NAMESPACE_RE = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Parses `a,b` or `*` into a namespace list; throws on a bad name. */
export function parseNamespaces(raw: string): string[] {
  const list = [
    ...new Set(
      raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
  if (!list.length) throw new Error('name at least one namespace, or * for all');
  for (const ns of list) {
    if (ns !== '*' && !NAMESPACE_RE.test(ns)) throw new Error(`"${ns}" is not a namespace name`);
  }
  return list.includes('*') ? ['*'] : list;
}

/** The token a Secret describes; undefined when the Secret is not a well-formed token Secret. */
export function apiTokenFromSecret(secret: Secret): ApiToken | undefined {
  const meta = secret.metadata ?? {};
  const id = meta.labels?.[TOKEN_ID_LABEL];
  const hashB64 = secret.data?.[HASH_KEY];
  const namespaces = meta.annotations?.[ANNOTATION_NAMESPACES];
  if (!id || !hashB64 || !namespaces || meta.labels?.[TOKEN_LABEL] !== 'true') return undefined;
  const hash = Buffer.from(Buffer.from(hashB64, 'base64').toString('utf8').trim(), 'hex');
  if (hash.length !== 32) return undefined;
  let list: string[];
  try {
    list = parseNamespaces(namespaces);
  } catch {
    return undefined;
  }
  return {
    name: meta.annotations?.[ANNOTATION_TOKEN_NAME] ?? meta.name ?? id,
    id,
    namespaces: list,
    readOnly: meta.annotations?.[ANNOTATION_READ_ONLY] === 'true',
    hash,
    secretName: meta.name ?? '',
    createdAt: (meta as { creationTimestamp?: string }).creationTimestamp,
  };
}

export interface CreateTokenOptions {
  name: string;
  namespaces: string[];
  readOnly?: boolean;
  tokenNamespace: string;
}

/** Creates an API token; the token is returned once and never stored in clear. */
export async function createApiToken(
  client: KubeClient,
  opts: CreateTokenOptions,
): Promise<{ token: string; id: string; secretName: string }> {
  if (!NAME_RE.test(opts.name))
    throw new Error(
      `token name "${opts.name}": use lowercase letters, digits and "-", at most 46 characters`,
    );
  const namespaces = parseNamespaces(opts.namespaces.join(','));
  const { token, id } = mintToken();
  const secretName = secretNameFor(opts.name);
  try {
    await client.create(
      Secrets,
      {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'Opaque',
        metadata: {
          name: secretName,
          namespace: opts.tokenNamespace,
          labels: {
            [TOKEN_LABEL]: 'true',
            [TOKEN_ID_LABEL]: id,
            [LABEL.appManagedBy]: 'modelplane',
          },
          annotations: {
            [ANNOTATION_TOKEN_NAME]: opts.name,
            [ANNOTATION_NAMESPACES]: namespaces.join(','),
            [ANNOTATION_READ_ONLY]: String(opts.readOnly ?? false),
          },
        },
        stringData: { [HASH_KEY]: hashToken(token).toString('hex') },
      },
      { fieldManager: TOKEN_FIELD_MANAGER },
    );
  } catch (err) {
    if (isConflict(err))
      throw new Error(
        `a token named "${opts.name}" exists already (Secret ${opts.tokenNamespace}/${secretName}); revoke it first or pick another name`,
      );
    throw err;
  }
  return { token, id, secretName };
}

export async function listApiTokens(client: KubeClient, tokenNamespace: string): Promise<ApiToken[]> {
  const { items } = await client.list(Secrets, {
    namespace: tokenNamespace,
    labelSelector: `${TOKEN_LABEL}=true`,
  });
  return items
    .map(apiTokenFromSecret)
    .filter((t): t is ApiToken => t !== undefined)
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** Deletes the token's Secret; false when there was none. */
export async function revokeApiToken(
  client: KubeClient,
  name: string,
  tokenNamespace: string,
): Promise<boolean> {
  const secretName = secretNameFor(name);
  const secret = await client.find(Secrets, secretName, tokenNamespace);
  if (secret?.metadata?.labels?.[TOKEN_LABEL] !== 'true') return false;
  await client.delete(Secrets, secretName, tokenNamespace);
  return true;
}
