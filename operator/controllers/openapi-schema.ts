/**
 * A ModelVersion's OpenAPI document read from its running container: when the version has no
 * `spec.openapiSchema` and no `status.openapiSchema`, the ModelVersion controller reads the
 * document the model server served to its sidecar (`GET /openapi.json` on the sidecar's API,
 * with the operator's token) from one Ready pod that runs exactly this version, and keeps it
 * in `status.openapiSchema`. Versions are immutable, so it is read once and never replaced.
 */
import { ANNOTATION, LABEL } from '../../crds/index.ts';
import { sidecarBase } from '../predictions/endpoints.ts';
import type { Pod } from '../resources.ts';

/** The largest OpenAPI document kept in a ModelVersion's status (the object must fit in etcd). */
export const MAX_SCHEMA_BYTES = 1024 * 1024;
/** How long one read of a sidecar's `/openapi.json` may take. */
export const SCHEMA_READ_TIMEOUT_MS = 5_000;

type Json = Record<string, unknown>;

interface VersionLike {
  metadata: { name?: string; namespace?: string };
  spec?: { openapiSchema?: unknown };
  status?: { openapiSchema?: unknown };
}

/** Whether the version's document has to be read from a running container. */
export function needsSchema(version: VersionLike): boolean {
  return version.spec?.openapiSchema === undefined && version.status?.openapiSchema === undefined;
}

function ready(pod: Pod): boolean {
  if (pod.metadata?.deletionTimestamp || pod.status?.phase !== 'Running') return false;
  return pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/**
 * The sidecar API base (`http://ip:port`) of a Ready pod that runs version `name` with content
 * id `id`, of a modelplane Deployment that names this version (`deploymentVersion` gives a
 * Deployment's `spec.version`): a pod that merely carries the labels is not taken. The pod
 * first by name, so the choice is the same on every reconcile.
 */
export function schemaSource(
  pods: readonly Pod[],
  name: string,
  id: string,
  deploymentVersion: (deployment: string) => string | undefined,
): { pod: string; base: string } | undefined {
  const candidates = pods
    .filter((p) => {
      const labels = p.metadata?.labels ?? {};
      const deployment = labels[LABEL.deployment];
      return (
        labels[LABEL.version] === name &&
        p.metadata?.annotations?.[ANNOTATION.versionId] === id &&
        deployment !== undefined &&
        deploymentVersion(deployment) === name &&
        ready(p)
      );
    })
    .sort((a, b) => ((a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1));
  for (const pod of candidates) {
    const base = sidecarBase(pod);
    if (base) return { pod: pod.metadata?.name ?? '', base };
  }
  return undefined;
}

/** A document that will not do, whichever pod serves it: too large, not JSON, no Input schema. */
export class SchemaRefused extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SchemaRefused';
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Checks that `doc` is an OpenAPI document with `components.schemas.Input`; returns it. */
export function checkSchema(doc: unknown): Json {
  if (!isObject(doc)) throw new SchemaRefused('the document is not a JSON object');
  const components = doc.components;
  const schemas = isObject(components) ? components.schemas : undefined;
  if (!isObject(schemas) || !isObject(schemas.Input))
    throw new SchemaRefused('the document has no components.schemas.Input object');
  return doc;
}

export interface ReadSchemaOptions {
  /** The `Authorization` header for the sidecar at `base` (operator/sidecar-key.ts). */
  authorization?: ((base: string) => Promise<string>) | undefined;
  maxBytes?: number;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/**
 * GET `base/openapi.json`, reading at most `maxBytes` of body. Throws `SchemaRefused` for a
 * document that will not do, any other error for a read that may succeed later (the sidecar
 * has no document yet: 503; the pod went away).
 */
export async function readSchema(base: string, opts: ReadSchemaOptions = {}): Promise<Json> {
  const maxBytes = opts.maxBytes ?? MAX_SCHEMA_BYTES;
  const headers: Record<string, string> = { accept: 'application/json' };
  if (opts.authorization) headers.authorization = await opts.authorization(base);
  const timeout = AbortSignal.timeout(opts.timeoutMs ?? SCHEMA_READ_TIMEOUT_MS);
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeout]) : timeout;
  const url = `${base}/openapi.json`;
  const res = await fetch(url, { headers, signal, redirect: 'error' });
  if (!res.ok) {
    await res.body?.cancel();
    throw new Error(`GET ${url}: ${res.status}`);
  }
  const declared = Number(res.headers.get('content-length') ?? Number.NaN);
  if (declared > maxBytes) {
    await res.body?.cancel();
    throw new SchemaRefused(`the document is ${declared} bytes, more than the ${maxBytes} kept`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (res.body) {
    const reader = res.body.getReader();
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > maxBytes) {
        await reader.cancel();
        throw new SchemaRefused(`the document is more than the ${maxBytes} bytes kept`);
      }
      chunks.push(value);
    }
  }
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new SchemaRefused('the document is not JSON');
  }
  return checkSchema(doc);
}
