/**
 * The kinds the controllers read and write, as runtime ResourceTypes: modelplane's own typed
 * by the zod schemas of crds/, the built-in kinds by the `kubernetes-models` package (types
 * only: objects travel as plain JSON).
 */
import type { IDeployment } from 'kubernetes-models/apps/v1/Deployment';
import type { INode } from 'kubernetes-models/v1/Node';
import type { IPod } from 'kubernetes-models/v1/Pod';
import type { ISecret } from 'kubernetes-models/v1/Secret';
import {
  API_VERSION,
  type Deployment,
  type HardwareClass,
  KIND,
  type Model,
  type ModelVersion,
  PLURAL,
} from '../crds/index.ts';
import { type KubeObject, type Listed, resourceType } from './runtime/index.ts';

/** Object metadata (ObjectMeta: timestamps are RFC 3339 strings). */
export type Meta = NonNullable<KubeObject['metadata']>;

/** What the informer's cache holds: the object as the API server stores it (defaults applied). */
export type Stored<T> = KubeObject & Omit<T, 'metadata'> & { metadata: Meta };

export const HardwareClasses = resourceType<Stored<HardwareClass>>({
  apiVersion: API_VERSION,
  kind: KIND.HardwareClass,
  plural: PLURAL.HardwareClass,
  namespaced: false,
});
export const Models = resourceType<Stored<Model>>({
  apiVersion: API_VERSION,
  kind: KIND.Model,
  plural: PLURAL.Model,
  namespaced: true,
});
export const ModelVersions = resourceType<Stored<ModelVersion>>({
  apiVersion: API_VERSION,
  kind: KIND.ModelVersion,
  plural: PLURAL.ModelVersion,
  namespaced: true,
});
export const Deployments = resourceType<Stored<Deployment>>({
  apiVersion: API_VERSION,
  kind: KIND.Deployment,
  plural: PLURAL.Deployment,
  namespaced: true,
});

/** An apps/v1 Deployment: the workload that runs a modelplane Deployment's pods. */
export type Workload = Listed<IDeployment>;
export const Workloads = resourceType<Workload>({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  plural: 'deployments',
  namespaced: true,
});

/** A Pod: the informers and the status of a Deployment read its phase, conditions and containers. */
export type Pod = Listed<IPod>;
export const Pods = resourceType<Pod>({ apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true });

/** A Node: the HardwareClass controller reads its labels, taints and allocatable resources. */
export type Node = Listed<INode>;
export const Nodes = resourceType<Node>({
  apiVersion: 'v1',
  kind: 'Node',
  plural: 'nodes',
  namespaced: false,
});

/**
 * A Secret: the controllers read only its metadata (they never log or compare its data);
 * the gateway writes API tokens and webhook signing secrets.
 */
export type Secret = Listed<ISecret>;
export const Secrets = resourceType<Secret>({
  apiVersion: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
});
