/**
 * bench/store: the prediction store's hot path — per prediction, `insert`, then `update` to
 * processing with one event, then `update` to succeeded with two events (what the engine
 * writes for a prediction that streams one output) — on the memory store, embedded PGlite
 * (in a temporary directory) and a real PostgreSQL server (harness/postgres.ts, fsync on, as
 * deployed), in one run. Prints, for each: milliseconds per prediction one at a time (p50,
 * p99) and predictions/s with N at once, and the ratio of each to the memory store.
 *
 * Usage: node bench/store.ts [--predictions N] [--concurrency N]   (or `make bench-store`)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { PostgresServer } from '../harness/postgres.ts';
import { newPredictionId } from '../lib/prediction.ts';
import type { PredictionStore, StoredPrediction } from '../operator/predictions/store.ts';
import { openStore } from '../operator/store/index.ts';

const { values } = parseArgs({
  options: {
    predictions: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '16' },
  },
});
const COUNT = Number(values.predictions);
const CONCURRENCY = Number(values.concurrency);
const log = pino({ level: 'silent' });

function record(): StoredPrediction {
  return {
    id: newPredictionId(),
    namespace: 'bench',
    deployment: 'echo',
    viaDeployment: true,
    model: 'bench/echo',
    version: 'a'.repeat(64),
    input: { text: 'hello world', n: 1 },
    output: null,
    logs: '',
    error: null,
    status: 'starting',
    createdAt: Date.now(),
    webhookEvents: ['completed'],
    webhook: 'https://hooks.example/x',
    baseUrl: 'http://gw/v1',
  };
}

/** One prediction's writes. */
async function onePrediction(store: PredictionStore): Promise<void> {
  const rec = record();
  await store.insert(rec, 'bench');
  const running = { ...rec, status: 'processing' as const, startedAt: Date.now(), instance: 'echo-1' };
  await store.update(running, 'bench', [{ id: 1, event: 'logs', data: 'starting' }]);
  await store.update(
    {
      ...running,
      status: 'succeeded',
      output: 'hello world',
      logs: 'starting\n',
      completedAt: Date.now(),
      predictTime: 0.01,
    },
    'bench',
    [
      { id: 2, event: 'output', data: 'hello world' },
      { id: 3, event: 'done', data: '{}' },
    ],
  );
}

interface Result {
  p50: number;
  p99: number;
  perSecond: number;
}

async function measure(store: PredictionStore): Promise<Result> {
  for (let i = 0; i < Math.min(50, COUNT); i++) await onePrediction(store); // warm up
  const times: number[] = [];
  for (let i = 0; i < COUNT; i++) {
    const t = performance.now();
    await onePrediction(store);
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next++ < COUNT) await onePrediction(store);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  return {
    p50: times[Math.floor(times.length * 0.5)]!,
    p99: times[Math.floor(times.length * 0.99)]!,
    perSecond: COUNT / seconds,
  };
}

const dir = mkdtempSync(join(tmpdir(), 'modelplane-bench-store-'));
const server = await PostgresServer.start();
const results: [string, Result][] = [];
try {
  const stores: [string, () => Promise<PredictionStore>][] = [
    ['memory', () => openStore({ kind: 'memory', log })],
    ['embedded (PGlite)', () => openStore({ kind: 'embedded', dir, log })],
    [
      'postgres (fsync on)',
      async () => openStore({ kind: 'postgres', url: await server.createDatabase('bench'), log }),
    ],
  ];
  for (const [name, open] of stores) {
    const store = await open();
    try {
      process.stderr.write(`store: ${name}…\n`);
      results.push([name, await measure(store)]);
    } finally {
      await store.close();
    }
  }
} finally {
  await server.destroy();
  rmSync(dir, { recursive: true, force: true });
}

const memory = results[0]![1];
console.log(
  `${COUNT} predictions (insert + 2 updates with 3 events), one at a time and ${CONCURRENCY} at once; load average ${loadavg()
    .map((l) => l.toFixed(1))
    .join(' ')}`,
);
console.log('store                  p50 ms   p99 ms   predictions/s   of memory');
for (const [name, r] of results) {
  console.log(
    `${name.padEnd(22)} ${r.p50.toFixed(3).padStart(6)}   ${r.p99.toFixed(3).padStart(6)}   ${r.perSecond
      .toFixed(0)
      .padStart(13)}   ${(r.perSecond / memory.perSecond).toFixed(4).padStart(9)}`,
  );
}
