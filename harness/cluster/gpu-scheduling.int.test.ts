import type { V1Pod } from '@kubernetes/client-node';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../processes.ts';
import { GPU_PRODUCT_LABEL, GPU_RESOURCE } from './node-pools.ts';
import { useCluster, useNamespace } from './testing.ts';

const H100 = 'NVIDIA-H100-80GB-HBM3';
const cluster = useCluster();
const ns = useNamespace(cluster, 'gpu-sched');

function h100Pod(name: string): V1Pod {
  return {
    metadata: { name },
    spec: {
      affinity: {
        nodeAffinity: {
          requiredDuringSchedulingIgnoredDuringExecution: {
            nodeSelectorTerms: [
              { matchExpressions: [{ key: GPU_PRODUCT_LABEL, operator: 'In', values: [H100] }] },
            ],
          },
        },
      },
      tolerations: [{ key: GPU_RESOURCE, operator: 'Exists', effect: 'NoSchedule' }],
      containers: [
        {
          name: 'model',
          image: 'r8.im/example/llm@sha256:0',
          resources: { limits: { [GPU_RESOURCE]: '8' } },
        },
      ],
    },
  };
}

async function runningOn(name: string): Promise<string> {
  return waitFor(`pod ${name} to be Running`, async () => {
    const pod = await cluster.core.readNamespacedPod({ name, namespace: ns() });
    return pod.status?.phase === 'Running' ? pod.spec?.nodeName : undefined;
  });
}

describe('GPU scheduling on the fake node pools', () => {
  const created: string[] = [];
  afterAll(async () => {
    for (const name of created)
      await cluster.core.deleteNamespacedPod({ name, namespace: ns(), gracePeriodSeconds: 0 });
  });

  it('schedules an 8-GPU pod with H100 affinity onto an H100 node, where it runs', async () => {
    await cluster.core.createNamespacedPod({ namespace: ns(), body: h100Pod('llm-0') });
    created.push('llm-0');
    const nodeName = await runningOn('llm-0');
    const node = await cluster.core.readNode({ name: nodeName });
    expect(node.metadata?.labels?.[GPU_PRODUCT_LABEL]).toBe(H100);
    expect(node.status?.allocatable?.[GPU_RESOURCE]).toBe('8');
  });

  it('leaves one more pod Pending with FailedScheduling for insufficient nvidia.com/gpu once every H100 is taken', async () => {
    const nodes = await cluster.core.listNode({ labelSelector: `${GPU_PRODUCT_LABEL}=${H100}` });
    const h100Nodes = nodes.items.length;
    expect(h100Nodes).toBeGreaterThan(0);
    // llm-0 holds one node; take every other H100 node.
    for (let i = 1; i < h100Nodes; i++) {
      await cluster.core.createNamespacedPod({ namespace: ns(), body: h100Pod(`llm-${i}`) });
      created.push(`llm-${i}`);
    }
    const used = new Set<string>();
    for (const name of created) used.add(await runningOn(name));
    expect(used.size).toBe(h100Nodes);

    await cluster.core.createNamespacedPod({ namespace: ns(), body: h100Pod('llm-overflow') });
    created.push('llm-overflow');
    const message = await waitFor('a FailedScheduling event for llm-overflow', async () => {
      const events = await cluster.core.listNamespacedEvent({
        namespace: ns(),
        fieldSelector: 'involvedObject.name=llm-overflow,reason=FailedScheduling',
      });
      return events.items[0]?.message;
    });
    expect(message).toMatch(/Insufficient nvidia\.com\/gpu/);
    const pod = await cluster.core.readNamespacedPod({ name: 'llm-overflow', namespace: ns() });
    expect(pod.status?.phase).toBe('Pending');
    expect(pod.spec?.nodeName).toBeUndefined();
    const scheduled = pod.status?.conditions?.find((c) => c.type === 'PodScheduled');
    expect(scheduled?.status).toBe('False');
    expect(scheduled?.reason).toBe('Unschedulable');
  });
});
