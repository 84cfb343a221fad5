/**
 * Predictions end to end on a control plane of its own, whose only node is the local pod
 * runner's: `modelplane operator` (controllers and gateway, in this process) runs a
 * modelplane Deployment of `modelplane.local/echo:dev` as a real Cog server and sidecar on
 * the pod's loopback address; the gateway finds the pod through its Pod watch, holds a
 * prediction until the pod is Ready, and the official `replicate` client and a Prediction
 * object run predictions on it.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Replicate from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../../crds/index.ts';
import { LocalCluster } from '../../../harness/cluster/local.ts';
import { PodRunner, runnerPools } from '../../../harness/podrunner/runner.ts';
import { waitFor } from '../../../harness/processes.ts';
import { Predictions } from '../../controllers/prediction.ts';
import {
  applyDefaultHardware,
  applyModel,
  clientFor,
  operatorConfig,
  startOperator,
  TEST_MANAGER,
} from '../../controllers/testing.ts';
import type { Operator } from '../../main.ts';
import { Deployments, Models } from '../../resources.ts';
import { createLogger, type KubeClient } from '../../runtime/index.ts';
import { createApiToken } from '../tokens.ts';

const SIDECAR_IMAGE = 'ghcr.io/modelplane/modelplane:e2e';
const NS = 'predictions';
const SYSTEM = 'modelplane-system';

let cluster: LocalCluster | undefined;
let runner: PodRunner | undefined;
let operator: Operator | undefined;
let client: KubeClient;
let replicate: Replicate;

async function namespace(name: string) {
  const namespaces = { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false };
  await client.create(namespaces, { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  await waitFor(`the default ServiceAccount in ${name}`, async () =>
    client.find(
      { apiVersion: 'v1', kind: 'ServiceAccount', plural: 'serviceaccounts', namespaced: true },
      'default',
      name,
    ),
  );
}

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
  await namespace(NS);
  await namespace(SYSTEM);
  const base = operatorConfig();
  operator = await startOperator(cluster.kubeconfig, {
    roles: ['controllers', 'gateway'],
    sidecarImage: SIDECAR_IMAGE,
    resyncPeriodMs: 60_000,
    gateway: { ...base.gateway, tokenNamespace: SYSTEM },
  });
  const gateway = operator.gateway!;
  const { token } = await createApiToken(client, { name: 'e2e', namespaces: [NS], tokenNamespace: SYSTEM });
  replicate = new Replicate({ auth: token, baseUrl: `${gateway.url}/v1` });
  await waitFor('the gateway to accept the API token', async () => {
    const res = await fetch(`${gateway.url}/v1/predictions`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return res.ok;
  });
}, 240_000);

afterAll(async () => {
  await operator?.stop();
  await runner?.stop();
  await cluster?.stop();
}, 120_000);

describe('predictions on pods found by the Pod watch', () => {
  it('holds a prediction until the new Deployment’s pod is Ready, then runs it there', async () => {
    await applyModel(client, NS, 'echo', { hardware: 'gpu-t4', image: 'modelplane.local/echo:dev' });
    const gateway = operator!.gateway!;
    await waitFor('the gateway to see the Deployment', () => gateway.caches.deployments.get('echo', NS));
    const p = await replicate.deployments.predictions.create(NS, 'echo', { input: { text: 'first' } });
    expect(p.status).toBe('starting');
    const done = await replicate.wait(p, { interval: 200 });
    expect(done).toMatchObject({ status: 'succeeded', output: 'first', deployment: `${NS}/echo` });
  }, 120_000);

  it('runs by model, by version id and streams, through the replicate client', async () => {
    await client.apply(
      Models,
      {
        apiVersion: Models.apiVersion,
        kind: Models.kind,
        metadata: { name: 'echo', namespace: NS },
        spec: { deployment: 'echo' },
      } as never,
      { fieldManager: TEST_MANAGER },
    );
    const versionId = await waitFor('the Deployment to report its version id', async () => {
      const d = await client.get(Deployments, 'echo', NS);
      return d.status?.versionId;
    });
    await waitFor(
      'the gateway to see the model’s deployment',
      () => operator!.gateway!.caches.models.get('echo', NS)?.spec.deployment,
    );
    expect(await replicate.run(`${NS}/echo`, { input: { text: 'by model' } })).toBe('by model');
    expect(await replicate.run(`${NS}/echo:${versionId}`, { input: { text: 'id', repeat: 2 } })).toBe('idid');
    const events: string[] = [];
    for await (const e of replicate.stream(`${NS}/echo`, { input: { text: 'streamed' } })) {
      events.push(`${e.event}:${e.data}`);
    }
    expect(events).toContain('output:streamed');
    expect(events.at(-1)).toBe('done:{}');
  });

  it('runs a Prediction object through the same queue', async () => {
    await client.apply(
      Predictions,
      {
        apiVersion: Predictions.apiVersion,
        kind: Predictions.kind,
        metadata: { name: 'hello', namespace: NS },
        spec: { model: 'echo', input: { text: 'from kubectl' } },
      } as never,
      { fieldManager: TEST_MANAGER },
    );
    const st = await waitFor(
      'the Prediction to succeed',
      async () => {
        const p = await client.get(Predictions, 'hello', NS);
        return p.status?.status === 'succeeded' ? p.status : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(st).toMatchObject({ output: 'from kubectl', target: 'model/echo' });
    expect(st.id).toMatch(/^[a-z2-7]{26}$/);
    const viaApi = await replicate.predictions.get(st.id!);
    expect(viaApi).toMatchObject({ status: 'succeeded', output: 'from kubectl' });
  });
});
