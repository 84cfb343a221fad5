/**
 * The version id of a ModelVersion: a SHA-256 over what defines the version (its Model and
 * its spec, defaults applied), as canonical JSON, so the same content under the same Model
 * always has the same id and any change gives a new one.
 */
import { createHash } from 'node:crypto';
import { type ModelVersionSpec, ModelVersionSpecSchema } from '../../crds/index.ts';

/** JSON with object keys sorted at every depth; `undefined` members left out. */
export function canonicalJson(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value))
    return `[${value.map((v) => (v === undefined ? 'null' : canonicalJson(v))).join(',')}]`;
  const entries = Object.entries(value as Record<string, unknown>)
    .filter(([, v]) => v !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
}

/** The 64-hex id of the version `spec` of a Model in `namespace`. */
export function versionId(namespace: string, spec: ModelVersionSpec): string {
  const normalized = ModelVersionSpecSchema.parse(spec);
  return createHash('sha256')
    .update(canonicalJson({ namespace, spec: normalized }))
    .digest('hex');
}
