import { describe, expect, it } from 'vitest';
import { appliedBy, covers } from './apply.ts';

describe('covers', () => {
  it('ignores fields only the actual object has', () => {
    expect(covers({ a: 1, b: { c: 2, d: 3 }, e: 'x' }, { a: 1, b: { c: 2 } })).toBe(true);
    expect(covers({ a: 1 }, {})).toBe(true);
    expect(covers(undefined, undefined)).toBe(true);
  });

  it('sees a changed, missing or retyped field', () => {
    expect(covers({ a: 1 }, { a: 2 })).toBe(false);
    expect(covers({}, { a: 0 })).toBe(false);
    expect(covers({ a: '1' }, { a: 1 })).toBe(false);
    expect(covers({ a: { b: 1 } }, { a: null })).toBe(false);
    expect(covers(undefined, { a: 1 })).toBe(false);
  });

  it('compares arrays element by element, with the same length', () => {
    const conditions = [
      { type: 'Ready', status: 'True', lastTransitionTime: 't1', observedGeneration: 2 },
      { type: 'Degraded', status: 'False', lastTransitionTime: 't0' },
    ];
    expect(
      covers({ conditions }, { conditions: [{ type: 'Ready', status: 'True' }, { type: 'Degraded' }] }),
    ).toBe(true);
    expect(covers({ conditions }, { conditions: [{ type: 'Ready', status: 'True' }] })).toBe(false);
    expect(covers({ conditions }, { conditions: [{ type: 'Degraded' }, { type: 'Ready' }] })).toBe(false);
    expect(covers({ list: {} }, { list: [] })).toBe(false);
  });
});

describe('appliedBy', () => {
  const obj = {
    metadata: {
      managedFields: [
        { manager: 'widget-controller', operation: 'Apply' },
        { manager: 'widget-controller', operation: 'Apply', subresource: 'status' },
        { manager: 'kubectl', operation: 'Update' },
      ],
    },
  };

  it('tells the main resource from a subresource', () => {
    expect(appliedBy(obj, 'widget-controller')).toBe(true);
    expect(appliedBy(obj, 'widget-controller', 'status')).toBe(true);
    expect(appliedBy(obj, 'kubectl')).toBe(false);
    expect(appliedBy({}, 'widget-controller')).toBe(false);
  });
});
