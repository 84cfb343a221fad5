/**
 * The scaling decision, as a pure function of demand samples, the current instance count, the
 * Deployment's settings, the window state carried from the previous decision, and the time.
 *
 * Knative's shape:
 * - demand = queued + running predictions, summed over gateway replicas, sampled every tick;
 * - wanted = ceil(average demand / targetPerInstance), clamped to [minInstances, maxInstances];
 * - the stable window (60 s) averages demand for ordinary decisions; the panic window (6 s)
 *   catches bursts: when its average reaches panicThreshold × current capacity the
 *   deployment panics, scales up on the panic window and never down, and stays in panic
 *   until a stable window has passed without the panic-window demand reaching the threshold;
 * - a lower count is applied only once it has been wanted for scaleDownDelay (the most
 *   wanted over that time is what it scales down to);
 * - the last instance goes only after scaleToZeroAfter without any demand (from one
 *   instance to zero that is the only wait; from more, the scale-down delay applies too);
 * - demand at zero instances wants at least one at once (activation).
 */
import type { DeploymentSpec } from '../../crds/index.ts';

/** One reading of a deployment's demand. */
export interface Sample {
  /** Epoch ms. */
  at: number;
  /** Queued plus running predictions, over every gateway replica. */
  demand: number;
}

/** The Deployment's settings, defaults applied, in milliseconds. */
export interface ScalingPolicy {
  minInstances: number;
  maxInstances: number;
  targetPerInstance: number;
  stableWindowMs: number;
  panicWindowMs: number;
  /** Panic when panic-window demand ≥ this × capacity (2 = 200 %). */
  panicThreshold: number;
  scaleDownDelayMs: number;
  scaleToZeroAfterMs: number;
}

export const DEFAULTS = {
  stableWindowSeconds: 60,
  panicWindowSeconds: 6,
  panicThresholdPercent: 200,
  scaleDownDelaySeconds: 60,
  scaleToZeroAfterSeconds: 300,
} as const;

/** The policy of a Deployment spec; `maxConcurrency` of its version is the default target. */
export function policyFor(spec: DeploymentSpec, maxConcurrency: number | undefined): ScalingPolicy {
  const s = spec.scaling ?? {};
  const stable = s.stableWindowSeconds ?? DEFAULTS.stableWindowSeconds;
  return {
    minInstances: spec.minInstances,
    maxInstances: Math.max(spec.maxInstances, spec.minInstances),
    targetPerInstance: Math.max(1, s.targetPerInstance ?? maxConcurrency ?? 1),
    stableWindowMs: stable * 1000,
    panicWindowMs: Math.min(s.panicWindowSeconds ?? DEFAULTS.panicWindowSeconds, stable) * 1000,
    panicThreshold: (s.panicThresholdPercent ?? DEFAULTS.panicThresholdPercent) / 100,
    scaleDownDelayMs: (s.scaleDownDelaySeconds ?? DEFAULTS.scaleDownDelaySeconds) * 1000,
    scaleToZeroAfterMs: (s.scaleToZeroAfterSeconds ?? DEFAULTS.scaleToZeroAfterSeconds) * 1000,
  };
}

/** What carries from one decision to the next (and across restarts, in an annotation). */
export interface WindowState {
  /** When the instance count was last changed. */
  lastScaleMs?: number;
  /** When the current panic began (absent: not panicking). */
  panicSinceMs?: number;
  /** The last time panic-window demand reached the threshold. */
  panicLastMs?: number;
  /** The most instances wanted during the current panic. */
  panicMax?: number;
  /** When a count below the current one was first wanted: the scale-down delay runs from here. */
  lowerSinceMs?: number;
  /** The most instances wanted since lowerSinceMs. */
  lowerMax?: number;
  /** The last time there was demand (or when the deployment was first seen). */
  activityMs?: number;
}

export interface DecideInput {
  now: number;
  /** Demand samples, oldest first, the newest being this tick's; those outside the stable window are ignored. */
  samples: readonly Sample[];
  /** Instances the workload has now (its spec.replicas). */
  current: number;
  policy: ScalingPolicy;
  state: WindowState;
  /** The gateway's last accepted or finished prediction, if it knows one. */
  lastActivityMs?: number;
}

export type ScaleReason = 'ScaledUp' | 'ScaledDown' | 'ScaledToZero' | 'ScaledFromZero' | 'Steady';

export interface Decision {
  desired: number;
  state: WindowState;
  /** The Event reason when `desired` differs from `current`; `Steady` otherwise. */
  reason: ScaleReason;
  /** For a person: the counts and why. */
  message: string;
  panicking: boolean;
  /** Average demand over the stable and panic windows. */
  stableDemand: number;
  panicDemand: number;
}

/** Mean demand of the samples taken in (now − windowMs, now]. */
export function windowAverage(samples: readonly Sample[], now: number, windowMs: number): number {
  let sum = 0;
  let n = 0;
  for (const s of samples) {
    if (s.at > now - windowMs && s.at <= now) {
      sum += s.demand;
      n++;
    }
  }
  return n ? sum / n : 0;
}

const round1 = (x: number) => Math.round(x * 10) / 10;
const secs = (ms: number) => `${round1(ms / 1000)} s`;

export function decide(input: DecideInput): Decision {
  const { now, samples, policy: p } = input;
  const current = Math.max(0, input.current);
  const state: WindowState = { ...input.state };
  const stableDemand = windowAverage(samples, now, p.stableWindowMs);
  const panicDemand = windowAverage(samples, now, p.panicWindowMs);
  const latest = samples.length ? samples[samples.length - 1] : undefined;
  const demandNow = latest && latest.at <= now ? latest.demand : 0;

  // Idle time counts from the last demand, or from when the deployment was first seen.
  let activity = state.activityMs ?? now;
  if (input.lastActivityMs !== undefined && input.lastActivityMs <= now)
    activity = Math.max(activity, input.lastActivityMs);
  for (const s of samples) if (s.demand > 0 && s.at <= now) activity = Math.max(activity, s.at);
  state.activityMs = activity;

  // Panic: the panic window's demand reaches the threshold of what the instances carry.
  const capacity = Math.max(1, current) * p.targetPerInstance;
  const over = panicDemand > 0 && panicDemand >= p.panicThreshold * capacity;
  if (over) {
    state.panicSinceMs ??= now;
    state.panicLastMs = now;
  } else if (state.panicLastMs !== undefined && now - state.panicLastMs >= p.stableWindowMs) {
    delete state.panicSinceMs;
    delete state.panicLastMs;
    delete state.panicMax;
  }
  const panicking = state.panicLastMs !== undefined;

  const stableWant = Math.ceil(stableDemand / p.targetPerInstance);
  const panicWant = Math.ceil(panicDemand / p.targetPerInstance);
  let want = stableWant;
  let basis: 'stable' | 'panic' = 'stable';
  if (panicking) {
    if (panicWant >= want) {
      want = panicWant;
      basis = 'panic';
    }
    // While panicking, never down: hold the most wanted during the panic, and what runs.
    state.panicMax = Math.max(state.panicMax ?? 0, want);
    want = Math.max(want, state.panicMax, current);
  }
  const raw = want;
  want = Math.min(Math.max(want, p.minInstances), p.maxInstances);
  // Activation: predictions waiting with nothing to run them want an instance at once.
  if (demandNow > 0) want = Math.max(want, 1);
  // The last instance stays until the deployment has been idle long enough.
  const idleMs = now - activity;
  if (want === 0 && current > 0 && idleMs < p.scaleToZeroAfterMs) want = 1;

  let desired = want;
  let delayed = false;
  if (want < current && (want > 0 || current > 1)) {
    // A lower count waits out the scale-down delay; it then goes to the most wanted meanwhile.
    // (Only the very last instance goes on the idle period alone.)
    state.lowerSinceMs ??= now;
    state.lowerMax = Math.max(state.lowerMax ?? 0, want);
    if (now - state.lowerSinceMs >= p.scaleDownDelayMs) {
      desired = state.lowerMax;
      delayed = true;
      delete state.lowerSinceMs;
      delete state.lowerMax;
    } else {
      desired = current;
    }
  } else {
    delete state.lowerSinceMs;
    delete state.lowerMax;
  }
  // Bounds hold at once, whatever the windows say.
  desired = Math.min(Math.max(desired, p.minInstances), p.maxInstances);
  if (demandNow > 0) desired = Math.max(desired, 1);

  let reason: ScaleReason = 'Steady';
  if (desired > current) reason = current === 0 ? 'ScaledFromZero' : 'ScaledUp';
  else if (desired < current) reason = desired === 0 ? 'ScaledToZero' : 'ScaledDown';
  if (reason !== 'Steady') {
    state.lastScaleMs = now;
    // A new count starts the next scale-down from scratch.
    delete state.lowerSinceMs;
    delete state.lowerMax;
  }

  const target = `target ${p.targetPerInstance} per instance`;
  const demandText =
    basis === 'panic'
      ? `demand ${round1(panicDemand)} over the ${secs(p.panicWindowMs)} panic window`
      : `demand ${round1(stableDemand)} over the ${secs(p.stableWindowMs)} stable window`;
  let why: string;
  if (reason === 'ScaledFromZero') {
    why = `${demandNow} prediction${demandNow === 1 ? '' : 's'} waiting with no instance`;
    if (desired > 1) why += `; ${demandText}, ${target}`;
  } else if (reason === 'ScaledToZero') {
    why = `no predictions for ${secs(idleMs)} (scaleToZeroAfterSeconds ${p.scaleToZeroAfterMs / 1000})`;
  } else if (desired === p.minInstances && raw < p.minInstances && reason === 'ScaledUp') {
    why = `minInstances is ${p.minInstances}`;
  } else if (desired === p.maxInstances && current > p.maxInstances) {
    why = `maxInstances is ${p.maxInstances}`;
  } else if (delayed) {
    why = `${desired} wanted for the ${secs(p.scaleDownDelayMs)} scale-down delay; ${demandText}, ${target}`;
  } else {
    why = `${demandText}, ${target}`;
    if (desired === p.maxInstances && raw > p.maxInstances)
      why += ` (capped at maxInstances ${p.maxInstances})`;
    if (reason === 'Steady' && state.lowerSinceMs !== undefined)
      why += `; ${state.lowerMax} wanted for ${secs(now - state.lowerSinceMs)} of the ${secs(p.scaleDownDelayMs)} scale-down delay`;
    if (reason === 'Steady' && panicking) why += '; panicking';
  }
  const message = `${current} → ${desired} instance${desired === 1 ? '' : 's'}: ${why}`;
  return { desired, state, reason, message, panicking, stableDemand, panicDemand };
}

/** The samples still inside the longest window, for the next decision. */
export function pruneSamples(samples: Sample[], now: number, windowMs: number): Sample[] {
  let i = 0;
  while (i < samples.length && (samples[i]?.at ?? now) <= now - windowMs) i++;
  return i ? samples.slice(i) : samples;
}

// --- the state annotation ----------------------------------------------------------------

const STATE_FIELDS = [
  'lastScaleMs',
  'panicSinceMs',
  'panicLastMs',
  'panicMax',
  'lowerSinceMs',
  'lowerMax',
  'activityMs',
] as const satisfies readonly (keyof WindowState)[];

/** The state as the annotation's JSON (fields in a fixed order, absent ones left out). */
export function encodeState(state: WindowState): string {
  const out: Record<string, number> = {};
  for (const k of STATE_FIELDS) {
    const v = state[k];
    if (typeof v === 'number' && Number.isFinite(v)) out[k] = v;
  }
  return JSON.stringify(out);
}

/** The state from the annotation; anything unreadable is left out. */
export function decodeState(text: string | undefined): WindowState {
  if (!text) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return {};
  }
  const out: WindowState = {};
  if (!raw || typeof raw !== 'object') return out;
  for (const k of STATE_FIELDS) {
    const v = (raw as Record<string, unknown>)[k];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) out[k] = v;
  }
  return out;
}
