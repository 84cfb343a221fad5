/**
 * Exact decimal arithmetic for money and billed seconds: a value is an integer count of
 * 10^-scale units held in a BigInt, so sums and products never drift the way binary floats
 * do (0.1 + 0.2 is 0.3 here). Values cross the API boundary as plain decimal strings.
 */

export interface Decimal {
  /** The value in units of 10^-scale. */
  readonly units: bigint;
  /** Digits after the decimal point. */
  readonly scale: number;
}

const DECIMAL = /^([+-]?)(\d+)(?:\.(\d+))?$/;

/** Parses a plain decimal string ("0.000225", "-12", "3."-style and exponents are rejected). */
export function parseDecimal(text: string): Decimal {
  const m = DECIMAL.exec(text.trim());
  if (!m) throw new Error(`not a decimal number: "${text}"`);
  const [, sign, whole, frac = ''] = m;
  const units = BigInt(`${whole}${frac}`);
  return { units: sign === '-' ? -units : units, scale: frac.length };
}

export function isDecimal(text: string): boolean {
  return DECIMAL.test(text.trim());
}

const ZERO: Decimal = { units: 0n, scale: 0 };
export function zero(): Decimal {
  return ZERO;
}

function rescale(d: Decimal, scale: number): bigint {
  return d.units * 10n ** BigInt(scale - d.scale);
}

export function add(a: Decimal, b: Decimal): Decimal {
  const scale = Math.max(a.scale, b.scale);
  return { units: rescale(a, scale) + rescale(b, scale), scale };
}

export function multiply(a: Decimal, b: Decimal): Decimal {
  return { units: a.units * b.units, scale: a.scale + b.scale };
}

export function compare(a: Decimal, b: Decimal): number {
  const scale = Math.max(a.scale, b.scale);
  const x = rescale(a, scale);
  const y = rescale(b, scale);
  return x < y ? -1 : x > y ? 1 : 0;
}

/** Rounds to `scale` digits, half away from zero. */
export function round(d: Decimal, scale: number): Decimal {
  if (d.scale <= scale) return { units: rescale(d, scale), scale };
  const div = 10n ** BigInt(d.scale - scale);
  const neg = d.units < 0n;
  const abs = neg ? -d.units : d.units;
  let q = abs / div;
  if ((abs % div) * 2n >= div) q += 1n;
  return { units: neg ? -q : q, scale };
}

/** The plain decimal string, trailing zeros after the point removed ("0.00045", "2"). */
export function format(d: Decimal): string {
  const neg = d.units < 0n;
  let digits = (neg ? -d.units : d.units).toString();
  if (d.scale > 0) {
    digits = digits.padStart(d.scale + 1, '0');
    const whole = digits.slice(0, -d.scale);
    const frac = digits.slice(-d.scale).replace(/0+$/, '');
    digits = frac ? `${whole}.${frac}` : whole;
  }
  return neg && digits !== '0' ? `-${digits}` : digits;
}

/**
 * A binary float (seconds measured by a clock) as a decimal, rounded to `scale` digits. This
 * is the one place a float enters: everything after it is exact.
 */
export function fromNumber(value: number, scale: number): Decimal {
  if (!Number.isFinite(value)) throw new Error(`not a finite number: ${value}`);
  return parseDecimal(value.toFixed(scale));
}

/** The nearest float, for places that need a number (Prometheus samples). */
export function toNumber(d: Decimal): number {
  return Number(format(d));
}

export function subtract(a: Decimal, b: Decimal): Decimal {
  return add(a, { units: -b.units, scale: b.scale });
}

/** a ÷ n (a positive integer), rounded to `scale` digits half away from zero. */
export function divideBy(a: Decimal, n: bigint, scale: number): Decimal {
  if (n <= 0n) throw new Error(`cannot divide by ${n}`);
  // Enough extra digits that the rounding below sees the exact quotient's next digit.
  const extra = scale + 1;
  const widened = rescaleTo(a, Math.max(a.scale, extra + a.scale));
  return round({ units: widened.units / n, scale: widened.scale }, scale);
}

function rescaleTo(d: Decimal, scale: number): Decimal {
  return { units: d.units * 10n ** BigInt(scale - d.scale), scale };
}

/** `ms` milliseconds (an integer) at `pricePerSecond`: exact. */
export function costOfMs(ms: number | bigint, pricePerSecond: Decimal): Decimal {
  return multiply({ units: BigInt(ms), scale: 3 }, pricePerSecond);
}
