import { describe, expect, it } from 'vitest';
import { HardwareClassSpecSchema, ModelVersionSpecSchema } from '../../crds/index.ts';
import type { Node } from '../resources.ts';
import { mergeConditions, transitions } from './conditions.ts';
import { hardwareObservation, nodeMatches, tolerates } from './hardware-class.ts';
import { parseQuantity } from './quantity.ts';
import { canonicalJson, versionId } from './version-id.ts';

describe('parseQuantity', () => {
  it.each([
    ['4', 4],
    ['500m', 0.5],
    ['16Gi', 16 * 2 ** 30],
    ['1k', 1000],
    ['1e3', 1000],
    ['1.5', 1.5],
  ])('%s = %d', (q, v) => expect(parseQuantity(q)).toBeCloseTo(v));
  it('refuses what is not a quantity', () =>
    expect(() => parseQuantity('4 cores')).toThrow(/not a Kubernetes quantity/));
});

describe('versionId', () => {
  const spec = ModelVersionSpecSchema.parse({ model: 'm', image: 'registry.example.com/m:1' });
  it('is 64 hex characters, stable, and independent of key order and defaults', () => {
    const id = versionId('team', spec);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(
      versionId(
        'team',
        ModelVersionSpecSchema.parse({ image: 'registry.example.com/m:1', model: 'm', maxConcurrency: 1 }),
      ),
    ).toBe(id);
  });
  it('changes with anything that defines the version', () => {
    const id = versionId('team', spec);
    expect(versionId('other', spec)).not.toBe(id);
    expect(versionId('team', { ...spec, image: 'registry.example.com/m:2' })).not.toBe(id);
    expect(versionId('team', { ...spec, maxConcurrency: 2 })).not.toBe(id);
    expect(versionId('team', { ...spec, env: [{ name: 'A', value: '1' }] })).not.toBe(id);
  });
  it('canonical JSON sorts keys at every depth', () => {
    expect(canonicalJson({ b: 1, a: { d: [2, { y: 1, x: 2 }], c: undefined } })).toBe(
      '{"a":{"d":[2,{"x":2,"y":1}]},"b":1}',
    );
  });
});

describe('conditions', () => {
  const t0 = new Date('2030-01-01T00:00:00Z');
  const t1 = new Date('2030-01-01T00:05:00Z');
  it('keeps lastTransitionTime unless the status changes', () => {
    const first = mergeConditions(
      undefined,
      [{ type: 'Ready', status: 'False', reason: 'A', message: 'a' }],
      1,
      t0,
    );
    const same = mergeConditions(
      first,
      [{ type: 'Ready', status: 'False', reason: 'B', message: 'b' }],
      2,
      t1,
    );
    expect(same[0]).toEqual({
      type: 'Ready',
      status: 'False',
      observedGeneration: 2,
      lastTransitionTime: '2030-01-01T00:00:00Z',
      reason: 'B',
      message: 'b',
    });
    const flipped = mergeConditions(
      same,
      [{ type: 'Ready', status: 'True', reason: 'Ready', message: '' }],
      2,
      t1,
    );
    expect(flipped[0]?.lastTransitionTime).toBe('2030-01-01T00:05:00Z');
    expect(transitions(same, flipped).map((c) => c.type)).toEqual(['Ready']);
    expect(transitions(flipped, flipped)).toEqual([]);
  });
});

describe('HardwareClass matching', () => {
  const t4 = HardwareClassSpecSchema.parse({
    displayName: 'T4',
    gpu: { count: 1, products: ['Tesla-T4'] },
    tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
    resources: { cpu: '3', memory: '14Gi' },
    pricePerSecond: '0.000225',
  });
  const cpu = HardwareClassSpecSchema.parse({
    displayName: 'CPU',
    resources: { cpu: '2', memory: '4Gi' },
    pricePerSecond: '0.0001',
  });
  const gpuTaint = { key: 'nvidia.com/gpu', value: 'present', effect: 'NoSchedule' } as const;
  const node = (
    name: string,
    labels: Record<string, string>,
    alloc: Record<string, string>,
    taints = [gpuTaint],
  ): Node => ({
    metadata: { name, labels },
    spec: { taints },
    status: { allocatable: alloc },
  });
  const t4Node = node(
    't4',
    { 'nvidia.com/gpu.product': 'Tesla-T4' },
    { cpu: '16', memory: '64Gi', 'nvidia.com/gpu': '4' },
  );
  const h100Node = node(
    'h100',
    { 'nvidia.com/gpu.product': 'NVIDIA-H100-80GB-HBM3' },
    { cpu: '192', memory: '2048Gi', 'nvidia.com/gpu': '8' },
  );
  const cpuNode = node('cpu', {}, { cpu: '8', memory: '32Gi' }, []);

  it('tolerations match taints as the scheduler does', () => {
    expect(tolerates([{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }], gpuTaint)).toBe(
      true,
    );
    expect(tolerates([{ key: 'nvidia.com/gpu', operator: 'Equal', value: 'other' }], gpuTaint)).toBe(false);
    expect(tolerates([{ operator: 'Exists' }], gpuTaint)).toBe(true);
    expect(tolerates(undefined, gpuTaint)).toBe(false);
  });

  it('matches nodes by GPU product and taints', () => {
    expect(nodeMatches(t4, t4Node)).toBe(true);
    expect(nodeMatches(t4, h100Node)).toBe(false);
    expect(nodeMatches(cpu, cpuNode)).toBe(true);
    expect(nodeMatches(cpu, t4Node)).toBe(false); // tainted
    expect(nodeMatches(t4, { ...t4Node, spec: { ...t4Node.spec, unschedulable: true } })).toBe(false);
  });

  it('counts nodes, allocatable GPUs and the instances that fit on the largest node', () => {
    expect(hardwareObservation(t4, [t4Node, t4Node, h100Node, cpuNode])).toEqual({
      nodes: 2,
      allocatableGpus: 8,
      maxInstancesPerNode: 4,
    });
    // 8 CPUs hold three instances of 2 CPUs plus the sidecar's 50m each.
    expect(hardwareObservation(cpu, [cpuNode])).toEqual({
      nodes: 1,
      allocatableGpus: 0,
      maxInstancesPerNode: 3,
    });
    expect(hardwareObservation(t4, [])).toEqual({ nodes: 0, allocatableGpus: 0, maxInstancesPerNode: 0 });
  });
});
