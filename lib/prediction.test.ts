import { describe, expect, it } from 'vitest';
import { newPredictionId, PREDICTION_ID } from './prediction.ts';

describe('prediction ids', () => {
  it('are 26 characters of lowercase base32 and differ', () => {
    const ids = new Set(Array.from({ length: 1000 }, newPredictionId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(PREDICTION_ID);
  });
});
