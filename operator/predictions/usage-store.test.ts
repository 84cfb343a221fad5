import { describe, expect, it } from 'vitest';
import { format, multiply, parseDecimal } from '../../lib/decimal.ts';
import { MemoryStore } from './store.ts';
import { usageContract } from './usage-store.contract.ts';
import { type InstanceUsage, summarize, type UsageBucket } from './usage-store.ts';

usageContract('MemoryStore', { open: async () => new MemoryStore() });

const T = Date.parse('2026-01-01T00:00:00Z');
const bucket = (over: Partial<UsageBucket>): UsageBucket => ({
  start: T,
  namespace: 'search',
  deployment: 'embed',
  model: 'search/embed',
  hardware: 'gpu-t4',
  pricePerSecond: '0.000225',
  ms: { setup: 0, idle: 0, busy: 0, down: 0 },
  predictions: 0,
  predictionCost: '0',
  ...over,
});
const instance = (over: Partial<InstanceUsage>): InstanceUsage => ({
  instance: 'uid-1',
  pod: 'embed-1',
  namespace: 'search',
  deployment: 'embed',
  model: 'search/embed',
  hardware: 'gpu-t4',
  pricePerSecond: '0.000225',
  firstSeen: T,
  lastSeen: T + 60_000,
  ended: false,
  ms: { setup: 0, idle: 0, busy: 0, down: 0 },
  predictions: 0,
  predictionCost: '0',
  ...over,
});

describe('summarize', () => {
  const buckets = [
    bucket({
      ms: { setup: 30_000, idle: 100_000, busy: 50_000, down: 0 },
      predictions: 40,
      predictionCost: '0.01125',
    }),
    bucket({
      start: T + 86_400_000,
      ms: { setup: 0, idle: 10_001, busy: 9_999, down: 0 },
      predictions: 10,
      predictionCost: '0.00225',
    }),
    bucket({
      namespace: 'studio',
      deployment: 'flux',
      model: 'studio/flux',
      hardware: 'gpu-a100-80gb',
      pricePerSecond: '0.0014',
      ms: { setup: 1000, idle: 0, busy: 3000, down: 0 },
      predictions: 2,
      predictionCost: '0.006',
    }),
  ];
  const instances = [
    instance({}),
    instance({ instance: 'uid-2', pod: 'embed-2', firstSeen: T + 86_400_000, lastSeen: T + 86_460_000 }),
    instance({
      instance: 'uid-3',
      pod: 'flux-1',
      namespace: 'studio',
      deployment: 'flux',
      model: 'studio/flux',
      hardware: 'gpu-a100-80gb',
    }),
  ];

  it('adds up time and exact costs per deployment, with idle cost, utilization and cost per prediction', () => {
    const [embed, flux] = summarize('deployment', buckets, instances);
    expect(embed).toMatchObject({
      key: 'search/embed',
      instances: 2,
      setup_seconds: 30,
      idle_seconds: 110.001,
      busy_seconds: 59.999,
      running_seconds: 200,
      predictions: 50,
      prediction_cost: '0.0135',
      // 200 s × 0.000225
      instance_cost: '0.045',
      // (30 + 110.001) s × 0.000225, exactly
      idle_cost: format(multiply(parseDecimal('140.001'), parseDecimal('0.000225'))),
      cost_per_prediction: '0.0009',
    });
    expect(embed?.utilization).toBeCloseTo(59.999 / 200, 4);
    expect(flux).toMatchObject({
      key: 'studio/flux',
      instance_cost: '0.0056',
      idle_cost: '0.0014',
      utilization: 0.75,
    });
  });

  it('groups by day, hardware, namespace, model and instance', () => {
    expect(summarize('day', buckets, instances).map((s) => [s.key, s.instances, s.predictions])).toEqual([
      ['2026-01-01', 2, 42],
      ['2026-01-02', 1, 10],
    ]);
    expect(summarize('hardware', buckets, instances).map((s) => s.key)).toEqual(['gpu-a100-80gb', 'gpu-t4']);
    expect(summarize('namespace', buckets, instances).map((s) => s.key)).toEqual(['search', 'studio']);
    expect(summarize('model', buckets, instances).map((s) => s.key)).toEqual(['search/embed', 'studio/flux']);
    const byInstance = summarize(
      'instance',
      [],
      [instance({ ms: { setup: 2000, idle: 1000, busy: 1000, down: 0 } })],
    );
    expect(byInstance).toMatchObject([
      { key: 'embed-1', instances: 1, running_seconds: 4, instance_cost: '0.0009' },
    ]);
  });

  it('gives the cost per user action from units per action, and none without predictions', () => {
    const [embed] = summarize('deployment', buckets, instances, { unitsPerAction: '3' });
    expect(embed?.cost_per_action).toBe('0.0027');
    const [idle] = summarize('deployment', [bucket({ ms: { setup: 0, idle: 1000, busy: 0, down: 0 } })], [], {
      unitsPerAction: '3',
    });
    expect(idle).toMatchObject({ cost_per_prediction: null, cost_per_action: null, utilization: 0 });
  });
});
