/**
 * The usage collector, run on the Lease holder beside the controllers. It reads every model
 * pod's sidecar (`GET /status`: the instance's milliseconds by state since it started, and
 * the predictions it ended with their exact cost) every `intervalMs`, and every
 * `terminatingIntervalMs` while the pod terminates — the sidecar's drain waits for that last
 * read of its final figures — and records each reading in the usage store
 * (operator/predictions/usage-store.ts), which adds what grew since the last reading to the
 * current five-minute bucket, once however often it is read.
 *
 * A sidecar that cannot be read (its pod starting, or gone unreachable) is read again after
 * `intervalMs`, then ever more rarely while it keeps failing (doubling, up to
 * `MAX_FAILED_INTERVALS` intervals): its figures are totals since the instance started, so
 * a later reading loses nothing, and a thousand unreachable pods do not cost a thousand
 * connection attempts a second.
 *
 * What grew also moves Prometheus counters; and at most every `statusIntervalMs` per
 * Deployment (and only when a figure changed) it writes the last hour's and day's usage into
 * the Deployment's `status.usage`, under its own field manager.
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import { type Deployment as DeploymentObject, LABEL } from '../../crds/index.ts';
import { format, parseDecimal } from '../../lib/decimal.ts';
import type { Caches } from '../controllers/caches.ts';
import { sidecarBase } from '../predictions/endpoints.ts';
import {
  type InstanceSample,
  summarize,
  type UsageStore,
  type UsageSummary,
} from '../predictions/usage-store.ts';
import { Deployments, type Pod, type Stored } from '../resources.ts';
import { applyStatus, type Clock, type KubeClient, type Logger, realClock, sleep } from '../runtime/index.ts';

export const USAGE_FIELD_MANAGER = 'modelplane-usage';
/** A sidecar failing again and again is read at most this many intervals apart. */
export const MAX_FAILED_INTERVALS = 6;

type Deployment = Stored<DeploymentObject>;

/** The part of the sidecar's `GET /status` the collector reads. */
export interface SidecarStatus {
  deployment?: string;
  hardware?: string;
  price_per_second?: string;
  instance_seconds?: Record<string, number>;
  predictions?: Record<string, number>;
  cost?: string;
  final?: boolean;
}

export interface UsageCollectorOptions {
  client: KubeClient;
  caches: Pick<Caches, 'pods' | 'deployments'>;
  /** The usage store, once the prediction store is open. */
  usage: () => UsageStore | undefined;
  registry: Registry;
  log: Logger;
  /** Between readings of a running pod (default 10 s). */
  intervalMs?: number;
  /** Between readings of a terminating pod (default 1 s). */
  terminatingIntervalMs?: number;
  /** Least time between usage status writes of one Deployment (default 60 s). */
  statusIntervalMs?: number;
  /** Reads a sidecar's status (default: HTTP GET with a 2 s timeout). */
  read?: (url: string) => Promise<SidecarStatus>;
  /** The `Authorization` header of the default read of the sidecar at `base` (operator/sidecar-key.ts). */
  authorization?: (base: string) => Promise<string>;
  clock?: Clock;
}

async function httpRead(
  url: string,
  authorization?: (base: string) => Promise<string>,
): Promise<SidecarStatus> {
  const headers: Record<string, string> = {};
  if (authorization) headers.authorization = await authorization(new URL(url).origin);
  const res = await fetch(url, { headers, signal: AbortSignal.timeout(2000) });
  if (!res.ok) throw new Error(`GET ${url}: ${res.status}`);
  return (await res.json()) as SidecarStatus;
}

/** The sidecar's API URL of a pod that has an IP, whatever its readiness. */
export function sidecarStatusUrl(pod: Pod): string | undefined {
  const base = sidecarBase(pod);
  return base ? `${base}/status` : undefined;
}

/** A reading of a sidecar as a sample of instance `pod`; undefined when it lacks the figures. */
export function sampleOf(
  pod: Pod,
  st: SidecarStatus,
  deployment: Deployment | undefined,
  at: number,
): InstanceSample | undefined {
  const uid = pod.metadata?.uid;
  const namespace = pod.metadata?.namespace;
  const name = pod.metadata?.labels?.[LABEL.deployment];
  const seconds = st.instance_seconds;
  if (!uid || !namespace || !name || !seconds) return undefined;
  const ms = (s: string) => Math.round((seconds[s] ?? 0) * 1000);
  const predictions = Object.values(st.predictions ?? {}).reduce((a, b) => a + b, 0);
  return {
    instance: uid,
    pod: pod.metadata?.name ?? uid,
    namespace,
    deployment: name,
    model: `${namespace}/${deployment?.spec.model ?? ''}`,
    hardware: st.hardware ?? deployment?.spec.hardware ?? '',
    pricePerSecond: format(parseDecimal(st.price_per_second ?? '0')),
    ms: { setup: ms('setup'), idle: ms('idle'), busy: ms('busy'), down: ms('down') },
    predictions,
    predictionCost: st.cost ?? '0',
    at,
    ended: st.final === true,
  };
}

/** A usage summary as the Deployment's status shows it. */
export function statusWindow(s: UsageSummary | undefined) {
  return {
    instances: s?.instances ?? 0,
    setupSeconds: s?.setup_seconds ?? 0,
    idleSeconds: s?.idle_seconds ?? 0,
    busySeconds: s?.busy_seconds ?? 0,
    downSeconds: s?.down_seconds ?? 0,
    utilization: s?.utilization ?? 0,
    predictions: s?.predictions ?? 0,
    predictionCost: s?.prediction_cost ?? '0',
    instanceCost: s?.instance_cost ?? '0',
    idleCost: s?.idle_cost ?? '0',
    ...(s?.cost_per_prediction ? { costPerPrediction: s.cost_per_prediction } : {}),
  };
}

export class UsageCollector {
  private readonly opts: UsageCollectorOptions;
  private readonly clock: Clock;
  private readonly read: (url: string) => Promise<SidecarStatus>;
  /** When each instance's sidecar is next due to be read, and how many reads in a row failed. */
  private readonly due = new Map<string, { at: number; failures: number }>();
  /** Each live instance's deployment and last reported state. */
  private readonly lastState = new Map<string, { key: string; state: string }>();
  private readonly lastStatus = new Map<string, { at: number; json: string }>();
  private readonly metrics: {
    seconds: Counter<'namespace' | 'deployment' | 'hardware' | 'state'>;
    predictions: Counter<'namespace' | 'deployment'>;
    predictionCost: Counter<'namespace' | 'deployment'>;
    instanceCost: Counter<'namespace' | 'deployment' | 'hardware'>;
    idleCost: Counter<'namespace' | 'deployment' | 'hardware'>;
    instances: Gauge<'namespace' | 'deployment' | 'state'>;
    reads: Counter<'result'>;
  };

  constructor(opts: UsageCollectorOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.read = opts.read ?? ((url) => httpRead(url, opts.authorization));
    const registers = [opts.registry];
    const dep = ['namespace', 'deployment'] as const;
    this.metrics = {
      seconds: new Counter({
        name: 'modelplane_usage_instance_seconds_total',
        help: "Seconds the deployment's instances spent in each state (setup, idle, busy, down), as their sidecars metered them.",
        labelNames: [...dep, 'hardware', 'state'],
        registers,
      }),
      predictions: new Counter({
        name: 'modelplane_usage_predictions_total',
        help: "Predictions the deployment's instances ended.",
        labelNames: dep,
        registers,
      }),
      predictionCost: new Counter({
        name: 'modelplane_usage_prediction_cost_dollars_total',
        help: 'What the predictions were charged (their cost), in US dollars.',
        labelNames: dep,
        registers,
      }),
      instanceCost: new Counter({
        name: 'modelplane_usage_instance_cost_dollars_total',
        help: "What the instances' time cost: every second they ran × the hardware price, in US dollars.",
        labelNames: [...dep, 'hardware'],
        registers,
      }),
      idleCost: new Counter({
        name: 'modelplane_usage_idle_cost_dollars_total',
        help: 'What the time that served nothing cost: (setup + idle + down) seconds × the hardware price, in US dollars.',
        labelNames: [...dep, 'hardware'],
        registers,
      }),
      instances: new Gauge({
        name: 'modelplane_usage_instances',
        help: "The deployment's instances by the state their sidecar last reported (setup, idle, busy, down).",
        labelNames: [...dep, 'state'],
        registers,
      }),
      reads: new Counter({
        name: 'modelplane_usage_reads_total',
        help: 'Readings of sidecars by result (ok, failed).',
        labelNames: ['result'],
        registers,
      }),
    };
  }

  async run(signal: AbortSignal): Promise<void> {
    const tick = this.opts.terminatingIntervalMs ?? 1000;
    await Promise.all(
      [this.opts.caches.pods, this.opts.caches.deployments].map((i) => i.waitForSync({ signal })),
    ).catch(() => {});
    this.opts.log.info({ intervalMs: this.opts.intervalMs ?? 10_000 }, 'usage collector started');
    try {
      while (!signal.aborted) {
        await this.tick().catch((err) => this.opts.log.error({ err }, 'usage tick failed'));
        await sleep(tick, signal, this.clock);
      }
    } finally {
      this.metrics.instances.reset();
      this.lastStatus.clear();
    }
  }

  /** Reads the pods that are due, then writes the statuses that are due. */
  async tick(): Promise<void> {
    const usage = this.opts.usage();
    if (!usage) return;
    const now = this.clock.now();
    const interval = this.opts.intervalMs ?? 10_000;
    const pods = this.opts.caches.pods.list();
    const live = new Set<string>();
    await Promise.all(
      pods.map(async (pod) => {
        const uid = pod.metadata?.uid;
        const url = sidecarStatusUrl(pod);
        if (!uid || !url) return;
        live.add(uid);
        const terminating = Boolean(pod.metadata?.deletionTimestamp);
        const due = this.due.get(uid);
        if (!terminating && due !== undefined && now < due.at) return;
        let st: SidecarStatus;
        try {
          st = await this.read(url);
          this.metrics.reads.inc({ result: 'ok' });
        } catch (err) {
          this.metrics.reads.inc({ result: 'failed' });
          this.opts.log.debug(
            { err: (err as Error).message, pod: pod.metadata?.name },
            'usage: cannot read a sidecar',
          );
          // Not again at the next tick: after the interval, doubling while it keeps failing.
          const failures = (due?.failures ?? 0) + 1;
          const wait = interval * Math.min(2 ** (failures - 1), MAX_FAILED_INTERVALS);
          this.due.set(uid, { at: now + wait, failures });
          return;
        }
        this.due.set(uid, { at: now + interval, failures: 0 });
        const dep = this.opts.caches.deployments.get(
          pod.metadata?.labels?.[LABEL.deployment] ?? '',
          pod.metadata?.namespace,
        );
        const sample = sampleOf(pod, st, dep, this.clock.now());
        if (!sample) return;
        const key = `${sample.namespace}/${sample.deployment}`;
        const state = (st as { state?: string }).state;
        if (state && !st.final) this.lastState.set(uid, { key, state });
        else this.lastState.delete(uid);
        const d = await usage.recordInstance(sample);
        const l = { namespace: sample.namespace, deployment: sample.deployment };
        const price = parseDecimal(sample.pricePerSecond);
        for (const [s, ms] of Object.entries(d.ms))
          if (ms > 0) this.metrics.seconds.inc({ ...l, hardware: sample.hardware, state: s }, ms / 1000);
        if (d.predictions > 0) this.metrics.predictions.inc(l, d.predictions);
        const pc = Number(d.predictionCost);
        if (pc > 0) this.metrics.predictionCost.inc(l, pc);
        const all = d.ms.setup + d.ms.idle + d.ms.busy + d.ms.down;
        const idle = d.ms.setup + d.ms.idle + d.ms.down;
        if (all > 0)
          this.metrics.instanceCost.inc(
            { ...l, hardware: sample.hardware },
            (all / 1000) * Number(format(price)),
          );
        if (idle > 0)
          this.metrics.idleCost.inc(
            { ...l, hardware: sample.hardware },
            (idle / 1000) * Number(format(price)),
          );
      }),
    );
    for (const uid of this.due.keys()) if (!live.has(uid)) this.due.delete(uid);
    const states = new Map<string, Record<string, number>>();
    for (const [uid, { key, state }] of this.lastState) {
      if (!live.has(uid)) {
        this.lastState.delete(uid);
        continue;
      }
      const counts = states.get(key) ?? {};
      counts[state] = (counts[state] ?? 0) + 1;
      states.set(key, counts);
    }
    this.metrics.instances.reset();
    for (const [key, counts] of states) {
      const [namespace, deployment] = key.split('/') as [string, string];
      for (const [state, n] of Object.entries(counts))
        this.metrics.instances.set({ namespace, deployment, state }, n);
    }
    await this.writeStatuses(usage);
  }

  private async writeStatuses(usage: UsageStore): Promise<void> {
    const now = this.clock.now();
    const every = this.opts.statusIntervalMs ?? 60_000;
    const due = this.opts.caches.deployments.list().filter((d) => {
      const last = this.lastStatus.get(`${d.metadata.namespace}/${d.metadata.name}`);
      return !last || now - last.at >= every;
    });
    if (!due.length) return;
    const day = { since: now - 86_400_000, until: now + 1, namespaces: 'all' as const };
    const [buckets, instances] = await Promise.all([usage.buckets(day), usage.instances(day)]);
    const hourAgo = now - 3_600_000;
    const byDeployment = (since: number) =>
      new Map(
        summarize(
          'deployment',
          buckets.filter((b) => b.start >= since),
          instances.filter((i) => i.lastSeen >= since),
        ).map((s) => [s.key, s]),
      );
    const lastDay = byDeployment(day.since);
    const lastHour = byDeployment(hourAgo);
    for (const d of due) {
      const key = `${d.metadata.namespace}/${d.metadata.name}`;
      const dayUsage = lastDay.get(key);
      const figures = { lastHour: statusWindow(lastHour.get(key)), lastDay: statusWindow(dayUsage) };
      const json = JSON.stringify(figures);
      const prev = this.lastStatus.get(key);
      // Nothing ran and nothing is recorded: leave the status alone.
      if (!dayUsage && !d.status?.usage) {
        this.lastStatus.set(key, { at: now, json });
        continue;
      }
      const current =
        d.status?.usage &&
        JSON.stringify({ lastHour: d.status.usage.lastHour, lastDay: d.status.usage.lastDay });
      if (prev?.json === json || current === json) {
        this.lastStatus.set(key, { at: now, json });
        continue;
      }
      try {
        await applyStatus(
          this.opts.client,
          Deployments,
          d,
          { usage: { ...figures, updatedAt: new Date(now).toISOString().replace(/\.\d+Z$/, 'Z') } } as never,
          { fieldManager: USAGE_FIELD_MANAGER },
        );
        this.lastStatus.set(key, { at: now, json });
      } catch (err) {
        this.opts.log.warn(
          { err: (err as Error).message, deployment: key },
          'usage: cannot write the status',
        );
      }
    }
  }
}
