/** Small helpers the gateway's routes share: body fields, visibility, the caller's namespace. */
import type { Request } from 'express';
import { HttpError, invalid } from '../../lib/http.ts';
import type { InvalidField } from '../../lib/openapi-input.ts';
import {
  ApiError,
  type Informer,
  type KubeClient,
  type KubeObject,
  type ResourceType,
} from '../runtime/index.ts';
import { serviceAccountNamespace } from './auth.ts';
import { caughtUp, type GatewayCaches, newestFirst } from './caches.ts';
import { type Page, paginate } from './pagination.ts';
import type { RequestContext } from './types.ts';

/** Field manager of the objects the gateway writes for its callers. */
export const GATEWAY_FIELD_MANAGER = 'modelplane-gateway';

export type { InvalidField } from '../../lib/openapi-input.ts';
export { invalid };

/** The JSON object body of a request, as the `json` middleware read it (422 when it is not an object). */
export function objectBody(req: Request): Record<string, unknown> {
  const body: unknown = req.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body))
    throw invalid([{ type: 'type', field: '(body)', description: 'the body must be a JSON object' }]);
  return body as Record<string, unknown>;
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

export function isDnsLabel(s: unknown): s is string {
  return typeof s === 'string' && DNS_LABEL.test(s);
}

/** Checks the `name` of a create body: a DNS label. */
export function checkName(body: Record<string, unknown>, bad: InvalidField[]): void {
  if (!isDnsLabel(body.name))
    bad.push({
      type: 'format',
      field: 'name',
      description: 'name must be lowercase letters, digits and "-", at most 63 characters',
    });
}

/** The HardwareClass a body's `hardware` (SKU or alias) names; an `enum` invalid field when none. */
export function hardwareField(
  caches: GatewayCaches,
  value: unknown,
  bad: InvalidField[],
): string | undefined {
  const hw = typeof value === 'string' ? caches.hardware(value) : undefined;
  if (!hw)
    bad.push({
      type: 'enum',
      field: 'hardware',
      description: `hardware must be one of ${caches.hardwareClasses
        .list()
        .map((h) => h.metadata.name)
        .sort()
        .join(', ')}`,
    });
  return hw?.metadata.name;
}

/**
 * Creates `obj` for a caller (`what` names it in errors: 409 when it exists already, 404
 * when its namespace does not) and waits until `cache` has seen it.
 */
export async function createObject<T extends KubeObject>(
  client: KubeClient,
  type: ResourceType<T>,
  cache: Informer<T>,
  obj: T,
  what: string,
): Promise<T> {
  const namespace = obj.metadata?.namespace ?? '';
  let created: T;
  try {
    created = await client.create(type, obj, { fieldManager: GATEWAY_FIELD_MANAGER });
  } catch (err) {
    if (err instanceof ApiError && err.code === 409)
      throw new HttpError(409, 'Conflict', `${what} exists already`);
    if (err instanceof ApiError && err.code === 404) throw notFound(`the owner (namespace) ${namespace}`);
    throw err;
  }
  await caughtUp(cache, `${namespace}/${obj.metadata?.name}`, created.metadata?.resourceVersion);
  return created;
}

/** The page of `objects` that `url` asks for, newest first. */
export function newestFirstPage<T extends KubeObject>(objects: T[], url: URL, pageSize?: number): Page<T> {
  return paginate([...objects].sort(newestFirst), {
    url,
    key: (o) => {
      const m = (o.metadata ?? {}) as { creationTimestamp?: string; namespace?: string; name?: string };
      return `${m.creationTimestamp ?? ''}|${m.namespace}/${m.name}`;
    },
    pageSize,
  });
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

/** callerNamespace, or 400 `Owner required` when the caller may act in several: `purpose` says what for. */
export async function requireCallerNamespace(ctx: RequestContext, purpose: string): Promise<string> {
  const ns = await callerNamespace(ctx);
  if (!ns)
    throw new HttpError(
      400,
      'Owner required',
      `this caller may act in several namespaces: name the one ${purpose} with ?owner=<namespace>`,
    );
  return ns;
}

export function notFound(what: string): HttpError {
  return new HttpError(404, 'Not found', `${what} does not exist`);
}
