import { describe, expect, it } from 'vitest';
import { format, parseDecimal } from './decimal.ts';
import { billsHardwareTime, parsePricing, predictionCost } from './pricing.ts';

const price = parseDecimal('0.000225');
const cost = (
  pricing: Parameters<typeof predictionCost>[0],
  seconds: string,
  metrics?: Record<string, unknown>,
) => format(predictionCost(pricing, price, parseDecimal(seconds), metrics));

describe('prediction cost', () => {
  it('is predict seconds × the hardware price by default', () => {
    expect(cost(undefined, '1.4', { output_token_count: 10 })).toBe('0.000315');
    expect(cost({}, '2')).toBe('0.00045');
  });

  it('is per unit of recorded metrics when perUnit names them, exactly', () => {
    const pricing = { perUnit: { input_token_count: '0.0000005', output_token_count: '0.0000015' } };
    expect(billsHardwareTime(pricing)).toBe(false);
    // 0.1 + 0.2 style sums stay exact: 3 × 0.0000005 + 7 × 0.0000015 = 0.000012
    expect(cost(pricing, '9.5', { input_token_count: 3, output_token_count: 7 })).toBe('0.000012');
    // A metric it did not record (or not a number) counts 0.
    expect(cost(pricing, '9.5', { output_token_count: 'many' })).toBe('0');
    expect(cost({ perUnit: { image_count: '0.003' } }, '1', { image_count: 4 })).toBe('0.012');
    expect(cost({ perUnit: { video_seconds: '0.05' } }, '1', { video_seconds: 2.5 })).toBe('0.125');
  });

  it('adds both when hardwareTime is set beside perUnit', () => {
    expect(cost({ hardwareTime: true, perUnit: { image_count: '0.003' } }, '2', { image_count: 1 })).toBe(
      '0.00345',
    );
    expect(cost({ hardwareTime: false }, '2')).toBe('0');
  });
});

describe('parsePricing', () => {
  it('reads the JSON the pod spec carries', () => {
    expect(parsePricing('{"hardwareTime":true,"perUnit":{"image_count":"0.003"}}')).toEqual({
      hardwareTime: true,
      perUnit: { image_count: '0.003' },
    });
  });

  it('refuses what is not a pricing, saying why', () => {
    expect(() => parsePricing('nope')).toThrow(/JSON object/);
    expect(() => parsePricing('{"perUnit":{"image_count":0.003}}')).toThrow(
      /image_count must be a non-negative decimal string/,
    );
    expect(() => parsePricing('{"perUnit":{"bad name":"1"}}')).toThrow(/not a metric name/);
    expect(() => parsePricing('{"perToken":"1"}')).toThrow(/unknown fields: perToken/);
    expect(() => parsePricing('{"hardwareTime":"yes"}')).toThrow(/true or false/);
  });
});
