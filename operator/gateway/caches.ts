/**
 * The gateway's view of the cluster: informers over HardwareClasses, Models, ModelVersions,
 * Deployments (every namespace) and the API token Secrets (token namespace), running on
 * every replica. Reads come from these caches; after a write, a route waits until this
 * replica's cache has seen it, so a caller reads its own writes.
 */

import { Deployments, HardwareClasses, Models, ModelVersions, type Secret, Secrets } from '../resources.ts';
import { type Informer, type KubeObject, type Manager, objectKey } from '../runtime/index.ts';
import { TOKEN_LABEL } from './tokens.ts';

type Of<R> = R extends { readonly object?: infer T } ? NonNullable<T> : never;
export type StoredModel = Of<typeof Models>;
export type StoredModelVersion = Of<typeof ModelVersions>;
export type StoredDeployment = Of<typeof Deployments>;
export type StoredHardwareClass = Of<typeof HardwareClasses>;

export class GatewayCaches {
  readonly hardwareClasses: Informer<StoredHardwareClass>;
  readonly models: Informer<StoredModel>;
  readonly modelVersions: Informer<StoredModelVersion>;
  readonly deployments: Informer<StoredDeployment>;
  readonly tokens: Informer<Secret>;

  constructor(manager: Manager, tokenNamespace: string) {
    const every = { everyReplica: true };
    this.hardwareClasses = manager.informer(HardwareClasses, {}, every);
    this.models = manager.informer(Models, {}, every);
    this.modelVersions = manager.informer(ModelVersions, {}, every);
    this.deployments = manager.informer(Deployments, {}, every);
    this.tokens = manager.informer(
      Secrets,
      { namespace: tokenNamespace, labelSelector: `${TOKEN_LABEL}=true` },
      every,
    );
  }

  get all(): Informer<KubeObject>[] {
    return [
      this.hardwareClasses,
      this.models,
      this.modelVersions,
      this.deployments,
      this.tokens,
    ] as unknown as Informer<KubeObject>[];
  }

  /** Resolves once every cache has listed; a 503 problem is the caller's after `timeoutMs`. */
  async synced(timeoutMs = 10_000): Promise<void> {
    await Promise.all(this.all.map((i) => i.waitForSync({ timeoutMs })));
  }

  /** True once every cache has listed (what each request checks first, without a promise). */
  hasSynced(): boolean {
    return (
      this.hardwareClasses.hasSynced() &&
      this.models.hasSynced() &&
      this.modelVersions.hasSynced() &&
      this.deployments.hasSynced() &&
      this.tokens.hasSynced()
    );
  }

  /** Namespaces that hold modelplane Models or Deployments. */
  namespaces(): Set<string> {
    const out = new Set<string>();
    for (const o of [...this.models.list(), ...this.deployments.list()]) {
      if (o.metadata.namespace) out.add(o.metadata.namespace);
    }
    return out;
  }

  /** The ModelVersion of `namespace` whose id (status.id) is `id`, optionally of one model. */
  versionById(namespace: string, id: string, model?: string): StoredModelVersion | undefined {
    return this.modelVersions
      .list(namespace)
      .find((v) => v.status?.id === id && (model === undefined || v.spec.model === model));
  }

  /** The ModelVersions of a model that have an id, newest first. */
  versionsOf(namespace: string, model: string): StoredModelVersion[] {
    return this.modelVersions
      .list(namespace)
      .filter((v) => v.spec.model === model && v.status?.id)
      .sort(newestFirst);
  }

  /** The HardwareClass named `sku`, or listing it among its aliases. */
  hardware(sku: string): StoredHardwareClass | undefined {
    return (
      this.hardwareClasses.get(sku) ?? this.hardwareClasses.list().find((h) => h.spec.aliases?.includes(sku))
    );
  }
}

export function newestFirst(a: KubeObject, b: KubeObject): number {
  const ta = (a.metadata as { creationTimestamp?: string }).creationTimestamp ?? '';
  const tb = (b.metadata as { creationTimestamp?: string }).creationTimestamp ?? '';
  return ta < tb ? 1 : ta > tb ? -1 : objectKey(a) < objectKey(b) ? 1 : -1;
}

/**
 * Resolves once `informer` has seen the object `key` at `resourceVersion` (or, with
 * `undefined`, seen it deleted), or after `timeoutMs` either way: a route awaits this after
 * a write so that the caller's next read on this replica sees it.
 */
export function caughtUp<T extends KubeObject>(
  informer: Informer<T>,
  key: string,
  resourceVersion: string | undefined,
  timeoutMs = 3_000,
): Promise<void> {
  const done = () => {
    const cur = informer.getByKey(key);
    return resourceVersion === undefined
      ? cur === undefined
      : cur?.metadata?.resourceVersion === resourceVersion;
  };
  if (done()) return Promise.resolve();
  return new Promise((resolve) => {
    let finished = false;
    let remove: (() => void) | undefined;
    const finish = () => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      remove?.();
      resolve();
    };
    // Events come in order, so the awaited version shows up before any later one.
    const check = (obj: T, deleted = false) => {
      if (objectKey(obj) !== key) return;
      if (resourceVersion === undefined ? deleted : obj.metadata?.resourceVersion === resourceVersion)
        finish();
    };
    const timer = setTimeout(finish, timeoutMs);
    remove = informer.addEventHandler({
      onAdd: (o) => check(o),
      onUpdate: (_, o) => check(o),
      onDelete: (o) => check(o, true),
    });
    if (finished || done()) {
      remove();
      finish();
    }
  });
}
