/** Small helpers the gateway's routes share: body fields, visibility, the caller's namespace. */
import type { IncomingMessage } from 'node:http';
import { HttpError, readJson } from '../../lib/http.ts';
import { serviceAccountNamespace } from './auth.ts';
import { DEFAULT_MAX_BODY_BYTES } from './server.ts';
import type { RequestContext } from './types.ts';

/** Field manager of the objects the gateway writes for its callers. */
export const GATEWAY_FIELD_MANAGER = 'modelplane-gateway';

export interface InvalidField {
  type: string;
  field: string;
  description: string;
}

export function invalid(fields: InvalidField[]): HttpError {
  return new HttpError(422, 'Invalid request', fields.map((f) => f.description).join('; '), {
    invalid_fields: fields,
  });
}

/** The JSON object body of a request (422 when it is not an object). */
export async function readObject(req: IncomingMessage): Promise<Record<string, unknown>> {
  const body = await readJson(req, DEFAULT_MAX_BODY_BYTES);
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw invalid([{ type: 'type', field: '(body)', description: 'the body must be a JSON object' }]);
  return body as Record<string, unknown>;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function isDnsLabel(s: unknown): s is string {
  return typeof s === 'string' && DNS_LABEL.test(s);
}

export const HEX64 = /^[0-9a-f]{64}$/;

/** `owner/name` split, or undefined when `s` has another shape. */
export function ownerName(s: unknown): { owner: string; name: string } | undefined {
  if (typeof s !== 'string') return undefined;
  const m = /^([^/\s]+)\/([^/\s:]+)$/.exec(s);
  return m ? { owner: m[1]!, name: m[2]! } : undefined;
}

/**
 * The namespace an account-level route (`/account`, `/webhooks/default/secret`) is about:
 * `?owner=` when given; else the caller's own namespace: a ServiceAccount's namespace, or
 * the single namespace an API token (or anonymous access) is scoped to.
 */
export async function callerNamespace(ctx: RequestContext): Promise<string | undefined> {
  const owner = ctx.url.searchParams.get('owner');
  if (owner) return owner;
  if (ctx.principal.kind === 'serviceaccount') return serviceAccountNamespace(ctx.principal.name);
  const namespaces = await ctx.namespacesFor('get', 'models');
  return namespaces !== 'all' && namespaces.length === 1 ? namespaces[0] : undefined;
}

export function notFound(what: string): HttpError {
  return new HttpError(404, 'Not found', `${what} does not exist`);
}
