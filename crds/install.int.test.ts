/**
 * The CRDs on a real API server: they install and are served, kubectl explains their fields,
 * lists them under `kubectl get modelplane`, prints their columns, and keeps the modelplane
 * Deployment apart from apps/v1's.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiextensionsV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../harness/cluster/testing.ts';
import { API_VERSION, GROUP, RESOURCE } from './constants.ts';
import { type CustomResourceDefinition, crds } from './crd.ts';
import { ScalingSchema } from './deployment.ts';
import { installCrds } from './install.ts';
import { KINDS } from './kinds.ts';
import { valid } from './testdata/objects.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'crds');
const ext = cluster.kc.makeApiClient(ApiextensionsV1Api);
// A discovery cache of this file's own, so kubectl sees the CRDs installed below.
const cacheDir = mkdtempSync(join(tmpdir(), 'crds-kubectl-'));
const kubectl = (...args: string[]) => cluster.kubectl(`--cache-dir=${cacheDir}`, ...args);

afterAll(() => rmSync(cacheDir, { recursive: true, force: true }));

describe('installCrds', () => {
  it('installs all five CRDs and waits until they are Established and served', async () => {
    const installed = await installCrds(cluster.kubeconfig);
    expect(installed.map((c) => c.metadata.name).sort()).toEqual(Object.values(RESOURCE).sort());
    for (const crd of installed) {
      const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
      const status = (t: string) => got.status?.conditions?.find((c) => c.type === t)?.status;
      expect(status('Established')).toBe('True');
      expect(status('NamesAccepted')).toBe('True');
    }
    // Served: listing each kind works at once.
    for (const crd of installed) {
      const list = await cluster.objects.list(API_VERSION, crd.spec.names.kind);
      expect(list.items).toBeInstanceOf(Array);
    }
  });

  it('stores the CRDs exactly as generated: CEL rules, int-or-string and columns included', async () => {
    for (const crd of crds()) {
      const stored = JSON.parse(await kubectl('get', 'crd', crd.metadata.name, '-o', 'json')) as {
        spec: CustomResourceDefinition['spec'];
      };
      expect(stored.spec.versions).toEqual(crd.spec.versions);
      expect(stored.spec.names).toEqual(crd.spec.names);
    }
  });

  it('changes nothing when the CRDs are already installed', async () => {
    await installCrds(cluster.kubeconfig);
    const before = await Promise.all(
      crds().map(
        async (c) =>
          (await ext.readCustomResourceDefinition({ name: c.metadata.name })).metadata?.resourceVersion,
      ),
    );
    await installCrds(cluster.kubeconfig);
    const after = await Promise.all(
      crds().map(
        async (c) =>
          (await ext.readCustomResourceDefinition({ name: c.metadata.name })).metadata?.resourceVersion,
      ),
    );
    expect(after).toEqual(before);
  });
});

describe('kubectl', () => {
  beforeAll(async () => {
    await installCrds(cluster.kubeconfig);
    const hw = valid.hardwareClass('crds-test-gpu-t4');
    await cluster.objects.create(hw);
    for (const make of [valid.model, valid.modelVersion, valid.deployment, valid.prediction]) {
      const o = make() as { metadata: { name: string; namespace?: string } };
      o.metadata.namespace = ns();
      await cluster.objects.create(o);
    }
    // An apps/v1 Deployment of the same name as the modelplane one.
    await cluster.apps.createNamespacedDeployment({
      namespace: ns(),
      body: {
        metadata: { name: 'corpus-deployment' },
        spec: {
          replicas: 0,
          selector: { matchLabels: { app: 'corpus' } },
          template: {
            metadata: { labels: { app: 'corpus' } },
            spec: { containers: [{ name: 'web', image: 'nginx:1.27' }] },
          },
        },
      },
    });
  });

  afterAll(async () => {
    await cluster.objects.delete(valid.hardwareClass('crds-test-gpu-t4')).catch(() => undefined);
  });

  it('explains the Deployment scaling settings with their descriptions', async () => {
    const out = await kubectl('explain', 'deployments.modelplane.dev.spec.scaling');
    expect(out).toMatch(/^GROUP:\s+modelplane\.dev$/m);
    expect(out).toMatch(/^KIND:\s+Deployment$/m);
    const flat = out.replace(/\s+/g, ' ');
    expect(flat).toContain(ScalingSchema.description);
    for (const field of Object.keys(ScalingSchema.shape))
      expect(out).toMatch(new RegExp(`^  ${field}\\s+<integer>`, 'm'));
    const panic = (await kubectl('explain', 'mpdeploy.spec.scaling.panicWindowSeconds')).replace(/\s+/g, ' ');
    expect(panic).toContain('Seconds of demand averaged to detect a burst.');
    expect(panic).toContain('Default: 6.');
  });

  it('explains nested fields of every kind', async () => {
    const cases: Array<[string, RegExp]> = [
      ['hardwareclasses.spec.gpu.products', /nvidia\.com\/gpu\.product/],
      ['models.spec.deployment', /serves predictions for the model itself/],
      ['modelversions.spec.env.valueFrom.secretKeyRef', /A key of a Secret in this namespace/],
      ['predictions.spec.webhookEventsFilter', /start, output, logs, completed/],
      ['predictions.status.metrics.predictTime', /the billed figure/],
      ['deployments.modelplane.dev.status.conditions.reason', /CamelCase/],
    ];
    for (const [path, want] of cases) {
      expect((await kubectl('explain', path)).replace(/\s+/g, ' '), path).toMatch(want);
    }
  });

  it('lists every kind under `kubectl get modelplane`', async () => {
    const out = await kubectl('get', 'modelplane', '-A', '-o', 'name');
    const kinds = new Set(
      out
        .trim()
        .split('\n')
        .map((l) => l.split('/')[0]),
    );
    expect([...kinds].sort()).toEqual(KINDS.map((k) => `${k.singular}.${GROUP}`).sort());
    const table = await kubectl('get', 'modelplane', '-n', ns());
    expect(table).toContain('deployment.modelplane.dev/corpus-deployment');
    expect(table).toContain('prediction.modelplane.dev/corpus-prediction');
  });

  it('prints the printer columns', async () => {
    const header = (out: string) =>
      out
        .split('\n')[0]!
        .trim()
        .split(/\s{2,}/);
    expect(header(await kubectl('get', 'deployments.modelplane.dev', '-n', ns()))).toEqual([
      'NAME',
      'MODEL',
      'VERSION',
      'HARDWARE',
      'MIN',
      'MAX',
      'READY',
      'DESIRED',
      'QUEUE',
      'AGE',
    ]);
    const row = (await kubectl('get', 'mpdeploy', 'corpus-deployment', '-n', ns(), '--no-headers'))
      .trim()
      .split(/\s+/);
    expect(row.slice(0, 6)).toEqual([
      'corpus-deployment',
      'corpus-model',
      'corpus-model-v1',
      'gpu-t4',
      '0',
      '2',
    ]);
    expect(header(await kubectl('get', 'predictions', '-n', ns()))).toEqual([
      'NAME',
      'TARGET',
      'STATUS',
      'PREDICT TIME',
      'AGE',
    ]);
    const hw = await kubectl('get', 'hwc', 'crds-test-gpu-t4');
    expect(header(hw)).toEqual(['NAME', 'GPU PRODUCTS', 'GPUS', 'PRICE/S', 'AGE']);
    expect(hw).toMatch(/crds-test-gpu-t4\s+\["Tesla-T4"\]\s+1\s+0\.000225\s/);
  });

  it('keeps the modelplane Deployment apart from apps/v1 Deployment', async () => {
    const apps = await kubectl('get', 'deployments', '-n', ns(), '-o', 'jsonpath={.items[*].apiVersion}');
    expect(apps).toBe('apps/v1');
    for (const name of ['deployments.modelplane.dev', 'mpdeploy', 'mpd']) {
      const out = await kubectl('get', name, '-n', ns(), '-o', 'jsonpath={.items[*].apiVersion}');
      expect(out, name).toBe(API_VERSION);
    }
  });

  it('selects Deployments and Predictions by their target fields', async () => {
    const hit = await kubectl(
      'get',
      'mpdeploy',
      '-n',
      ns(),
      '--field-selector',
      'spec.hardware=gpu-t4',
      '-o',
      'name',
    );
    expect(hit.trim()).toBe('deployment.modelplane.dev/corpus-deployment');
    const miss = await kubectl(
      'get',
      'mpdeploy',
      '-n',
      ns(),
      '--field-selector',
      'spec.hardware=cpu',
      '-o',
      'name',
    );
    expect(miss.trim()).toBe('');
    const p = await kubectl(
      'get',
      'predictions',
      '-n',
      ns(),
      '--field-selector',
      'spec.deployment=corpus-deployment',
      '-o',
      'name',
    );
    expect(p.trim()).toBe('prediction.modelplane.dev/corpus-prediction');
  });

  it('applies the defaults of the schema', async () => {
    const d = JSON.parse(await kubectl('get', 'mpdeploy', 'corpus-deployment', '-n', ns(), '-o', 'json')) as {
      spec: Record<string, unknown>;
    };
    expect(d.spec.scaling).toEqual({
      targetPerInstance: 4,
      stableWindowSeconds: 60,
      panicWindowSeconds: 6,
      panicThresholdPercent: 200,
      scaleDownDelaySeconds: 60,
      scaleToZeroAfterSeconds: 300,
    });
    expect(d.spec.rollout).toEqual({
      strategy: 'RollingUpdate',
      maxSurge: 1,
      maxUnavailable: 0,
      progressDeadlineSeconds: 1800,
    });
    expect(d.spec.queue).toEqual({ maxLength: 1000, maxWaitSeconds: 300 });
    const m = JSON.parse(
      await kubectl('get', 'modelversions', 'corpus-model-v1', '-n', ns(), '-o', 'json'),
    ) as {
      spec: Record<string, unknown>;
    };
    expect(m.spec).toMatchObject({ setupTimeoutSeconds: 600, predictTimeoutSeconds: 1800 });
  });
});
