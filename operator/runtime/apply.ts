/**
 * Server-side apply for controllers: each controller applies the objects it wants under its
 * own field manager, with `force` (it is the authority on the fields it sets), and writes
 * status only when the status it computed is not already there, so reconciling an unchanged
 * object writes nothing.
 */
import type { KubeClient, KubeObject, ResourceType } from './client.ts';

/**
 * True when every field set in `desired` has the same value in `actual`; fields only in
 * `actual` (set by the server or by others) do not matter. Arrays must match in length,
 * element by element.
 */
export function covers(actual: unknown, desired: unknown): boolean {
  if (desired === undefined) return true;
  if (desired === null || typeof desired !== 'object') return actual === desired;
  if (Array.isArray(desired)) {
    return (
      Array.isArray(actual) &&
      actual.length === desired.length &&
      desired.every((d, i) => covers(actual[i], d))
    );
  }
  if (actual === null || typeof actual !== 'object' || Array.isArray(actual)) return false;
  const a = actual as Record<string, unknown>;
  return Object.entries(desired as Record<string, unknown>).every(([k, v]) => covers(a[k], v));
}

/** Whether `fieldManager` has applied to `obj` (to its main resource, or to a subresource). */
export function appliedBy(obj: KubeObject, fieldManager: string, subresource?: string): boolean {
  return (obj.metadata?.managedFields ?? []).some(
    (f) =>
      f.manager === fieldManager && f.operation === 'Apply' && (f.subresource || undefined) === subresource,
  );
}

/**
 * Whether `fieldManager` owns the field at `path` (e.g. `['spec', 'replicas']`) of `obj`
 * through an apply, according to its managedFields.
 */
export function ownsField(
  obj: KubeObject,
  fieldManager: string,
  path: readonly string[],
  subresource?: string,
): boolean {
  return (obj.metadata?.managedFields ?? []).some((f) => {
    if (f.manager !== fieldManager || f.operation !== 'Apply' || (f.subresource || undefined) !== subresource)
      return false;
    let node: unknown = f.fieldsV1;
    for (const key of path) {
      if (!node || typeof node !== 'object') return false;
      node = (node as Record<string, unknown>)[`f:${key}`];
    }
    return node !== undefined;
  });
}

export interface ApplyOptions<T> {
  fieldManager: string;
  /**
   * The object as last seen (from an informer's cache). When `fieldManager` has applied to
   * it before and every field of `desired` already has its value, nothing is sent. Telling
   * that takes its managedFields: the informer must keep them (`managedFieldsDepth` 0 or
   * more); from one that drops them, every call writes.
   */
  current?: T;
}

/** Applies `desired` (server-side apply, forced); returns the object as it is now. */
export async function apply<T extends KubeObject>(
  client: KubeClient,
  type: ResourceType<T>,
  desired: T,
  opts: ApplyOptions<T>,
): Promise<T> {
  const { current } = opts;
  if (current && appliedBy(current, opts.fieldManager) && covers(current, withoutStatus(desired)))
    return current;
  return client.apply(type, desired, { fieldManager: opts.fieldManager, force: true });
}

/**
 * Writes `status` to `current` through the status subresource (server-side apply, forced),
 * unless `current.status` already has every value of it. Returns whether it wrote.
 */
export async function applyStatus<T extends KubeObject & { status?: unknown }>(
  client: KubeClient,
  type: ResourceType<T>,
  current: T,
  status: NonNullable<T['status']>,
  opts: { fieldManager: string },
): Promise<boolean> {
  if (covers(current.status, status)) return false;
  const { name, namespace } = current.metadata ?? {};
  const patch = { apiVersion: type.apiVersion, kind: type.kind, metadata: { name, namespace }, status } as T;
  await client.apply(type, patch, { fieldManager: opts.fieldManager, force: true, subresource: 'status' });
  return true;
}

function withoutStatus<T extends KubeObject>(obj: T): T {
  const { status: _status, ...rest } = obj as T & { status?: unknown };
  return rest as T;
}
