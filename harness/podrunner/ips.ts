/**
 * Pod IPs for the local pod runner: loopback addresses (Linux routes all of 127.0.0.0/8 to
 * the loopback interface, so any of them can be bound without configuration), one per pod,
 * so every pod can listen on its own ports 5000, 8080 and 9090 like pods on a real node.
 */

/** Parses `a.b.c.d/len` within 127.0.0.0/8. */
export function parseCidr(cidr: string): { base: number; size: number } {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/.exec(cidr);
  if (!m) throw new Error(`pod CIDR "${cidr}": want a.b.c.d/len, e.g. 127.10.0.0/16`);
  const octets = m.slice(1, 5).map(Number);
  const len = Number(m[5]);
  if (octets.some((o) => o > 255)) throw new Error(`pod CIDR "${cidr}": an octet is over 255`);
  if (octets[0] !== 127 || len < 8 || len > 30)
    throw new Error(`pod CIDR "${cidr}": must lie in the loopback range 127.0.0.0/8, prefix length 8-30`);
  const ip = ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0;
  const size = 2 ** (32 - len);
  const base = ip - (ip % size);
  return { base, size };
}

export function ipToString(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/**
 * Hands out addresses of a CIDR, skipping its first and last (network and broadcast, by
 * habit), and the ones given as `reserved` (127.0.0.1, where the control plane listens).
 * A released address goes to the back of the line, so a new pod does not get the address of
 * a pod that has only just gone.
 */
export class IpAllocator {
  readonly cidr: string;
  private readonly base: number;
  private readonly size: number;
  private readonly used = new Map<string, string>();
  private readonly reserved: Set<string>;
  private next = 1;

  /**
   * `start`: the offset in the range of the first address handed out (1 = the first usable
   * one). Runners on one machine start at random offsets so they rarely meet.
   */
  constructor(cidr: string, reserved: readonly string[] = ['127.0.0.1'], start = 1) {
    this.cidr = cidr;
    ({ base: this.base, size: this.size } = parseCidr(cidr));
    this.reserved = new Set(reserved);
    const usable = this.size - 2;
    this.next = ((Math.max(1, Math.floor(start)) - 1) % usable) + 1;
  }

  /** Takes `ip` out of use (something else on the machine holds it); it is never handed out. */
  reserve(ip: string): void {
    this.reserved.add(ip);
  }

  /** The address of `owner` (a pod uid): the one it holds, or a new one. */
  allocate(owner: string): string {
    const held = this.addressOf(owner);
    if (held) return held;
    const usable = this.size - 2;
    for (let i = 0; i < usable; i++) {
      const offset = ((this.next - 1 + i) % usable) + 1;
      const ip = ipToString(this.base + offset);
      if (this.used.has(ip) || this.reserved.has(ip)) continue;
      this.used.set(ip, owner);
      this.next = (offset % usable) + 1;
      return ip;
    }
    throw new Error(`pod CIDR ${this.cidr} has no free address (${this.used.size} in use)`);
  }

  /** Marks `ip` as held by `owner` (a pod that already had it, found again after a restart). */
  claim(owner: string, ip: string): boolean {
    const holder = this.used.get(ip);
    if (holder !== undefined) return holder === owner;
    if (!this.contains(ip) || this.reserved.has(ip)) return false;
    this.used.set(ip, owner);
    return true;
  }

  release(owner: string): void {
    for (const [ip, o] of this.used) if (o === owner) this.used.delete(ip);
  }

  addressOf(owner: string): string | undefined {
    for (const [ip, o] of this.used) if (o === owner) return ip;
    return undefined;
  }

  contains(ip: string): boolean {
    const m = /^(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(ip);
    if (!m) return false;
    const n = ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
    return n > this.base && n < this.base + this.size - 1;
  }

  get inUse(): number {
    return this.used.size;
  }
}
