/**
 * Nothing a caller sends crashes the gateway: generated requests (harness/fuzz.ts) at every
 * route of the API, read from the gateway's express router (a route added later is fuzzed
 * too), against the operator (controllers and gateway, the prediction engine included) in
 * this process on the real control plane. Every answer is a 4xx problem+json or a documented
 * 2xx, and the operator keeps serving. An uncaught exception or unhandled rejection in this
 * process fails the run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../crds/index.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { fuzz } from '../../harness/fuzz.ts';
import { waitFor } from '../../harness/processes.ts';
import { applyDefaultHardware, clientFor, operatorConfig, TEST_MANAGER } from '../controllers/testing.ts';
import { createOperator, type Operator } from '../main.ts';
import { Deployments, Models, ModelVersions, Workloads } from '../resources.ts';
import { DEFAULT_MAX_BODY_BYTES } from './server.ts';
import { createApiToken } from './tokens.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-fuzz');
const admin = clientFor(cluster.kubeconfig);

let operator: Operator;
let token = '';
let versionId = '';

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(admin);
  operator = createOperator(
    operatorConfig({
      roles: ['controllers', 'gateway'],
      logLevel: 'silent',
      gateway: { ...operatorConfig().gateway, tokenNamespace: ns() },
    }),
    cluster.kc,
  );
  await operator.start();
  await admin.apply(
    Models,
    {
      apiVersion: Models.apiVersion,
      kind: Models.kind,
      metadata: { name: 'echo', namespace: ns() },
      spec: { visibility: 'private' },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  await admin.apply(
    ModelVersions,
    {
      apiVersion: ModelVersions.apiVersion,
      kind: ModelVersions.kind,
      metadata: { name: 'echo-v1', namespace: ns() },
      spec: {
        model: 'echo',
        image: 'registry.example.com/models/echo:1.0',
        cogVersion: '0.16.8',
        openapiSchema: {
          openapi: '3.0.2',
          components: {
            schemas: {
              Input: {
                type: 'object',
                required: ['text'],
                properties: { text: { type: 'string', maxLength: 1000 }, repeat: { type: 'integer' } },
              },
            },
          },
        },
      },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  await admin.apply(
    Deployments,
    {
      apiVersion: Deployments.apiVersion,
      kind: Deployments.kind,
      metadata: { name: 'echo', namespace: ns() },
      spec: { model: 'echo', version: 'echo-v1', hardware: 'cpu', minInstances: 0, maxInstances: 1 },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  versionId = await waitFor(
    'the version id',
    async () => (await admin.get(ModelVersions, 'echo-v1', ns())).status?.id,
  );
  ({ token } = await createApiToken(admin, { name: 'fuzz', namespaces: [ns()], tokenNamespace: ns() }));
  const gateway = operator.gateway!;
  await waitFor('the gateway to accept the token', async () => {
    const res = await fetch(`${gateway.url}/v1/models/${ns()}/echo`, {
      headers: { authorization: `Bearer ${token}` },
    });
    return res.ok;
  });
});

afterAll(async () => {
  await operator?.stop();
  // The namespace's pods go only once nothing makes them again.
  for (const d of (await admin.list(Deployments, { namespace: ns() })).items)
    await admin.delete(Deployments, d.metadata.name ?? '', ns(), { propagationPolicy: 'Background' });
  for (const w of (await admin.list(Workloads, { namespace: ns() })).items)
    await admin.delete(Workloads, w.metadata?.name ?? '', ns(), { propagationPolicy: 'Background' });
});

describe('the gateway under generated requests', () => {
  it('answers every one with a 4xx problem or a documented 2xx, and keeps serving', async () => {
    const gateway = operator.gateway!;
    const routes = gateway.server.routes();
    expect(routes.map((r) => `${r.method} ${r.path}`)).toEqual(
      expect.arrayContaining([
        'POST /v1/predictions',
        'GET /v1/predictions/:id',
        'GET /v1/models/:owner/:name',
      ]),
    );
    const credential = { authorization: `Bearer ${token}` };
    const made = await fetch(`${gateway.url}/v1/deployments/${ns()}/echo/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...credential },
      body: JSON.stringify({ input: { text: 'hello' } }),
    });
    expect(made.status).toBe(201);
    const predictionId = ((await made.json()) as { id: string }).id;
    // Found by this test once: a name no object can have ("." made the API client list
    // instead). fetch resolves "." itself, so here names it keeps as they are.
    for (const name of ['a..b', 'UPPER', '-x']) {
      const odd = await fetch(`${gateway.url}/v1/deployments/${ns()}/${encodeURIComponent(name)}`, {
        method: 'PATCH',
        headers: { 'content-type': 'application/json', ...credential },
        body: JSON.stringify({ max_instances: 1 }),
      });
      expect(odd.status).toBe(404);
      expect(odd.headers.get('content-type')).toBe('application/problem+json');
    }
    const tally = await fuzz(
      {
        base: gateway.url,
        routes,
        credential,
        // The first value of each is what every route is sent first: `scratch` names nothing, so
        // that DELETE /deployments/:owner/:name leaves `echo` to the generated requests.
        params: { owner: [ns()], name: ['scratch', 'echo'], id: [predictionId, versionId] },
        validBodies: [
          { version: versionId, input: { text: 'hello' } },
          { input: { text: 'x', repeat: 2 } },
          { name: 'echo', version: 'echo-v1', hardware: 'cpu', min_instances: 0, max_instances: 1 },
        ],
        maxBodyBytes: DEFAULT_MAX_BODY_BYTES,
        alive: async () => {
          const res = await fetch(`${gateway.url}/v1/hardware`, { headers: credential });
          if (res.status !== 200) throw new Error(`the gateway no longer serves: ${res.status}`);
        },
      },
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
    );
    process.stdout.write(`gateway fuzz: answers by status ${JSON.stringify(Object.fromEntries(tally))}\n`);
    const seen = [...tally.keys()];
    expect(seen).toEqual(expect.arrayContaining([400, 401, 404]));
    expect(seen.some((s) => s >= 200 && s < 300)).toBe(true);
  });
});
