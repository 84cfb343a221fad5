import { describe, expect, it } from 'vitest';
import { modelMetrics, newPredictionId, PREDICTION_ID, predictionIdFor } from './prediction.ts';

describe('prediction ids', () => {
  it('are 26 characters of lowercase base32 and differ', () => {
    const ids = new Set(Array.from({ length: 1000 }, newPredictionId));
    expect(ids.size).toBe(1000);
    for (const id of ids) expect(id).toMatch(PREDICTION_ID);
  });

  it('given a seed (an object uid) are the same for it each time, and differ between seeds', () => {
    const uid = 'a3c1e0de-5a4f-4f6e-9d0b-6f1c2b7e8d90';
    expect(predictionIdFor(uid)).toMatch(PREDICTION_ID);
    expect(predictionIdFor(uid)).toBe(predictionIdFor(uid));
    const ids = new Set(Array.from({ length: 1000 }, (_, i) => predictionIdFor(`${uid}-${i}`)));
    expect(ids.size).toBe(1000);
  });
});

describe("a model's own metrics", () => {
  it('are every entry of metrics but the timings', () => {
    expect(
      modelMetrics({
        predict_time: 0.4,
        total_time: 1,
        queue_time: 0.1,
        image_count: 2,
        timing: { inference: 0.3 },
        tags: ['a'],
        dropped: null,
      }),
    ).toEqual({ image_count: 2, timing: { inference: 0.3 }, tags: ['a'] });
  });

  it('are nothing when there are only timings, or no metrics object', () => {
    expect(modelMetrics({ predict_time: 0.4 })).toBeUndefined();
    expect(modelMetrics(undefined)).toBeUndefined();
    expect(modelMetrics([1, 2])).toBeUndefined();
    expect(modelMetrics('x')).toBeUndefined();
  });
});
