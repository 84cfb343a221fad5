/**
 * Where predictions are kept. The engine writes every change through `put`; readers list
 * newest first. The memory store keeps finished predictions for a TTL and at most
 * `maxRecords` predictions, evicting the oldest finished ones first; it never evicts one that
 * has not finished. Another implementation (a shared database) can back several gateway
 * replicas behind the same interface.
 */
import { type Clock, realClock } from '../../lib/clock.ts';
import { isTerminal } from '../../lib/prediction.ts';
import type { PredictionRecord } from './record.ts';

export interface ListOptions {
  namespaces: 'all' | readonly string[];
  /** From `list`'s `next`: continue after this position. */
  cursor?: string;
  limit: number;
}

export interface ListPage {
  items: PredictionRecord[];
  /** Cursor of the next page, when there is one. */
  next?: string;
}

export interface PredictionStore {
  /** Inserts or updates (by id). */
  put(rec: PredictionRecord): void;
  get(id: string): PredictionRecord | undefined;
  /** Forgets a prediction (one the instance refused as invalid before it began). */
  delete(id: string): void;
  /** Newest first (by creation time, then id). */
  list(opts: ListOptions): ListPage;
  /** The prediction created in `namespace` with this Idempotency-Key, if still kept. */
  findByIdempotencyKey(namespace: string, key: string): PredictionRecord | undefined;
  /** Removes finished predictions past their TTL; returns how many. */
  expire(nowMs: number): number;
  readonly size: number;
}

export interface MemoryStoreOptions {
  /** How long a finished prediction stays readable (default 1 h). */
  ttlMs?: number;
  /** Most predictions kept (default 100 000). */
  maxRecords?: number;
  /** When a prediction finished is read from it. */
  clock?: Clock;
}

function encodeCursor(rec: { createdAt: number; id: string }): string {
  return Buffer.from(`${rec.createdAt}:${rec.id}`).toString('base64url');
}

function decodeCursor(cursor: string): { createdAt: number; id: string } | undefined {
  const m = /^(\d+):([a-z0-9]+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return m ? { createdAt: Number(m[1]), id: m[2]! } : undefined;
}

/** a comes before b in newest-first order. */
function newer(a: { createdAt: number; id: string }, b: { createdAt: number; id: string }): boolean {
  return a.createdAt !== b.createdAt ? a.createdAt > b.createdAt : a.id > b.id;
}

export class MemoryStore implements PredictionStore {
  private readonly records = new Map<string, PredictionRecord>();
  /** id → epoch ms it finished, in order of finishing. */
  private readonly finished = new Map<string, number>();
  private readonly keys = new Map<string, string>();
  private readonly ttlMs: number;
  private readonly maxRecords: number;
  private readonly clock: Clock;

  constructor(opts: MemoryStoreOptions = {}) {
    this.ttlMs = opts.ttlMs ?? 3_600_000;
    this.maxRecords = opts.maxRecords ?? 100_000;
    this.clock = opts.clock ?? realClock;
  }

  get size(): number {
    return this.records.size;
  }

  put(rec: PredictionRecord): void {
    const known = this.records.has(rec.id);
    this.records.set(rec.id, rec);
    if (rec.idempotencyKey) this.keys.set(`${rec.namespace}\n${rec.idempotencyKey}`, rec.id);
    if (isTerminal(rec.status) && !this.finished.has(rec.id)) this.finished.set(rec.id, this.clock.now());
    if (!known && this.records.size > this.maxRecords) this.evict();
  }

  get(id: string): PredictionRecord | undefined {
    return this.records.get(id);
  }

  delete(id: string): void {
    this.remove(id);
  }

  list(opts: ListOptions): ListPage {
    const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    const ns = opts.namespaces === 'all' ? undefined : new Set(opts.namespaces);
    const all = [...this.records.values()].filter(
      (r) => (!ns || ns.has(r.namespace)) && (!after || newer(after, r)),
    );
    all.sort((a, b) => (newer(a, b) ? -1 : 1));
    const items = all.slice(0, opts.limit);
    return { items, next: all.length > opts.limit ? encodeCursor(items.at(-1)!) : undefined };
  }

  findByIdempotencyKey(namespace: string, key: string): PredictionRecord | undefined {
    const id = this.keys.get(`${namespace}\n${key}`);
    return id === undefined ? undefined : this.records.get(id);
  }

  expire(nowMs: number): number {
    let n = 0;
    for (const [id, at] of this.finished) {
      if (nowMs - at < this.ttlMs) break; // in order of finishing
      this.remove(id);
      n++;
    }
    return n;
  }

  /** Over the bound: drops the oldest finished predictions (never unfinished ones). */
  private evict(): void {
    for (const id of this.finished.keys()) {
      if (this.records.size <= this.maxRecords) return;
      this.remove(id);
    }
  }

  private remove(id: string): void {
    const rec = this.records.get(id);
    this.records.delete(id);
    this.finished.delete(id);
    if (rec?.idempotencyKey) {
      const k = `${rec.namespace}\n${rec.idempotencyKey}`;
      if (this.keys.get(k) === id) this.keys.delete(k);
    }
  }
}
