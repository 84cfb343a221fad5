import { describe, expect, it } from 'vitest';
import { preferWait, sseFrame } from './http.ts';

describe('Prefer: wait', () => {
  it('reads bare wait as the maximum and wait=N clamped', () => {
    expect(preferWait(undefined, 60)).toBeUndefined();
    expect(preferWait('respond-async', 60)).toBeUndefined();
    expect(preferWait('wait', 60)).toBe(60);
    expect(preferWait('wait=5', 60)).toBe(5);
    expect(preferWait('wait=500', 60)).toBe(60);
    expect(preferWait('respond-async, wait=2', 60)).toBe(2);
    expect(preferWait('Wait = 3', 60)).toBe(3);
  });
});

describe('SSE frames', () => {
  it('carry an id line and one data line per line of text', () => {
    expect(sseFrame({ id: 3, event: 'logs', data: 'one\ntwo\n' })).toBe(
      'id: 3\nevent: logs\ndata: one\ndata: two\ndata: \n\n',
    );
    expect(sseFrame({ id: 4, event: 'done', data: '{}' })).toBe('id: 4\nevent: done\ndata: {}\n\n');
  });
});
