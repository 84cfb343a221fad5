/**
 * The prediction API as the official `replicate` clients see it (the npm one in this process,
 * the Python one in a child process): the gateway (its server, API token auth, caches of the
 * cluster's Models, versions and Deployments) runs in this process with the prediction routes;
 * the Deployments' instances are real sidecars over real Cog servers, given to the engine
 * directly. Needs `make python`.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Replicate from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../../crds/index.ts';
import { useCluster, useNamespace } from '../../../harness/cluster/testing.ts';
import { waitFor } from '../../../harness/processes.ts';
import { pythonEnv } from '../../../harness/python.ts';
import { add, format, fromNumber, multiply, parseDecimal } from '../../../lib/decimal.ts';
import { type ModelServer, modelsDir, startModelServer } from '../../../sidecar/testing/model-server.ts';
import { type RunningSidecar, startSidecar } from '../../../sidecar/testing/sidecar.ts';
import { addControllers } from '../../controllers/index.ts';
import { applyDefaultHardware, clientFor, TEST_MANAGER } from '../../controllers/testing.ts';
import { InformerCatalog, PredictionEngine, StaticEndpoints } from '../../predictions/index.ts';
import { Deployments, Models, ModelVersions, Workloads } from '../../resources.ts';
import { createLogger, Manager } from '../../runtime/index.ts';
import { addGateway, type Gateway } from '../index.ts';
import { createApiToken } from '../tokens.ts';
import { predictionRoutes } from './routes.ts';
import { StreamTokens } from './stream-token.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-rep');
const tokenNs = useNamespace(cluster, 'mp-rep-system');
const admin = clientFor(cluster.kubeconfig);
const endpoints = new StaticEndpoints();
const tokens = new StreamTokens();
const servers: ModelServer[] = [];
const sidecars: RunningSidecar[] = [];
const versionIds: Record<string, string> = {};
let manager: Manager;
let gateway: Gateway;
let engine: PredictionEngine;
let token = '';

const MODELS = [
  ['echo', 4],
  ['sleep', 2],
  ['stream', 1],
  ['tokens', 1],
] as const;

/** The price per second of the test sidecars (sidecar/testing/sidecar.ts). */
const PRICE = '0.000225';

/** What a prediction that ran `predictTime` seconds costs at PRICE, as the sidecar meters it. */
const costOf = (predictTime: number) => format(multiply(fromNumber(predictTime, 6), parseDecimal(PRICE)));

/** The tokens model is priced per token recorded, and by hardware time besides. */
const TOKEN_PRICING = {
  hardwareTime: true,
  perUnit: { input_token_count: '0.0000005', output_token_count: '0.0000015' },
};
/** What a tokens prediction costs: its seconds at PRICE plus its tokens at TOKEN_PRICING. */
const tokenCostOf = (predictTime: number, input: number, output: number) =>
  format(
    add(
      add(
        multiply(fromNumber(predictTime, 6), parseDecimal(PRICE)),
        multiply(parseDecimal(String(input)), parseDecimal('0.0000005')),
      ),
      multiply(parseDecimal(String(output)), parseDecimal('0.0000015')),
    ),
  );

/** Runs `script` with the official Python client, `client` bound to the gateway; its JSON answer. */
function python(script: string): Promise<unknown> {
  const program = [
    'import json, sys, replicate',
    'client = replicate.Client(api_token=sys.argv[1], base_url=sys.argv[2])',
    script,
  ].join('\n');
  return new Promise((resolve, reject) => {
    execFile(
      join(pythonEnv(), 'bin', 'python'),
      ['-c', program, token, gateway.url],
      { timeout: 60_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`python: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout));
      },
    );
  });
}

function client(auth = token): Replicate {
  return new Replicate({ auth, baseUrl: `${gateway.url}/v1` });
}

/** The error a client call rejects with, and the HTTP status of its response. */
async function failure(p: Promise<unknown>): Promise<{ status: number; message: string }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { response?: Response };
    return { status: e.response?.status ?? 0, message: e.message };
  }
  throw new Error('the call succeeded');
}

async function applyModel(name: string, concurrency: number): Promise<string> {
  const schema = JSON.parse(readFileSync(join(modelsDir, name, '.cog', 'openapi_schema.json'), 'utf8'));
  const apply = (type: typeof Models | typeof ModelVersions | typeof Deployments, obj: object) =>
    admin.apply(type as typeof Models, obj as never, { fieldManager: TEST_MANAGER });
  await apply(Models, {
    apiVersion: Models.apiVersion,
    kind: Models.kind,
    metadata: { name, namespace: ns() },
    spec: { deployment: name },
  });
  await apply(ModelVersions, {
    apiVersion: ModelVersions.apiVersion,
    kind: ModelVersions.kind,
    metadata: { name: `${name}-v1`, namespace: ns() },
    spec: {
      model: name,
      image: `modelplane.local/${name}:dev`,
      cogVersion: '0.23.1',
      maxConcurrency: concurrency,
      openapiSchema: schema,
      ...(name === 'tokens' ? { pricing: TOKEN_PRICING } : {}),
    },
  });
  await apply(Deployments, {
    apiVersion: Deployments.apiVersion,
    kind: Deployments.kind,
    metadata: { name, namespace: ns() },
    spec: { model: name, version: `${name}-v1`, hardware: 'cpu', minInstances: 0, maxInstances: 1 },
  });
  return waitFor(
    `the id of ${name}-v1`,
    async () => (await admin.get(ModelVersions, `${name}-v1`, ns())).status?.id,
  );
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(admin);
  const started = await Promise.all(
    MODELS.map(([name, concurrency]) => startModelServer(name, { concurrency, throttleSeconds: 0 })),
  );
  servers.push(...started);
  await Promise.all(started.map((s) => s.waitFor(['READY'], 120_000)));
  for (const [i, [, concurrency]] of MODELS.entries()) {
    const pricing = MODELS[i]![0] === 'tokens' ? TOKEN_PRICING : undefined;
    const sc = await startSidecar(started[i]!.url, { concurrency, pricing });
    sidecars.push(sc);
    await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).status === 200, {
      timeoutMs: 60_000,
    });
  }
  manager = new Manager({
    name: 'modelplane-predictions-test',
    kubeConfig: cluster.kc,
    leaderElection: false,
    http: false,
    shutdownTimeoutMs: 5_000,
    log: createLogger({ level: 'silent' }),
  });
  addControllers(manager, { sidecarImage: 'registry.example.com/modelplane:test' });
  gateway = addGateway(manager, {
    address: { host: '127.0.0.1', port: 0 },
    tokenNamespace: tokenNs(),
    routes: (gw) => {
      const catalog = new InformerCatalog(gw.caches);
      engine = new PredictionEngine({
        catalog,
        endpoints,
        log: manager.log,
        streamUrl: (rec) => tokens.url(rec),
        secretFor: (namespace) => gw.webhookSecrets.get(namespace),
      });
      return [predictionRoutes({ engine, catalog, tokens })];
    },
  });
  await manager.start();
  for (const [i, [name, concurrency]] of MODELS.entries()) {
    versionIds[name] = await applyModel(name, concurrency);
    endpoints.set(ns(), name, [{ id: `${name}-0`, url: sidecars[i]!.api }]);
  }
  ({ token } = await createApiToken(admin, { name: 'ci', namespaces: [ns()], tokenNamespace: tokenNs() }));
  await waitFor('the gateway to accept the API token and see the deployments', async () => {
    const res = await fetch(`${gateway.url}/v1/deployments/${ns()}/stream`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return (
      res.ok && MODELS.every(([name]) => gateway.caches.modelVersions.get(`${name}-v1`, ns())?.status?.id)
    );
  });
}, 240_000);

afterAll(async () => {
  await manager?.stop();
  engine?.close();
  for (const w of (await admin.list(Workloads, { namespace: ns() })).items) {
    await admin.delete(Workloads, w.metadata?.name ?? '', ns(), { propagationPolicy: 'Background' });
  }
  await Promise.all(sidecars.map((s) => s.stop()));
  await Promise.all(servers.map((s) => s.stop()));
});

describe('the replicate npm client against the gateway', () => {
  it('runs owner/name and owner/name:version', async () => {
    const replicate = client();
    expect(await replicate.run(`${ns()}/echo`, { input: { text: 'by name' } })).toBe('by name');
    const byVersion = await replicate.run(`${ns()}/echo:${versionIds.echo}`, {
      input: { text: 'v', repeat: 3 },
    });
    expect(byVersion).toBe('vvv');
    // A run longer than a held request: the client polls until it ends.
    expect(
      await replicate.run(`${ns()}/sleep`, { input: { seconds: 1.5 }, wait: { mode: 'block', timeout: 1 } }),
    ).toBe('slept 1.5 s');
  });

  it('creates deployment predictions held with wait and followed by polling; gets and lists them', async () => {
    const replicate = client();
    const held = await replicate.deployments.predictions.create(ns(), 'echo', {
      input: { text: 'held' },
      wait: 30,
    });
    expect(held).toMatchObject({ status: 'succeeded', output: 'held', deployment: `${ns()}/echo` });
    const started = await replicate.deployments.predictions.create(ns(), 'sleep', { input: { seconds: 1 } });
    // Without wait the answer is at once, in its real state: taken by the idle instance.
    expect(started.status).toBe('processing');
    const polled = await replicate.wait(started, { interval: 100 });
    expect(polled).toMatchObject({ id: started.id, status: 'succeeded', output: 'slept 1 s' });
    const got = await replicate.predictions.get(held.id);
    expect(got).toEqual(held);
    const page = await replicate.predictions.list();
    expect(page.results.map((p) => p.id)).toEqual(expect.arrayContaining([held.id, started.id]));
    expect(page.results.findIndex((p) => p.id === started.id)).toBeLessThan(
      page.results.findIndex((p) => p.id === held.id),
    );
  });

  it('cancels a prediction', async () => {
    const replicate = client();
    const p = await replicate.deployments.predictions.create(ns(), 'sleep', { input: { seconds: 60 } });
    await waitFor('it to run', async () => (await replicate.predictions.get(p.id)).status === 'processing');
    const canceled = await replicate.predictions.cancel(p.id);
    expect(canceled.id).toBe(p.id);
    const end = await replicate.wait(p, { interval: 100 });
    expect(end.status).toBe('canceled');
  });

  it('streams output with stream()', async () => {
    const replicate = client();
    const events: { event: string; data: string }[] = [];
    for await (const e of replicate.stream(`${ns()}/stream`, { input: { prompt: 'alpha beta gamma' } })) {
      events.push({ event: e.event, data: e.data });
    }
    expect(events.filter((e) => e.event === 'output').map((e) => e.data)).toEqual([
      'alpha ',
      'beta ',
      'gamma ',
    ]);
    expect(events.at(-1)?.event).toBe('done');
  });

  it('surfaces errors as the client’s errors with the gateway’s detail', async () => {
    const replicate = client();
    const bad = await failure(
      replicate.deployments.predictions.create(ns(), 'echo', { input: { repeat: 0 } }),
    );
    expect(bad.status).toBe(422);
    expect(bad.message).toContain('text is required');
    const unknown = await failure(replicate.predictions.create({ version: 'f'.repeat(64), input: {} }));
    expect(unknown.status).toBe(422);
    expect(unknown.message).toContain(`no deployment runs version ${'f'.repeat(64)}`);
    const missing = await failure(replicate.predictions.get('aaaaaaaaaaaaaaaaaaaaaaaaaa'));
    expect(missing.status).toBe(404);
    const denied = await failure(client('r8_not-a-token').predictions.list());
    expect(denied.status).toBe(401);
    await expect(replicate.run(`${ns()}/echo`, { input: { text: 5 } })).rejects.toThrow(
      /input.text must be of type string/,
    );
  });
});

describe("a model's own metrics and the cost", () => {
  const prompt = 'one two three four five';

  it('are on the HTTP prediction object', async () => {
    const res = await fetch(`${gateway.url}/v1/deployments/${ns()}/tokens/predictions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', prefer: 'wait=30' },
      body: JSON.stringify({ input: { prompt, max_tokens: 3 } }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as {
      status: string;
      output: unknown;
      metrics: Record<string, unknown>;
      cost?: string;
    };
    expect(body).toMatchObject({ status: 'succeeded', output: 'five four three' });
    expect(body.metrics).toMatchObject({ input_token_count: 5, output_token_count: 3 });
    const predictTime = body.metrics.predict_time as number;
    expect(predictTime).toBeGreaterThan(0);
    expect(body.metrics.total_time).toBeGreaterThanOrEqual(predictTime);
    expect(body.cost).toBe(tokenCostOf(predictTime, 5, 3));
    expect(body.cost).not.toBe(costOf(predictTime));
  });

  it('reach the npm client', async () => {
    const replicate = client();
    const created = await replicate.deployments.predictions.create(ns(), 'tokens', {
      input: { prompt, max_tokens: 2 },
    });
    const done = (await replicate.wait(created, { interval: 100 })) as typeof created & { cost?: string };
    expect(done).toMatchObject({ status: 'succeeded', output: 'five four' });
    expect(done.metrics).toMatchObject({ input_token_count: 5, output_token_count: 2 });
    expect(done.cost).toBe(tokenCostOf(done.metrics!.predict_time!, 5, 2));
    const got = (await replicate.predictions.get(done.id)) as typeof done;
    expect(got.cost).toBe(done.cost);
    expect(got.metrics).toEqual(done.metrics);
  });

  it('reach the Python client, whose models validate the object strictly', async () => {
    const got = (await python(
      [
        `p = client.deployments.predictions.create("${ns()}/tokens", input={"prompt": "${prompt}", "max_tokens": 4})`,
        'p.wait()',
        'again = client.predictions.get(p.id)',
        'listed = [x for x in client.predictions.list().results if x.id == p.id]',
        'raw = client._request("GET", f"/v1/predictions/{p.id}").json()',
        'print(json.dumps({"status": again.status, "output": again.output, "metrics": again.metrics,',
        '  "listed": [x.metrics for x in listed], "cost": raw.get("cost")}))',
      ].join('\n'),
    )) as {
      status: string;
      output: string;
      metrics: Record<string, number>;
      listed: unknown[];
      cost: string;
    };
    expect(got).toMatchObject({ status: 'succeeded', output: 'five four three two' });
    expect(got.metrics).toMatchObject({ input_token_count: 5, output_token_count: 4 });
    expect(got.listed).toEqual([got.metrics]);
    expect(got.cost).toBe(tokenCostOf(got.metrics.predict_time!, 5, 4));
  });
});
