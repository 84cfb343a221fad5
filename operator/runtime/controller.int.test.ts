import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import { apply, applyStatus } from './apply.ts';
import { KubeClient, type KubeObject, resourceType } from './client.ts';
import { type Event, Events } from './events.ts';
import { createLogger } from './log.ts';
import { Manager } from './manager.ts';

// A kind of this test's own (the API group is not modelplane's): a Widget of some size owns
// a ConfigMap holding that size, and reports it in its status.
interface Condition {
  type: string;
  status: 'True' | 'False' | 'Unknown';
  reason: string;
  message: string;
  lastTransitionTime: string;
}
interface Widget extends KubeObject {
  spec: { size: number };
  status?: { observedGeneration?: number; child?: string; conditions?: Condition[] };
}
interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}
const GROUP = 'runtime.test.modelplane.dev';
const Widgets = resourceType<Widget>({
  apiVersion: `${GROUP}/v1`,
  kind: 'Widget',
  plural: 'widgets',
  namespaced: true,
});
const ConfigMaps = resourceType<ConfigMap>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});
const CRDs = resourceType<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>({
  apiVersion: 'apiextensions.k8s.io/v1',
  kind: 'CustomResourceDefinition',
  plural: 'customresourcedefinitions',
  namespaced: false,
});

const widgetCrd = {
  apiVersion: CRDs.apiVersion,
  kind: CRDs.kind,
  metadata: { name: `widgets.${GROUP}` },
  spec: {
    group: GROUP,
    scope: 'Namespaced',
    names: { kind: 'Widget', plural: 'widgets', singular: 'widget', listKind: 'WidgetList' },
    versions: [
      {
        name: 'v1',
        served: true,
        storage: true,
        subresources: { status: {} },
        schema: {
          openAPIV3Schema: {
            type: 'object',
            properties: {
              spec: { type: 'object', properties: { size: { type: 'integer' } } },
              status: {
                type: 'object',
                properties: {
                  observedGeneration: { type: 'integer' },
                  child: { type: 'string' },
                  conditions: {
                    type: 'array',
                    'x-kubernetes-list-type': 'map',
                    'x-kubernetes-list-map-keys': ['type'],
                    items: {
                      type: 'object',
                      required: ['type', 'status'],
                      properties: {
                        type: { type: 'string' },
                        status: { type: 'string' },
                        reason: { type: 'string' },
                        message: { type: 'string' },
                        lastTransitionTime: { type: 'string', format: 'date-time' },
                      },
                    },
                  },
                },
              },
            },
          },
        },
      },
    ],
  },
};

const cluster = useCluster();
const ns = useNamespace(cluster, 'controller');
const client = new KubeClient(cluster.kc);
const FIELD_MANAGER = 'widget-controller';

/** `wanted`, keeping the current transition time when the status did not change. */
function condition(
  current: Condition[] | undefined,
  wanted: Omit<Condition, 'lastTransitionTime'>,
): Condition {
  const prev = current?.find((c) => c.type === wanted.type);
  const lastTransitionTime =
    prev && prev.status === wanted.status
      ? prev.lastTransitionTime
      : new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  return { ...wanted, lastTransitionTime };
}

let manager: Manager;
let reconciles = 0;

beforeAll(async () => {
  await client.apply(CRDs, widgetCrd, { fieldManager: 'runtime-test' });
  await waitFor('the Widget CRD to be established', async () => {
    const crd = await client.get(CRDs, widgetCrd.metadata.name);
    return crd.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  });

  manager = new Manager({
    name: 'widgets',
    kubeConfig: cluster.kc,
    leaderElection: false,
    http: { port: 0, host: '127.0.0.1' },
    log: createLogger({ level: 'warn' }),
  });
  const widgets = manager.informer(Widgets, { namespace: ns() });
  const children = manager.informer(ConfigMaps, {
    namespace: ns(),
    labelSelector: 'app.kubernetes.io/managed-by=widgets',
    // apply() skips a write only when the cached child says this controller applied it.
    managedFieldsDepth: 0,
  });
  const events = manager.eventRecorder(`${GROUP}/widget-controller`);
  manager.addController({
    name: 'widget',
    for: widgets,
    owns: [children],
    workers: 2,
    resyncPeriodMs: 250,
    reconcile: async (key, { namespace, name }) => {
      reconciles++;
      const widget = widgets.getByKey(key);
      if (!widget) return;
      const childName = `${name}-size`;
      await apply(
        manager.client,
        ConfigMaps,
        {
          apiVersion: 'v1',
          kind: 'ConfigMap',
          metadata: {
            name: childName,
            namespace,
            labels: { 'app.kubernetes.io/managed-by': 'widgets' },
            ownerReferences: [
              {
                apiVersion: Widgets.apiVersion,
                kind: Widgets.kind,
                name,
                uid: widget.metadata!.uid!,
                controller: true,
                blockOwnerDeletion: true,
              },
            ],
          },
          data: { size: String(widget.spec.size) },
        },
        { fieldManager: FIELD_MANAGER, current: children.get(childName, namespace) },
      );
      const status = {
        observedGeneration: widget.metadata?.generation,
        child: childName,
        conditions: [
          condition(widget.status?.conditions, {
            type: 'Ready',
            status: 'True',
            reason: 'ChildApplied',
            message: `ConfigMap ${childName} holds size ${widget.spec.size}`,
          }),
        ],
      };
      if (await applyStatus(manager.client, Widgets, widget, status, { fieldManager: FIELD_MANAGER })) {
        await events.normal(widget, 'Resized', `size is now ${widget.spec.size}`, 'Reconcile');
      }
    },
  });
  expect(manager.notReady()).toEqual(['not started']);
  await manager.start();
});

afterAll(async () => {
  await manager?.stop();
  await client.delete(CRDs, widgetCrd.metadata.name).catch(() => {});
});

const writes = async () =>
  (await manager.metrics.restRequests.get()).values
    .filter((v) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(String(v.labels.method)))
    .reduce((n, v) => n + v.value, 0);

async function eventsAbout(name: string): Promise<Event[]> {
  const list = await client.list(Events, { namespace: ns(), fieldSelector: `regarding.name=${name}` });
  return list.items;
}

describe('a controller run by the manager', () => {
  it('applies the child, writes status once, and makes no write on resyncs of an unchanged object', async () => {
    await client.create(Widgets, {
      ...Widgets,
      metadata: { name: 'w1', namespace: ns() },
      spec: { size: 3 },
    });
    await waitFor('w1 to be Ready', async () => {
      const w = await client.get(Widgets, 'w1', ns());
      return w.status?.observedGeneration === 1 && w.status.conditions?.[0]?.status === 'True';
    });
    const child = await client.get(ConfigMaps, 'w1-size', ns());
    expect(child.data).toEqual({ size: '3' });
    expect(child.metadata?.ownerReferences?.[0]).toMatchObject({
      kind: 'Widget',
      name: 'w1',
      controller: true,
    });
    await waitFor('the Resized event', async () => (await eventsAbout('w1')).length === 1);

    const widgetRv = (await client.get(Widgets, 'w1', ns())).metadata?.resourceVersion;
    const childRv = child.metadata?.resourceVersion;
    const writesBefore = await writes();
    const reconcilesBefore = reconciles;
    await waitFor('five resyncs', () => reconciles >= reconcilesBefore + 5, { timeoutMs: 20_000 });
    expect(await writes()).toBe(writesBefore);
    expect((await client.get(Widgets, 'w1', ns())).metadata?.resourceVersion).toBe(widgetRv);
    expect((await client.get(ConfigMaps, 'w1-size', ns())).metadata?.resourceVersion).toBe(childRv);
    expect(await eventsAbout('w1')).toHaveLength(1);
  });

  it('follows a spec change to the child and the status', async () => {
    const w = await client.get(Widgets, 'w1', ns());
    await client.replace(Widgets, { ...w, spec: { size: 5 } });
    await waitFor(
      'the child to hold size 5',
      async () => (await client.get(ConfigMaps, 'w1-size', ns())).data?.size === '5',
    );
    await waitFor(
      'status.observedGeneration 2',
      async () => (await client.get(Widgets, 'w1', ns())).status?.observedGeneration === 2,
    );
    const status = (await client.get(Widgets, 'w1', ns())).status;
    expect(status?.conditions?.[0]?.message).toBe('ConfigMap w1-size holds size 5');
    // The condition did not change status, so its transition time stayed.
    expect(status?.conditions?.[0]?.lastTransitionTime).toBe(w.status?.conditions?.[0]?.lastTransitionTime);
  });

  it('puts a changed child back (the controller owns its fields)', async () => {
    await client.mergePatch(ConfigMaps, 'w1-size', ns(), { data: { size: '999' } });
    await waitFor(
      'the child to be repaired',
      async () => (await client.get(ConfigMaps, 'w1-size', ns())).data?.size === '5',
    );
  });

  it('serves health, readiness and controller-runtime metrics', async () => {
    const base = `http://127.0.0.1:${manager.address!.port}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe('ok');
    const res = await fetch(`${base}/metrics`);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    const success = Number(
      /controller_runtime_reconcile_total\{controller="widget",result="success"\} (\d+)/.exec(text)?.[1],
    );
    expect(success).toBeGreaterThanOrEqual(5);
    for (const series of [
      'controller_runtime_reconcile_total{controller="widget",result="error"} 0',
      'controller_runtime_reconcile_errors_total{controller="widget"} 0',
      'controller_runtime_reconcile_time_seconds_count{controller="widget"}',
      'controller_runtime_active_workers{controller="widget"}',
      'controller_runtime_max_concurrent_reconciles{controller="widget"} 2',
      'workqueue_depth{name="widget"}',
      'workqueue_adds_total{name="widget"}',
      'workqueue_retries_total{name="widget"} 0',
      'workqueue_queue_duration_seconds_bucket{le="1e-8",name="widget"}',
      'workqueue_work_duration_seconds_count{name="widget"}',
      'rest_client_requests_total{host=',
      '# TYPE leader_election_master_status gauge',
    ]) {
      expect(text).toContain(series);
    }
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
  });
});

describe('the event recorder', () => {
  it('aggregates repeats of an event into one Event with a series count', async () => {
    const recorder = manager.eventRecorder(`${GROUP}/widget-controller`);
    const w = await client.get(Widgets, 'w1', ns());
    for (let i = 0; i < 4; i++) await recorder.warning(w, 'Flapping', 'the same thing again', 'Check');
    await recorder.warning(w, 'Flapping', 'something else', 'Check');
    await recorder.flush();
    const flapping = (await eventsAbout('w1')).filter((e) => e.reason === 'Flapping');
    expect(flapping).toHaveLength(2);
    const repeated = flapping.find((e) => e.note === 'the same thing again');
    expect(repeated).toMatchObject({
      type: 'Warning',
      action: 'Check',
      reportingController: `${GROUP}/widget-controller`,
      reportingInstance: manager.identity,
      regarding: { kind: 'Widget', name: 'w1', namespace: ns(), uid: w.metadata?.uid },
      series: { count: 4 },
    });
    expect(flapping.find((e) => e.note === 'something else')?.series).toBeUndefined();
  });
});
