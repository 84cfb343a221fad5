import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { StreamTokens } from './stream-token.ts';

describe('stream tokens', () => {
  it('are an HMAC-SHA256 of the prediction id under the stream key, and only those verify', () => {
    const key = Buffer.alloc(32, 7);
    const tokens = new StreamTokens(key);
    const want = createHmac('sha256', key).update('stream:p1').digest('base64url');
    expect(tokens.token('p1')).toBe(want);
    expect(tokens.token('p1')).toBe(want); // the same on every call
    expect(tokens.verify('p1', want)).toBe(true);
    expect(tokens.verify('p2', want)).toBe(false);
    expect(tokens.verify('p1', `${want[0] === 'A' ? 'B' : 'A'}${want.slice(1)}`)).toBe(false);
    expect(tokens.verify('p1', undefined)).toBe(false);
    expect(tokens.url({ id: 'p1', baseUrl: 'http://gw/v1' })).toBe(
      `http://gw/v1/predictions/p1/stream?token=${want}`,
    );
  });

  it('differ between keys, and a random key is made when none is given', () => {
    expect(new StreamTokens().token('p1')).not.toBe(new StreamTokens().token('p1'));
    expect(
      new StreamTokens(Buffer.alloc(32, 1)).verify('p1', new StreamTokens(Buffer.alloc(32, 2)).token('p1')),
    ).toBe(false);
  });
});
