/**
 * The rows of `modelplane check`: each a pure function from what the runner measured or read
 * (predictions, the Deployment, its ModelVersion and the one before it, the Model, the
 * HardwareClass) to a verdict and the figure behind it. No I/O here; see runner.ts.
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

export type Verdict = 'pass' | 'warn' | 'fail' | 'skip';

export interface Row {
  /** The check's name, e.g. `consistency`. */
  check: string;
  verdict: Verdict;
  /** The measured figure, short enough for a table cell. */
  figure: string;
  /** Why it warns or fails, or what to do. */
  detail?: string;
}

// ── Statistics ──────────────────────────────────────────────────────────────────────────

/** The p-th percentile (0-100) by the nearest-rank method; NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1]!;
}

/** Cosine similarity of two equal-length number vectors; NaN when lengths differ or one is zero. */
export function cosineSimilarity(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length || a.length === 0) return Number.NaN;
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! * a[i]!;
    nb += b[i]! * b[i]!;
  }
  if (na === 0 || nb === 0) return Number.NaN;
  return dot / Math.sqrt(na * nb);
}

const seconds = (s: number): string =>
  Number.isFinite(s) ? `${s < 10 ? s.toFixed(3) : s.toFixed(1)}s` : '-';

// ── 1. Consistency ──────────────────────────────────────────────────────────────────────

function isNumberArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

/** Replaces each string that `hashes` knows (a file URL) with `sha256:<hash of its content>`. */
export function withFileHashes(v: unknown, hashes: ReadonlyMap<string, string>): unknown {
  if (typeof v === 'string') return hashes.has(v) ? `sha256:${hashes.get(v)}` : v;
  if (Array.isArray(v)) return v.map((x) => withFileHashes(x, hashes));
  if (v && typeof v === 'object')
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, withFileHashes(x, hashes)]));
  return v;
}

/** Whether the version's input schema has a `seed` input. */
export function hasSeedInput(openapi: unknown): boolean {
  const props = inputProperties(openapi);
  return props !== undefined && 'seed' in props;
}

/**
 * Consistency over the outputs of the same input run N times (file URLs already replaced by
 * their contents' hashes): exact equality, or for number arrays (embeddings) the least cosine
 * similarity to the first output, which must reach `minCosine`.
 */
export function consistency(
  outputs: readonly unknown[],
  opts: { minCosine?: number; seedInput?: boolean; seedGiven?: boolean } = {},
): Row {
  const check = 'consistency';
  if (outputs.length < 2)
    return { check, verdict: 'skip', figure: `${outputs.length} output`, detail: 'needs 2 or more runs' };
  const seedNote = opts.seedInput
    ? opts.seedGiven
      ? 'seed fixed by --input'
      : 'the model has a seed input: pass --input seed=N to make outputs repeatable'
    : undefined;
  if (outputs.every(isNumberArray)) {
    const first = outputs[0] as number[];
    const least = Math.min(...outputs.slice(1).map((o) => cosineSimilarity(first, o as number[])));
    const min = opts.minCosine ?? 0.999;
    const exact = outputs.every((o) => JSON.stringify(o) === JSON.stringify(first));
    const figure = exact
      ? `${outputs.length}/${outputs.length} identical`
      : `varies: min cosine ${least.toFixed(6)} to the first`;
    if (exact || least >= min)
      return { check, verdict: 'pass', figure, ...(seedNote ? { detail: seedNote } : {}) };
    return {
      check,
      verdict: 'fail',
      figure,
      detail: `cosine similarity below ${min}${seedNote ? `; ${seedNote}` : ''}`,
    };
  }
  const first = JSON.stringify(outputs[0]);
  const same = outputs.filter((o) => JSON.stringify(o) === first).length;
  const distinct = new Set(outputs.map((o) => JSON.stringify(o))).size;
  const figure =
    same === outputs.length
      ? `${same}/${outputs.length} identical`
      : `varies: ${distinct} distinct of ${outputs.length}`;
  if (same === outputs.length)
    return { check, verdict: 'pass', figure, ...(seedNote ? { detail: seedNote } : {}) };
  // A model with a seed input that was not fixed may vary by design: a warning, not a failure.
  if (opts.seedInput && !opts.seedGiven) return { check, verdict: 'warn', figure, detail: seedNote };
  return { check, verdict: 'fail', figure, detail: 'the same input gave different outputs' };
}

// ── 3. Runtime and throughput ───────────────────────────────────────────────────────────

export interface Timing {
  /** metrics.predict_time: seconds the model ran. */
  predictTime: number;
  /** Seconds from create to completion as the client saw them. */
  totalTime: number;
}

export function runtime(timings: readonly Timing[], maxP95?: number): Row {
  const check = 'runtime';
  if (timings.length === 0) return { check, verdict: 'fail', figure: '-', detail: 'no prediction succeeded' };
  const p = timings.map((t) => t.predictTime);
  const t = timings.map((x) => x.totalTime);
  const p95 = percentile(p, 95);
  const figure = `predict p50 ${seconds(percentile(p, 50))} p95 ${seconds(p95)} max ${seconds(Math.max(...p))}; total p50 ${seconds(percentile(t, 50))} p95 ${seconds(percentile(t, 95))} max ${seconds(Math.max(...t))}`;
  if (maxP95 !== undefined && p95 > maxP95)
    return {
      check,
      verdict: 'fail',
      figure,
      detail: `predict p95 ${seconds(p95)} is over --max-p95 ${seconds(maxP95)}`,
    };
  return { check, verdict: 'pass', figure };
}

/** Throughput of `count` predictions sent `concurrency` at a time, finished in `wallSeconds`. */
export function throughput(count: number, concurrency: number, wallSeconds: number, failed: number): Row {
  const check = 'throughput';
  const rate = wallSeconds > 0 ? count / wallSeconds : Number.NaN;
  const figure = `${rate.toFixed(2)} predictions/s at concurrency ${concurrency} (${count} in ${seconds(wallSeconds)})`;
  if (failed > 0)
    return { check, verdict: 'fail', figure, detail: `${failed} of ${count + failed} predictions failed` };
  return { check, verdict: 'pass', figure };
}

// ── 6. Timeouts and retries ─────────────────────────────────────────────────────────────

/** A client timeout: twice the p99 of total times, rounded up to a whole second, at least 1 s. */
export function recommendedTimeout(totalTimes: readonly number[]): number {
  const p99 = percentile(totalTimes, 99);
  return Number.isFinite(p99) ? Math.max(1, Math.ceil(p99 * 2)) : Number.NaN;
}

export function clientTimeout(totalTimes: readonly number[]): Row {
  const s = recommendedTimeout(totalTimes);
  if (!Number.isFinite(s))
    return { check: 'client timeout', verdict: 'skip', figure: '-', detail: 'no timings' };
  return {
    check: 'client timeout',
    verdict: 'pass',
    figure: `${s}s recommended (2 × total p99 ${seconds(percentile(totalTimes, 99))})`,
  };
}

/** Cancel-After accepts at least this many seconds (docs/gateway.md). */
export const MIN_CANCEL_AFTER_S = 5;

/** What a Cancel-After shorter than the runtime gave: the prediction's final status, or why not tried. */
export function cancelAfter(result: { status: string; error?: unknown } | { skipped: string }): Row {
  const check = 'cancel-after';
  if ('skipped' in result) return { check, verdict: 'skip', figure: 'not tried', detail: result.skipped };
  if (result.status === 'canceled') return { check, verdict: 'pass', figure: 'ended canceled' };
  return {
    check,
    verdict: 'fail',
    figure: `ended ${result.status}`,
    detail: 'a prediction past its Cancel-After deadline must end canceled',
  };
}

/** An Idempotency-Key create sent twice: the ids of both answers and whether the second says replayed. */
export function idempotency(firstId: string, secondId: string, replayed: boolean): Row {
  const check = 'idempotency';
  if (firstId === secondId)
    return { check, verdict: 'pass', figure: `same id ${firstId}${replayed ? ', Idempotent-Replayed' : ''}` };
  return {
    check,
    verdict: 'fail',
    figure: `${firstId} ≠ ${secondId}`,
    detail: 'a retried create with the same Idempotency-Key ran twice',
  };
}

// ── 7. Cost ─────────────────────────────────────────────────────────────────────────────

export interface CostInput {
  pricing: Pricing | undefined;
  /** The HardwareClass's spec.pricePerSecond. */
  pricePerSecond: string;
  predictions: ReadonlyArray<{ predictTime: number; metrics?: Record<string, unknown> }>;
  unitsPerAction: number;
  minInstances: number;
}

/** The mean cost of the measured predictions × units per action, and the idle cost at minInstances. */
export function cost(c: CostInput): Row[] {
  const price = parseDecimal(c.pricePerSecond);
  let total: Decimal = zero();
  for (const p of c.predictions)
    total = add(total, predictionCost(c.pricing, price, fromNumber(p.predictTime, 6), p.metrics));
  const rows: Row[] = [];
  if (c.predictions.length === 0)
    rows.push({ check: 'cost per action', verdict: 'skip', figure: '-', detail: 'no prediction succeeded' });
  else {
    const mean = divideBy(total, BigInt(c.predictions.length), 9);
    const perAction = round(multiply(mean, fromNumber(c.unitsPerAction, 6)), 9);
    rows.push({
      check: 'cost per action',
      verdict: 'pass',
      figure: `$${format(perAction)} (${c.unitsPerAction} × $${format(mean)} per prediction)`,
    });
  }
  const idlePerHour = multiply(multiply(price, parseDecimal('3600')), parseDecimal(String(c.minInstances)));
  rows.push({
    check: 'idle cost',
    verdict: 'pass',
    figure: `$${format(idlePerHour)}/hour at minInstances ${c.minInstances}`,
    ...(compare(idlePerHour, zero()) > 0 ? { detail: 'paid whether or not predictions arrive' } : {}),
  });
  return rows;
}

// ── 8. License ──────────────────────────────────────────────────────────────────────────

export function license(licenseUrl: string | undefined): Row {
  if (licenseUrl) return { check: 'license', verdict: 'pass', figure: licenseUrl };
  return { check: 'license', verdict: 'warn', figure: 'none', detail: "set the Model's spec.licenseUrl" };
}

// ── 9. Version stability ────────────────────────────────────────────────────────────────

/** Whether an image reference pins a digest (`…@sha256:<64 hex>`). */
export function pinnedByDigest(image: string): boolean {
  return /@sha256:[0-9a-f]{64}$/.test(image);
}

export function imagePinned(image: string): Row {
  if (pinnedByDigest(image)) return { check: 'image digest', verdict: 'pass', figure: 'pinned by digest' };
  return {
    check: 'image digest',
    verdict: 'warn',
    figure: 'tag only',
    detail: `${image}: pin the ModelVersion's spec.image by @sha256 digest`,
  };
}

type Props = Record<string, Record<string, unknown>>;

function schemas(openapi: unknown): Record<string, Record<string, unknown>> | undefined {
  const s = (openapi as { components?: { schemas?: unknown } } | undefined)?.components?.schemas;
  return s && typeof s === 'object' ? (s as Record<string, Record<string, unknown>>) : undefined;
}

function inputProperties(openapi: unknown): Props | undefined {
  const input = schemas(openapi)?.Input;
  return (input?.properties as Props | undefined) ?? undefined;
}

/** The JSON type of an input or output, following one $ref or allOf to a component (Cog enums). */
function typeOf(s: Record<string, unknown> | undefined, openapi: unknown): string {
  if (!s) return 'none';
  const ref = (s.$ref as string | undefined) ?? (s.allOf as Array<{ $ref?: string }> | undefined)?.[0]?.$ref;
  if (ref) {
    const target = schemas(openapi)?.[ref.split('/').pop()!];
    return typeOf(target, openapi);
  }
  const t = s.type as string | undefined;
  const fmt = s.format ? `(${s.format as string})` : '';
  if (t === 'array') return `array<${typeOf(s.items as Record<string, unknown> | undefined, openapi)}>`;
  return `${t ?? 'any'}${fmt}`;
}

export interface SchemaDiff {
  /** Changes that break a caller of the previous version. */
  breaking: string[];
  /** Changes that do not (new optional inputs). */
  compatible: string[];
}

/**
 * What changed between two versions' OpenAPI documents (components.schemas.Input and Output):
 * a removed or retyped input, a new required input and a changed output type are breaking.
 */
export function diffSchemas(previous: unknown, current: unknown): SchemaDiff {
  const breaking: string[] = [];
  const compatible: string[] = [];
  const before = inputProperties(previous) ?? {};
  const after = inputProperties(current) ?? {};
  const required = new Set((schemas(current)?.Input?.required as string[] | undefined) ?? []);
  const requiredBefore = new Set((schemas(previous)?.Input?.required as string[] | undefined) ?? []);
  for (const name of Object.keys(before)) {
    if (!(name in after)) {
      breaking.push(`input "${name}" removed`);
      continue;
    }
    const a = typeOf(before[name], previous);
    const b = typeOf(after[name], current);
    if (a !== b) breaking.push(`input "${name}" changed type ${a} → ${b}`);
    if (required.has(name) && !requiredBefore.has(name)) breaking.push(`input "${name}" became required`);
  }
  for (const name of Object.keys(after)) {
    if (name in before) continue;
    if (required.has(name)) breaking.push(`new required input "${name}"`);
    else compatible.push(`new optional input "${name}"`);
  }
  const outBefore = typeOf(schemas(previous)?.Output, previous);
  const outAfter = typeOf(schemas(current)?.Output, current);
  if (outBefore !== outAfter) breaking.push(`output type changed ${outBefore} → ${outAfter}`);
  return { breaking, compatible };
}

export function schemaStability(previousName: string | undefined, diff: SchemaDiff | undefined): Row {
  const check = 'schema vs previous';
  if (!previousName || !diff) return { check, verdict: 'pass', figure: 'first version' };
  if (diff.breaking.length)
    return {
      check,
      verdict: 'fail',
      figure: `${diff.breaking.length} breaking vs ${previousName}`,
      detail: diff.breaking.join('; '),
    };
  return {
    check,
    verdict: 'pass',
    figure: diff.compatible.length
      ? `compatible with ${previousName} (${diff.compatible.join(', ')})`
      : `same as ${previousName}`,
  };
}

/** The Model label that marks a model official: `modelplane.dev/official: "true"`. */
export function official(labels: Record<string, string> | undefined, label: string): Row {
  if (labels?.[label] === 'true') return { check: 'official', verdict: 'pass', figure: `${label}=true` };
  return {
    check: 'official',
    verdict: 'warn',
    figure: 'not official',
    detail: `label the Model ${label}=true once it is supported`,
  };
}

export function keptWarm(minInstances: number): Row {
  if (minInstances >= 1)
    return { check: 'kept warm', verdict: 'pass', figure: `minInstances ${minInstances}` };
  return {
    check: 'kept warm',
    verdict: 'warn',
    figure: 'minInstances 0',
    detail: 'the first prediction after idle waits for a cold start',
  };
}

/** The exit status of a report: 1 when any row fails, else 0. */
export function exitStatus(rows: readonly Row[]): number {
  return rows.some((r) => r.verdict === 'fail') ? 1 : 0;
}

/** The seconds form `format` wants; exported for the runner's figures. */
export const formatSeconds = seconds;
