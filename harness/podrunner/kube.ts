/**
 * The Kubernetes kinds the local pod runner reads and writes, and the names it writes under.
 * Pods, Nodes, Secrets and Leases are the operator's own resource types.
 */
import type { IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { type Listed, resourceType } from '../../operator/runtime/index.ts';

export { Nodes, type Pod, Pods, type Secret, Secrets } from '../../operator/resources.ts';
export { Leases } from '../../operator/runtime/index.ts';

/** Field manager of the runner's writes (pod and node status, leases). */
export const FIELD_MANAGER = 'modelplane-pod-runner';
/** The runner's nodes' address, and every pod's host IP. */
export const HOST_IP = '127.0.0.1';

export type ConfigMap = Listed<IConfigMap>;
export const ConfigMaps = resourceType<ConfigMap>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});
