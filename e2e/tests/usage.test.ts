/**
 * Usage end to end, on the local cluster whose T4 node is the pod runner's: every instance of
 * the `sleep` model is a real Cog server beside a real sidecar, the operator runs as its own
 * process on the embedded store, predictions go through the gateway with the official
 * `replicate` client, and the figures are read with `modelplane usage`.
 *
 * The Deployment (usage.yaml) starts with two instances; it is scaled 2 → 0 → 1 → 0 with
 * traffic between (the change of min/max is a new release: a pod of its rollout may run
 * briefly too). Then:
 * - `modelplane usage --by instance` lists every instance that ran, the removed ones too;
 * - each one's setup + idle + busy + down seconds add up to its wall time within 1 % — the
 *   reference being the sidecar's log timestamps (wall clock) of the instance's clock starting
 *   and stopping, where the meter counts state by state on the monotonic clock;
 * - idle cost = (setup + idle + down) seconds × the price, and instance cost = all seconds ×
 *   the price, exactly; its busy seconds cover the model server's predict_time;
 * - after a restart of the operator (SIGKILL; `modelplane dev` starts it again), the same.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import Replicate from 'replicate';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type UsageAnswer, type UsageRow, run as usageCli } from '../../cli/usage.ts';
import { LABEL } from '../../crds/index.ts';
import { type Dev, startDev } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { waitFor } from '../../harness/processes.ts';
import { add, format, multiply, parseDecimal } from '../../lib/decimal.ts';
import { SIDECAR_CONTAINER } from '../../operator/controllers/pod-spec.ts';
import { Deployments, HardwareClasses } from '../../operator/resources.ts';
import { KubeClient, type KubeObject } from '../../operator/runtime/index.ts';

const NS = `usage-${process.pid}`;
const NAME = 'sleep';
const MANIFEST = join(repoRoot, 'e2e', 'tests', 'usage.yaml');

interface PodObject extends KubeObject {
  metadata?: KubeObject['metadata'] & { uid?: string };
  status?: { conditions?: { type: string; status: string }[] };
}

type Prediction = Awaited<ReturnType<Replicate['predictions']['get']>>;

let dev: Dev;
let client: KubeClient;
let replicate: Replicate;
let price = '';
const podNames = new Set<string>();
const ran: Prediction[] = [];

async function pods(): Promise<PodObject[]> {
  const list = await client.request<{ items: PodObject[] }>('GET', `/api/v1/namespaces/${NS}/pods`, {
    query: { labelSelector: `${LABEL.deployment}=${NAME}` },
  });
  for (const p of list.items) if (p.metadata?.name) podNames.add(p.metadata.name);
  return list.items;
}

const readyCount = async () =>
  (await pods()).filter((p) => p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'))
    .length;

async function predict(seconds: number): Promise<Prediction> {
  const created = (await replicate.deployments.predictions.create(NS, NAME, {
    input: { seconds },
    wait: 60,
  })) as Prediction;
  const p = await waitFor(
    `prediction ${created.id} to finish`,
    async () => {
      const got = await replicate.predictions.get(created.id);
      return ['succeeded', 'failed', 'canceled'].includes(got.status) ? got : undefined;
    },
    { timeoutMs: 180_000, intervalMs: 250 },
  );
  expect(p.status, String(p.error ?? '')).toBe('succeeded');
  ran.push(p);
  return p;
}

/** `modelplane usage` with `args`, as JSON. */
async function usage(...args: string[]): Promise<UsageAnswer> {
  let out = '';
  const spy = vi.spyOn(process.stdout, 'write').mockImplementation((s) => {
    out += String(s);
    return true;
  });
  let code: number;
  try {
    code = await usageCli([...args, '--output', 'json', '--namespace', NS], {
      MODELPLANE_API_URL: `${dev.gatewayUrl}/v1`,
      MODELPLANE_API_TOKEN: dev.token,
    });
  } finally {
    spy.mockRestore();
  }
  expect(code).toBe(0);
  return JSON.parse(out) as UsageAnswer;
}

/** Wall-clock seconds from the sidecar's "instance time started" log line to its final usage line, per pod. */
function sidecarWallSeconds(): Map<string, number> {
  const out = new Map<string, number>();
  const dir = join(dev.logDir, 'pods');
  for (const podDir of readdirSync(dir).filter((d) => d.startsWith(`${NS}_`))) {
    const pod = podDir.split('_')[1] ?? '';
    const cdir = join(dir, podDir, SIDECAR_CONTAINER);
    let first: number | undefined;
    let last: number | undefined;
    for (const f of readdirSync(cdir).sort())
      for (const l of readFileSync(join(cdir, f), 'utf8').split('\n')) {
        if (!l.startsWith('{')) continue;
        const line = JSON.parse(l) as { time: number; msg: string };
        if (line.msg === 'instance time started') first ??= line.time;
        if (line.msg === 'instance time stopped: final usage') last = line.time;
      }
    if (first !== undefined && last !== undefined) out.set(pod, (last - first) / 1000);
  }
  return out;
}

async function scale(minInstances: number, maxInstances: number): Promise<void> {
  await client.mergePatch(
    Deployments,
    NAME,
    NS,
    { spec: { minInstances, maxInstances } },
    { fieldManager: 'e2e' },
  );
}

async function atZero(what: string): Promise<void> {
  await waitFor(what, async () => (await pods()).length === 0, { timeoutMs: 120_000, intervalMs: 250 });
}

/** The operator process `modelplane dev` runs (a child of this test with our kubeconfig). */
function operatorPid(): number {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmd = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
      if (cmd.includes('operator') && cmd.some((a) => a.includes(dev.kubeconfig))) return Number(d);
    } catch {
      // gone meanwhile
    }
  }
  throw new Error('no child process of this test runs the operator');
}

const sum = (r: UsageRow) => r.setup_seconds + r.idle_seconds + r.busy_seconds + r.down_seconds;
const times = (seconds: number, p: string) =>
  format(multiply(parseDecimal(String(seconds)), parseDecimal(p)));

describe('usage on the local cluster', () => {
  beforeAll(async () => {
    dev = await startDev({
      gatewayPort: 0,
      namespace: NS,
      examples: [MANIFEST],
      logDir: join(repoRoot, '.modelplane', 'e2e', NS),
      log: (l) => process.stderr.write(`dev: ${l}\n`),
    });
    const kc = new KubeConfig();
    kc.loadFromFile(dev.kubeconfig);
    client = new KubeClient(kc);
    replicate = new Replicate({ auth: dev.token, baseUrl: `${dev.gatewayUrl}/v1` });
    price = (await client.get(HardwareClasses, 'gpu-t4')).spec.pricePerSecond;
    expect(price).toMatch(/^\d/);
  }, 600_000);

  afterAll(async () => {
    if (dev)
      process.stderr.write(`\noperator log: ${dev.operatorLog}\npod logs: ${join(dev.logDir, 'pods')}\n`);
    await dev?.stop();
  }, 120_000);

  it('reports every instance of 2 → 0 → 1 → 0, the removed ones too, and the same after an operator restart', async () => {
    // Two instances, traffic on both.
    await waitFor('two ready instances', async () => (await readyCount()) === 2, {
      timeoutMs: 180_000,
      intervalMs: 250,
    });
    await Promise.all([predict(1), predict(1), predict(0.5), predict(0.5)]);
    // Down to zero…
    await scale(0, 1);
    await atZero('the Deployment to scale to zero');
    // …and up to one for more traffic, then idle back to zero.
    await Promise.all([predict(1), predict(0.3)]);
    await atZero('the Deployment to scale to zero again');
    // Every pod that ran, from the pod runner's log directories (a change of min/max cuts a
    // release, so a short-lived pod of the rollout may have run too).
    const ranPods = new Set(
      readdirSync(join(dev.logDir, 'pods'))
        .filter((d) => d.startsWith(`${NS}_`))
        .map((d) => d.split('_')[1] ?? ''),
    );
    for (const p of podNames) expect(ranPods.has(p), p).toBe(true);
    expect(ranPods.size).toBeGreaterThanOrEqual(3);

    // Every instance's final figures are recorded (the operator reads a terminating pod every second).
    const byInstance = await waitFor(
      'usage of every instance that ran',
      async () => {
        const u = await usage('--by', 'instance', '--since', '1h');
        return u.results.length === ranPods.size &&
          u.results.reduce((n, r) => n + r.predictions, 0) === ran.length
          ? u
          : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 1000 },
    );
    expect(new Set(byInstance.results.map((r) => r.key))).toEqual(ranPods);
    const walls = sidecarWallSeconds();
    for (const r of byInstance.results) {
      const wall = walls.get(r.key);
      expect(wall, `the sidecar log of ${r.key}`).toBeDefined();
      // setup + idle + busy + down = the instance's wall time, within 1 %.
      expect(
        Math.abs(sum(r) - wall!) / wall!,
        `${r.key}: ${sum(r)} s metered, ${wall} s by its log`,
      ).toBeLessThan(0.01);
      expect(r.setup_seconds).toBeGreaterThan(0);
      expect(r.running_seconds).toBeCloseTo(sum(r), 3);
      // Idle cost = (setup + idle + down) seconds × price, instance cost = all seconds × price: exactly.
      const idle = Number((r.setup_seconds + r.idle_seconds + r.down_seconds).toFixed(3));
      expect(r.idle_cost).toBe(times(idle, price));
      expect(r.instance_cost).toBe(times(Number(sum(r).toFixed(3)), price));
    }
    // Busy time covers what the model server ran (its own predict_time): an instance runs two
    // at once (maxConcurrency 2), so its busy time is at least half their sum, and at least the longest.
    const times_ = ran.map((p) => p.metrics?.predict_time ?? 0);
    const busy = byInstance.results.reduce((s, r) => s + r.busy_seconds, 0);
    expect(busy).toBeGreaterThanOrEqual((times_.reduce((a, b) => a + b, 0) / 2) * 0.99);
    expect(busy).toBeGreaterThanOrEqual(Math.max(...times_) * 0.99);
    // The predictions' cost is theirs, summed exactly.
    const charged = ran.reduce(
      (s, p) => add(s, parseDecimal((p as { cost?: string }).cost ?? '0')),
      parseDecimal('0'),
    );
    const byDeployment = await usage('--by', 'deployment', '--since', '1h');
    expect(byDeployment.results).toHaveLength(1);
    const [dep] = byDeployment.results;
    expect(dep).toMatchObject({ key: `${NS}/${NAME}`, instances: ranPods.size, predictions: ran.length });
    expect(dep?.prediction_cost).toBe(format(charged));

    // The Deployment's status carries the last hour's figures (written at most once a minute).
    const status = await waitFor(
      "the Deployment's usage status",
      async () => {
        const u = (await client.get(Deployments, NAME, NS)).status?.usage;
        return u?.lastHour?.predictions === ran.length && u.lastHour.instances === ranPods.size
          ? u
          : undefined;
      },
      { timeoutMs: 90_000, intervalMs: 1000 },
    );
    expect(status.lastHour).toMatchObject({
      instanceCost: dep?.instance_cost,
      idleCost: dep?.idle_cost,
      predictionCost: dep?.prediction_cost,
      busySeconds: dep?.busy_seconds,
    });
    expect(status.lastDay).toEqual(status.lastHour);

    // After a restart of the operator, the same figures: they are in the embedded store.
    const pid = operatorPid();
    process.kill(pid, 'SIGKILL');
    await waitFor('the operator to be killed', () => {
      try {
        return operatorPid() !== pid;
      } catch {
        return true;
      }
    });
    await waitFor(
      'the restarted operator to serve usage',
      async () => {
        try {
          return (await fetch(`${dev.httpUrl}/readyz`)).ok;
        } catch {
          return false;
        }
      },
      { timeoutMs: 120_000, intervalMs: 500 },
    );
    const again = await usage('--by', 'instance', '--since', '1h');
    expect(again.results).toEqual(byInstance.results);
    expect((await usage('--by', 'deployment', '--since', '1h')).results).toEqual(byDeployment.results);
  }, 600_000);
});
