import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/clock.ts';
import { MemoryUsageStore } from '../predictions/usage-store.ts';
import type { Pod } from '../resources.ts';
import { createLogger, type KubeClient } from '../runtime/index.ts';
import { type SidecarStatus, UsageCollector } from './collector.ts';

const T = Date.parse('2026-01-01T00:00:00Z');

function pod(name: string, ip: string, terminating = false): Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      name,
      namespace: 'ns',
      uid: `uid-${name}`,
      labels: { 'modelplane.dev/deployment': 'dep' },
      ...(terminating ? { deletionTimestamp: new Date(T).toISOString() } : {}),
    },
    spec: { containers: [{ name: 'sidecar', ports: [{ name: 'api', containerPort: 8080 }] }] },
    status: { podIP: ip },
  } as Pod;
}

describe('the usage collector', () => {
  it('records each reading once, counts what grew, and reads terminating pods every tick', async () => {
    const clock = new FakeClock(T);
    const store = new MemoryUsageStore();
    const registry = new Registry();
    let pods = [pod('a', '10.0.0.1'), pod('b', '10.0.0.2')];
    const figures: Record<string, SidecarStatus> = {};
    const reads: string[] = [];
    const status = (setup: number, idle: number, busy: number, n: number, cost: string, final = false) => ({
      deployment: 'ns/dep',
      hardware: 'gpu-t4',
      price_per_second: '0.000225',
      state: 'idle',
      instance_seconds: { setup, idle, busy, down: 0 },
      predictions: { succeeded: n, failed: 0, canceled: 0 },
      cost,
      final,
    });
    figures['10.0.0.1'] = status(2, 1, 0, 0, '0');
    figures['10.0.0.2'] = status(3, 0.5, 0.5, 1, '0.0001125');
    const c = new UsageCollector({
      client: {} as KubeClient,
      caches: {
        pods: { list: () => pods, waitForSync: async () => {} } as never,
        deployments: {
          list: () => [],
          get: () => ({ spec: { model: 'm', hardware: 'gpu-t4' } }),
          waitForSync: async () => {},
        } as never,
      },
      usage: () => store,
      registry,
      log: createLogger({ level: 'silent' }),
      intervalMs: 10_000,
      clock,
      read: async (url) => {
        const ip = new URL(url).hostname;
        reads.push(ip);
        return figures[ip]!;
      },
    });
    await c.tick();
    expect(reads.sort()).toEqual(['10.0.0.1', '10.0.0.2']);
    // Not due yet: nothing read.
    clock.advance(1000);
    await c.tick();
    expect(reads).toHaveLength(2);
    // Pod b is terminating: read every tick, its final figures recorded as ended.
    pods = [pod('a', '10.0.0.1'), pod('b', '10.0.0.2', true)];
    figures['10.0.0.2'] = status(3, 1.5, 2.5, 3, '0.0003375', true);
    await c.tick();
    expect(reads.slice(2)).toEqual(['10.0.0.2']);
    const all = { since: 0, until: T + 86_400_000, namespaces: 'all' as const };
    const instances = await store.instances(all);
    expect(instances.map((i) => [i.pod, i.ended, i.ms, i.predictions, i.model])).toEqual([
      ['a', false, { setup: 2000, idle: 1000, busy: 0, down: 0 }, 0, 'ns/m'],
      ['b', true, { setup: 3000, idle: 1500, busy: 2500, down: 0 }, 3, 'ns/m'],
    ]);
    const text = await registry.metrics();
    const value = (line: string) =>
      Number(
        text
          .split('\n')
          .find((l) => l.startsWith(line))
          ?.split(' ')
          .at(-1),
      );
    expect(
      value(
        'modelplane_usage_instance_seconds_total{namespace="ns",deployment="dep",hardware="gpu-t4",state="busy"}',
      ),
    ).toBe(2.5);
    expect(
      value(
        'modelplane_usage_instance_seconds_total{namespace="ns",deployment="dep",hardware="gpu-t4",state="setup"}',
      ),
    ).toBe(5);
    expect(value('modelplane_usage_predictions_total{namespace="ns",deployment="dep"}')).toBe(3);
    // (5 setup + 2.5 idle) s × 0.000225
    expect(
      value('modelplane_usage_idle_cost_dollars_total{namespace="ns",deployment="dep",hardware="gpu-t4"}'),
    ).toBeCloseTo(7.5 * 0.000225, 12);
    expect(value('modelplane_usage_instances{namespace="ns",deployment="dep",state="idle"}')).toBe(1);
  });
});

describe('a sidecar that cannot be read', () => {
  it('is read again after the interval, then ever more rarely, not at every tick', async () => {
    const clock = new FakeClock(T);
    const registry = new Registry();
    const reads: number[] = [];
    let reachable = false;
    const c = new UsageCollector({
      client: {} as KubeClient,
      caches: {
        pods: { list: () => [pod('a', '10.0.0.1')], waitForSync: async () => {} } as never,
        deployments: {
          list: () => [],
          get: () => ({ spec: { model: 'm', hardware: 'gpu-t4' } }),
          waitForSync: async () => {},
        } as never,
      },
      usage: () => new MemoryUsageStore(),
      registry,
      log: createLogger({ level: 'silent' }),
      intervalMs: 10_000,
      clock,
      read: async () => {
        reads.push(clock.now() - T);
        if (!reachable) throw new Error('connect EHOSTUNREACH');
        return { instance_seconds: { setup: 1, idle: 0, busy: 0, down: 0 } };
      },
    });
    // Ticks of a second for 200 s: failed reads at 0, then 10, 20 (×2), 40 (×4), 60 (×6, the
    // most) seconds apart.
    for (let s = 0; s < 200; s++) {
      await c.tick();
      clock.advance(1000);
    }
    expect(reads).toEqual([0, 10_000, 30_000, 70_000, 130_000, 190_000]);
    // Once it answers, it is read at the interval again.
    reachable = true;
    for (let s = 200; s < 280; s++) {
      await c.tick();
      clock.advance(1000);
    }
    expect(reads.slice(5)).toEqual([190_000, 250_000, 260_000, 270_000]);
  });
});

describe("the usage in a Deployment's status", () => {
  it('is written at most once per interval, only when a figure changed', async () => {
    const clock = new FakeClock(T);
    const store = new MemoryUsageStore();
    const applied: { usage: Record<string, Record<string, unknown>> }[] = [];
    let idle = 1;
    const deployment = {
      apiVersion: 'modelplane.dev/v1alpha1',
      kind: 'Deployment',
      metadata: { name: 'dep', namespace: 'ns' },
      spec: { model: 'm', hardware: 'gpu-t4' },
      status: {} as Record<string, unknown>,
    };
    const c = new UsageCollector({
      client: {
        apply: async (
          _type: unknown,
          obj: { status: { usage: Record<string, Record<string, unknown>> } },
        ) => {
          applied.push(obj.status);
          deployment.status = obj.status;
          return obj;
        },
      } as unknown as KubeClient,
      caches: {
        pods: { list: () => [pod('a', '10.0.0.1')], waitForSync: async () => {} } as never,
        deployments: {
          list: () => [deployment],
          get: () => deployment,
          waitForSync: async () => {},
        } as never,
      },
      usage: () => store,
      registry: new Registry(),
      log: createLogger({ level: 'silent' }),
      intervalMs: 1000,
      statusIntervalMs: 60_000,
      clock,
      read: async () => ({
        hardware: 'gpu-t4',
        price_per_second: '0.000225',
        state: 'idle',
        instance_seconds: { setup: 2, idle, busy: 0, down: 0 },
        predictions: { succeeded: 0 },
        cost: '0',
      }),
    });
    await c.tick();
    expect(applied).toHaveLength(1);
    expect(applied[0]?.usage.lastHour).toMatchObject({
      instances: 1,
      setupSeconds: 2,
      idleSeconds: 1,
      idleCost: '0.000675',
    });
    // Changes within the interval wait for it.
    for (let i = 0; i < 30; i++) {
      idle++;
      clock.advance(1000);
      await c.tick();
    }
    expect(applied).toHaveLength(1);
    clock.advance(30_000);
    await c.tick();
    expect(applied).toHaveLength(2);
    expect(applied[1]?.usage.lastDay).toMatchObject({ idleSeconds: 31 });
    // Nothing changed for another interval: nothing written.
    idle = 31;
    clock.advance(61_000);
    await c.tick();
    clock.advance(61_000);
    await c.tick();
    expect(applied).toHaveLength(2);
  });
});
