import { describe, expect, it } from 'vitest';
import { IpAllocator, parseCidr } from './ips.ts';

describe('IpAllocator', () => {
  it('hands out distinct loopback addresses, the same one again to the same owner', () => {
    const ips = new IpAllocator('127.10.0.0/16');
    const a = ips.allocate('pod-a');
    const b = ips.allocate('pod-b');
    expect(a).toBe('127.10.0.1');
    expect(b).toBe('127.10.0.2');
    expect(ips.allocate('pod-a')).toBe(a);
    expect(ips.inUse).toBe(2);
  });

  it('does not hand a released address out again at once', () => {
    const ips = new IpAllocator('127.10.0.0/16');
    const a = ips.allocate('a');
    ips.release('a');
    expect(ips.allocate('b')).not.toBe(a);
    expect(ips.addressOf('a')).toBeUndefined();
  });

  it('skips the network, broadcast and reserved addresses, and says when the range is full', () => {
    const ips = new IpAllocator('127.0.0.0/30');
    // 127.0.0.1 is reserved (the control plane), .0 and .3 are the ends: only .2 is left.
    expect(ips.allocate('a')).toBe('127.0.0.2');
    expect(() => ips.allocate('b')).toThrow(/no free address/);
  });

  it('lets a pod claim the address it had, once', () => {
    const ips = new IpAllocator('127.10.0.0/16');
    expect(ips.claim('a', '127.10.3.4')).toBe(true);
    expect(ips.claim('b', '127.10.3.4')).toBe(false);
    expect(ips.claim('c', '10.0.0.1')).toBe(false);
    expect(ips.allocate('a')).toBe('127.10.3.4');
  });

  it('starts at the offset given, and skips addresses reserved later', () => {
    const ips = new IpAllocator('127.10.0.0/16', [], 513);
    expect(ips.allocate('a')).toBe('127.10.2.1');
    ips.reserve('127.10.2.2');
    expect(ips.allocate('b')).toBe('127.10.2.3');
  });

  it('accepts only loopback ranges', () => {
    expect(parseCidr('127.10.0.0/16')).toEqual({ base: (127 * 2 ** 24 + 10 * 2 ** 16) >>> 0, size: 65536 });
    expect(() => parseCidr('10.244.0.0/16')).toThrow(/loopback/);
    expect(() => parseCidr('127.0.0.0')).toThrow(/a.b.c.d\/len/);
  });
});
