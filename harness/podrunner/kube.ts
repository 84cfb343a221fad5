/** The Kubernetes kinds the local pod runner reads and writes, and the names it writes under. */
import type { V1PodSpec } from '@kubernetes/client-node';
import { type KubeObject, resourceType } from '../../operator/runtime/index.ts';
import type { PodCondition } from './status.ts';

export { Nodes } from '../../operator/resources.ts';
export { Leases } from '../../operator/runtime/index.ts';

/** Field manager of the runner's writes (pod and node status, leases). */
export const FIELD_MANAGER = 'modelplane-pod-runner';
/** The runner's nodes' address, and every pod's host IP. */
export const HOST_IP = '127.0.0.1';

export interface PodObject extends KubeObject {
  metadata?: KubeObject['metadata'] & {
    uid?: string;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    creationTimestamp?: string;
  };
  spec?: V1PodSpec;
  status?: {
    phase?: string;
    podIP?: string;
    startTime?: string;
    conditions?: PodCondition[];
    containerStatuses?: { name: string; restartCount?: number }[];
  };
}

export const Pods = resourceType<PodObject>({
  apiVersion: 'v1',
  kind: 'Pod',
  plural: 'pods',
  namespaced: true,
});
export const Secrets = resourceType<KubeObject & { data?: Record<string, string> }>({
  apiVersion: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
});
export const ConfigMaps = resourceType<KubeObject & { data?: Record<string, string> }>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});
