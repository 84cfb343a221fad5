/**
 * Where outbound webhooks may go. A webhook URL is the caller's choice, so by default it may
 * reach only public unicast addresses: loopback, private (RFC 1918), unique-local, link-local
 * (cloud metadata at 169.254.169.254 among them), carrier-grade NAT, unspecified, multicast,
 * broadcast and the other special-purpose ranges are refused, unless an allowlist of CIDRs
 * (`--webhook-allow-cidrs`) admits them.
 *
 * The check runs twice: when a prediction is created, on the URL's literal host (an IP
 * address, or `localhost`), so a caller hears of it at once; and when a delivery connects,
 * on the address the host name resolved to, the connection then going to that address and no
 * other, so a name that resolves to a public address at create time and to a private one later
 * (DNS rebinding) reaches nothing.
 */
import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import { option } from './config.ts';

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Resolves a host name to all its addresses: `dns.lookup` with `all: true` by default. */
export type Resolver = (
  hostname: string,
  options: { family?: number | string; hints?: number },
  callback: (err: NodeJS.ErrnoException | null, addresses: LookupAddress[]) => void,
) => void;

const systemResolver: Resolver = (hostname, options, callback) =>
  dnsLookup(hostname, { ...options, family: options.family as 0 | 4 | 6 | undefined, all: true }, callback);

/** Which addresses webhooks may reach: public unicast ones, and those in `allow`. */
export class EgressPolicy {
  private readonly allow: Cidr[];
  /** The allowlist as given, for logs. */
  readonly allowed: readonly string[];

  private readonly resolve: Resolver;

  constructor(allowCidrs: readonly string[] = [], resolve: Resolver = systemResolver) {
    this.allowed = [...allowCidrs];
    this.allow = allowCidrs.map(parseCidr);
    this.resolve = resolve;
  }

  /** Undefined when webhooks may reach `ip`; otherwise the kind of range that refuses it. */
  refusal(ip: string): string | undefined {
    if (!ipaddr.isValid(ip)) return 'not an IP address';
    // IPv4-mapped IPv6 addresses (::ffff:10.0.0.1) are judged as the IPv4 address they are.
    const addr = ipaddr.process(ip);
    for (const [net, bits] of this.allow) {
      if (net.kind() === addr.kind() && addr.match(net, bits)) return undefined;
    }
    const range = addr.range();
    return range === 'unicast' ? undefined : range;
  }

  /**
   * Undefined when the URL's host may be reached as far as can be told without resolving it;
   * otherwise why not. Only a literal IP address or `localhost` is judged here: a name is
   * judged at delivery, once resolved.
   */
  literalRefusal(url: URL): string | undefined {
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (host === 'localhost' || host.endsWith('.localhost')) {
      const v4 = this.refusal('127.0.0.1');
      const v6 = this.refusal('::1');
      return v4 && v6 ? `${host} is a loopback name` : undefined;
    }
    if (!ipaddr.isValid(host)) return undefined;
    const why = this.refusal(host);
    return why && `${host} is a ${why} address`;
  }

  /**
   * A `lookup` for `net.connect` (and so for an http Agent): resolves the name, keeps the
   * addresses the policy admits and fails with EADDRNOTALLOWED when none is left.
   */
  readonly lookup: LookupFunction = (hostname, options, callback) => {
    this.resolve(hostname, { family: options.family, hints: options.hints }, (err, addresses) => {
      if (err) return (callback as (e: Error) => void)(err);
      const ok = addresses.filter((a) => this.refusal(a.address) === undefined);
      if (ok.length === 0) {
        const first = addresses[0];
        const why = first ? `${first.address} is a ${this.refusal(first.address)} address` : 'no address';
        return (callback as (e: Error) => void)(new EgressRefused(`${hostname} resolves to ${why}`));
      }
      if (options.all) return (callback as (e: null, a: LookupAddress[]) => void)(null, ok);
      (callback as (e: null, a: string, f: number) => void)(null, ok[0]!.address, ok[0]!.family);
    });
  };
}

/** A webhook target the egress policy refuses. */
export class EgressRefused extends Error {
  readonly code = 'EADDRNOTALLOWED';
  constructor(message: string) {
    super(`refused by the webhook address policy: ${message}`);
  }
}

/** `10.0.0.0/8`, `fd00::/8`, or a single address (`127.0.0.1`, a /32 or /128). */
export function parseCidr(raw: string): Cidr {
  const s = raw.trim();
  if (s.includes('/')) {
    try {
      return ipaddr.parseCIDR(s);
    } catch {
      throw new Error(`"${raw}" is not a CIDR such as 10.0.0.0/8 or fd00::/8`);
    }
  }
  if (!ipaddr.isValid(s)) throw new Error(`"${raw}" is not an IP address or a CIDR such as 10.0.0.0/8`);
  const addr = ipaddr.parse(s);
  return [addr, addr.kind() === 'ipv4' ? 32 : 128];
}

/** A comma-separated list of CIDRs, each checked (for a flag's `parse`). */
export function parseCidrList(raw: string): string[] {
  const list = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const c of list) parseCidr(c);
  return list;
}

/** The `--webhook-allow-cidrs` setting (the operator's and the sidecar's), read also from `env`. */
export function allowCidrsOption(env: string) {
  return option({
    flag: 'webhook-allow-cidrs',
    env,
    parse: parseCidrList,
    default: [] as string[],
    meta: 'LIST',
    help: `address ranges prediction webhooks may reach besides public
ones, comma-separated CIDRs such as 10.20.0.0/16,127.0.0.1
(${env}; default none: loopback, private, link-local, CGNAT
and other special addresses are refused)`,
  });
}

/** What one POST answered. */
export interface PostResult {
  status: number;
}

/**
 * POSTs `body` to `url` through `policy`: a literal IP address is checked before connecting,
 * a name as it resolves (the connection goes to the checked address). Redirects are not
 * followed; at most `maxResponseBytes` of the answer are read, the rest dropped with the
 * connection. Rejects with EgressRefused when the policy refuses the target.
 */
export function postJson(
  url: string,
  opts: {
    body: string;
    headers: Record<string, string>;
    timeoutMs: number;
    policy: EgressPolicy;
    maxResponseBytes?: number;
  },
): Promise<PostResult> {
  const u = new URL(url);
  const literal = opts.policy.literalRefusal(u);
  if (literal) return Promise.reject(new EgressRefused(literal));
  const cap = opts.maxResponseBytes ?? 64 * 1024;
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((resolve, reject) => {
    const req = mod.request(
      u,
      {
        method: 'POST',
        headers: { ...opts.headers, 'content-length': String(Buffer.byteLength(opts.body)) },
        lookup: opts.policy.lookup,
        // A connection of its own: a pooled one could have been made to an address checked
        // under another name.
        agent: false,
        timeout: opts.timeoutMs,
      },
      (res) => {
        let read = 0;
        res.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > cap) res.destroy();
        });
        const done = () => resolve({ status: res.statusCode ?? 0 });
        res.once('end', done);
        res.once('close', done);
        res.once('error', done);
      },
    );
    const timer = setTimeout(
      () => req.destroy(new Error(`timed out after ${opts.timeoutMs} ms`)),
      opts.timeoutMs,
    );
    req.once('close', () => clearTimeout(timer));
    req.once('timeout', () => req.destroy(new Error(`timed out after ${opts.timeoutMs} ms`)));
    req.once('error', reject);
    req.end(opts.body);
  });
}
