import { describe, expect, it } from 'vitest';
import { HttpError } from '../../lib/http.ts';
import { InputBudget, inputBytes } from './budget.ts';

describe('InputBudget', () => {
  it('refuses an input that would pass the deployment budget with 429 and Retry-After, and takes it once others leave', () => {
    const budget = new InputBudget({ perDeploymentBytes: 100, perReplicaBytes: 1000 });
    budget.charge('a', 'ns/one', 60);
    budget.charge('a', 'ns/one', 60); // counted once
    expect(budget.bytes('ns/one')).toBe(60);
    let refused: unknown;
    try {
      budget.check('ns/one', 41);
    } catch (err) {
      refused = err;
    }
    expect(refused).toBeInstanceOf(HttpError);
    expect(refused).toMatchObject({ status: 429, headers: { 'retry-after': '1' } });
    expect(() => budget.check('ns/one', 40)).not.toThrow();
    expect(() => budget.check('ns/two', 100)).not.toThrow(); // another deployment's budget
    budget.release('a');
    expect(budget.bytes('ns/one')).toBe(0);
    expect(() => budget.check('ns/one', 100)).not.toThrow();
  });

  it('refuses past the replica budget across deployments', () => {
    const budget = new InputBudget({ perDeploymentBytes: 100, perReplicaBytes: 150 });
    budget.charge('a', 'ns/one', 100);
    budget.charge('b', 'ns/two', 40);
    expect(budget.bytes()).toBe(140);
    expect(() => budget.check('ns/three', 11)).toThrow(/replica holds take 140 bytes/);
    budget.release('b');
    budget.release('b');
    expect(budget.bytes()).toBe(100);
  });

  it('measures an input as its JSON in UTF-8 bytes, however deep', () => {
    for (const input of [
      { text: 'é' },
      { s: 'x'.repeat(1000), n: [1, 2.5, null, true], o: { a: 'b' } },
      {},
      [],
    ])
      expect(inputBytes(input)).toBe(Buffer.byteLength(JSON.stringify(input)));
    let deep: unknown = 0;
    for (let i = 0; i < 200_000; i++) deep = [deep];
    expect(inputBytes({ deep })).toBe(9 + 200_000 * 2 + 1);
  });
});
