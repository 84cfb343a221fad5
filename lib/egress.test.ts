import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { EgressPolicy, EgressRefused, parseCidrList, postJson, type Resolver } from './egress.ts';

describe('egress policy', () => {
  const strict = new EgressPolicy();

  it('refuses the special-purpose ranges and admits public unicast addresses', () => {
    const refused = {
      '127.0.0.1': 'loopback',
      '10.0.0.5': 'private',
      '172.16.3.4': 'private',
      '192.168.1.1': 'private',
      '169.254.169.254': 'linkLocal',
      '100.64.0.1': 'carrierGradeNat',
      '0.0.0.0': 'unspecified',
      '224.0.0.1': 'multicast',
      '255.255.255.255': 'broadcast',
      '::1': 'loopback',
      '::': 'unspecified',
      'fd00::1': 'uniqueLocal',
      'fe80::1': 'linkLocal',
      'ff02::1': 'multicast',
      '::ffff:10.0.0.1': 'private',
      '::ffff:169.254.169.254': 'linkLocal',
    };
    for (const [ip, range] of Object.entries(refused)) expect([ip, strict.refusal(ip)]).toEqual([ip, range]);
    for (const ip of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111'])
      expect(strict.refusal(ip)).toBeUndefined();
  });

  it('admits what the allowlist names, and only that', () => {
    const p = new EgressPolicy(['127.0.0.0/8', '10.1.0.0/16', 'fd00::/8', '192.168.1.7']);
    for (const ip of ['127.0.0.1', '10.1.2.3', 'fd00::1', '192.168.1.7', '::ffff:127.0.0.1'])
      expect(p.refusal(ip)).toBeUndefined();
    for (const ip of ['10.2.0.1', '192.168.1.8', '::1', '169.254.169.254'])
      expect(p.refusal(ip)).toBeDefined();
  });

  it('judges a literal host at once and leaves names to delivery', () => {
    expect(strict.literalRefusal(new URL('http://127.0.0.1:8080/x'))).toBe('127.0.0.1 is a loopback address');
    expect(strict.literalRefusal(new URL('http://[::1]/x'))).toBe('::1 is a loopback address');
    expect(strict.literalRefusal(new URL('http://LOCALHOST/x'))).toBe('localhost is a loopback name');
    expect(strict.literalRefusal(new URL('http://169.254.169.254/'))).toMatch(/linkLocal/);
    // WHATWG URL parsing turns these spellings into the dotted form first.
    expect(strict.literalRefusal(new URL('http://2130706433/'))).toMatch(/loopback/);
    expect(strict.literalRefusal(new URL('http://0x7f.1/'))).toMatch(/loopback/);
    expect(strict.literalRefusal(new URL('https://example.com/hook'))).toBeUndefined();
    expect(
      new EgressPolicy(['127.0.0.0/8', '::1']).literalRefusal(new URL('http://localhost/')),
    ).toBeUndefined();
  });

  it('checks a list of CIDRs', () => {
    expect(parseCidrList(' 10.0.0.0/8, ::1 ,')).toEqual(['10.0.0.0/8', '::1']);
    expect(() => parseCidrList('10.0.0.0/33')).toThrow(/not a CIDR/);
    expect(() => parseCidrList('example.com')).toThrow(/not an IP address/);
  });

  it('connects only to a resolved address the policy admits', async () => {
    const server = createServer((_req, res) => res.writeHead(204).end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      // A resolver standing in for DNS: names no literal check can judge.
      const answers: Record<string, string[]> = {
        'inside.example': ['10.0.0.7'],
        'loop.example': ['127.0.0.1'],
        'mixed.example': ['10.0.0.7', '127.0.0.1'],
      };
      const resolver: Resolver = (host, _o, cb) =>
        answers[host]
          ? cb(
              null,
              answers[host].map((address) => ({ address, family: 4 })),
            )
          : cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }), []);
      const post = (host: string, policy: EgressPolicy) =>
        postJson(`http://${host}:${port}/hook`, { body: '{}', headers: {}, timeoutMs: 5000, policy });
      const strict = new EgressPolicy([], resolver);
      expect(strict.literalRefusal(new URL(`http://inside.example:${port}/`))).toBeUndefined();
      await expect(post('inside.example', strict)).rejects.toThrow(EgressRefused);
      await expect(post('inside.example', strict)).rejects.toThrow(/inside.example resolves to 10.0.0.7/);
      await expect(post('loop.example', strict)).rejects.toThrow(EgressRefused);
      const loopback = new EgressPolicy(['127.0.0.0/8'], resolver);
      // The connection goes to the admitted address, 127.0.0.1, where the server is.
      await expect(post('loop.example', loopback)).resolves.toEqual({ status: 204 });
      await expect(post('mixed.example', loopback)).resolves.toEqual({ status: 204 });
      await expect(post('inside.example', loopback)).rejects.toThrow(EgressRefused);
    } finally {
      server.close();
    }
  });
});
