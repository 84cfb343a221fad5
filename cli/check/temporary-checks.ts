/**
 * The checks that run on temporary Deployments (temporary.ts): the cold start broken into its
 * phases, and the same sequential runs on other HardwareClasses. Rows and figures are
 * temporary-rows.ts's.
 */
import type { Pricing } from '../../lib/pricing.ts';
import type { Row } from './checks.ts';
import type { ColdStart, HardwareRun } from './report.ts';
import type { Temporaries } from './temporary.ts';
import {
  coldStartPhases,
  coldStartRow,
  hardwareRow,
  hardwareRun,
  type PodTimes,
  refine,
} from './temporary-rows.ts';

type Obj = {
  metadata: { name: string; uid?: string };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
};

/** Seconds the operator gets to reconcile a new Deployment. */
const RECONCILE_S = 60;
/** Seconds a pod gets beyond the version's setup timeout to be scheduled and started. */
const START_MARGIN_S = 120;

/** The target, as runner.ts's Target. */
interface Target {
  namespace: string;
  name: string;
}

/** What is used of runner.ts's Gateway: one prediction run to its end. */
interface Runs {
  run(
    t: Target,
    deployment: string,
    input: Record<string, unknown>,
  ): Promise<{
    prediction: { id: string; status: string; metrics?: Record<string, unknown> };
    totalTime: number;
  }>;
}

export interface TemporaryContext {
  t: Target;
  deployment: Obj;
  version: Obj;
  input: Record<string, unknown>;
  gateway: Runs;
  temps: Temporaries;
  log: (line: string) => void;
}

const setupDeadline = (version: Obj) =>
  Date.now() + (Number(version.spec.setupTimeoutSeconds ?? 1800) + START_MARGIN_S) * 1000;

/**
 * From zero instances to the first answer. `on: 'temporary'` makes a Deployment of the same
 * version and hardware with minInstances 0 and removes it afterwards; `'deployment'` measures
 * the Deployment itself, which must have no instance.
 */
export async function measureColdStart(
  ctx: TemporaryContext,
  on: 'temporary' | 'deployment',
): Promise<ColdStart> {
  const { t, deployment, temps } = ctx;
  let name = deployment.metadata.name;
  if (on === 'deployment') {
    const pods = await temps.pods(t.namespace, name);
    if (pods.length > 0 || Number(deployment.status?.readyInstances ?? 0) > 0)
      throw new Error(
        `Deployment ${t.namespace}/${name} has ${pods.length} pod(s): --cold-start deployment needs it at 0 instances`,
      );
  } else {
    name = await temps.create(t.namespace, deployment, 'cold', {
      hardware: deployment.spec.hardware as string,
      minInstances: 0,
      maxInstances: 1,
    });
    ctx.log(`measuring a cold start on the temporary Deployment ${t.namespace}/${name}`);
  }
  try {
    if (on === 'temporary') await temps.reconciled(t.namespace, name, Date.now() + RECONCILE_S * 1000);
    const watch = await temps.observe(t.namespace, name);
    let pod: PodTimes;
    let sentAt: number;
    let answeredAt: number;
    try {
      sentAt = Date.now();
      const r = await ctx.gateway.run(t, name, ctx.input);
      answeredAt = sentAt + r.totalTime * 1000;
      if (r.prediction.status !== 'succeeded')
        throw new Error(`the first prediction ${r.prediction.id} ended ${r.prediction.status}`);
      pod = refine(await temps.firstPodTimes(t.namespace, name, Date.now() + 30_000), watch.seen);
    } finally {
      watch.stop();
    }
    const { phases, total, podCreated } = coldStartPhases(sentAt, pod, answeredAt);
    return { on, deployment: name, phases, total, podCreated };
  } finally {
    // A failed removal is retried, and reported, by the runner's removeAll.
    if (on === 'temporary') await temps.remove(name, Date.now() + 180_000).catch(() => {});
  }
}

/** The same `runs` sequential predictions on a temporary Deployment on `hardware`. */
export async function measureHardware(
  ctx: TemporaryContext,
  hw: { name: string; pricePerSecond: string },
  s: { runs: number; unitsPerAction: number; latencyTarget?: number },
): Promise<HardwareRun> {
  const { t, deployment, version, temps } = ctx;
  const base = {
    hardware: hw.name,
    temporary: true,
    pricing: version.spec.pricing as Pricing | undefined,
    pricePerSecond: hw.pricePerSecond,
    unitsPerAction: s.unitsPerAction,
    minInstances: Number(deployment.spec.minInstances ?? 0),
    ...(s.latencyTarget !== undefined ? { latencyTarget: s.latencyTarget } : {}),
  };
  let name: string | undefined;
  try {
    name = await temps.create(t.namespace, deployment, hw.name, {
      hardware: hw.name,
      minInstances: 1,
      maxInstances: 1,
    });
    ctx.log(`running ${s.runs} predictions on ${hw.name} (temporary Deployment ${t.namespace}/${name})`);
    await temps.reconciled(t.namespace, name, Date.now() + RECONCILE_S * 1000);
    await temps.ready(t.namespace, name, setupDeadline(version));
    const predictions: Array<{ predictTime: number; totalTime: number; metrics?: Record<string, unknown> }> =
      [];
    for (let i = 0; i < s.runs; i++) {
      const r = await ctx.gateway.run(t, name, ctx.input);
      if (r.prediction.status !== 'succeeded') continue;
      predictions.push({
        predictTime: Number(r.prediction.metrics?.predict_time ?? 0),
        totalTime: r.totalTime,
        ...(r.prediction.metrics ? { metrics: r.prediction.metrics } : {}),
      });
    }
    const run = hardwareRun({ ...base, predictions });
    return { ...run, deployment: name };
  } catch (err) {
    return {
      ...hardwareRun({ ...base, predictions: [] }),
      error: (err as Error).message,
      ...(name ? { deployment: name } : {}),
    };
  } finally {
    if (name) await temps.remove(name, Date.now() + 180_000).catch(() => {});
  }
}

/** The cold start row and its data, or why it was not measured; never throws. */
export async function coldStartCheck(
  ctx: TemporaryContext,
  mode: 'temporary' | 'deployment' | 'skip',
): Promise<{ row: Row; data?: ColdStart }> {
  if (mode === 'skip') return { row: coldStartRow({ skipped: '--cold-start skip' }) };
  try {
    const data = await measureColdStart(ctx, mode);
    return { row: coldStartRow(data), data };
  } catch (err) {
    return { row: coldStartRow({ error: (err as Error).message }) };
  }
}

/** The deployment's own runs, then each named hardware's on a temporary Deployment, and the row. */
export async function hardwareCheck(
  ctx: TemporaryContext,
  own: HardwareRun,
  others: ReadonlyArray<{ name: string; pricePerSecond: string }>,
  s: { runs: number; unitsPerAction: number; latencyTarget?: number },
): Promise<{ row: Row; data: HardwareRun[] }> {
  const data = [own];
  for (const hw of others) data.push(await measureHardware(ctx, hw, s));
  const row = hardwareRow(data, s.latencyTarget);
  const removed = data.flatMap((r) =>
    r.deployment && ctx.temps.removed.includes(r.deployment) ? [r.deployment] : [],
  );
  if (removed.length) row.detail = `${row.detail}; temporary Deployments ${removed.join(', ')} removed`;
  return { row, data };
}
