/**
 * bench/gateway: throughput of predictions through the gateway, against the same model
 * servers called directly, in one run. `modelplane dev`'s setup runs (a local control plane,
 * the pod runner, the operator with its gateway as a child process, an API token); a
 * Deployment of `echo` runs N instances, each a real Cog server beside a sidecar on its own
 * loopback pod IP, and the gateway finds them through its Pod watch. At each concurrency,
 * in alternating rounds, the same predictions go:
 *
 * - direct, sync: `POST /predictions` to the Cog servers (round-robin), held until done;
 * - direct, async: `PUT /predictions/{id}` with `Prefer: respond-async` and a webhook to
 *   this process, done at the `completed` webhook — what the sidecar does for a prediction
 *   it follows live (`--progress webhook`, or `auto` when something needs live events);
 * - sidecar: `POST /predictions` with `Prefer: wait` to the sidecars (round-robin);
 * - gateway (memory | embedded | postgres): `POST /v1/deployments/{ns}/{name}/predictions`
 *   with `Prefer: wait` and the API token, dispatched to the sidecars by a gateway replica
 *   (`modelplane operator --roles=gateway`) whose prediction store is in its memory, embedded
 *   PGlite in a temporary directory, or a real PostgreSQL server started here — each
 *   prediction stored before it is answered.
 *
 * Prints throughput, p50/p99 latency of each path, the ratios to both direct baselines (and
 * the p50 added over direct sync), the gateway process's CPU per prediction, and each
 * durable store's ratio to the memory store.
 *
 * Usage: node bench/gateway.ts [--instances N] [--slots N] [--requests N] [--rounds N]
 *   [--concurrency 1,8] [--stores memory,embedded,postgres] [--paths 'gateway (memory)',...]
 *   [--profile DIR]   (or `make bench-gateway`)
 * `--profile DIR` writes a V8 CPU profile of each gateway replica there when it exits.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Agent, createServer, type IncomingMessage, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { SYSTEM_NAMESPACE, startDev, startReplica } from '../dev/dev.ts';
import { PostgresServer } from '../harness/postgres.ts';
import type { GroupProcess } from '../harness/processes.ts';
import { SidecarKey } from '../operator/sidecar-key.ts';
import { clientOf, readPods } from './pods.ts';

const { values } = parseArgs({
  options: {
    instances: { type: 'string', default: '2' },
    requests: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '1,8' },
    slots: { type: 'string', default: '8' },
    /** Only these paths (names as printed, comma-separated), e.g. `gateway` while profiling. */
    paths: { type: 'string', default: '' },
    /** The stores of the gateway replicas, comma-separated. */
    stores: { type: 'string', default: 'memory,embedded,postgres' },
    /** Write a V8 CPU profile of each gateway replica into this directory. */
    profile: { type: 'string' },
  },
});
const INSTANCES = Number(values.instances);
const perRound = Number(values.requests);
const rounds = Number(values.rounds);
const concurrencies = values.concurrency.split(',').map(Number);
const SLOTS = Number(values.slots);
const NS = 'bench';
const NAME = 'echo';

const manifest = `apiVersion: modelplane.dev/v1alpha1
kind: Model
metadata: {name: ${NAME}}
spec: {visibility: private, defaultHardware: gpu-t4, deployment: ${NAME}}
---
apiVersion: modelplane.dev/v1alpha1
kind: ModelVersion
metadata: {name: ${NAME}-v1}
spec: {model: ${NAME}, image: 'modelplane.local/echo:bench', maxConcurrency: ${SLOTS}, setupTimeoutSeconds: 120, predictTimeoutSeconds: 60}
---
apiVersion: modelplane.dev/v1alpha1
kind: Deployment
metadata: {name: ${NAME}}
spec:
  model: ${NAME}
  version: ${NAME}-v1
  hardware: gpu-t4
  minInstances: ${INSTANCES}
  maxInstances: ${INSTANCES}
  queue: {maxLength: 1000}
`;
const manifestFile = join(tmpdir(), `modelplane-bench-gateway-${process.pid}.yaml`);
writeFileSync(manifestFile, manifest);

const agent = new Agent({ keepAlive: true, maxSockets: 256 });
const input = { text: 'hello, model' };
let busy = 0;

interface Answer {
  status: number;
  text: string;
}

function send(
  url: URL,
  method: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const data = Buffer.from(JSON.stringify(body));
  return new Promise((resolve, reject) => {
    const req = request(
      {
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        method,
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(data.length), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
        );
      },
    );
    req.on('error', reject);
    req.end(data);
  });
}

function expectSucceeded(what: string, a: Answer): void {
  const status = (JSON.parse(a.text) as { status?: string }).status;
  if ((a.status !== 200 && a.status !== 201) || status !== 'succeeded')
    throw new Error(`${what} answered ${a.status}: ${a.text.slice(0, 300)}`);
}

// The webhook receiver of the direct async path: Cog posts each prediction's progress here.
const done = new Map<string, () => void>();
const hooks = createServer((req: IncomingMessage, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.writeHead(200).end();
    const p = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
      id: string;
      status: string;
      error?: string;
    };
    if (p.status === 'succeeded') done.get(p.id)?.();
    else if (p.status === 'failed' || p.status === 'canceled')
      process.stderr.write(`direct async prediction ${p.id} ended ${p.status}: ${p.error}\n`);
  });
});
await new Promise<void>((r) => hooks.listen(0, '127.0.0.1', r));
const hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`;

type Path = { name: string; run: (i: number) => Promise<void> };

/** `n` predictions from `concurrency` workers; latencies in ms and the wall time. */
async function block(p: Path, n: number, concurrency: number) {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const t = performance.now();
        await p.run(i);
        latencies.push(performance.now() - t);
      }
    }),
  );
  return { latencies, seconds: (performance.now() - t0) / 1000 };
}

/** CPU seconds (user + system) a process has used, from /proc (clock ticks of 10 ms). */
function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return Number.NaN;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
}

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

const log = (l: string) => process.stderr.write(`${l}\n`);
const logDir = join(tmpdir(), `modelplane-bench-gateway-${process.pid}`);
const stores = values.stores.split(',').filter(Boolean);
const dev = await startDev({
  namespace: NS,
  examples: [manifestFile],
  gatewayPort: 0,
  logDir,
  operatorFlags: ['--store=memory'],
  log,
});
let postgres: PostgresServer | undefined;
const replicas: GroupProcess[] = [];

/** A gateway replica with the given store: its process and the URL predictions are posted to. */
async function gatewayReplica(store: string): Promise<{ pid: number; url: URL }> {
  const flags = [`--store=${store}`];
  if (store === 'embedded') flags.push(`--store-dir=${join(logDir, 'store')}`);
  if (store === 'postgres') {
    postgres = await PostgresServer.start();
    flags.push(`--database-url=${postgres!.url}`);
  }
  const replica = await startReplica({
    name: `the gateway with the ${store} store`,
    kubeconfig: dev.kubeconfig,
    roles: 'gateway',
    flags: ['--log-level=warn', ...flags],
    logFile: join(logDir, `gateway-${store}.log`),
    env: values.profile
      ? { ...process.env, NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${values.profile}` }
      : process.env,
  });
  replicas.push(replica.process);
  return {
    pid: replica.process.pid,
    url: new URL(`${replica.gatewayUrl}/v1/deployments/${NS}/${NAME}/predictions`),
  };
}

try {
  const pods = await readPods(dev.kubeconfig, NS, NAME, INSTANCES);
  log(`instances: ${pods.map((p) => `${p.name} ${p.ip}`).join(', ')}`);
  const gateways = new Map<string, { pid: number; url: URL }>();
  for (const store of stores) gateways.set(`gateway (${store})`, await gatewayReplica(store));
  const auth = { authorization: `Bearer ${dev.token}`, prefer: 'wait=60' };
  const pick = (i: number) => pods[i % pods.length]!;
  // The sidecar answers the operator only: the bench signs the operator's tokens with its key.
  const sidecarKey = SidecarKey.inNamespace(clientOf(dev.kubeconfig), SYSTEM_NAMESPACE);
  const sidecarAuth = await Promise.all(pods.map((p) => sidecarKey.authorization(p.sidecar)));

  const all: Path[] = [
    {
      name: 'direct, sync',
      async run(i) {
        const url = new URL(`${pick(i).model}/predictions`);
        for (;;) {
          const a = await send(url, 'POST', { input });
          if (a.status === 409) {
            busy++;
            continue;
          }
          return expectSucceeded(url.href, a);
        }
      },
    },
    {
      name: 'direct, async+webhook',
      async run(i) {
        const id = randomUUID();
        const url = new URL(`${pick(i).model}/predictions/${id}`);
        const finished = new Promise<void>((r) => done.set(id, r));
        for (;;) {
          const a = await send(
            url,
            'PUT',
            { id, input, webhook: hookUrl, webhook_events_filter: ['start', 'output', 'logs', 'completed'] },
            { prefer: 'respond-async' },
          );
          if (a.status === 409) {
            busy++;
            continue;
          }
          if (a.status !== 202) throw new Error(`${url} answered ${a.status}: ${a.text.slice(0, 300)}`);
          break;
        }
        await finished;
        done.delete(id);
      },
    },
    {
      name: 'sidecar',
      async run(i) {
        const url = new URL(`${pick(i).sidecar}/predictions`);
        const authorization = sidecarAuth[i % pods.length]!;
        expectSucceeded(url.href, await send(url, 'POST', { input }, { prefer: 'wait=60', authorization }));
      },
    },
    ...[...gateways].map(([name, g]) => ({
      name,
      async run() {
        expectSucceeded(g.url.href, await send(g.url, 'POST', { input }, auth));
      },
    })),
  ];
  const only = values.paths ? values.paths.split(',') : undefined;
  const paths = only ? all.filter((p) => only.includes(p.name)) : all;

  process.stdout.write(
    `\ngateway throughput: echo on ${INSTANCES} instances (real Cog servers, ${SLOTS} slots each, sidecars with their default --progress auto), ` +
      `${rounds} rounds x ${perRound} predictions per path and concurrency, rounds alternating\n`,
  );
  const f = (x: number) => x.toFixed(2).padStart(7);
  for (const concurrency of concurrencies) {
    for (const p of paths) await block(p, 50, concurrency); // warm up
    const lat = paths.map(() => [] as number[]);
    const secs = paths.map(() => 0);
    /** CPU seconds of the gateway replica during each gateway path's rounds. */
    const cpu = paths.map(() => 0);
    for (let r = 0; r < rounds; r++) {
      for (const [i, p] of paths.entries()) {
        const pid = gateways.get(p.name)?.pid;
        const c0 = cpuSeconds(pid);
        const b = await block(p, perRound, concurrency);
        cpu[i]! += cpuSeconds(pid) - c0;
        lat[i]!.push(...b.latencies);
        secs[i]! += b.seconds;
      }
    }
    for (const l of lat) l.sort((x, y) => x - y);
    const rate = lat.map((l, i) => l.length / secs[i]!);
    const rateOf = (name: string) => rate[paths.findIndex((p) => p.name === name)];
    const sync = rateOf('direct, sync');
    const syncLat = lat[paths.findIndex((p) => p.name === 'direct, sync')];
    const syncP50 = syncLat?.length ? quantile(syncLat, 0.5) : undefined;
    const async = rateOf('direct, async+webhook');
    const memory = rateOf('gateway (memory)');
    process.stdout.write(`\nconcurrency ${concurrency}:\n`);
    for (const [i, p] of paths.entries()) {
      const l = lat[i]!;
      const ratios = p.name.startsWith('direct')
        ? ''
        : (sync ? `; ratio to direct sync ${(rate[i]! / sync).toFixed(3)}` : '') +
          (syncP50 !== undefined ? `, added p50 ${(quantile(l, 0.5) - syncP50).toFixed(2)} ms` : '') +
          (async ? `; to direct async ${(rate[i]! / async).toFixed(3)}` : '') +
          (memory && p.name !== 'gateway (memory)'
            ? `; to the memory store ${(rate[i]! / memory).toFixed(3)}`
            : '');
      const own =
        gateways.has(p.name) && Number.isFinite(cpu[i])
          ? `; gateway CPU ${((cpu[i]! / l.length) * 1000).toFixed(2)} ms per prediction`
          : '';
      process.stdout.write(
        `  ${p.name.padEnd(22)} ${rate[i]!.toFixed(1).padStart(7)} predictions/s  p50 ${f(quantile(l, 0.5))} ms  p99 ${f(quantile(l, 0.99))} ms${ratios}${own}\n`,
      );
    }
  }
  process.stdout.write(
    '\ntargets: gateway (memory) ≥ 0.5 of direct sync at each concurrency, added p50 ≤ 2 ms at concurrency 1, ' +
      'gateway CPU ≤ 0.5 ms per prediction; a durable store ≥ 0.9 of the memory store\n',
  );
  process.stdout.write(
    `direct paths: ${busy} answers of 409 (busy) retried at once, counted in their latency\n`,
  );
} finally {
  agent.destroy();
  hooks.close();
  for (const r of replicas) await r.stop(10_000);
  await postgres?.destroy();
  await dev.stop();
}
