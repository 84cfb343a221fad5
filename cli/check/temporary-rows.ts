/**
 * The pure parts of the checks that run on temporary deployments: the cold start's phases
 * from the pod's timestamps, the names of temporary Deployments, the cost of a hardware run
 * and the cheapest hardware that meets a latency target. No I/O here; see temporary.ts.
 */
import {
  add,
  compare,
  type Decimal,
  divideBy,
  format,
  fromNumber,
  multiply,
  parseDecimal,
  round,
  zero,
} from '../../lib/decimal.ts';
import { type Pricing, predictionCost } from '../../lib/pricing.ts';
import { formatSeconds, percentile, type Row } from './checks.ts';
import type { ColdStart, ColdStartPhase, HardwareRun } from './report.ts';

// ── Cold start ──────────────────────────────────────────────────────────────────────────

/** What the pod that served the first request says, as epoch milliseconds. */
export interface PodTimes {
  /** metadata.creationTimestamp. */
  created: number;
  /** The PodScheduled condition's lastTransitionTime. */
  scheduled: number;
  /** The latest `state.running.startedAt` of its containers. */
  started: number;
  /** The Ready condition's lastTransitionTime (the sidecar's /ready answered 200). */
  ready: number;
}

/**
 * The phases of a cold start, in seconds from `sentAt` (when the first request was sent) to
 * `answeredAt` (when its answer came): scheduling (request sent → PodScheduled, which holds
 * the scale from zero and the pod's creation), container start (→ the last container
 * started), model setup (→ Ready) and the first prediction (→ answered). The API server's
 * timestamps are whole seconds, so a phase is clamped into [the previous end, the total]:
 * the phases are in order and add up to the total.
 */
export function coldStartPhases(
  sentAt: number,
  pod: PodTimes,
  answeredAt: number,
): { phases: ColdStartPhase[]; total: number; podCreated: number } {
  const total = (answeredAt - sentAt) / 1000;
  const at = (ms: number) => (ms - sentAt) / 1000;
  const names: ColdStartPhase['name'][] = [
    'scheduling',
    'container start',
    'model setup',
    'first prediction',
  ];
  const ends = [at(pod.scheduled), at(pod.started), at(pod.ready), total];
  const phases: ColdStartPhase[] = [];
  let start = 0;
  for (let i = 0; i < names.length; i++) {
    const end = Math.min(total, Math.max(start, ends[i]!));
    phases.push({ name: names[i]!, start, end });
    start = end;
  }
  return { phases, total, podCreated: Math.min(total, Math.max(0, at(pod.created))) };
}

/** The states a pod has reached, of those PodTimes notes. */
export function podStates(pod: {
  status?: {
    conditions?: Array<{ type: string; status: string }>;
    containerStatuses?: Array<{ state?: { running?: unknown } }>;
  };
}): Array<keyof PodTimes> {
  const cond = (type: string) => pod.status?.conditions?.some((c) => c.type === type && c.status === 'True');
  const cs = pod.status?.containerStatuses ?? [];
  const out: Array<keyof PodTimes> = ['created'];
  if (cond('PodScheduled')) out.push('scheduled');
  if (cs.length > 0 && cs.every((c) => c.state?.running)) out.push('started');
  if (cond('Ready')) out.push('ready');
  return out;
}

/**
 * The pod's times made as exact as can be: the API's timestamp `t` is whole seconds (the
 * event was in [t, t + 1 s)), and a watch saw it at `seen`, at or after the event. The
 * event's time is taken as `seen` cut into that second; without a sighting, `t` itself.
 */
export function refine(api: PodTimes, seen: Partial<PodTimes>): PodTimes {
  const one = (k: keyof PodTimes) => {
    const t = api[k];
    const s = seen[k];
    if (s === undefined || Number.isNaN(t)) return s ?? t;
    return Math.min(Math.max(s, t), t + 999);
  };
  return {
    created: one('created'),
    scheduled: one('scheduled'),
    started: one('started'),
    ready: one('ready'),
  };
}

export function coldStartRow(c: ColdStart | { error: string } | { skipped: string }): Row {
  const check = 'cold start';
  if ('skipped' in c) return { check, verdict: 'skip', figure: 'not measured', detail: c.skipped };
  if ('error' in c) return { check, verdict: 'fail', figure: 'not measured', detail: c.error };
  const parts = c.phases.map((p) => `${p.name} ${formatSeconds(p.end - p.start)}`).join(', ');
  return {
    check,
    verdict: 'pass',
    figure: `${formatSeconds(c.total)} (${parts})`,
    detail: `on ${c.on === 'temporary' ? 'the temporary Deployment' : 'the Deployment'} ${c.deployment}${
      c.on === 'temporary' ? ', removed afterwards' : ''
    }`,
  };
}

// ── Temporary Deployments ───────────────────────────────────────────────────────────────

/** Most characters of a temporary Deployment's name: room for its pods' generated suffixes. */
export const MAX_TEMP_NAME = 47;

/**
 * A temporary Deployment's name: `<name>-check-<what>-<suffix>`, lowercased, other characters
 * made `-`, `<name>` and `<what>` cut so the whole is at most MAX_TEMP_NAME characters and a
 * DNS label (starts and ends alphanumeric). `suffix` is the random part (5 of [a-z0-9]).
 */
export function temporaryName(name: string, what: string, suffix: string): string {
  const clean = (s: string) =>
    s
      .toLowerCase()
      .replace(/[^a-z0-9-]+/g, '-')
      .replace(/-+/g, '-')
      .replace(/^-|-$/g, '');
  const tail = `-${clean(suffix) || 'x'}`;
  let w = clean(what);
  let n = clean(name);
  const room = MAX_TEMP_NAME - tail.length - '-check-'.length;
  w = w.slice(0, Math.max(1, Math.min(w.length, Math.floor(room / 2)))).replace(/-$/, '');
  n = n.slice(0, room - w.length).replace(/-$/, '');
  return [n || 'm', 'check', w || 'hw'].join('-') + tail;
}

// ── Hardware ────────────────────────────────────────────────────────────────────────────

export interface MeasuredRuns {
  hardware: string;
  temporary: boolean;
  pricing: Pricing | undefined;
  /** The HardwareClass's spec.pricePerSecond. */
  pricePerSecond: string;
  predictions: ReadonlyArray<{ predictTime: number; totalTime: number; metrics?: Record<string, unknown> }>;
  unitsPerAction: number;
  /** The checked Deployment's minInstances: the idle cost it would have on this hardware. */
  minInstances: number;
  latencyTarget?: number;
}

/** Total time p95 (what a caller waits) meets a target when it is at most the target. */
export const targetFigure = (totalTimes: readonly number[]) => percentile(totalTimes, 95);

/** A HardwareRun from the successful predictions on one hardware, costs as checks.ts's cost. */
export function hardwareRun(m: MeasuredRuns): HardwareRun {
  const price = parseDecimal(m.pricePerSecond);
  let total: Decimal = zero();
  for (const p of m.predictions)
    total = add(total, predictionCost(m.pricing, price, fromNumber(p.predictTime, 6), p.metrics));
  const n = m.predictions.length;
  const mean = n ? divideBy(total, BigInt(n), 9) : zero();
  const perAction = round(multiply(mean, fromNumber(m.unitsPerAction, 6)), 9);
  const idle = multiply(multiply(price, parseDecimal('3600')), parseDecimal(String(m.minInstances)));
  const totalTimes = m.predictions.map((p) => p.totalTime);
  return {
    hardware: m.hardware,
    temporary: m.temporary,
    predictTimes: m.predictions.map((p) => p.predictTime),
    totalTimes,
    costPerPrediction: format(mean),
    costPerAction: format(perAction),
    idleCostPerHour: format(idle),
    ...(m.latencyTarget !== undefined && n > 0
      ? { meetsTarget: targetFigure(totalTimes) <= m.latencyTarget }
      : {}),
    ...(n === 0 ? { error: 'no prediction succeeded' } : {}),
  };
}

/**
 * The cheapest run (by cost per prediction) among those measured that meet the target (all
 * measured ones without a target); on a tie, the earlier in the list (the deployment's own
 * hardware comes first). Undefined when none does.
 */
export function cheapest(runs: readonly HardwareRun[], latencyTarget?: number): HardwareRun | undefined {
  let best: HardwareRun | undefined;
  for (const r of runs) {
    if (r.error || r.predictTimes.length === 0) continue;
    if (latencyTarget !== undefined && !(targetFigure(r.totalTimes) <= latencyTarget)) continue;
    if (!best || compare(parseDecimal(r.costPerPrediction), parseDecimal(best.costPerPrediction)) < 0)
      best = r;
  }
  return best;
}

/** The `hardware` row: runs[0] is the deployment's own hardware. */
export function hardwareRow(runs: readonly HardwareRun[], latencyTarget?: number): Row {
  const check = 'hardware';
  const current = runs[0]!;
  const fig = (r: HardwareRun) =>
    r.error
      ? `${r.hardware} not measured`
      : `${r.hardware} $${r.costPerPrediction}/prediction p95 ${formatSeconds(targetFigure(r.totalTimes))}`;
  const figure = runs.map(fig).join('; ');
  const failed = runs.filter((r) => r.error);
  const failNote = failed.length ? failed.map((r) => `${r.hardware}: ${r.error}`).join('; ') : undefined;
  const best = cheapest(runs, latencyTarget);
  const target = latencyTarget !== undefined ? ` meeting total p95 ≤ ${formatSeconds(latencyTarget)}` : '';
  if (!best)
    return {
      check,
      verdict: 'warn',
      figure,
      detail: [`no hardware measured${target}`, failNote].filter(Boolean).join('; '),
    };
  if (
    best === current ||
    (best.costPerPrediction === current.costPerPrediction && current.meetsTarget !== false)
  )
    return {
      check,
      verdict: failed.length ? 'warn' : 'pass',
      figure,
      detail: [`${current.hardware} is the cheapest${target}`, failNote].filter(Boolean).join('; '),
    };
  return {
    check,
    verdict: 'warn',
    figure,
    detail: [
      `${best.hardware} is cheaper${target} ($${best.costPerPrediction} vs $${current.costPerPrediction} per prediction${
        current.meetsTarget === false ? `; ${current.hardware} does not meet the target` : ''
      })`,
      failNote,
    ]
      .filter(Boolean)
      .join('; '),
  };
}
