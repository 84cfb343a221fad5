/** Kubernetes resource quantities (`500m`, `4`, `16Gi`, `1e3`) as numbers. */

const SUFFIX: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  '': 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

const QUANTITY = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?:([numkMGTPE]i?|)|[eE]([+-]?[0-9]+))$/;

/** The value of a quantity; throws on a string that is not one. */
export function parseQuantity(q: string): number {
  const m = QUANTITY.exec(q.trim());
  if (!m) throw new Error(`"${q}" is not a Kubernetes quantity`);
  const base = Number(m[1]);
  if (m[3] !== undefined) return base * 10 ** Number(m[3]);
  const factor = SUFFIX[m[2] ?? ''];
  if (factor === undefined) throw new Error(`"${q}" is not a Kubernetes quantity`);
  return base * factor;
}
