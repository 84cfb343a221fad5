/**
 * Autoscaling end to end, on the local cluster whose T4 node is the pod runner's: every
 * instance of the `sleep` model is a real Cog server beside a real sidecar, the operator
 * (controllers, autoscaler, gateway) runs as its own process, and every prediction goes
 * through the gateway with the official `replicate` client.
 *
 * The Deployment (autoscaling.yaml) runs 0 to 3 instances of 4 predictions each, with short
 * windows. An informer watches its apps/v1 Deployment and pods for the whole file, so the
 * bounds are checked at every change, not only when a test looks.
 *
 * 1. At rest: 0 replicas, no pods. The first prediction is held while it scales 0 → 1.
 * 2. A burst of 200 concurrent predictions: up to 3 instances and never more; all 200
 *    succeed, each once, with its own output.
 * 3. Scale-down while predictions run: the idle pod goes first, a busy one removed drains,
 *    the busy one kept is left alone; every prediction succeeds.
 * 4. Back to zero when idle, with the autoscaler's Events.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import Replicate from 'replicate';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION, LABEL } from '../../crds/index.ts';
import { type Dev, SYSTEM_NAMESPACE, startDev } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { waitFor } from '../../harness/processes.ts';
import { SIDECAR_API_PORT, SIDECAR_CONTAINER } from '../../operator/controllers/pod-spec.ts';
import { Informer, KubeClient, type KubeObject, resourceType } from '../../operator/runtime/index.ts';
import { SidecarKey } from '../../operator/sidecar-key.ts';

const NS = `autoscale-${process.pid}`;
const NAME = 'sleep';
const MAX = 3;
const BURST = 200;
/** Seconds the predictions kept running across the scale-down sleep. */
const LONG_SECONDS = 25;
const MANIFEST = join(repoRoot, 'e2e', 'tests', 'autoscaling.yaml');

interface PodObject extends KubeObject {
  metadata?: KubeObject['metadata'] & { uid?: string; deletionTimestamp?: string };
  status?: { podIP?: string; conditions?: { type: string; status: string }[] };
}
interface WorkloadObject extends KubeObject {
  spec?: { replicas?: number };
}
const PodsType = resourceType<PodObject>({ apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true });
const WorkloadsType = resourceType<WorkloadObject>({
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  plural: 'deployments',
  namespaced: true,
});

interface PodLife {
  name: string;
  uid: string;
  ip?: string;
  seenAt: number;
  readyAt?: number;
  /** When the watch first showed its deletionTimestamp. */
  deletingAt?: number;
  /** Its pod-deletion-cost annotation at that moment. */
  costWhenDeleted?: string;
  /** The child's spec.replicas at that moment. */
  replicasWhenDeleted?: number;
  goneAt?: number;
}

/** What the watches saw: every replica count and every pod's life, with the highest counts. */
class Timeline {
  readonly pods = new Map<string, PodLife>();
  readonly replicas: { at: number; replicas: number }[] = [];
  maxReplicas = 0;
  /** Most pods alive (not being deleted) at once. */
  maxLive = 0;
  private readonly t0 = Date.now();

  get currentReplicas(): number | undefined {
    return this.replicas.at(-1)?.replicas;
  }

  live(): PodLife[] {
    return [...this.pods.values()].filter((p) => p.deletingAt === undefined && p.goneAt === undefined);
  }

  existing(): PodLife[] {
    return [...this.pods.values()].filter((p) => p.goneAt === undefined);
  }

  onWorkload(w: WorkloadObject): void {
    const replicas = w.spec?.replicas ?? 1;
    if (replicas !== this.currentReplicas) this.replicas.push({ at: Date.now(), replicas });
    this.maxReplicas = Math.max(this.maxReplicas, replicas);
  }

  onPod(p: PodObject, gone = false): void {
    const uid = p.metadata?.uid ?? '';
    const now = Date.now();
    let life = this.pods.get(uid);
    if (!life) {
      life = { name: p.metadata?.name ?? '', uid, seenAt: now };
      this.pods.set(uid, life);
    }
    life.ip ??= p.status?.podIP;
    const ready = p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True');
    if (ready && life.readyAt === undefined) life.readyAt = now;
    if (p.metadata?.deletionTimestamp && life.deletingAt === undefined) {
      life.deletingAt = now;
      life.costWhenDeleted = p.metadata?.annotations?.[ANNOTATION.podDeletionCost];
      life.replicasWhenDeleted = this.currentReplicas;
    }
    if (gone && life.goneAt === undefined) life.goneAt = now;
    this.maxLive = Math.max(this.maxLive, this.live().length);
  }

  describe(): string {
    const t = (ms: number | undefined) => (ms === undefined ? '-' : `${((ms - this.t0) / 1000).toFixed(1)}s`);
    const lines = [`replicas: ${this.replicas.map((r) => `${t(r.at)}=${r.replicas}`).join(' ')}`];
    for (const p of this.pods.values())
      lines.push(
        `pod ${p.name} ${p.ip ?? ''}: seen ${t(p.seenAt)} ready ${t(p.readyAt)} deleting ${t(p.deletingAt)} (cost ${p.costWhenDeleted ?? 'none'}, replicas ${p.replicasWhenDeleted ?? '-'}) gone ${t(p.goneAt)}`,
      );
    return lines.join('\n');
  }
}

type Prediction = Awaited<ReturnType<Replicate['predictions']['get']>>;

let dev: Dev;
let client: KubeClient;
let replicate: Replicate;
const timeline = new Timeline();
const informers: Informer[] = [];

const done = (p: Prediction) => ['succeeded', 'failed', 'canceled'].includes(p.status);

/** A prediction through the gateway, held with `Prefer: wait` and polled if it runs longer. */
async function predict(seconds: number): Promise<Prediction> {
  let p = (await replicate.deployments.predictions.create(NS, NAME, {
    input: { seconds },
    wait: 60,
  })) as Prediction;
  if (done(p)) return p;
  const id = p.id;
  return waitFor(
    `prediction ${id} to finish`,
    async () => {
      p = await replicate.predictions.get(id);
      return done(p) ? p : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 500 },
  );
}

async function finished(id: string, timeoutMs: number): Promise<Prediction> {
  return waitFor(
    `prediction ${id} to finish`,
    async () => {
      const p = await replicate.predictions.get(id);
      return done(p) ? p : undefined;
    },
    { timeoutMs, intervalMs: 250 },
  );
}

/** What Cog's sleep model answers for `seconds` (Python's float repr, like JavaScript's here). */
const slept = (seconds: number) => `slept ${seconds} s`;

/** The gateway's count of ended predictions of the Deployment, by status. */
async function gatewayCounts(): Promise<Record<string, number>> {
  const text = await (await fetch(`${dev.httpUrl}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line.startsWith('modelplane_gateway_predictions_total{')) continue;
    if (!line.includes(`deployment="${NS}/${NAME}"`)) continue;
    const status = /status="([a-z]+)"/.exec(line)?.[1];
    if (status) out[status] = Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return out;
}

interface SidecarLine {
  msg?: string;
  prediction?: string;
  status?: string;
  inflight?: number;
}

/** Every sidecar log line of the Deployment's pods, by pod name. */
function sidecarLogs(): Map<string, SidecarLine[]> {
  const dir = join(dev.logDir, 'pods');
  const out = new Map<string, SidecarLine[]>();
  if (!existsSync(dir)) return out;
  for (const podDir of readdirSync(dir)) {
    if (!podDir.startsWith(`${NS}_`)) continue;
    const pod = podDir.split('_')[1] ?? '';
    const cdir = join(dir, podDir, SIDECAR_CONTAINER);
    if (!existsSync(cdir)) continue;
    const lines: SidecarLine[] = [];
    for (const f of readdirSync(cdir)) {
      for (const l of readFileSync(join(cdir, f), 'utf8').split('\n')) {
        if (!l.startsWith('{')) continue;
        try {
          lines.push(JSON.parse(l) as SidecarLine);
        } catch {}
      }
    }
    out.set(pod, lines);
  }
  return out;
}

/** The pod whose sidecar runs prediction `id` (asked on each live pod's own loopback address). */
async function podRunning(id: string): Promise<PodLife | undefined> {
  for (const pod of timeline.live()) {
    if (!pod.ip) continue;
    const base = `http://${pod.ip}:${SIDECAR_API_PORT}`;
    // The sidecar answers the operator only: ask with its token, from its key in its namespace.
    const authorization = await SidecarKey.inNamespace(client, SYSTEM_NAMESPACE).authorization(base);
    const res = await fetch(`${base}/predictions/${id}`, { headers: { authorization } }).catch(
      () => undefined,
    );
    if (res?.ok) return pod;
  }
  return undefined;
}

/** The autoscaler's Events on the modelplane Deployment, oldest first. */
async function events(): Promise<{ reason: string; note: string }[]> {
  const list = await client.request<{
    items: {
      reason?: string;
      note?: string;
      eventTime?: string;
      reportingController?: string;
      regarding?: { name?: string; apiVersion?: string };
    }[];
  }>('GET', `/apis/events.k8s.io/v1/namespaces/${NS}/events`);
  return list.items
    .filter(
      (e) =>
        e.regarding?.name === NAME &&
        e.regarding?.apiVersion?.startsWith('modelplane.dev/') &&
        e.reportingController === 'modelplane.dev/autoscaler',
    )
    .sort((a, b) => Date.parse(a.eventTime ?? '') - Date.parse(b.eventTime ?? ''))
    .map((e) => ({ reason: e.reason ?? '', note: e.note ?? '' }));
}

async function atRest(what: string, timeoutMs: number): Promise<void> {
  await waitFor(what, () => timeline.currentReplicas === 0 && timeline.existing().length === 0, {
    timeoutMs,
    intervalMs: 100,
  });
}

describe('autoscaling on the local cluster', () => {
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
    const workloads = new Informer(client, WorkloadsType, {
      namespace: NS,
      fieldSelector: `metadata.name=${NAME}`,
    });
    workloads.addEventHandler({
      onAdd: (w) => timeline.onWorkload(w),
      onUpdate: (_o, w) => timeline.onWorkload(w),
    });
    const pods = new Informer(client, PodsType, {
      namespace: NS,
      labelSelector: `${LABEL.deployment}=${NAME}`,
    });
    pods.addEventHandler({
      onAdd: (p) => timeline.onPod(p),
      onUpdate: (_o, p) => timeline.onPod(p),
      onDelete: (p) => timeline.onPod(p, true),
    });
    informers.push(workloads as unknown as Informer, pods as unknown as Informer);
    for (const i of informers) i.start();
    await Promise.all(informers.map((i) => i.waitForSync({ timeoutMs: 30_000 })));
    replicate = new Replicate({ auth: dev.token, baseUrl: `${dev.gatewayUrl}/v1` });
  }, 600_000);

  afterEach((ctx) => {
    if (ctx.task.result?.state !== 'fail' || !dev) return;
    process.stderr.write(
      `\n--- ${ctx.task.name} failed\noperator log: ${dev.operatorLog}\npod logs: ${join(dev.logDir, 'pods')}\n${timeline.describe()}\n`,
    );
  });

  afterAll(async () => {
    if (dev) {
      const recorded = await events().catch(() => []);
      process.stderr.write(
        `\n--- what the watches saw (operator log: ${dev.operatorLog})\n${timeline.describe()}\n${recorded.map((e) => `${e.reason}: ${e.note}`).join('\n')}\n`,
      );
    }
    await Promise.all(informers.map((i) => i.stop()));
    await dev?.stop();
  }, 120_000);

  it('at rest has no instance; the first prediction is held while it scales 0 → 1, then succeeds', async () => {
    await atRest('the Deployment to rest at 0 replicas', 30_000);
    expect(timeline.pods.size).toBe(0);

    const created = (await replicate.deployments.predictions.create(NS, NAME, {
      input: { seconds: 0.5 },
    })) as Prediction;
    expect(created.status).toBe('starting');
    const p = await finished(created.id, 120_000);
    expect(p.status, String(p.error ?? '')).toBe('succeeded');
    expect(p.output).toBe(slept(0.5));

    // It was held: the instance that ran it was started for it.
    const [pod, ...others] = [...timeline.pods.values()];
    expect(others).toEqual([]);
    expect(pod?.seenAt).toBeGreaterThanOrEqual(Date.parse(p.created_at) - 50);
    expect(pod?.readyAt).toBeDefined();
    expect(Date.parse(p.started_at ?? '')).toBeGreaterThanOrEqual((pod?.readyAt ?? Infinity) - 1000);
    expect(timeline.replicas.map((r) => r.replicas).slice(-2)).toEqual([0, 1]);

    // Idle for scaleToZeroAfterSeconds, it goes back to zero.
    await atRest('the Deployment to go back to 0 replicas and no pods', 60_000);
    const reasons = (await events()).map((e) => e.reason);
    expect(reasons).toContain('ScaledFromZero');
    expect(reasons).toContain('ScaledToZero');
  }, 180_000);

  it(`a burst of ${BURST} predictions scales to ${MAX} instances, never more, and every one succeeds once`, async () => {
    const before = await gatewayCounts();
    const seconds = Array.from({ length: BURST }, (_, i) => (1001 + i) / 1000);
    const results = await Promise.allSettled(seconds.map((s) => predict(s)));

    const rejected = results.filter((r) => r.status === 'rejected');
    expect(rejected.map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
    const predictions = results.map((r) => (r as PromiseFulfilledResult<Prediction>).value);
    const failed = predictions.filter((p) => p.status !== 'succeeded');
    expect(failed.map((p) => `${p.id} ${p.status}: ${p.error}`)).toEqual([]);
    // Each has its own id and its own answer.
    expect(new Set(predictions.map((p) => p.id)).size).toBe(BURST);
    predictions.forEach((p, i) => {
      expect(p.input).toEqual({ seconds: seconds[i] });
      expect(p.output).toBe(slept(seconds[i]!));
    });

    // It reached the maximum and never went over it.
    expect(timeline.maxReplicas).toBe(MAX);
    expect(timeline.maxLive).toBe(MAX);
    expect([...timeline.pods.values()].filter((p) => p.readyAt !== undefined).length).toBeGreaterThanOrEqual(
      MAX,
    );

    // The gateway ended exactly 200 more, all succeeded; each ran once on an instance.
    const after = await gatewayCounts();
    expect((after.succeeded ?? 0) - (before.succeeded ?? 0)).toBe(BURST);
    expect((after.failed ?? 0) - (before.failed ?? 0)).toBe(0);
    expect((after.canceled ?? 0) - (before.canceled ?? 0)).toBe(0);
    const runs = new Map<string, number>();
    for (const lines of sidecarLogs().values())
      for (const l of lines)
        if (l.msg === 'prediction finished' && l.prediction)
          runs.set(l.prediction, (runs.get(l.prediction) ?? 0) + 1);
    for (const p of predictions) expect(runs.get(p.id), `runs of ${p.id}`).toBe(1);
  }, 150_000);

  it('scale-down removes the idle instance first and lets a busy one finish its prediction', async () => {
    await waitFor('3 instances ready after the burst', () => timeline.live().length === MAX, {
      timeoutMs: 10_000,
    });
    expect(timeline.currentReplicas).toBe(MAX);
    // Two long predictions while demand falls below what the instances carry: the gateway
    // sends them to the two instances with least outstanding, one instance stays idle.
    const long = await Promise.all(
      [LONG_SECONDS, LONG_SECONDS + 0.5].map(
        async (s) =>
          (await replicate.deployments.predictions.create(NS, NAME, { input: { seconds: s } })) as Prediction,
      ),
    );
    const busy = await Promise.all(
      long.map((p) => waitFor(`the pod running ${p.id}`, () => podRunning(p.id), { timeoutMs: 10_000 })),
    );
    expect(new Set(busy.map((b) => b.uid)).size).toBe(2);
    const idle = timeline.live().find((p) => !busy.some((b) => b.uid === p.uid));
    expect(idle).toBeDefined();

    await waitFor('the Deployment to scale down to 1 instance', () => timeline.currentReplicas === 1, {
      timeoutMs: 60_000,
    });
    const scaledDownAt = Date.now();
    const survivor = await waitFor('one instance left alive', () => {
      const live = timeline.live();
      return live.length === 1 ? live[0] : undefined;
    });
    // Both were still running when the count came down.
    for (const p of long) expect((await replicate.predictions.get(p.id)).status).toBe('processing');

    // Every one succeeds, including the one on the instance that was removed.
    const results = await Promise.all(long.map((p) => finished(p.id, 60_000)));
    results.forEach((p, i) => {
      expect(p.status, String(p.error ?? '')).toBe('succeeded');
      expect(p.output).toBe(slept(i === 0 ? LONG_SECONDS : LONG_SECONDS + 0.5));
      expect(Date.parse(p.completed_at ?? '')).toBeGreaterThan(scaledDownAt - 1000);
    });

    // The idle one went first (at the same step as a busy one at the latest); the one kept is busy.
    const idleLife = timeline.pods.get(idle!.uid)!;
    expect(idleLife.deletingAt).toBeDefined();
    expect(busy.some((b) => b.uid === survivor.uid)).toBe(true);
    const removedBusy = busy.filter((b) => b.uid !== survivor.uid).map((b) => timeline.pods.get(b.uid)!);
    expect(removedBusy).toHaveLength(1);
    const drained = removedBusy[0]!;
    expect(drained.deletingAt).toBeDefined();
    expect(idleLife.replicasWhenDeleted ?? 0).toBeGreaterThanOrEqual(drained.replicasWhenDeleted ?? 0);
    // The autoscaler had marked the busy pods before the ReplicaSet chose.
    expect(drained.costWhenDeleted).toBe('1');
    expect(idleLife.costWhenDeleted ?? '0').toBe('0');

    // The removed busy instance drained: it was told to stop while running its prediction,
    // and exited only after that prediction had ended.
    const drainedPrediction = results[busy.findIndex((b) => b.uid === drained.uid)]!;
    expect(drained.deletingAt!).toBeLessThan(Date.parse(drainedPrediction.completed_at ?? ''));
    await waitFor('the drained pod to be gone', () => timeline.pods.get(drained.uid)?.goneAt, {
      timeoutMs: 30_000,
    });
    expect(timeline.pods.get(drained.uid)!.goneAt!).toBeGreaterThanOrEqual(
      Date.parse(drainedPrediction.completed_at ?? ''),
    );
    const log = sidecarLogs().get(drained.name) ?? [];
    const draining = log.find((l) => l.msg === 'draining');
    expect(draining?.inflight).toBe(1);
    expect(log.some((l) => l.msg === 'drained')).toBe(true);
    expect(
      log.some(
        (l) =>
          l.msg === 'prediction finished' &&
          l.prediction === drainedPrediction.id &&
          l.status === 'succeeded',
      ),
    ).toBe(true);
  }, 150_000);

  it('returns to zero once idle, with an Event for each step', async () => {
    await atRest('the Deployment to go back to 0 replicas and no pods', 90_000);
    const recorded = await events();
    const text = recorded.map((e) => `${e.reason}: ${e.note}`).join('\n');
    const reasons = new Set(recorded.map((e) => e.reason));
    for (const r of ['ScaledFromZero', 'ScaledDown', 'ScaledToZero']) expect(reasons, text).toContain(r);
    // The burst's step to the maximum: ScaledUp from one instance, or ScaledFromZero straight
    // to three when the whole burst was waiting at the first decision.
    expect(text).toMatch(new RegExp(`^(ScaledUp|ScaledFromZero): \\d → ${MAX} instances`, 'm'));
    // Over the whole file, never more than maxInstances.
    expect(timeline.maxReplicas).toBe(MAX);
    expect(timeline.maxLive).toBe(MAX);
  }, 120_000);
});
