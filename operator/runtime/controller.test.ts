import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../lib/clock.ts';
import type { KubeObject, ResourceType } from './client.ts';
import {
  Controller,
  type ControllerOptions,
  controllerOwnerKeys,
  type Source,
  specChanged,
  TerminalError,
} from './controller.ts';
import type { EventHandler } from './informer.ts';
import { RuntimeMetrics } from './metrics.ts';

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
};

const Widgets: ResourceType = {
  apiVersion: 'example.dev/v1',
  kind: 'Widget',
  plural: 'widgets',
  namespaced: true,
};
const ConfigMaps: ResourceType = {
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
};

/** A synced in-memory source: what an informer would deliver, without a server. */
class FakeSource implements Source {
  readonly type: ResourceType;
  readonly objects = new Map<string, KubeObject>();
  private handlers: EventHandler<KubeObject>[] = [];

  constructor(type: ResourceType) {
    this.type = type;
  }

  addEventHandler(h: EventHandler<KubeObject>): () => void {
    this.handlers.push(h);
    return () => {
      this.handlers = this.handlers.filter((x) => x !== h);
    };
  }

  async waitForSync(): Promise<void> {}

  keys(): string[] {
    return [...this.objects.keys()];
  }

  add(obj: KubeObject): void {
    this.objects.set(`${obj.metadata?.namespace}/${obj.metadata?.name}`, obj);
    for (const h of this.handlers) h.onAdd?.(obj);
  }

  update(prev: KubeObject, obj: KubeObject): void {
    for (const h of this.handlers) h.onUpdate?.(prev, obj);
  }
}

const widget = (name: string): KubeObject => ({ ...Widgets, metadata: { name, namespace: 'ns' } });

function setup(reconcile: ControllerOptions['reconcile'], extra: Partial<ControllerOptions> = {}) {
  const clock = new FakeClock();
  const primary = new FakeSource(Widgets);
  const metrics = new RuntimeMetrics();
  const controller = new Controller({ name: 'widget', for: primary, reconcile, clock, metrics, ...extra });
  return { clock, primary, metrics, controller };
}

async function metricValue(metrics: RuntimeMetrics, name: string, labels: Record<string, string>) {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const v = metric?.values.find((x) => Object.entries(labels).every(([k, l]) => x.labels[k] === l));
  return v?.value;
}

describe('Controller', () => {
  it('reconciles every cached object at start and each one that changes', async () => {
    const seen: string[] = [];
    const { primary, controller } = setup(async (key) => {
      seen.push(key);
    });
    primary.add(widget('a'));
    await controller.start();
    await settle();
    expect(seen).toEqual(['ns/a']);
    primary.add(widget('b'));
    await settle();
    expect(seen).toEqual(['ns/a', 'ns/b']);
    await controller.stop();
  });

  it('retries a failing reconcile with backoff and stops retrying after success', async () => {
    let calls = 0;
    const { clock, primary, controller, metrics } = setup(async () => {
      calls++;
      if (calls <= 3) throw new Error('boom');
    });
    primary.add(widget('a'));
    await controller.start();
    await settle();
    expect(calls).toBe(1);
    for (const [ms, want] of [
      [5, 2],
      [10, 3],
      [20, 4],
    ] as const) {
      clock.advance(ms - 1);
      await settle();
      expect(calls).toBe(want - 1);
      clock.advance(1);
      await settle();
      expect(calls).toBe(want);
    }
    clock.advance(10_000);
    await settle();
    expect(calls).toBe(4);
    expect(await metricValue(metrics, 'controller_runtime_reconcile_total', { result: 'error' })).toBe(3);
    expect(await metricValue(metrics, 'controller_runtime_reconcile_total', { result: 'success' })).toBe(1);
    expect(
      await metricValue(metrics, 'controller_runtime_reconcile_errors_total', { controller: 'widget' }),
    ).toBe(3);
    expect(await metricValue(metrics, 'workqueue_retries_total', { name: 'widget' })).toBe(3);
    await controller.stop();
  });

  it('does not retry a TerminalError', async () => {
    let calls = 0;
    const { clock, primary, controller, metrics } = setup(async () => {
      calls++;
      throw new TerminalError('spec.image is empty');
    });
    primary.add(widget('a'));
    await controller.start();
    await settle();
    clock.advance(3_600_000);
    await settle();
    expect(calls).toBe(1);
    expect(await metricValue(metrics, 'controller_runtime_terminal_reconcile_errors_total', {})).toBe(1);
    expect(await metricValue(metrics, 'workqueue_retries_total', { name: 'widget' })).toBe(0);
    await controller.stop();
  });

  it('requeues after requeueAfter, and with backoff on requeue', async () => {
    const times: number[] = [];
    let result: { requeueAfter?: number; requeue?: boolean } = { requeueAfter: 30_000 };
    const { clock, primary, controller, metrics } = setup(async () => {
      times.push(clock.now());
      return result;
    });
    primary.add(widget('a'));
    await controller.start();
    await settle();
    clock.advance(29_999);
    await settle();
    expect(times).toEqual([0]);
    result = { requeue: true };
    clock.advance(1);
    await settle();
    expect(times).toEqual([0, 30_000]);
    result = {};
    clock.advance(5);
    await settle();
    expect(times).toEqual([0, 30_000, 30_005]);
    expect(
      await metricValue(metrics, 'controller_runtime_reconcile_total', { result: 'requeue_after' }),
    ).toBe(1);
    expect(await metricValue(metrics, 'controller_runtime_reconcile_total', { result: 'requeue' })).toBe(1);
    await controller.stop();
  });

  it('runs keys in parallel on N workers but never one key twice at once', async () => {
    const running = new Set<string>();
    let maxParallel = 0;
    let overlap = false;
    const gates: (() => void)[] = [];
    const { primary, controller } = setup(
      async (key) => {
        if (running.has(key)) overlap = true;
        running.add(key);
        maxParallel = Math.max(maxParallel, running.size);
        await new Promise<void>((r) => gates.push(r));
        running.delete(key);
      },
      { workers: 3 },
    );
    for (const n of ['a', 'b', 'c', 'd']) primary.add(widget(n));
    await controller.start();
    await settle();
    expect(running.size).toBe(3);
    primary.update(widget('a'), widget('a')); // 'a' changes while it is being reconciled
    for (let i = 0; i < 10; i++) {
      gates.splice(0).forEach((open) => {
        open();
      });
      await settle();
    }
    expect(maxParallel).toBe(3);
    expect(overlap).toBe(false);
    await controller.stop();
  });

  it('maps an owned object to its controlling owner', async () => {
    const seen: string[] = [];
    const children = new FakeSource(ConfigMaps);
    const { controller } = setup(
      async (key) => {
        seen.push(key);
      },
      { owns: [children] },
    );
    await controller.start();
    children.add({
      ...ConfigMaps,
      metadata: {
        name: 'child',
        namespace: 'ns',
        ownerReferences: [
          { apiVersion: 'example.dev/v1', kind: 'Widget', name: 'parent', uid: 'u1', controller: true },
          { apiVersion: 'example.dev/v1', kind: 'Widget', name: 'not-controller', uid: 'u2' },
          { apiVersion: 'other.dev/v1', kind: 'Widget', name: 'other-group', uid: 'u3', controller: true },
        ],
      },
    });
    await settle();
    expect(seen).toEqual(['ns/parent']);
    await controller.stop();
  });

  it('ignores updates of a watched kind that its filter rejects, and coalesces delayed events', async () => {
    const seen: string[] = [];
    const specs = new FakeSource(ConfigMaps);
    const bursts = new FakeSource(ConfigMaps);
    const { controller, clock } = setup(
      async (key) => {
        seen.push(key);
      },
      {
        watches: [
          { source: specs, map: () => ['ns/by-spec'], changed: specChanged },
          { source: bursts, map: () => ['ns/burst'], delayMs: 1_000 },
        ],
      },
    );
    await controller.start();
    const cm = (generation: number, rv: string): KubeObject => ({
      ...ConfigMaps,
      metadata: { name: 'c', namespace: 'ns', generation, resourceVersion: rv },
    });
    specs.update(cm(1, '1'), cm(1, '2')); // a status write: ignored
    await settle();
    expect(seen).toEqual([]);
    specs.update(cm(1, '2'), cm(2, '3')); // a spec change
    await settle();
    expect(seen).toEqual(['ns/by-spec']);

    for (let i = 0; i < 5; i++) bursts.add(cm(1, String(10 + i)));
    await settle();
    expect(seen).toEqual(['ns/by-spec']);
    clock.advance(1_000);
    await settle();
    expect(seen).toEqual(['ns/by-spec', 'ns/burst']);
    await controller.stop();
  });

  it('stop lets the reconcile in flight finish and starts nothing new', async () => {
    let release: () => void = () => {};
    const started: string[] = [];
    const finished: string[] = [];
    const { primary, controller } = setup(async (key) => {
      started.push(key);
      await new Promise<void>((r) => {
        release = r;
      });
      finished.push(key);
    });
    primary.add(widget('a'));
    primary.add(widget('b'));
    await controller.start();
    await settle();
    let stopped: boolean | undefined;
    void controller.stop(60_000).then((d) => {
      stopped = d;
    });
    await settle();
    expect(stopped).toBeUndefined();
    release();
    await settle();
    expect(stopped).toBe(true);
    expect(started).toEqual(['ns/a']);
    expect(finished).toEqual(['ns/a']);
  });

  it('resyncs every cached object on its period', async () => {
    const seen: string[] = [];
    const { clock, primary, controller } = setup(
      async (key) => {
        seen.push(key);
      },
      { resyncPeriodMs: 60_000 },
    );
    primary.add(widget('a'));
    await controller.start();
    await settle();
    clock.advance(60_000);
    await settle();
    clock.advance(60_000);
    await settle();
    expect(seen).toEqual(['ns/a', 'ns/a', 'ns/a']);
    await controller.stop();
  });
});

describe('controllerOwnerKeys', () => {
  it('keys cluster-scoped owners by name alone', () => {
    const owner: ResourceType = {
      apiVersion: 'example.dev/v1',
      kind: 'Pool',
      plural: 'pools',
      namespaced: false,
    };
    const child: KubeObject = {
      metadata: {
        name: 'c',
        namespace: 'ns',
        ownerReferences: [
          { apiVersion: 'example.dev/v2', kind: 'Pool', name: 'p', uid: 'u', controller: true },
        ],
      },
    };
    expect(controllerOwnerKeys(child, owner)).toEqual(['p']);
  });
});
