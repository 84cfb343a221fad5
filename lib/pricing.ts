/**
 * What one prediction costs, from the way its ModelVersion is priced (`spec.pricing`):
 *
 * - by hardware time (the default): predict seconds (rounded to the microsecond) × the
 *   hardware's price per second;
 * - per unit of metrics the model records itself (Cog's `record_metric`): Σ value × the
 *   metric's unit price, for each priced metric name (`image_count`, `output_token_count`, …);
 * - or both, with `hardwareTime: true` beside `perUnit`.
 *
 * All in exact decimal arithmetic (lib/decimal.ts): a metric's value enters as a decimal of at
 * most 6 digits after the point (token and image counts are integers, so exact).
 */
import { add, type Decimal, fromNumber, multiply, parseDecimal, zero } from './decimal.ts';

export interface Pricing {
  /** Bill predict seconds × the hardware price; default true when `perUnit` is empty. */
  hardwareTime?: boolean;
  /** Price of one unit of a metric the model records, by metric name (decimal strings). */
  perUnit?: Record<string, string>;
}

/** Metric names a price may name: like Cog's record_metric names. */
export const METRIC_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/;

/** Whether `pricing` bills hardware time. */
export function billsHardwareTime(pricing: Pricing | undefined): boolean {
  if (pricing?.hardwareTime !== undefined) return pricing.hardwareTime;
  return Object.keys(pricing?.perUnit ?? {}).length === 0;
}

/** Parses and checks a pricing (the sidecar's MODELPLANE_PRICING); throws saying what is wrong. */
export function parsePricing(json: string): Pricing {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new Error('pricing must be a JSON object such as {"perUnit":{"output_token_count":"0.000001"}}');
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new Error('pricing must be a JSON object');
  const { hardwareTime, perUnit, ...rest } = raw as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length) throw new Error(`pricing has unknown fields: ${extra.join(', ')}`);
  const out: Pricing = {};
  if (hardwareTime !== undefined) {
    if (typeof hardwareTime !== 'boolean') throw new Error('pricing.hardwareTime must be true or false');
    out.hardwareTime = hardwareTime;
  }
  if (perUnit !== undefined) {
    if (perUnit === null || typeof perUnit !== 'object' || Array.isArray(perUnit))
      throw new Error('pricing.perUnit must be an object of metric name to decimal string');
    out.perUnit = {};
    for (const [name, price] of Object.entries(perUnit)) {
      if (!METRIC_NAME.test(name)) throw new Error(`pricing.perUnit: "${name}" is not a metric name`);
      if (typeof price !== 'string' || !/^\d+(\.\d+)?$/.test(price))
        throw new Error(`pricing.perUnit.${name} must be a non-negative decimal string such as "0.000001"`);
      out.perUnit[name] = price;
    }
  }
  return out;
}

/** A recorded metric's value as a decimal, or undefined when it is not a finite number ≥ 0. */
function unitsOf(value: unknown): Decimal | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return undefined;
  return Number.isInteger(value) ? { units: BigInt(value), scale: 0 } : fromNumber(value, 6);
}

/**
 * The exact cost of a prediction that ran `billedSeconds` (already a decimal: the metered
 * figure) on hardware at `pricePerSecond`, having recorded `metrics`.
 */
export function predictionCost(
  pricing: Pricing | undefined,
  pricePerSecond: Decimal,
  billedSeconds: Decimal,
  metrics: Record<string, unknown> | undefined,
): Decimal {
  let cost = billsHardwareTime(pricing) ? multiply(billedSeconds, pricePerSecond) : zero();
  for (const [name, price] of Object.entries(pricing?.perUnit ?? {})) {
    const units = unitsOf(metrics?.[name]);
    if (units) cost = add(cost, multiply(units, parseDecimal(price)));
  }
  return cost;
}
