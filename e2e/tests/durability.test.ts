/**
 * Durability end to end: two operator replicas (A, run by `modelplane dev`, and B, started
 * here) share one real PostgreSQL server; the `sleep` model runs on two instances, each a real
 * Cog server beside a real sidecar. Every call goes through the official `replicate` client
 * or plain HTTP, with no session affinity.
 *
 * 1. Any replica serves any prediction: created on one, read, listed, streamed and canceled
 *    on the other — 200 predictions, all consistent.
 * 2. `kill -9` of replica A with 100 predictions accepted (some running, most queued): B
 *    takes them over; each succeeds, readable through B within 30 s of the kill; every
 *    `completed` webhook arrives; each ran once on a model server.
 * 3. PostgreSQL stopped for 10 s under traffic: 503 with Retry-After meanwhile, never a 201
 *    without a stored record; every accepted prediction finishes once it is back.
 * 4. After a (short) data retention, input, output and logs are removed (`data_removed`);
 *    the record is kept.
 */

import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Replicate, { type Prediction } from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Dev, startDev, startReplica } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { PostgresServer } from '../../harness/postgres.ts';
import { type GroupProcess, waitFor } from '../../harness/processes.ts';

const NS = `durable-${process.pid}`;
const NAME = 'sleep';
const MANIFEST = join(repoRoot, 'e2e', 'tests', 'durability.yaml');

let pg: PostgresServer;
let dev: Dev;
let logDir: string;
let a: Replica;
let b: Replica;
let hooks: Server;
let hookUrl: string;
/** `completed` webhooks received: prediction id → webhook-ids (one per delivery). */
const completed = new Map<string, string[]>();

interface Replica {
  name: string;
  gateway: string;
  http: string;
  client: Replicate;
  /** The process (B only: A is `modelplane dev`'s). */
  process?: GroupProcess;
}

function clientFor(gateway: string): Replicate {
  return new Replicate({ auth: dev.token, baseUrl: `${gateway}/v1` });
}

/** The pid of this process's child whose command line has `needle` (dev's operator). */
function childWith(needle: string): number {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('operator') && cmd.some((a) => a.includes(needle))) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error(`no child process of this test runs the operator with ${needle}`);
}

async function ready(r: { http: string }): Promise<boolean> {
  try {
    return (await fetch(`${r.http}/readyz`)).ok;
  } catch {
    return false;
  }
}

async function get(r: Replica, id: string): Promise<Prediction> {
  return (await r.client.predictions.get(id)) as Prediction;
}

/** Prediction ids each model server ran, counted from the model containers' logs. */
function ranOnInstances(): Map<string, number> {
  const counts = new Map<string, number>();
  const pods = join(logDir, 'pods');
  for (const pod of readdirSync(pods).filter((d) => d.startsWith(`${NS}_`))) {
    // The Cog server logs each prediction it starts (coglet: "Starting prediction", with its id).
    const dir = join(pods, pod, 'model');
    for (const file of readdirSync(dir)) {
      for (const line of readFileSync(join(dir, file), 'utf8').split('\n')) {
        if (!line.includes('"Starting prediction"')) continue;
        const id = (JSON.parse(line) as { fields?: { prediction_id?: string } }).fields?.prediction_id;
        if (id) counts.set(id, (counts.get(id) ?? 0) + 1);
      }
    }
  }
  return counts;
}

/** Reads SSE frames from `url` until `done`. */
async function sse(url: string): Promise<{ id: string; event: string; data: string }[]> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
  expect(res.status).toBe(200);
  const text = await res.text();
  return text
    .split('\n\n')
    .filter((f) => f.trim() && !f.startsWith(':'))
    .map((f) => {
      const e = { id: '', event: '', data: '' };
      for (const line of f.split('\n')) {
        const [k, ...v] = line.split(':');
        const val = v.join(':').replace(/^ /, '');
        if (k === 'id') e.id = val;
        else if (k === 'event') e.event = val;
        else if (k === 'data') e.data = e.data ? `${e.data}\n${val}` : val;
      }
      return e;
    });
}

describe('predictions that survive', () => {
  beforeAll(async () => {
    hooks = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => {
        body += c.toString();
      });
      req.on('end', () => {
        const p = JSON.parse(body) as { id: string; status: string };
        if (['succeeded', 'failed', 'canceled'].includes(p.status)) {
          const ids = completed.get(p.id) ?? [];
          ids.push(String(req.headers['webhook-id']));
          completed.set(p.id, ids);
        }
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r));
    hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`;

    logDir = mkdtempSync(join(tmpdir(), 'modelplane-durability-'));
    pg = await PostgresServer.start();
    const storeFlags = ['--store=postgres', `--database-url=${pg.url}`];
    dev = await startDev({
      namespace: NS,
      examples: [MANIFEST],
      gatewayPort: 0,
      logDir,
      operatorFlags: [...storeFlags, '--leader-elect=true'],
      log: () => {},
    });
    a = {
      name: 'A',
      gateway: dev.gatewayUrl,
      http: dev.httpUrl,
      client: clientFor(dev.gatewayUrl),
    };
    const replica = await startReplica({
      name: 'operator-b',
      kubeconfig: dev.kubeconfig,
      roles: 'controllers,gateway',
      // The webhook receiver listens on loopback.
      flags: ['--leader-elect=true', '--webhook-allow-cidrs=127.0.0.0/8', ...storeFlags],
      logFile: join(logDir, 'operator-b.log'),
    });
    b = {
      name: 'B',
      gateway: replica.gatewayUrl,
      http: replica.httpUrl,
      client: clientFor(replica.gatewayUrl),
      process: replica.process,
    };
  }, 900_000);

  afterAll(async () => {
    await b?.process?.stop(10_000);
    await dev?.stop();
    await pg?.destroy();
    hooks?.close();
  });

  it('serves every prediction from every replica: create on one, get, list, stream and cancel on the other', async () => {
    const N = 200;
    const ids: string[] = [];
    const replicas = [a, b];
    // 20 at a time, each created on one replica and followed on the other.
    for (let start = 0; start < N; start += 20) {
      await Promise.all(
        Array.from({ length: Math.min(20, N - start) }, async (_, j) => {
          const i = start + j;
          const [here, there] = [replicas[i % 2]!, replicas[(i + 1) % 2]!];
          const seconds = Number((0.001 * (i + 1)).toFixed(3));
          const created = (await here.client.deployments.predictions.create(NS, NAME, {
            input: { seconds },
          })) as Prediction;
          ids.push(created.id);
          const done = await there.client.wait(created, { interval: 100 });
          expect(done).toMatchObject({ id: created.id, status: 'succeeded', output: `slept ${seconds} s` });
          expect((await get(here, created.id)).status).toBe('succeeded');
        }),
      );
    }
    // Listed on both, newest first, the same.
    for (const r of replicas) {
      const listed: string[] = [];
      for await (const page of r.client.paginate(() => r.client.predictions.list())) {
        listed.push(...page.map((p) => p.id));
        if (listed.length >= 400) break;
      }
      for (const id of ids) expect(listed).toContain(id);
    }

    // Streamed on the other: the same events, in the same order, with the same ids.
    const streamed = (await a.client.deployments.predictions.create(NS, NAME, {
      input: { seconds: 1 },
      stream: true,
    })) as Prediction;
    const onA = new URL(streamed.urls.stream!);
    const onB = new URL(`${b.gateway}${onA.pathname}${onA.search}`);
    const [fromA, fromB] = await Promise.all([sse(onA.href), sse(onB.href)]);
    expect(fromB).toEqual(fromA);
    expect(fromB.map((e) => e.event)).toContain('output');
    expect(fromB.at(-1)?.event).toBe('done');
    expect(fromB.map((e) => Number(e.id))).toEqual(fromB.map((_, i) => i + 1));

    // Canceled on the other.
    const long = (await b.client.deployments.predictions.create(NS, NAME, {
      input: { seconds: 60 },
    })) as Prediction;
    await waitFor(
      'the long prediction to start',
      async () => (await get(a, long.id)).status === 'processing',
      {
        timeoutMs: 30_000,
        intervalMs: 100,
      },
    );
    const canceled = (await a.client.predictions.cancel(long.id)) as Prediction;
    expect(canceled.status).toBe('canceled');
    expect((await get(b, long.id)).status).toBe('canceled');
  });

  it('takes over the predictions of a replica killed with SIGKILL: each succeeds once, with its webhook', async () => {
    const N = 100;
    const created = await Promise.all(
      Array.from(
        { length: N },
        async (_, i) =>
          (await a.client.deployments.predictions.create(NS, NAME, {
            input: { seconds: 5 + i / 1000 },
            webhook: hookUrl,
            webhook_events_filter: ['completed'],
          })) as Prediction,
      ),
    );
    await waitFor(
      'some predictions to run',
      async () => (await get(b, created[0]!.id)).status === 'processing',
      { timeoutMs: 60_000, intervalMs: 100 },
    );
    const pid = childWith(new URL(a.gateway).host);
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    await waitFor(
      'every prediction to succeed, read through B',
      async () => {
        for (const p of created) if ((await get(b, p.id)).status !== 'succeeded') return false;
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    const took = Date.now() - killedAt;
    expect(took).toBeLessThan(30_000);
    for (const [i, p] of created.entries()) {
      expect(await get(b, p.id)).toMatchObject({ status: 'succeeded', output: `slept ${5 + i / 1000} s` });
    }
    await waitFor('every completed webhook', () => created.every((p) => completed.has(p.id)), {
      timeoutMs: 90_000,
      intervalMs: 200,
    });
    // Sent again by B when A may have sent it: the same webhook-id.
    for (const p of created) expect(new Set(completed.get(p.id)).size).toBe(1);
    const ran = ranOnInstances();
    for (const p of created) expect(ran.get(p.id), `prediction ${p.id} ran`).toBe(1);
  });

  it('answers 503 with Retry-After while PostgreSQL is stopped, never 201 without a record, and finishes what it accepted', async () => {
    const accepted: string[] = [];
    const refused: (string | null)[] = [];
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        const res = await fetch(`${b.gateway}/v1/deployments/${NS}/${NAME}/predictions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${dev.token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ input: { seconds: 0.2 } }),
        });
        const body = (await res.json()) as { id?: string };
        if (res.status === 201) accepted.push(body.id!);
        else {
          expect(res.status).toBe(503);
          expect(res.headers.get('content-type')).toContain('application/problem+json');
          refused.push(res.headers.get('retry-after'));
        }
      }
    })();
    await waitFor('traffic to flow', () => accepted.length >= 5, { timeoutMs: 30_000, intervalMs: 50 });
    await pg.stop();
    const stoppedAt = Date.now();
    await waitFor('a refusal', () => refused.length > 0, { timeoutMs: 30_000, intervalMs: 50 });
    await waitFor('10 s to pass', () => Date.now() - stoppedAt >= 10_000, {
      timeoutMs: 20_000,
      intervalMs: 100,
    });
    const readyWhileDown = await ready(b);
    await pg.start();
    await waitFor('replica B to be ready again', () => ready(b), { timeoutMs: 60_000, intervalMs: 250 });
    const after = accepted.length;
    await waitFor('traffic to flow again', () => accepted.length >= after + 5, {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    stop = true;
    await traffic;
    expect(readyWhileDown).toBe(false);
    expect(refused.length).toBeGreaterThan(0);
    for (const r of refused) expect(Number(r)).toBeGreaterThan(0);
    await waitFor(
      'every accepted prediction to succeed',
      async () => {
        for (const id of accepted) if ((await get(b, id)).status !== 'succeeded') return false;
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
  });

  it('removes input, output and logs after the data retention and keeps the record', async () => {
    // A replica with a short data retention: the retention applies to the whole store.
    const c = await startReplica({
      name: 'operator-c',
      kubeconfig: dev.kubeconfig,
      roles: 'gateway',
      flags: ['--store=postgres', `--database-url=${pg.url}`, '--data-retention=2'],
      logFile: join(logDir, 'operator-c.log'),
    });
    try {
      const p = (await b.client.deployments.predictions.create(NS, NAME, {
        input: { seconds: 0.1 },
      })) as Prediction;
      const done = await b.client.wait(p, { interval: 100 });
      expect(done).toMatchObject({ status: 'succeeded', output: 'slept 0.1 s', data_removed: false });
      await waitFor('its data to be removed', async () => (await get(b, p.id)).data_removed === true, {
        timeoutMs: 30_000,
        intervalMs: 250,
      });
      const kept = await get(b, p.id);
      expect(kept).toMatchObject({ id: p.id, status: 'succeeded', input: {}, output: null, logs: '' });
      expect(kept.metrics?.predict_time).toBeGreaterThan(0);
      expect(kept.completed_at).toBe(done.completed_at);
    } finally {
      await c.process.stop(10_000);
    }
  });
});
