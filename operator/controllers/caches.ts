/** The informers the controllers share: one per kind, made once per manager. */
import { LABEL } from '../../crds/index.ts';
import {
  Deployments,
  HardwareClasses,
  Models,
  ModelVersions,
  Nodes,
  Pods,
  type Stored,
  Workloads,
} from '../resources.ts';
import type { Informer, Manager } from '../runtime/index.ts';
import { MANAGED_BY } from './pod-spec.ts';

type Of<R> = R extends { readonly object?: infer T } ? NonNullable<T> : never;

export interface Caches {
  hardwareClasses: Informer<Of<typeof HardwareClasses>>;
  models: Informer<Of<typeof Models>>;
  modelVersions: Informer<Of<typeof ModelVersions>>;
  deployments: Informer<Of<typeof Deployments>>;
  /** apps/v1 Deployments modelplane manages. */
  workloads: Informer<Of<typeof Workloads>>;
  /** Pods of modelplane Deployments. */
  pods: Informer<Of<typeof Pods>>;
  nodes: Informer<Of<typeof Nodes>>;
}

/** The index of the pods cache by their modelplane Deployment (`namespace/name`). */
export const BY_DEPLOYMENT = 'deployment';

/** The pods of the modelplane Deployment `namespace/name`, from the cache's index. */
export function podsOf(pods: Caches['pods'], namespace: string, name: string) {
  return pods.byIndex(BY_DEPLOYMENT, `${namespace}/${name}`);
}

export function caches(manager: Manager): Caches {
  const pods = manager.informer(Pods, { labelSelector: LABEL.deployment });
  pods.addIndex(BY_DEPLOYMENT, (p) => {
    const owner = p.metadata?.labels?.[LABEL.deployment];
    return owner === undefined ? undefined : `${p.metadata?.namespace}/${owner}`;
  });
  return {
    hardwareClasses: manager.informer(HardwareClasses),
    models: manager.informer(Models),
    modelVersions: manager.informer(ModelVersions),
    deployments: manager.informer(Deployments),
    // Their managedFields say whether the autoscaler owns spec.replicas and whether this
    // controller applied them: two levels of fieldsV1 answer both.
    workloads: manager.informer(Workloads, {
      labelSelector: `${LABEL.appManagedBy}=${MANAGED_BY}`,
      managedFieldsDepth: 2,
    }),
    pods,
    nodes: manager.informer(Nodes),
  };
}

/** Keys (`namespace/name`) of the objects in `list` whose `pick` equals `value`. */
export function keysWhere<T extends Stored<unknown>>(
  list: readonly T[],
  pick: (obj: T) => string | undefined,
  value: string | undefined,
): string[] {
  return list
    .filter((o) => pick(o) === value)
    .map((o) =>
      o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : String(o.metadata.name),
    );
}
