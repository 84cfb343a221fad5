/**
 * `modelplane usage` and the gateway's `GET /v1/usage` it reads: a real gateway server with
 * the usage routes over a memory usage store, the CLI's table, CSV and JSON.
 */
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { HttpError } from '../lib/http.ts';
import { GatewayServer } from '../operator/gateway/server.ts';
import { RunCounts, usageRoutes } from '../operator/gateway/usage.ts';
import { MemoryUsageStore } from '../operator/predictions/usage-store.ts';
import { createLogger } from '../operator/runtime/index.ts';
import { renderCsv, run, type UsageAnswer } from './usage.ts';

const TOKEN = 'mp_test_usage';
const NOW = Date.parse('2026-01-03T12:00:00Z');
const HOUR = 3_600_000;
let server: GatewayServer;
let api = '';
const store = new MemoryUsageStore();

beforeAll(async () => {
  const at = (h: number) => NOW - h * HOUR;
  const base = {
    namespace: 'mine',
    deployment: 'embed',
    model: 'mine/embed',
    hardware: 'gpu-t4',
    pricePerSecond: '0.000225',
  };
  // Two instances of embed, one since removed; one of flux; one in a namespace the caller may not read.
  await store.recordInstance({
    ...base,
    instance: 'u1',
    pod: 'embed-1',
    ms: { setup: 60_000, idle: 1_800_000, busy: 1_740_000, down: 0 },
    predictions: 1000,
    predictionCost: '0.3915',
    at: at(30),
    ended: true,
  });
  await store.recordInstance({
    ...base,
    instance: 'u2',
    pod: 'embed-2',
    ms: { setup: 30_000, idle: 3_570_000, busy: 0, down: 0 },
    predictions: 0,
    predictionCost: '0',
    at: at(2),
  });
  await store.recordInstance({
    ...base,
    deployment: 'flux',
    model: 'mine/flux',
    hardware: 'gpu-a100-80gb',
    pricePerSecond: '0.0014',
    instance: 'u3',
    pod: 'flux-1',
    ms: { setup: 100_000, idle: 0, busy: 500_000, down: 0 },
    predictions: 50,
    predictionCost: '0.15',
    at: at(1),
  });
  await store.recordInstance({
    ...base,
    namespace: 'theirs',
    instance: 'u4',
    pod: 'x-1',
    ms: { setup: 1, idle: 0, busy: 0, down: 0 },
    predictions: 0,
    predictionCost: '0',
    at: at(1),
  });
  server = new GatewayServer({
    routes: [usageRoutes({ usage: () => store, now: () => NOW })],
    log: createLogger({ level: 'silent' }),
    registry: new Registry(),
    authenticate: async (req) => {
      if (req.headers.authorization !== `Bearer ${TOKEN}`)
        throw new HttpError(401, 'Unauthorized', 'bad token');
      return {
        principal: { kind: 'token', name: 'token:mine/ci' },
        authorize: async () => {},
        namespacesFor: async () => ['mine'],
      };
    },
  });
  await server.listen(0, '127.0.0.1');
  api = `${server.url}/v1`;
});

afterAll(async () => {
  await server?.close(1000);
});

const get = async (q: string, token = TOKEN) => {
  const res = await fetch(`${api}/usage${q}`, { headers: { authorization: `Bearer ${token}` } });
  return {
    status: res.status,
    body: (await res.json()) as UsageAnswer & { invalid_fields?: { field: string }[] },
  };
};

async function cli(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out += String(s);
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => {
    err += String(s);
    return true;
  });
  try {
    const code = await run(argv, { MODELPLANE_API_URL: api, MODELPLANE_API_TOKEN: TOKEN });
    return { code, out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe('GET /v1/usage', () => {
  it('sums every instance, removed ones too, with exact idle cost, utilization and cost per prediction', async () => {
    const { status, body } = await get('?by=deployment&since=7d');
    expect(status).toBe(200);
    expect(body.results.map((r) => r.key)).toEqual(['mine/embed', 'mine/flux']);
    expect(body.results[0]).toMatchObject({
      instances: 2,
      setup_seconds: 90,
      idle_seconds: 5370,
      busy_seconds: 1740,
      running_seconds: 7200,
      utilization: 0.2417,
      predictions: 1000,
      prediction_cost: '0.3915',
      // 7200 s × 0.000225
      instance_cost: '1.62',
      // (90 + 5370) s × 0.000225
      idle_cost: '1.2285',
      cost_per_prediction: '0.00162',
    });
  });

  it('keeps to the period and to the namespaces the caller may read', async () => {
    expect((await get('?since=24h')).body.results.map((r) => r.key)).toEqual(['mine/embed', 'mine/flux']);
    expect((await get('?since=24h')).body.results[0]?.instances).toBe(1);
    expect((await get('?by=namespace&since=30d')).body.results.map((r) => r.key)).toEqual(['mine']);
    expect((await get('?namespace=theirs')).status).toBe(403);
    expect((await get('?since=7d', 'wrong')).status).toBe(401);
  });

  it('refuses a bad query with 422 naming the fields', async () => {
    const { status, body } = await get('?by=color&since=yesterday&units_per_action=-1');
    expect(status).toBe(422);
    expect(body.invalid_fields?.map((f) => f.field)).toEqual(['by', 'since', 'units_per_action']);
  });
});

describe('run_count', () => {
  it("is each model's predictions in the usage records, read in the background", async () => {
    const counts = new RunCounts(() => store);
    expect(counts.get('mine/embed')).toBe(0); // not read yet: the read starts now
    await counts.refresh();
    expect(counts.get('mine/embed')).toBe(1000);
    expect(counts.get('mine/flux')).toBe(50);
    expect(counts.get('mine/none')).toBe(0);
    expect(new RunCounts(() => undefined).get('mine/embed')).toBe(0);
  });
});

describe('modelplane usage', () => {
  it('prints a table by hardware with the cost per action', async () => {
    const r = await cli('--by', 'hardware', '--since', '7d', '--units-per-action', '3');
    expect(r).toMatchObject({ code: 0, err: '' });
    const lines = r.out.trim().split('\n');
    expect(lines[0]).toMatch(
      /^HARDWARE\s+INSTANCES\s+SETUP S\s+IDLE S\s+BUSY S\s+DOWN S\s+UTILIZATION\s+PREDICTIONS\s+INSTANCE COST\s+IDLE COST\s+PREDICTION COST\s+COST\/PREDICTION\s+COST\/ACTION$/,
    );
    expect(lines[1]?.split(/\s+/)).toEqual([
      'gpu-a100-80gb',
      '1',
      '100',
      '0',
      '500',
      '0',
      '83.3%',
      '50',
      '0.84',
      '0.14',
      '0.15',
      '0.0168',
      '0.0504',
    ]);
    expect(lines[2]?.split(/\s+/).slice(0, 2)).toEqual(['gpu-t4', '2']);
  });

  it('prints CSV and JSON, by day and by instance', async () => {
    const csv = await cli('--by', 'day', '--since', '7d', '-o', 'csv');
    expect(csv.out.split('\n')[0]).toBe(
      'day,instances,setup_seconds,idle_seconds,busy_seconds,down_seconds,utilization,predictions,instance_cost,idle_cost,prediction_cost,cost_per_prediction',
    );
    expect(
      csv.out
        .trim()
        .split('\n')
        .map((l) => l.split(',')[0]),
    ).toEqual(['day', '2026-01-02', '2026-01-03']);
    const json = await cli('--by', 'instance', '--since', '7d', '--output', 'json');
    const answer = JSON.parse(json.out) as UsageAnswer;
    expect(answer.results.map((r) => [r.key, r.running_seconds])).toEqual([
      ['embed-1', 3600],
      ['embed-2', 3600],
      ['flux-1', 600],
    ]);
  });

  it('says what is wrong', async () => {
    expect(await cli('--output', 'yaml')).toMatchObject({
      code: 2,
      err: expect.stringMatching(/table, csv or json/),
    });
    expect(await cli('--since', 'soon')).toMatchObject({
      code: 1,
      err: expect.stringMatching(/422 Invalid usage query: since must be/),
    });
    expect(
      renderCsv({ by: 'model', since: '', until: '', results: [{ key: 'a,"b"' } as never] }).split('\n')[1],
    ).toMatch(/^"a,""b"""/);
  });
});
