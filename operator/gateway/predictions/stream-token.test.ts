import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../lib/clock.ts';
import { StreamTokens } from './stream-token.ts';

describe('stream tokens', () => {
  it('are an expiry and an HMAC-SHA256 of the prediction id and expiry under the stream key', () => {
    const key = Buffer.alloc(32, 7);
    const clock = new FakeClock(1_000_000);
    const tokens = new StreamTokens({ key, clock, ttlMs: 60_000 });
    const exp = 1060;
    const want = `${exp}.${createHmac('sha256', key).update(`stream:p1:${exp}`).digest('base64url')}`;
    expect(tokens.token('p1')).toBe(want);
    expect(tokens.verify('p1', want)).toBe(true);
    expect(tokens.verify('p2', want)).toBe(false);
    const mac = want.split('.')[1]!;
    expect(tokens.verify('p1', `${exp}.${mac[0] === 'A' ? 'B' : 'A'}${mac.slice(1)}`)).toBe(false);
    // A later expiry under the same MAC is refused: the time is signed.
    expect(tokens.verify('p1', `${exp + 1000}.${mac}`)).toBe(false);
    expect(tokens.verify('p1', undefined)).toBe(false);
    expect(tokens.verify('p1', 'garbage')).toBe(false);
    // The URL's expiry counts from the prediction's creation: the same URL on every read.
    expect(tokens.url({ id: 'p1', baseUrl: 'http://gw/v1', createdAt: 1_000_000 })).toBe(
      `http://gw/v1/predictions/p1/stream?token=${want}`,
    );
    clock.advance(5000);
    expect(tokens.url({ id: 'p1', baseUrl: 'http://gw/v1', createdAt: 1_000_000 })).toBe(
      `http://gw/v1/predictions/p1/stream?token=${want}`,
    );
  });

  it('expire after their time', () => {
    const clock = new FakeClock(1_000_000);
    const tokens = new StreamTokens({ clock, ttlMs: 60_000 });
    const t = tokens.token('p1');
    clock.advance(59_999);
    expect(tokens.verify('p1', t)).toBe(true);
    clock.advance(1);
    expect(tokens.verify('p1', t)).toBe(false);
  });

  it('differ between keys; a random key is made when none is given; setKey switches to a shared one', () => {
    expect(new StreamTokens().token('p1')).not.toBe(new StreamTokens().token('p1'));
    const one = new StreamTokens({ key: Buffer.alloc(32, 1) });
    const two = new StreamTokens({ key: Buffer.alloc(32, 2) });
    expect(one.verify('p1', two.token('p1'))).toBe(false);
    two.setKey(Buffer.alloc(32, 1));
    expect(one.verify('p1', two.token('p1'))).toBe(true);
  });
});
