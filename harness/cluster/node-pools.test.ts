import { describe, expect, it } from 'vitest';
import { KWOK_NODE_ANNOTATION, nodeManifests, poolNodeManifests, standardPools } from './node-pools.ts';

describe('node pools', () => {
  it('makes the default pools: 2 × T4, A100 80GB, H100 and CPU', () => {
    const pools = standardPools();
    expect(pools.map((p) => [p.name, p.count, p.gpu?.product, p.gpu?.count])).toEqual([
      ['gpu-t4', 2, 'Tesla-T4', 4],
      ['gpu-a100-80gb', 2, 'NVIDIA-A100-SXM4-80GB', 8],
      ['gpu-h100', 2, 'NVIDIA-H100-80GB-HBM3', 8],
      ['cpu', 2, undefined, undefined],
    ]);
  });

  it('takes pool sizes as parameters, dropping empty pools', () => {
    const pools = standardPools({ h100: 300, t4: 0 });
    expect(pools.find((p) => p.name === 'gpu-h100')?.count).toBe(300);
    expect(pools.some((p) => p.name === 'gpu-t4')).toBe(false);
    expect(pools.flatMap(nodeManifests)).toHaveLength(304);
    expect(() => standardPools({ cpu: -1 })).toThrow(/cpu=-1/);
  });

  it('labels, taints and sizes GPU nodes like GPU Feature Discovery and the device plugin do', () => {
    const h100 = standardPools().find((p) => p.name === 'gpu-h100')!;
    const [node] = nodeManifests(h100);
    expect(node!.metadata?.name).toBe('gpu-h100-0');
    expect(node!.metadata?.labels).toMatchObject({
      'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3',
      'nvidia.com/gpu.count': '8',
      'nvidia.com/gpu.memory': '81559',
    });
    expect(node!.metadata?.annotations?.[KWOK_NODE_ANNOTATION]).toBe('fake');
    expect(node!.spec?.taints).toEqual([{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }]);
    expect(node!.status?.capacity?.['nvidia.com/gpu']).toBe('8');
    expect(node!.status?.allocatable?.['nvidia.com/gpu']).toBe('8');
  });

  it('gives CPU nodes no GPU, label or taint', () => {
    const cpu = standardPools().find((p) => p.name === 'cpu')!;
    const [node] = nodeManifests(cpu);
    expect(node!.spec?.taints).toEqual([]);
    expect(node!.status?.capacity?.['nvidia.com/gpu']).toBeUndefined();
    expect(node!.metadata?.labels?.['nvidia.com/gpu.product']).toBeUndefined();
  });

  it('marks nodes for another owner than kwok, shaped the same', () => {
    const t4 = standardPools().find((p) => p.name === 'gpu-t4')!;
    const owner = { annotations: {}, labels: { 'modelplane.dev/pod-runner': 'dev' }, runtime: 'runner' };
    const [node] = poolNodeManifests({ ...t4, name: 'dev-gpu-t4', count: 1 }, owner);
    expect(node!.metadata?.name).toBe('dev-gpu-t4-0');
    expect(node!.metadata?.annotations?.[KWOK_NODE_ANNOTATION]).toBeUndefined();
    expect(node!.metadata?.labels).toMatchObject({
      'modelplane.dev/pod-runner': 'dev',
      'nvidia.com/gpu.product': 'Tesla-T4',
    });
    expect(node!.metadata?.labels?.type).toBeUndefined();
    expect(node!.spec?.taints).toEqual([{ key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' }]);
    expect(node!.status?.capacity?.['nvidia.com/gpu']).toBe('4');
    expect(node!.status?.nodeInfo?.containerRuntimeVersion).toBe('runner');
  });
});
