/**
 * The report `modelplane check` answers: the rows (checks.ts) and the measurements behind
 * them, which the terminal table, `--json` and the HTML page all render.
 */
import type { Row } from './checks.ts';
import type { WorstCaseRun } from './worst-case.ts';

/** One phase of a cold start, in seconds from the moment the first request was sent. */
export interface ColdStartPhase {
  /** `scheduling`, `container start`, `model setup` or `first prediction`. */
  name: 'scheduling' | 'container start' | 'model setup' | 'first prediction';
  start: number;
  end: number;
}

export interface ColdStart {
  /** Where it was measured: the deployment itself (scaled to zero) or a temporary one. */
  on: 'deployment' | 'temporary';
  /** The Deployment it was measured on. */
  deployment: string;
  phases: ColdStartPhase[];
  /** Seconds from the first request to its answer. */
  total: number;
  /** Seconds from the first request to the pod's creation (within `scheduling`). */
  podCreated?: number;
}

/** The same runs on one HardwareClass. */
export interface HardwareRun {
  hardware: string;
  /** On a temporary deployment made for the check (removed afterwards). */
  temporary: boolean;
  /** Seconds of `metrics.predict_time` and of the client's whole wait, one per run. */
  predictTimes: number[];
  totalTimes: number[];
  /** Decimal dollar strings, as lib/decimal.ts formats them. */
  costPerPrediction: string;
  costPerAction: string;
  idleCostPerHour: string;
  /** Whether it meets the latency target, when one was given. */
  meetsTarget?: boolean;
  /** Why it could not be measured, when it could not. */
  error?: string;
  /** The temporary Deployment's name, when one was made. */
  deployment?: string;
}

export interface ReportData {
  /** The sequential runs of the same input on the deployment, in seconds, in order. */
  latencies: { predictTimes: number[]; totalTimes: number[] };
  coldStart?: ColdStart;
  /** The deployment's own hardware first, then each one compared. */
  hardware?: HardwareRun[];
  /** How each worst-case input ended: the one given (--worst-input), then the generated one. */
  worstCase?: WorstCaseRun[];
  /** The temporary Deployments the check made: those it removed, and any it could not. */
  temporaries?: { removed: string[]; notRemoved: string[] };
}

export interface Report {
  target: string;
  deployment: string;
  version: string;
  /** When the check ran (ISO 8601). */
  startedAt: string;
  rows: Row[];
  data: ReportData;
}
