/**
 * Usage: what each instance (pod) of a deployment spent its time on, and what it earned.
 *
 * Every instance's sidecar counts, from its start, the milliseconds it spent in each state
 * (setup, idle, busy, down) and the predictions it ended with their exact cost. The operator
 * reads these cumulative figures (a *sample*) every few seconds and records them here:
 * `recordInstance` keeps the last sample of each instance and adds what grew since then to the
 * time bucket of the reading, so a sample read twice (by two replicas, or again after a
 * restart) counts once, and an instance's figures outlive it. A sidecar that restarts in the
 * same pod starts again from zero: a sample smaller than the last counts as new.
 *
 * The memory implementation is here; the durable one (PostgreSQL, PGlite) is in
 * operator/store/sql-usage.ts. Both follow usage-store.contract.ts.
 */
import {
  add,
  compare,
  costOfMs,
  type Decimal,
  divideBy,
  format,
  multiply,
  parseDecimal,
  round,
  subtract,
  zero,
} from '../../lib/decimal.ts';

/** The length of a usage time bucket: five minutes. */
export const USAGE_BUCKET_MS = 5 * 60_000;

export const USAGE_STATES = ['setup', 'idle', 'busy', 'down'] as const;
export type UsageState = (typeof USAGE_STATES)[number];
export type StateMs = Record<UsageState, number>;

/** What the operator read from one instance's sidecar: figures since the instance started. */
export interface InstanceSample {
  /** Names the instance for good: the pod's uid. */
  instance: string;
  /** The pod's name. */
  pod: string;
  namespace: string;
  deployment: string;
  /** `namespace/name` of the model. */
  model: string;
  /** The HardwareClass. */
  hardware: string;
  /** The hardware's price per second, a decimal string. */
  pricePerSecond: string;
  /** Whole milliseconds in each state since the instance started. */
  ms: StateMs;
  /** Predictions the instance ended. */
  predictions: number;
  /** Their exact cost, a decimal string. */
  predictionCost: string;
  /** When it was read (epoch ms). */
  at: number;
  /** The instance is gone (this is its last sample). */
  ended?: boolean;
}

/** What a sample added. */
export interface UsageDelta {
  ms: StateMs;
  predictions: number;
  predictionCost: string;
}

/** One time bucket of one deployment at one price. */
export interface UsageBucket {
  /** Start of the bucket (epoch ms). */
  start: number;
  namespace: string;
  deployment: string;
  model: string;
  hardware: string;
  pricePerSecond: string;
  ms: StateMs;
  predictions: number;
  predictionCost: string;
}

/** One instance's figures, as last read. */
export interface InstanceUsage {
  instance: string;
  pod: string;
  namespace: string;
  deployment: string;
  model: string;
  hardware: string;
  pricePerSecond: string;
  /** First and last reading (epoch ms). */
  firstSeen: number;
  lastSeen: number;
  ended: boolean;
  ms: StateMs;
  predictions: number;
  predictionCost: string;
}

export interface UsageQuery {
  /** From this time (epoch ms), inclusive: buckets that start at or after it. */
  since: number;
  /** Until this time (epoch ms), exclusive. */
  until: number;
  namespaces: 'all' | readonly string[];
}

export interface UsageStore {
  /** Records a sample; resolves what it added (all zero when nothing grew). */
  recordInstance(sample: InstanceSample): Promise<UsageDelta>;
  /** The buckets of the period, oldest first. */
  buckets(q: UsageQuery): Promise<UsageBucket[]>;
  /** The instances read during the period (last reading at or after `since`, first before `until`). */
  instances(q: UsageQuery): Promise<InstanceUsage[]>;
  /** Predictions per model (`namespace/name`) over every bucket kept: the models' run_count. */
  runCounts(): Promise<Record<string, number>>;
  /** Deletes buckets that started, and ended instances last read, before `before`; resolves how many. */
  purgeUsage(before: number): Promise<number>;
}

export function zeroMs(): StateMs {
  return { setup: 0, idle: 0, busy: 0, down: 0 };
}

export function bucketStart(at: number): number {
  return Math.floor(at / USAGE_BUCKET_MS) * USAGE_BUCKET_MS;
}

const sumMs = (ms: StateMs) => ms.setup + ms.idle + ms.busy + ms.down;

/**
 * What `next` adds to `prev` (the instance's last sample, if any). A sample whose total time
 * is smaller than the last one's is of a restarted sidecar: all of it is new.
 */
export function usageDelta(
  prev: Pick<InstanceUsage, 'ms' | 'predictions' | 'predictionCost'> | undefined,
  next: InstanceSample,
): UsageDelta {
  const restarted =
    prev !== undefined && (sumMs(next.ms) < sumMs(prev.ms) || next.predictions < prev.predictions);
  const base = prev && !restarted ? prev : { ms: zeroMs(), predictions: 0, predictionCost: '0' };
  const ms = zeroMs();
  for (const s of USAGE_STATES) ms[s] = Math.max(0, Math.round(next.ms[s]) - Math.round(base.ms[s]));
  let cost = subtract(parseDecimal(next.predictionCost), parseDecimal(base.predictionCost));
  if (compare(cost, zero()) < 0) cost = zero();
  return { ms, predictions: Math.max(0, next.predictions - base.predictions), predictionCost: format(cost) };
}

export function isEmptyDelta(d: UsageDelta): boolean {
  return sumMs(d.ms) === 0 && d.predictions === 0 && compare(parseDecimal(d.predictionCost), zero()) === 0;
}

function inNamespaces(ns: string, q: UsageQuery): boolean {
  return q.namespaces === 'all' || q.namespaces.includes(ns);
}

/** Usage in this process's memory (tests, `--store memory`): lost when it ends. */
export class MemoryUsageStore implements UsageStore {
  private readonly instancesById = new Map<string, InstanceUsage>();
  private readonly bucketsByKey = new Map<string, UsageBucket>();

  async recordInstance(sample: InstanceSample): Promise<UsageDelta> {
    const prev = this.instancesById.get(sample.instance);
    const delta = usageDelta(prev, sample);
    this.instancesById.set(sample.instance, {
      instance: sample.instance,
      pod: sample.pod,
      namespace: sample.namespace,
      deployment: sample.deployment,
      model: sample.model,
      hardware: sample.hardware,
      pricePerSecond: sample.pricePerSecond,
      firstSeen: prev?.firstSeen ?? sample.at,
      lastSeen: Math.max(prev?.lastSeen ?? sample.at, sample.at),
      ended: (prev?.ended ?? false) || (sample.ended ?? false),
      ms: { ...sample.ms },
      predictions: sample.predictions,
      predictionCost: sample.predictionCost,
    });
    if (isEmptyDelta(delta)) return delta;
    const start = bucketStart(sample.at);
    const key = [
      start,
      sample.namespace,
      sample.deployment,
      sample.model,
      sample.hardware,
      sample.pricePerSecond,
    ].join('\n');
    const b = this.bucketsByKey.get(key) ?? {
      start,
      namespace: sample.namespace,
      deployment: sample.deployment,
      model: sample.model,
      hardware: sample.hardware,
      pricePerSecond: sample.pricePerSecond,
      ms: zeroMs(),
      predictions: 0,
      predictionCost: '0',
    };
    for (const s of USAGE_STATES) b.ms[s] += delta.ms[s];
    b.predictions += delta.predictions;
    b.predictionCost = format(add(parseDecimal(b.predictionCost), parseDecimal(delta.predictionCost)));
    this.bucketsByKey.set(key, b);
    return delta;
  }

  async buckets(q: UsageQuery): Promise<UsageBucket[]> {
    return [...this.bucketsByKey.values()]
      .filter((b) => b.start >= q.since && b.start < q.until && inNamespaces(b.namespace, q))
      .sort((a, b) => a.start - b.start)
      .map((b) => ({ ...b, ms: { ...b.ms } }));
  }

  async instances(q: UsageQuery): Promise<InstanceUsage[]> {
    return [...this.instancesById.values()]
      .filter((i) => i.lastSeen >= q.since && i.firstSeen < q.until && inNamespaces(i.namespace, q))
      .sort((a, b) => a.firstSeen - b.firstSeen || (a.instance < b.instance ? -1 : 1))
      .map((i) => ({ ...i, ms: { ...i.ms } }));
  }

  async runCounts(): Promise<Record<string, number>> {
    const out: Record<string, number> = {};
    for (const b of this.bucketsByKey.values()) out[b.model] = (out[b.model] ?? 0) + b.predictions;
    return out;
  }

  async purgeUsage(before: number): Promise<number> {
    let n = 0;
    for (const [k, b] of this.bucketsByKey)
      if (b.start < before) {
        this.bucketsByKey.delete(k);
        n++;
      }
    for (const [k, i] of this.instancesById)
      if (i.ended && i.lastSeen < before) {
        this.instancesById.delete(k);
        n++;
      }
    return n;
  }
}

// --- summaries ------------------------------------------------------------------------------

export const USAGE_GROUPS = ['namespace', 'model', 'deployment', 'hardware', 'day', 'instance'] as const;
export type UsageGroup = (typeof USAGE_GROUPS)[number];

/** Usage of one group over a period: times, costs and what follows from them. */
export interface UsageSummary {
  /** The group's key: a namespace, `ns/model`, `ns/deployment`, a SKU, a UTC day, or a pod. */
  key: string;
  instances: number;
  setup_seconds: number;
  idle_seconds: number;
  busy_seconds: number;
  down_seconds: number;
  /** Seconds instances ran (all states). */
  running_seconds: number;
  /** busy ÷ running, 0 when nothing ran. */
  utilization: number;
  predictions: number;
  /** What the predictions were charged (their `cost`, summed). */
  prediction_cost: string;
  /** What the instances' time cost: running seconds × the hardware price. */
  instance_cost: string;
  /** What the time that served nothing cost: (setup + idle + down) seconds × the price. */
  idle_cost: string;
  /** instance_cost ÷ predictions (idle time included), null without predictions. */
  cost_per_prediction: string | null;
  /** cost_per_prediction × the units per action given, when given. */
  cost_per_action?: string | null;
}

interface Acc {
  instances: Set<string>;
  ms: StateMs;
  predictions: number;
  predictionCost: Decimal;
  instanceCost: Decimal;
  idleCost: Decimal;
}

function day(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

function groupKey(
  by: UsageGroup,
  x: { namespace: string; deployment: string; model: string; hardware: string },
  at: number,
  pod?: string,
): string {
  switch (by) {
    case 'namespace':
      return x.namespace;
    case 'model':
      return x.model;
    case 'deployment':
      return `${x.namespace}/${x.deployment}`;
    case 'hardware':
      return x.hardware;
    case 'day':
      return day(at);
    case 'instance':
      return pod ?? '';
  }
}

function addTo(acc: Acc, ms: StateMs, predictions: number, predictionCost: string, price: string): void {
  const p = parseDecimal(price);
  for (const s of USAGE_STATES) acc.ms[s] += ms[s];
  acc.predictions += predictions;
  acc.predictionCost = add(acc.predictionCost, parseDecimal(predictionCost));
  acc.instanceCost = add(acc.instanceCost, costOfMs(sumMs(ms), p));
  acc.idleCost = add(acc.idleCost, costOfMs(ms.setup + ms.idle + ms.down, p));
}

/**
 * Sums `buckets` by `by` (the instance count comes from `instances`): exact costs, seconds to
 * the millisecond. `instance` groups sum each instance's own figures instead of buckets.
 */
export function summarize(
  by: UsageGroup,
  buckets: readonly UsageBucket[],
  instances: readonly InstanceUsage[],
  opts: { unitsPerAction?: string } = {},
): UsageSummary[] {
  const groups = new Map<string, Acc>();
  const acc = (key: string) => {
    let a = groups.get(key);
    if (!a) {
      a = {
        instances: new Set(),
        ms: zeroMs(),
        predictions: 0,
        predictionCost: zero(),
        instanceCost: zero(),
        idleCost: zero(),
      };
      groups.set(key, a);
    }
    return a;
  };
  if (by === 'instance') {
    for (const i of instances) {
      const a = acc(i.pod);
      a.instances.add(i.instance);
      addTo(a, i.ms, i.predictions, i.predictionCost, i.pricePerSecond);
    }
  } else {
    for (const b of buckets)
      addTo(acc(groupKey(by, b, b.start)), b.ms, b.predictions, b.predictionCost, b.pricePerSecond);
    for (const i of instances) {
      if (by === 'day') {
        for (let d = Date.parse(day(i.firstSeen)); d <= i.lastSeen; d += 86_400_000)
          if (groups.has(day(d))) acc(day(d)).instances.add(i.instance);
      } else {
        const key = groupKey(by, i, i.firstSeen);
        if (groups.has(key)) acc(key).instances.add(i.instance);
      }
    }
  }
  const units = opts.unitsPerAction === undefined ? undefined : parseDecimal(opts.unitsPerAction);
  return [...groups.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([key, a]) => {
      const running = sumMs(a.ms);
      const perPrediction = a.predictions > 0 ? format(divide(a.instanceCost, a.predictions)) : null;
      const out: UsageSummary = {
        key,
        instances: a.instances.size,
        setup_seconds: a.ms.setup / 1000,
        idle_seconds: a.ms.idle / 1000,
        busy_seconds: a.ms.busy / 1000,
        down_seconds: a.ms.down / 1000,
        running_seconds: running / 1000,
        utilization: running > 0 ? Math.round((a.ms.busy / running) * 10_000) / 10_000 : 0,
        predictions: a.predictions,
        prediction_cost: format(a.predictionCost),
        instance_cost: format(a.instanceCost),
        idle_cost: format(a.idleCost),
        cost_per_prediction: perPrediction,
      };
      if (units)
        out.cost_per_action =
          perPrediction === null ? null : format(roundTo(multiply(parseDecimal(perPrediction), units)));
      return out;
    });
}

/** Costs per prediction or action: to 9 digits after the point (a nano-dollar). */
const PER_UNIT_SCALE = 9;
function divide(d: Decimal, n: number): Decimal {
  return divideBy(d, BigInt(n), PER_UNIT_SCALE);
}
function roundTo(d: Decimal): Decimal {
  return round(d, PER_UNIT_SCALE);
}
