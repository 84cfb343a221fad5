/**
 * The kinds the controllers read and write, as runtime ResourceTypes, with the few fields of
 * the built-in kinds they use typed here (objects travel as plain JSON).
 */
import type { V1DeploymentSpec, V1PodSpec } from '@kubernetes/client-node';
import {
  API_VERSION,
  type Deployment,
  type HardwareClass,
  KIND,
  type Model,
  type ModelVersion,
  PLURAL,
} from '../crds/index.ts';
import { type KubeObject, resourceType } from './runtime/index.ts';

/** Object metadata with the timestamps the controllers read (RFC 3339 strings). */
export type Meta = NonNullable<KubeObject['metadata']> & {
  creationTimestamp?: string;
  deletionTimestamp?: string;
};

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

export interface WorkloadCondition {
  type: string;
  status: string;
  reason?: string;
  message?: string;
}

/** An apps/v1 Deployment: the workload that runs a modelplane Deployment's pods. */
export interface Workload extends KubeObject {
  spec?: V1DeploymentSpec;
  status?: {
    observedGeneration?: number;
    replicas?: number;
    updatedReplicas?: number;
    readyReplicas?: number;
    availableReplicas?: number;
    unavailableReplicas?: number;
    conditions?: WorkloadCondition[];
  };
}
export const Workloads = resourceType<Workload>({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  plural: 'deployments',
  namespaced: true,
});

export interface Pod extends KubeObject {
  metadata?: Meta;
  spec?: Pick<V1PodSpec, 'nodeName'>;
  status?: {
    phase?: string;
    conditions?: WorkloadCondition[];
    containerStatuses?: {
      name: string;
      ready?: boolean;
      state?: { waiting?: { reason?: string; message?: string } };
    }[];
  };
}
export const Pods = resourceType<Pod>({ apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true });

export interface Node extends KubeObject {
  spec?: {
    unschedulable?: boolean;
    taints?: { key: string; value?: string; effect: string }[];
  };
  status?: { allocatable?: Record<string, string> };
}
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
export interface Secret extends KubeObject {
  type?: string;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}
export const Secrets = resourceType<Secret>({
  apiVersion: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
});
