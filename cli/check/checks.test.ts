import { describe, expect, it } from 'vitest';
import {
  cancelAfter,
  consistency,
  cosineSimilarity,
  cost,
  diffSchemas,
  exitStatus,
  hasSeedInput,
  idempotency,
  imagePinned,
  keptWarm,
  license,
  official,
  percentile,
  recommendedTimeout,
  runtime,
  schemaStability,
  withFileHashes,
} from './checks.ts';

const schema = (input: Record<string, unknown>, required: string[], output: unknown) => ({
  components: { schemas: { Input: { type: 'object', properties: input, required }, Output: output } },
});

describe('percentile', () => {
  it('takes the nearest rank', () => {
    const v = [5, 1, 4, 2, 3, 6, 7, 8, 9, 10];
    expect(percentile(v, 50)).toBe(5);
    expect(percentile(v, 95)).toBe(10);
    expect(percentile(v, 10)).toBe(1);
    expect(percentile([2], 99)).toBe(2);
    expect(percentile([], 50)).toBeNaN();
  });
});

describe('cosineSimilarity', () => {
  it('is 1 for parallel vectors, 0 for orthogonal, -1 for opposite', () => {
    expect(cosineSimilarity([1, 2, 3], [2, 4, 6])).toBeCloseTo(1, 12);
    expect(cosineSimilarity([1, 0], [0, 1])).toBe(0);
    expect(cosineSimilarity([1, 1], [-1, -1])).toBeCloseTo(-1, 12);
    expect(cosineSimilarity([1], [1, 2])).toBeNaN();
    expect(cosineSimilarity([0, 0], [1, 1])).toBeNaN();
  });
});

describe('consistency', () => {
  it('passes identical outputs and fails different ones', () => {
    expect(consistency(['a', 'a', 'a'])).toMatchObject({ verdict: 'pass', figure: '3/3 identical' });
    expect(consistency(['a', 'b', 'a'])).toMatchObject({
      verdict: 'fail',
      figure: 'varies: 2 distinct of 3',
    });
    expect(consistency(['a', 'b', 'c'], { seedInput: true })).toMatchObject({
      verdict: 'warn',
      figure: 'varies: 3 distinct of 3',
    });
  });
  it('only warns when an unfixed seed input explains the difference', () => {
    expect(consistency(['a', 'b'], { seedInput: true })).toMatchObject({ verdict: 'warn' });
    expect(consistency(['a', 'b'], { seedInput: true, seedGiven: true })).toMatchObject({ verdict: 'fail' });
  });
  it('compares number arrays by cosine similarity', () => {
    expect(
      consistency([
        [1, 2, 3],
        [1, 2, 3.0001],
      ]),
    ).toMatchObject({ verdict: 'pass' });
    expect(
      consistency([
        [1, 2, 3],
        [3, 2, 1],
      ]),
    ).toMatchObject({ verdict: 'fail', figure: 'varies: min cosine 0.714286 to the first' });
    expect(
      consistency([
        [1, 0],
        [1, 0],
      ]),
    ).toMatchObject({ verdict: 'pass', figure: '2/2 identical' });
  });
  it('compares files by the hashes of their contents, not their URLs', () => {
    const hashes = new Map([
      ['http://x/a.png', 'h1'],
      ['http://x/b.png', 'h1'],
      ['http://x/c.png', 'h2'],
    ]);
    const outs = ['http://x/a.png', 'http://x/b.png'].map((u) => withFileHashes({ image: u }, hashes));
    expect(consistency(outs).verdict).toBe('pass');
    expect(consistency([...outs, withFileHashes({ image: 'http://x/c.png' }, hashes)]).verdict).toBe('fail');
  });
  it('sees a seed input in the schema', () => {
    expect(hasSeedInput(schema({ seed: { type: 'integer' } }, [], {}))).toBe(true);
    expect(hasSeedInput(schema({ text: { type: 'string' } }, [], {}))).toBe(false);
  });
});

describe('runtime', () => {
  const t = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((s) => ({ predictTime: s, totalTime: s + 0.5 }));
  it('reports percentiles and fails past --max-p95', () => {
    expect(runtime(t).figure).toContain('predict p50 5.000s p95 10.0s max 10.0s');
    expect(runtime(t, 10).verdict).toBe('pass');
    expect(runtime(t, 9.5)).toMatchObject({ verdict: 'fail' });
    expect(runtime([]).verdict).toBe('fail');
  });
  it('recommends a client timeout of twice the p99, rounded up', () => {
    expect(recommendedTimeout([0.1, 0.2, 0.3])).toBe(1);
    expect(recommendedTimeout([1.2, 3.4])).toBe(7);
  });
});

describe('cancel-after and idempotency', () => {
  it('passes a canceled end and a replayed id', () => {
    expect(cancelAfter({ status: 'canceled' }).verdict).toBe('pass');
    expect(cancelAfter({ status: 'succeeded' }).verdict).toBe('fail');
    expect(cancelAfter({ skipped: 'too fast' }).verdict).toBe('skip');
    expect(idempotency('a', 'a', true).verdict).toBe('pass');
    expect(idempotency('a', 'b', false).verdict).toBe('fail');
  });
});

describe('cost', () => {
  it('multiplies the mean prediction cost by units per action, and prices idle instances', () => {
    const rows = cost({
      pricing: undefined,
      pricePerSecond: '0.001',
      predictions: [{ predictTime: 1 }, { predictTime: 3 }],
      unitsPerAction: 3,
      minInstances: 2,
    });
    expect(rows[0]!.figure).toBe('$0.006 (3 × $0.002 per prediction)');
    expect(rows[1]!.figure).toBe('$7.2/hour at minInstances 2');
  });
  it('prices per unit of recorded metrics', () => {
    const rows = cost({
      pricing: { perUnit: { image_count: '0.003' } },
      pricePerSecond: '0.001',
      predictions: [{ predictTime: 1, metrics: { image_count: 2 } }],
      unitsPerAction: 1,
      minInstances: 0,
    });
    expect(rows[0]!.figure).toBe('$0.006 (1 × $0.006 per prediction)');
    expect(rows[1]!.figure).toBe('$0/hour at minInstances 0');
  });
});

describe('version stability', () => {
  const prev = schema({ text: { type: 'string' }, n: { type: 'integer' } }, ['text'], { type: 'string' });
  it('flags a dropped input as breaking', () => {
    const cur = schema({ text: { type: 'string' } }, ['text'], { type: 'string' });
    const d = diffSchemas(prev, cur);
    expect(d.breaking).toEqual(['input "n" removed']);
    expect(schemaStability('v1', d)).toMatchObject({ verdict: 'fail', figure: '1 breaking vs v1' });
  });
  it('flags retyped inputs, new required inputs and a changed output type', () => {
    const cur = schema(
      { text: { type: 'string' }, n: { type: 'number' }, mode: { type: 'string' } },
      ['text', 'mode'],
      { type: 'array', items: { type: 'string' } },
    );
    expect(diffSchemas(prev, cur).breaking).toEqual([
      'input "n" changed type integer → number',
      'new required input "mode"',
      'output type changed string → array<string>',
    ]);
  });
  it('accepts a new optional input', () => {
    const cur = schema(
      { text: { type: 'string' }, n: { type: 'integer' }, extra: { type: 'boolean' } },
      ['text'],
      {
        type: 'string',
      },
    );
    const d = diffSchemas(prev, cur);
    expect(d).toEqual({ breaking: [], compatible: ['new optional input "extra"'] });
    expect(schemaStability('v1', d).verdict).toBe('pass');
    expect(schemaStability(undefined, undefined)).toMatchObject({ verdict: 'pass', figure: 'first version' });
  });
  it('warns for a tag-only image, no license, not official, not kept warm', () => {
    expect(imagePinned('r.example.com/m:1.0').verdict).toBe('warn');
    expect(imagePinned(`r.example.com/m@sha256:${'a'.repeat(64)}`).verdict).toBe('pass');
    expect(license(undefined).verdict).toBe('warn');
    expect(license('https://example.com/LICENSE').verdict).toBe('pass');
    expect(official({}, 'modelplane.dev/official').verdict).toBe('warn');
    expect(official({ 'modelplane.dev/official': 'true' }, 'modelplane.dev/official').verdict).toBe('pass');
    expect(keptWarm(0).verdict).toBe('warn');
    expect(keptWarm(1).verdict).toBe('pass');
  });
  it('exits non-zero only when a row fails', () => {
    expect(exitStatus([keptWarm(0), license('https://x')])).toBe(0);
    expect(exitStatus([keptWarm(0), runtime([])])).toBe(1);
  });
});
