/**
 * Fake GPU node pools for the local control plane. The nodes are ordinary Node objects,
 * labelled, tainted and sized like GPU nodes running NVIDIA's device plugin and GPU Feature
 * Discovery, and kept alive by kwok (which manages only nodes annotated `kwok.x-k8s.io/node`).
 */
import type { INode } from 'kubernetes-models/v1/Node';
import type { ITaint } from 'kubernetes-models/v1/Taint';

/** Annotation kwok is told to select the nodes it manages by. */
export const KWOK_NODE_ANNOTATION = 'kwok.x-k8s.io/node';
export const KWOK_NODE_ANNOTATION_VALUE = 'fake';
/** Label on every harness node naming its pool. */
export const POOL_LABEL = 'modelplane.dev/pool';
export const GPU_RESOURCE = 'nvidia.com/gpu';
export const GPU_PRODUCT_LABEL = 'nvidia.com/gpu.product';

export interface NodePool {
  /** Pool name, used as the node name prefix (`<name>-<index>`). */
  name: string;
  count: number;
  cpu: string;
  memory: string;
  /** Omit for CPU-only pools. */
  gpu?: {
    /** `nvidia.com/gpu.product` as GPU Feature Discovery reports it. */
    product: string;
    /** GPUs per node (`nvidia.com/gpu` capacity). */
    count: number;
    /** Memory per GPU in MiB (`nvidia.com/gpu.memory`). */
    memoryMiB: number;
    family: string;
  };
  /** Extra labels, e.g. a cloud's instance type. */
  labels?: Record<string, string>;
}

export interface PoolSizes {
  t4: number;
  a100: number;
  h100: number;
  cpu: number;
}

export const defaultPoolSizes: PoolSizes = { t4: 2, a100: 2, h100: 2, cpu: 2 };

/** The standard pools: T4, A100 80GB and H100 GPU nodes, and CPU-only nodes. */
export function standardPools(sizes: Partial<PoolSizes> = {}): NodePool[] {
  const n = { ...defaultPoolSizes, ...sizes };
  for (const [k, v] of Object.entries(n)) {
    if (!Number.isInteger(v) || v < 0) throw new Error(`pool size ${k}=${v}: want a whole number >= 0`);
  }
  return [
    {
      name: 'gpu-t4',
      count: n.t4,
      cpu: '16',
      memory: '64Gi',
      gpu: { product: 'Tesla-T4', count: 4, memoryMiB: 15360, family: 'turing' },
      labels: { 'node.kubernetes.io/instance-type': 'g4dn.12xlarge' },
    },
    {
      name: 'gpu-a100-80gb',
      count: n.a100,
      cpu: '96',
      memory: '1152Gi',
      gpu: { product: 'NVIDIA-A100-SXM4-80GB', count: 8, memoryMiB: 81920, family: 'ampere' },
      labels: { 'node.kubernetes.io/instance-type': 'p4de.24xlarge' },
    },
    {
      name: 'gpu-h100',
      count: n.h100,
      cpu: '192',
      memory: '2048Gi',
      gpu: { product: 'NVIDIA-H100-80GB-HBM3', count: 8, memoryMiB: 81559, family: 'hopper' },
      labels: { 'node.kubernetes.io/instance-type': 'p5.48xlarge' },
    },
    {
      name: 'cpu',
      count: n.cpu,
      cpu: '8',
      memory: '32Gi',
      labels: { 'node.kubernetes.io/instance-type': 'm6i.2xlarge' },
    },
  ].filter((p) => p.count > 0);
}

/** Who plays the kubelet for a pool's nodes: what it marks them with. */
export interface NodeOwner {
  /** Annotations that select the nodes for their owner. */
  annotations: Record<string, string>;
  labels: Record<string, string>;
  /** `status.nodeInfo` strings: the container runtime and kubelet versions. */
  runtime: string;
}

/** kwok manages the nodes it finds annotated `kwok.x-k8s.io/node=fake`. */
export const KWOK_OWNER: NodeOwner = {
  annotations: { [KWOK_NODE_ANNOTATION]: KWOK_NODE_ANNOTATION_VALUE },
  labels: { type: 'kwok' },
  runtime: 'kwok',
};

/** The Node objects of a pool that kwok keeps alive (status included: nodes accept it on create). */
export function nodeManifests(pool: NodePool): INode[] {
  return poolNodeManifests(pool, KWOK_OWNER);
}

/** The Node objects of a pool, marked for `owner` (kwok, or another stand-in kubelet). */
export function poolNodeManifests(pool: NodePool, owner: NodeOwner): INode[] {
  const nodes: INode[] = [];
  for (let i = 0; i < pool.count; i++) {
    const name = `${pool.name}-${i}`;
    const labels: Record<string, string> = {
      'kubernetes.io/arch': 'amd64',
      'kubernetes.io/os': 'linux',
      'kubernetes.io/hostname': name,
      'node-role.kubernetes.io/worker': '',
      ...owner.labels,
      [POOL_LABEL]: pool.name,
      ...pool.labels,
    };
    const resources: Record<string, string> = {
      cpu: pool.cpu,
      memory: pool.memory,
      pods: '110',
      'ephemeral-storage': '500Gi',
    };
    const taints: ITaint[] = [];
    if (pool.gpu) {
      Object.assign(labels, {
        'nvidia.com/gpu.present': 'true',
        [GPU_PRODUCT_LABEL]: pool.gpu.product,
        'nvidia.com/gpu.count': String(pool.gpu.count),
        'nvidia.com/gpu.memory': String(pool.gpu.memoryMiB),
        'nvidia.com/gpu.family': pool.gpu.family,
      });
      resources[GPU_RESOURCE] = String(pool.gpu.count);
      taints.push({ key: GPU_RESOURCE, value: 'present', effect: 'NoSchedule' });
    }
    nodes.push({
      apiVersion: 'v1',
      kind: 'Node',
      metadata: {
        name,
        labels,
        annotations: { ...owner.annotations, 'node.alpha.kubernetes.io/ttl': '0' },
      },
      spec: { taints },
      status: {
        allocatable: resources,
        capacity: resources,
        nodeInfo: {
          architecture: 'amd64',
          operatingSystem: 'linux',
          kubeletVersion: 'fake',
          kubeProxyVersion: 'fake',
          containerRuntimeVersion: owner.runtime,
          osImage: owner.runtime,
          kernelVersion: owner.runtime,
          machineID: '',
          systemUUID: '',
          bootID: '',
        },
        phase: 'Running',
      },
    });
  }
  return nodes;
}
