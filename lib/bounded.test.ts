import { describe, expect, it } from 'vitest';
import { boundLogs, byteLength, dropMarker, jsonBytes } from './bounded.ts';

describe('boundLogs', () => {
  it('keeps logs within the bound as they are', () => {
    expect(boundLogs('a\nb\n', 1024)).toBe('a\nb\n');
  });

  it('keeps the last bytes behind a marker counting those dropped, across cuts', () => {
    const line = `${'x'.repeat(99)}\n`;
    const once = boundLogs(line.repeat(50), 1000);
    expect(once.startsWith(dropMarker(4000))).toBe(true);
    expect(byteLength(once.slice(dropMarker(4000).length))).toBe(1000);
    const twice = boundLogs(once + line.repeat(5), 1000);
    expect(twice.startsWith(dropMarker(4500))).toBe(true);
    expect(twice.endsWith(line.repeat(10))).toBe(true);
  });

  it('counts bytes, not characters, and never splits a character', () => {
    const logs = 'é'.repeat(2000); // 4000 bytes
    const cut = boundLogs(logs, 1001);
    const text = cut.slice(cut.indexOf('\n') + 1);
    expect(byteLength(text)).toBe(1000);
    expect(text).toBe('é'.repeat(500));
    expect(cut.startsWith(dropMarker(3000))).toBe(true);
  });
});

describe('jsonBytes', () => {
  it('measures the JSON in UTF-8', () => {
    expect(jsonBytes('é')).toBe(4);
    expect(jsonBytes([1, 2])).toBe(5);
    expect(jsonBytes(undefined)).toBe(0);
  });
});
