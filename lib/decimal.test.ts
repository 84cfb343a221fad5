import { describe, expect, it } from 'vitest';
import {
  add,
  compare,
  format,
  fromNumber,
  isDecimal,
  multiply,
  parseDecimal,
  round,
  zero,
} from './decimal.ts';

const d = parseDecimal;

describe('exact decimals', () => {
  it('parses and formats plain decimal strings', () => {
    expect(format(d('0.000225'))).toBe('0.000225');
    expect(format(d('12'))).toBe('12');
    expect(format(d('-0.50'))).toBe('-0.5');
    expect(format(d('1.000'))).toBe('1');
    expect(format(d('0.0'))).toBe('0');
    expect(format(d(' 7.25 '))).toBe('7.25');
    expect(isDecimal('1e-3')).toBe(false);
    for (const bad of ['', '.5', '1.', '1e3', 'abc', '0x10', '1,5']) {
      expect(() => d(bad)).toThrow(/not a decimal number/);
    }
  });

  it('adds without float drift', () => {
    expect(format(add(d('0.1'), d('0.2')))).toBe('0.3');
    let total = zero();
    for (let i = 0; i < 1000; i++) total = add(total, d('0.001'));
    expect(format(total)).toBe('1');
    expect(format(add(d('-1.5'), d('0.25')))).toBe('-1.25');
  });

  it('multiplies seconds by a price per second exactly', () => {
    expect(format(multiply(d('2.003052'), d('0.000225')))).toBe('0.0004506867');
    expect(format(multiply(d('3600'), d('0.001525')))).toBe('5.49');
    expect(format(multiply(d('0.1'), d('0.1')))).toBe('0.01');
    // The float product drifts; the decimal one does not.
    expect(0.1 * 3).not.toBe(0.3);
    expect(format(multiply(d('0.1'), d('3')))).toBe('0.3');
  });

  it('rounds half away from zero', () => {
    expect(format(round(d('0.0004506867'), 6))).toBe('0.000451');
    expect(format(round(d('2.5'), 0))).toBe('3');
    expect(format(round(d('-2.5'), 0))).toBe('-3');
    expect(format(round(d('2.449'), 1))).toBe('2.4');
    expect(format(round(d('1.2'), 4))).toBe('1.2');
  });

  it('compares', () => {
    expect(compare(d('0.30'), d('0.3'))).toBe(0);
    expect(compare(d('0.31'), d('0.3'))).toBe(1);
    expect(compare(d('-1'), d('0'))).toBe(-1);
  });

  it('takes a measured float at a fixed number of digits', () => {
    expect(format(fromNumber(2.003051847, 6))).toBe('2.003052');
    expect(format(fromNumber(0.1 + 0.2, 6))).toBe('0.3');
    expect(format(fromNumber(0, 6))).toBe('0');
    expect(() => fromNumber(Number.NaN, 6)).toThrow(/finite/);
  });
});

describe('subtract, divideBy, costOfMs', () => {
  it('are exact', async () => {
    const { subtract, divideBy, costOfMs } = await import('./decimal.ts');
    expect(format(subtract(d('0.3'), d('0.1')))).toBe('0.2');
    expect(format(divideBy(d('1'), 3n, 6))).toBe('0.333333');
    expect(format(divideBy(d('2'), 3n, 6))).toBe('0.666667');
    expect(format(divideBy(d('-2'), 3n, 2))).toBe('-0.67');
    expect(format(costOfMs(1500, d('0.000225')))).toBe('0.0003375');
    expect(format(costOfMs(3_600_000n, d('0.001400')))).toBe('5.04');
  });
});
