/**
 * Nothing a caller sends crashes the sidecar: generated requests (harness/fuzz.ts) at every
 * route of its API, read from the express router's stack, against `modelplane sidecar` as its
 * own process in front of a real Cog server (the echo example model). Every answer is a 4xx
 * problem+json or a documented 2xx, and the process stays up. Needs the venv of `make python`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FuzzRoute, fuzz } from '../harness/fuzz.ts';
import { createApp, declaredRoutes } from '../lib/express.ts';
import { MAX_BODY_BYTES } from '../lib/http.ts';
import { ApiRoutes, type PredictionService } from './api.ts';
import { type ModelServer, startModelServer } from './testing/model-server.ts';
import { type SidecarProcess, spawnSidecar } from './testing/sidecar.ts';

/**
 * Headers the sidecar's API requires of its caller (the operator's credential), once it
 * requires one: sent on most generated requests.
 */
const credential: Record<string, string> = {};

/** The API's routes as the sidecar declares them: a route added later is fuzzed too. */
function apiRoutes(): FuzzRoute[] {
  const app = createApp();
  new ApiRoutes({} as PredictionService, {
    clock: undefined as never,
    keepAliveMs: 0,
    fallbackHost: '',
  }).declare(app);
  return declaredRoutes(app.router);
}

let model: ModelServer;
let sc: SidecarProcess;

beforeAll(async () => {
  model = await startModelServer('echo', { throttleSeconds: 0, concurrency: 4 });
  sc = await spawnSidecar(['--model-url', model.url, '--concurrency', '4', '--health-interval', '0.1']);
  await fetchOk(`${sc.api}/ready`, 60_000);
});

afterAll(async () => {
  await sc?.process.stop();
  await model?.stop();
});

async function fetchOk(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const res = await fetch(url).catch(() => undefined);
    if (res?.ok) return;
    if (Date.now() > deadline) throw new Error(`${url} did not answer 200 within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the sidecar under generated requests', () => {
  it('answers every one with a 4xx problem or a documented 2xx, and stays up', async () => {
    const routes = apiRoutes();
    expect(routes.map((r) => `${r.method} ${r.path}`)).toEqual(
      expect.arrayContaining(['POST /predictions', 'GET /predictions/:id', 'GET /status']),
    );
    const made = await fetch(`${sc.api}/predictions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...credential },
      body: JSON.stringify({ id: 'fuzz-known', input: { text: 'hello' } }),
    });
    expect(made.status).toBe(201);
    const tally = await fuzz(
      {
        base: sc.api,
        routes,
        credential,
        params: { id: ['fuzz-known'] },
        validBodies: [{ input: { text: 'hello' } }, { input: { text: 'x', repeat: 2 } }],
        maxBodyBytes: MAX_BODY_BYTES,
        alive: async () => {
          if (!sc.process.running) throw new Error(`the sidecar exited:\n${sc.process.log()}`);
        },
      },
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300) },
    );
    process.stdout.write(`sidecar fuzz: answers by status ${JSON.stringify(Object.fromEntries(tally))}\n`);
    // The requests reached past the checks, not only the first one.
    const seen = [...tally.keys()];
    expect(seen).toEqual(expect.arrayContaining([400, 404]));
    expect(seen.some((s) => s >= 200 && s < 300)).toBe(true);
    expect(sc.process.running).toBe(true);
    expect((await fetch(`${sc.api}/live`)).status).toBe(200);
  });
});
