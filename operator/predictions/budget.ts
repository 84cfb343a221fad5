/**
 * Byte budgets for the inputs this replica holds: every prediction it drives keeps its input
 * in memory until it ends, so a count of queued predictions says little (a thousand 10 MiB
 * inputs are 10 GiB). A new prediction is refused with 429 and `Retry-After` when its input
 * would take its deployment, or the whole replica, past its budget.
 */
import { HttpError } from '../../lib/http.ts';

export interface InputBudgetLimits {
  /** Bytes of inputs held for one deployment (default 256 MiB). */
  perDeploymentBytes: number;
  /** Bytes of inputs held for every deployment together (default 1 GiB). */
  perReplicaBytes: number;
}

export const DEFAULT_INPUT_BUDGET: InputBudgetLimits = {
  perDeploymentBytes: 256 * 1024 * 1024,
  perReplicaBytes: 1024 * 1024 * 1024,
};

const sizes = new WeakMap<object, number>();

/**
 * The size of `input` as JSON, in UTF-8 bytes (escapes aside), worked out once per input
 * object. Walked with a stack of its own, not JSON.stringify: an input nested too deep for
 * the call stack is measured too.
 */
export function inputBytes(input: unknown): number {
  if (typeof input !== 'object' || input === null) return measure(input);
  let n = sizes.get(input);
  if (n === undefined) {
    n = measure(input);
    sizes.set(input, n);
  }
  return n;
}

function measure(root: unknown): number {
  let bytes = 0;
  const stack: unknown[] = [root];
  while (stack.length) {
    const v = stack.pop();
    if (typeof v === 'string') bytes += Buffer.byteLength(v) + 2;
    else if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint')
      bytes += String(v).length;
    else if (v === null || v === undefined) bytes += 4;
    else if (Array.isArray(v)) {
      bytes += 2 + Math.max(0, v.length - 1);
      for (const item of v) stack.push(item);
    } else if (typeof v === 'object') {
      const entries = Object.entries(v);
      bytes += 2 + Math.max(0, entries.length - 1);
      for (const [k, item] of entries) {
        bytes += Buffer.byteLength(k) + 3;
        stack.push(item);
      }
    }
  }
  return bytes;
}

export class InputBudget {
  readonly limits: InputBudgetLimits;
  private readonly held = new Map<string, { key: string; bytes: number }>();
  private readonly perKey = new Map<string, number>();
  private total = 0;

  constructor(limits: Partial<InputBudgetLimits> = {}) {
    this.limits = { ...DEFAULT_INPUT_BUDGET, ...limits };
  }

  /** Bytes held for deployment `key` (`namespace/name`), or for all when left out. */
  bytes(key?: string): number {
    return key === undefined ? this.total : (this.perKey.get(key) ?? 0);
  }

  /** Throws a 429 problem when `bytes` more for deployment `key` would go past a budget. */
  check(key: string, bytes: number): void {
    const { perDeploymentBytes, perReplicaBytes } = this.limits;
    if (this.bytes(key) + bytes > perDeploymentBytes)
      throw full(
        `the inputs waiting or running for deployment ${key} hold ${this.bytes(key)} bytes; this one (${bytes} bytes) would pass its budget of ${perDeploymentBytes} bytes`,
      );
    if (this.total + bytes > perReplicaBytes)
      throw full(
        `the inputs this gateway replica holds take ${this.total} bytes; this one (${bytes} bytes) would pass its budget of ${perReplicaBytes} bytes`,
      );
  }

  /** Counts prediction `id`'s input against deployment `key` (once, however often it is called). */
  charge(id: string, key: string, bytes: number): void {
    if (this.held.has(id)) return;
    this.held.set(id, { key, bytes });
    this.perKey.set(key, (this.perKey.get(key) ?? 0) + bytes);
    this.total += bytes;
  }

  /** Prediction `id` ended (or left this replica): its input no longer counts. */
  release(id: string): void {
    const h = this.held.get(id);
    if (!h) return;
    this.held.delete(id);
    const left = (this.perKey.get(h.key) ?? 0) - h.bytes;
    if (left > 0) this.perKey.set(h.key, left);
    else this.perKey.delete(h.key);
    this.total -= h.bytes;
  }
}

function full(detail: string): HttpError {
  return new HttpError(429, 'Too many bytes queued', detail, {}, { 'retry-after': '1' });
}
