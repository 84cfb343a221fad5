/**
 * The Prediction controller against the real control plane, handing Prediction objects to a
 * prediction engine whose instances are real sidecars over real Cog servers (given directly,
 * as the Deployment controller is not running here).
 */
import { KubeConfig } from '@kubernetes/client-node';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../crds/index.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import { predictionIdFor } from '../../lib/prediction.ts';
import { type ModelServer, startModelServer } from '../../sidecar/testing/model-server.ts';
import { type RunningSidecar, startSidecar } from '../../sidecar/testing/sidecar.ts';
import { PredictionEngine, StaticCatalog, StaticEndpoints } from '../predictions/index.ts';
import { Deployments, Models, ModelVersions } from '../resources.ts';
import { Informer, Manager } from '../runtime/index.ts';
import { addPredictionController, Predictions } from './prediction.ts';
import { applyModel, clientFor, TEST_MANAGER } from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-pred');
const client = clientFor(cluster.kubeconfig);
const servers: ModelServer[] = [];
const sidecars: RunningSidecar[] = [];
const catalog = new StaticCatalog();
const endpoints = new StaticEndpoints();
let running: { manager: Manager; engine: PredictionEngine } | undefined;

async function startController(opts: { firstStatusMs?: number } = {}) {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  const manager = new Manager({
    name: 'prediction-test',
    kubeConfig: kc,
    leaderElection: false,
    http: false,
    log: pino(
      { level: process.env.TEST_LOG ? 'debug' : 'silent' },
      pino.destination(process.env.TEST_LOG ?? '/dev/null'),
    ),
  });
  const engine = new PredictionEngine({ catalog, endpoints, log: manager.log });
  addPredictionController(manager, {
    engine,
    models: manager.informer(Models),
    modelVersions: manager.informer(ModelVersions),
    deployments: manager.informer(Deployments),
    apiBaseUrl: 'http://gateway.test/v1',
    statusIntervalMs: 200,
    ...opts,
  });
  await manager.start();
  return { manager, engine };
}

async function stopController() {
  running?.engine.close();
  await running?.manager.stop();
  running = undefined;
}

async function applyPrediction(name: string, spec: Record<string, unknown>) {
  await client.apply(
    Predictions,
    {
      apiVersion: Predictions.apiVersion,
      kind: Predictions.kind,
      metadata: { name, namespace: ns() },
      spec,
    } as never,
    { fieldManager: TEST_MANAGER },
  );
}

async function statusOf(name: string, statuses: string[], timeoutMs = 30_000) {
  return waitFor(
    `prediction ${name} to be ${statuses.join(' or ')}`,
    async () => {
      const p = await client.get(Predictions, name, ns()).catch(() => undefined);
      return p?.status?.status && statuses.includes(p.status.status) ? p.status : undefined;
    },
    { timeoutMs },
  );
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  const [echo, sleep, tokens] = await Promise.all([
    startModelServer('echo', { concurrency: 4, throttleSeconds: 0 }),
    startModelServer('sleep', { concurrency: 2, throttleSeconds: 0 }),
    startModelServer('tokens', { concurrency: 1, throttleSeconds: 0 }),
  ]);
  servers.push(echo, sleep, tokens);
  await Promise.all(servers.map((s) => s.waitFor(['READY'], 120_000)));
  const e = await startSidecar(echo.url, { concurrency: 4 });
  const s = await startSidecar(sleep.url, { concurrency: 2 });
  const t = await startSidecar(tokens.url, { concurrency: 1 });
  sidecars.push(e, s, t);
  for (const sc of sidecars) {
    await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).status === 200, {
      timeoutMs: 60_000,
    });
  }
  await applyModel(client, ns(), 'echo', { hardware: 'cpu' });
  await applyModel(client, ns(), 'sleep', { hardware: 'cpu' });
  await applyModel(client, ns(), 'tokens', { hardware: 'cpu' });
  await client.apply(
    Models,
    {
      apiVersion: Models.apiVersion,
      kind: Models.kind,
      metadata: { name: 'sleep', namespace: ns() },
      spec: { deployment: 'sleep' },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  for (const [name, sc, concurrency, id] of [
    ['echo', e, 4, 'e'],
    ['sleep', s, 2, '5'],
    ['tokens', t, 1, '7'],
  ] as const) {
    catalog.setDeployment({
      namespace: ns(),
      name,
      model: name,
      versionId: id.repeat(64),
      maxConcurrency: concurrency,
      maxLength: 100,
      maxWaitSeconds: 30,
    });
    endpoints.set(ns(), name, [{ id: `${name}-pod-0`, url: sc.api }]);
  }
  running = await startController();
}, 240_000);

afterAll(async () => {
  await stopController();
  await Promise.all(sidecars.map((s) => s.stop()));
  await Promise.all(servers.map((s) => s.stop()));
});

describe('the Prediction controller', () => {
  it('runs a Prediction on its Deployment and reports it in the status', async () => {
    await applyPrediction('hello', { deployment: 'echo', input: { text: 'hi', repeat: 3 } });
    const st = await statusOf('hello', ['succeeded']);
    expect(st.id).toMatch(/^[a-z2-7]{26}$/);
    expect(st).toMatchObject({ target: 'deployment/echo', output: 'hihihi', versionId: 'e'.repeat(64) });
    expect(st.logs).toContain('echo: 2 characters, 3 times');
    expect(st.metrics?.predictTime).toBeGreaterThan(0);
    expect(st.cost).toMatch(/^\d+(\.\d+)?$/);
    expect(st.conditions?.find((c) => c.type === 'Ready')).toMatchObject({
      status: 'True',
      reason: 'Succeeded',
    });
    expect((await running!.engine.get(st.id!))?.status).toBe('succeeded');
  });

  it('reports the metrics the model recorded, beside its timings and cost', async () => {
    await applyPrediction('counted', { deployment: 'tokens', input: { prompt: 'a b c', max_tokens: 2 } });
    const st = await statusOf('counted', ['succeeded']);
    expect(st.output).toBe('c b');
    expect(st.metrics?.model).toEqual({ input_token_count: 3, output_token_count: 2 });
    expect(st.metrics?.predictTime).toBeGreaterThan(0);
    expect(st.cost).toMatch(/^\d+(\.\d+)?$/);
  });

  it('fails a Prediction with invalid input, saying which field', async () => {
    await applyPrediction('bad-input', { deployment: 'echo', input: { repeat: 1 } });
    const st = await statusOf('bad-input', ['failed']);
    expect(st.error).toContain('text is required');
  });

  it('cancels on spec.cancel, and deletes a finished one after ttlSecondsAfterFinished', async () => {
    await applyPrediction('long', { model: 'sleep', input: { seconds: 60 }, ttlSecondsAfterFinished: 1 });
    await statusOf('long', ['processing']);
    await client.apply(
      Predictions,
      {
        apiVersion: Predictions.apiVersion,
        kind: Predictions.kind,
        metadata: { name: 'long', namespace: ns() },
        spec: { model: 'sleep', input: { seconds: 60 }, ttlSecondsAfterFinished: 1, cancel: true },
      } as never,
      { fieldManager: TEST_MANAGER },
    );
    const st = await statusOf('long', ['canceled'], 15_000);
    expect(st.target).toBe('model/sleep');
    await waitFor(
      'the finished prediction to be deleted',
      async () => (await client.get(Predictions, 'long', ns()).catch(() => undefined)) === undefined,
    );
  });

  it('writes the status of a prediction that ends before its first status is due once, finished', async () => {
    await stopController();
    running = await startController({ firstStatusMs: 60_000 });
    const seen: string[] = [];
    const watching = new Informer(client, Predictions, { namespace: ns() });
    watching.addEventHandler({
      onAdd: (p) => p.metadata.name === 'once' && seen.push(p.status?.status ?? '(none)'),
      onUpdate: (_, p) => p.metadata.name === 'once' && seen.push(p.status?.status ?? '(none)'),
    });
    watching.start();
    try {
      await watching.waitForSync();
      await applyPrediction('once', { deployment: 'sleep', input: { seconds: 2 } });
      const obj = await waitFor('the object', () => client.get(Predictions, 'once', ns()));
      const id = predictionIdFor(obj.metadata.uid!);
      // Running, and nothing written yet.
      await waitFor(
        'the prediction to run',
        async () => (await running!.engine.get(id))?.status === 'processing',
      );
      expect((await client.get(Predictions, 'once', ns()))?.status?.status).toBeUndefined();
      const st = await statusOf('once', ['succeeded']);
      expect(st).toMatchObject({ id, target: 'deployment/sleep', output: 'slept 2 s' });
      expect(st.startedAt).toBeDefined();
      await waitFor('the watch to show it', () => seen.includes('succeeded'));
      expect(seen).toEqual(['(none)', 'succeeded']);
    } finally {
      await watching.stop();
      await stopController();
      running = await startController();
    }
  });

  it('finds a prediction sent before a restart again by the id its uid gives, its status not written yet', async () => {
    await stopController();
    running = await startController({ firstStatusMs: 60_000 });
    await applyPrediction('unwritten', { deployment: 'sleep', input: { seconds: 3 } });
    const obj = await waitFor('the object', () => client.get(Predictions, 'unwritten', ns()));
    const id = predictionIdFor(obj.metadata.uid!);
    const before = await waitFor('the prediction to run', async () => {
      const rec = await running!.engine.get(id);
      return rec?.status === 'processing' ? rec : undefined;
    });
    expect((await client.get(Predictions, 'unwritten', ns()))?.status?.status).toBeUndefined();
    await stopController();
    running = await startController();
    const after = await statusOf('unwritten', ['succeeded'], 30_000);
    expect(after.id).toBe(id);
    expect(after.output).toBe('slept 3 s');
    // The instance ran it once: its own record started when the first operator sent it.
    const onInstance = (await (await fetch(`${sidecars[1]!.api}/predictions/${id}`)).json()) as {
      started_at: string;
    };
    expect(Date.parse(onInstance.started_at)).toBe(before.startedAt);
    expect(Date.parse(after.startedAt!)).toBe(before.startedAt);
  });

  it('re-attaches to a running prediction after a restart, by its id', async () => {
    await applyPrediction('survivor', { deployment: 'sleep', input: { seconds: 3 } });
    const before = await statusOf('survivor', ['processing']);
    await stopController();
    running = await startController();
    const after = await statusOf('survivor', ['succeeded'], 30_000);
    expect(after.id).toBe(before.id);
    expect(after.startedAt).toBe(before.startedAt);
    expect(after.output).toBe('slept 3 s');
    // The instance ran it once: its own record started when the first operator sent it.
    const onInstance = (await (await fetch(`${sidecars[1]!.api}/predictions/${after.id}`)).json()) as {
      started_at: string;
    };
    expect(Date.parse(onInstance.started_at)).toBe(Date.parse(before.startedAt!));
  });
});
