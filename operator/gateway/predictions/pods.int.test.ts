/**
 * Predictions end to end on a control plane of its own, whose only node is the local pod
 * runner's: the operator's controllers run a modelplane Deployment of
 * `modelplane.local/echo:dev` as a real Cog server and sidecar on the pod's loopback
 * address; the prediction engine finds the pod through its Pod watch, holds a prediction
 * until the pod is Ready, and runs predictions on it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../../crds/index.ts';
import { LocalCluster } from '../../../e2e/cluster/local.ts';
import { waitFor } from '../../../e2e/cluster/processes.ts';
import { PodRunner, runnerPools } from '../../../e2e/podrunner/runner.ts';
import { call } from '../../../sidecar/testing/client.ts';
import { openSse } from '../../../sidecar/testing/sse.ts';
import { Deployments, Models, ModelVersions } from '../../controllers/resources.ts';
import { applyDefaultHardware, applyModel, clientFor, startOperator } from '../../controllers/testing.ts';
import { createLogger, Informer, type KubeClient, type Manager } from '../../runtime/index.ts';
import { POD_SELECTOR, PodResource } from './endpoints.ts';
import type { PredictionView } from './record.ts';
import { type PredictionService, predictionService } from './service.ts';
import { serveRoutes, type TestServer } from './testing.ts';

const SIDECAR_IMAGE = 'ghcr.io/modelplane/modelplane:e2e';
const NS = 'predictions';

let cluster: LocalCluster | undefined;
let runner: PodRunner | undefined;
let operator: Manager | undefined;
let client: KubeClient;
let svc: PredictionService;
let gw: TestServer;
const informers: Informer[] = [];
const pokes: string[] = [];

type P = PredictionView & { detail?: string };
const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  call<P>('POST', `${gw.baseUrl}${path}`, body, headers);

beforeAll(async () => {
  cluster = await LocalCluster.start({ pools: [] });
  client = clientFor(cluster.kubeconfig);
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(client);
  runner = new PodRunner({
    kubeconfig: cluster.kubeconfig,
    name: 'preds',
    pools: runnerPools('preds', { t4: 1 }),
    modelplaneImages: [SIDECAR_IMAGE],
    logDir: mkdtempSync(join(tmpdir(), 'modelplane-predictions-pods-')),
    log: createLogger({ level: process.env.LOG_LEVEL ?? 'warn' }),
  });
  await runner.start();
  operator = await startOperator(cluster.kubeconfig, { sidecarImage: SIDECAR_IMAGE, resyncPeriodMs: 60_000 });
  const namespaces = { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false };
  await client.create(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
  await waitFor(`the default ServiceAccount in ${NS}`, async () =>
    client.find(
      { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
      'default',
      NS,
    ),
  );
  const log = pino({ level: 'silent' });
  const deployments = new Informer(client, Deployments, { log });
  const models = new Informer(client, Models, { log });
  const modelVersions = new Informer(client, ModelVersions, { log });
  const pods = new Informer(client, PodResource, { labelSelector: POD_SELECTOR, log });
  informers.push(deployments, models, modelVersions, pods);
  for (const i of informers) i.start();
  await Promise.all(informers.map((i) => i.waitForSync({ timeoutMs: 30_000 })));
  svc = predictionService({ deployments, models, modelVersions, pods, log, secretFor: () => 'whsec_AAAA' });
  svc.engine.onPoke((ns, name) => pokes.push(`${ns}/${name}`));
  gw = await serveRoutes(svc.routes);
}, 240_000);

afterAll(async () => {
  svc?.engine.close();
  await gw?.close();
  await Promise.all(informers.map((i) => i.stop()));
  await operator?.stop();
  await runner?.stop();
  await cluster?.stop();
}, 120_000);

describe('predictions on pods found by the Pod watch', () => {
  it('holds a prediction until the new Deployment’s pod is Ready, then runs it there', async () => {
    await applyModel(client, NS, 'echo', { hardware: 'gpu-t4', image: 'modelplane.local/echo:dev' });
    await waitFor('the gateway to see the Deployment', () => svc.catalog.deployment(NS, 'echo'));
    expect(svc.endpoints.ready(NS, 'echo')).toEqual([]);
    const r = await post(`/deployments/${NS}/echo/predictions`, { input: { text: 'first' } });
    expect(r.status).toBe(201);
    expect(r.body.status).toBe('starting');
    expect(pokes).toContain(`${NS}/echo`);
    const done = await waitFor(
      'the held prediction to finish',
      async () => {
        const p = await call<P>('GET', r.body.urls.get);
        return ['succeeded', 'failed', 'canceled'].includes(p.body.status) ? p.body : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 200 },
    );
    expect(done).toMatchObject({ status: 'succeeded', output: 'first' });
    const [ep] = svc.endpoints.ready(NS, 'echo');
    expect(ep?.url).toMatch(/^http:\/\/127\.10\.\d+\.\d+:8080$/);
    expect(svc.engine.get(done.id)?.instance).toBe(ep?.id);
  }, 120_000);

  it('runs by version id once the Deployment reports the version it runs, and streams', async () => {
    const versionId = await waitFor('the Deployment to report its version id', async () => {
      const d = await client.get(Deployments, 'echo', NS);
      return d.status?.versionId;
    });
    await waitFor(
      'the gateway to see the version id',
      () => svc.catalog.deployment(NS, 'echo')?.versionId === versionId,
    );
    const r = await post(
      '/predictions',
      { version: versionId, input: { text: 'by id', repeat: 2 } },
      { prefer: 'wait=30' },
    );
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      status: 'succeeded',
      output: 'by idby id',
      version: versionId,
      model: `${NS}/echo`,
    });
    const events = await (await openSse(r.body.urls.stream!)).events;
    expect(events.map((e) => e.event)).toEqual(['logs', 'output', 'done']);
    expect(events[1]!.data).toBe('by idby id');
  });
});
