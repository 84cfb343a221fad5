/**
 * Where predictions are kept: the `PredictionStore` interface and its memory implementation.
 * The durable implementations (PostgreSQL, and embedded PGlite) are in operator/store/ and
 * follow the same contract (store.contract.ts).
 *
 * Every prediction has one *driver*: the replica whose engine queues it, sends it to an
 * instance and follows it there. Only the driver writes its state (`update` is fenced by the
 * driver's id); any replica reads it, streams its events and asks its driver to cancel it
 * (through notices). Replicas announce that they are alive (`heartbeat`); the predictions of
 * one that stops are adopted by another (`adopt`), exactly once.
 *
 * After a retention time a finished prediction's input, output, logs and events are removed
 * (`removeData`: `dataRemoved` is set); its record stays until a longer retention (`purge`).
 */
import { type Clock, realClock } from '../../lib/clock.ts';
import { isTerminal, type PredictionStatus, type StreamEvent } from '../../lib/prediction.ts';
import type { FileRecord, PredictionRecord } from './record.ts';
import { MemoryUsageStore, type UsageStore } from './usage-store.ts';

/** A prediction as the store keeps it: the record without its stream events (kept apart). */
export type StoredPrediction = Omit<PredictionRecord, 'events'>;

export interface ListOptions {
  namespaces: 'all' | readonly string[];
  /** From `list`'s `next`: the page after this position (older predictions). */
  cursor?: string;
  /** From `list`'s `previous`: the page just before this position (newer predictions). */
  before?: string;
  limit: number;
  /** Only predictions created at or after this time (epoch ms). */
  createdAfter?: number;
  /** Only predictions created before this time (epoch ms). */
  createdBefore?: number;
}

export interface ListPage {
  items: StoredPrediction[];
  /** Cursor of the next page (older), when there is one. */
  next?: string;
  /** Cursor of the previous page (newer), when there is one. */
  previous?: string;
}

/** The cursors of a page of `items` (newest first): `more` says whether the page was cut short in its reading direction. */
export function pageCursors(
  items: readonly { createdAt: number; id: string }[],
  opts: Pick<ListOptions, 'cursor' | 'before'>,
  more: boolean,
): Pick<ListPage, 'next' | 'previous'> {
  const first = items[0];
  const last = items.at(-1);
  if (opts.before)
    // Read backwards from a position: older ones (that position's, at least) follow.
    return { next: last && encodeCursor(last), previous: more && first ? encodeCursor(first) : undefined };
  return {
    next: more && last ? encodeCursor(last) : undefined,
    previous: opts.cursor && first ? encodeCursor(first) : undefined,
  };
}

export type FileListOptions = Pick<ListOptions, 'namespaces' | 'cursor' | 'before' | 'limit'>;

export interface FileListPage {
  items: FileRecord[];
  next?: string;
  previous?: string;
}

/** The fields `update` writes: those that change while a prediction runs. */
export const UPDATED_FIELDS = [
  'output',
  'logs',
  'error',
  'status',
  'startedAt',
  'completedAt',
  'predictTime',
  'cost',
  'metrics',
  'instance',
  'cancelRequested',
  'webhookPending',
] as const satisfies readonly (keyof StoredPrediction)[];

/** What a replica hears of changes that any replica (itself included) made. */
export type StoreNotice =
  /** The prediction's state was written (by its driver). */
  | { kind: 'changed'; id: string; status: PredictionStatus }
  /** Stream events were appended; `lastId` is the id of the last one. */
  | { kind: 'events'; id: string; lastId: number }
  /** Someone asked to cancel the prediction; `driver` is the replica that drives it. */
  | { kind: 'cancel'; id: string; driver: string | undefined };

/** The store cannot be reached or failed: callers answer 503 and try again later. */
export class StoreUnavailableError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreUnavailableError';
  }
}

export interface PredictionStore {
  /** `memory`, `embedded` or `postgres`. */
  readonly kind: string;
  /**
   * True when one process at most uses the store (memory, embedded): every prediction not
   * driven by this process may be adopted at once, without waiting for a heartbeat to go stale.
   */
  readonly exclusive: boolean;
  /** Usage of the deployments' instances, kept beside the predictions (usage-store.ts). */
  readonly usage: UsageStore;

  /**
   * Stores a new prediction, driven by `driver` (committed when the promise resolves). When
   * its namespace already has a prediction with the same `idempotencyKey`, stores nothing and
   * resolves that one.
   */
  insert(rec: StoredPrediction, driver: string): Promise<StoredPrediction | undefined>;
  /**
   * Writes the state of a prediction that `driver` drives — the fields that change while it
   * runs (UPDATED_FIELDS; the others are the insert's) — with `events` appended (ids
   * following the last stored one). Resolves false, writing nothing, when `driver` does not
   * drive it any more (another replica adopted it) or it is gone: the caller stops driving it.
   */
  update(rec: StoredPrediction, driver: string, events?: readonly StreamEvent[]): Promise<boolean>;
  /** Appends stream events of a prediction `driver` drives (false as for `update`). */
  appendEvents(id: string, driver: string, events: readonly StreamEvent[]): Promise<boolean>;
  /** Forgets a prediction (one the instance refused as invalid before it began). */
  delete(id: string): Promise<void>;

  get(id: string): Promise<StoredPrediction | undefined>;
  /** Its stream events with id > `afterId`, in order. */
  events(id: string, afterId: number): Promise<StreamEvent[]>;
  /** Newest first (by creation time, then id). */
  list(opts: ListOptions): Promise<ListPage>;
  /** The prediction created in `namespace` with this Idempotency-Key, if still kept. */
  findByIdempotencyKey(namespace: string, key: string): Promise<StoredPrediction | undefined>;
  /**
   * Marks the prediction as asked to be canceled and tells its driver (a `cancel` notice).
   * Resolves the record, undefined when unknown.
   */
  requestCancel(id: string): Promise<StoredPrediction | undefined>;

  /** Calls `listener` with every notice, from every replica; returns the unsubscribe. */
  subscribe(listener: (n: StoreNotice) => void): () => void;

  /** Replica `replica` is alive now. */
  heartbeat(replica: string): Promise<void>;
  /** Replica `replica` has stopped: its unfinished predictions may be adopted at once. */
  leave(replica: string): Promise<void>;
  /**
   * Makes `replica` the driver of every unfinished prediction — and every ended one whose
   * `completed` webhook is owed (`webhookPending`) — whose driver has not sent a heartbeat for
   * `staleMs` (or has left), and resolves them. Each is adopted by one replica only, however
   * many ask at once.
   */
  adopt(replica: string, staleMs: number): Promise<StoredPrediction[]>;

  /**
   * Removes the input, output, logs and events of predictions that ended before `before`
   * (epoch ms), setting `dataRemoved`; resolves how many.
   */
  removeData(before: number): Promise<number>;
  /** Deletes the records of predictions that ended before `before`; resolves how many. */
  purge(before: number): Promise<number>;

  /** Keeps the record of a stored file. */
  insertFile(rec: FileRecord): Promise<void>;
  getFile(id: string): Promise<FileRecord | undefined>;
  /** Files in `opts.namespaces`, newest first (by creation time, then id). */
  listFiles(opts: FileListOptions): Promise<FileListPage>;
  /** Forgets a file's record; resolves it, undefined when unknown. */
  deleteFile(id: string): Promise<FileRecord | undefined>;
  /**
   * Up to `limit` files that are gone for callers: expired at `now` (epoch ms), or outputs of
   * a prediction whose data was removed (or whose record was purged). Their bytes are removed
   * from the files backend, then their records with `deleteFile`.
   */
  goneFiles(now: number, limit: number): Promise<FileRecord[]>;

  /** Resolves when the store answers (for readiness); rejects with why not. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export function encodeCursor(rec: { createdAt: number; id: string }): string {
  return Buffer.from(`${rec.createdAt}:${rec.id}`).toString('base64url');
}

export function decodeCursor(cursor: string): { createdAt: number; id: string } | undefined {
  const m = /^(\d+):([a-z0-9]+)$/.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  return m ? { createdAt: Number(m[1]), id: m[2]! } : undefined;
}

/** a comes before b in newest-first order. */
function newer(a: { createdAt: number; id: string }, b: { createdAt: number; id: string }): boolean {
  return a.createdAt !== b.createdAt ? a.createdAt > b.createdAt : a.id > b.id;
}

export interface MemoryStoreOptions {
  /** Most predictions kept (default 100 000): the oldest finished ones are evicted first. */
  maxRecords?: number;
  clock?: Clock;
  /** False lets several engines in one process share it as replicas (tests); default true. */
  exclusive?: boolean;
}

interface MemoryEntry {
  rec: StoredPrediction;
  driver: string | undefined;
  events: StreamEvent[];
}

/**
 * The store in this process's memory, for tests and benchmarks: lost when the process ends.
 * It keeps at most `maxRecords` predictions, evicting the oldest finished ones first, never
 * an unfinished one.
 */
export class MemoryStore implements PredictionStore {
  readonly kind = 'memory';
  readonly exclusive: boolean;
  readonly usage = new MemoryUsageStore();
  private readonly entries = new Map<string, MemoryEntry>();
  /** ids of finished predictions, in order of finishing. */
  private readonly finished = new Set<string>();
  private readonly keys = new Map<string, string>();
  private readonly listeners = new Set<(n: StoreNotice) => void>();
  private readonly replicas = new Map<string, number>();
  private readonly files = new Map<string, FileRecord>();
  private readonly maxRecords: number;
  private readonly clock: Clock;

  constructor(opts: MemoryStoreOptions = {}) {
    this.maxRecords = opts.maxRecords ?? 100_000;
    this.clock = opts.clock ?? realClock;
    this.exclusive = opts.exclusive ?? true;
  }

  get size(): number {
    return this.entries.size;
  }

  async insert(rec: StoredPrediction, driver: string): Promise<StoredPrediction | undefined> {
    if (rec.idempotencyKey) {
      const first = await this.findByIdempotencyKey(rec.namespace, rec.idempotencyKey);
      if (first) return first;
      this.keys.set(`${rec.namespace}\n${rec.idempotencyKey}`, rec.id);
    }
    this.entries.set(rec.id, { rec: copy(rec), driver, events: [] });
    this.track(rec);
    if (this.entries.size > this.maxRecords) this.evict();
    this.emit({ kind: 'changed', id: rec.id, status: rec.status });
    return undefined;
  }

  async update(rec: StoredPrediction, driver: string, events: readonly StreamEvent[] = []): Promise<boolean> {
    const e = this.entries.get(rec.id);
    if (!e || e.driver !== driver) return false;
    const next: Record<string, unknown> = { ...e.rec };
    for (const f of UPDATED_FIELDS) next[f] = rec[f];
    next.cancelRequested = e.rec.cancelRequested || rec.cancelRequested;
    e.rec = next as unknown as StoredPrediction;
    this.track(rec);
    this.append(e, events);
    this.emit({ kind: 'changed', id: rec.id, status: rec.status });
    return true;
  }

  async appendEvents(id: string, driver: string, events: readonly StreamEvent[]): Promise<boolean> {
    const e = this.entries.get(id);
    if (!e || e.driver !== driver) return false;
    this.append(e, events);
    return true;
  }

  async delete(id: string): Promise<void> {
    this.remove(id);
  }

  async get(id: string): Promise<StoredPrediction | undefined> {
    const e = this.entries.get(id);
    return e && copy(e.rec);
  }

  async events(id: string, afterId: number): Promise<StreamEvent[]> {
    return (this.entries.get(id)?.events ?? []).filter((e) => e.id > afterId);
  }

  async list(opts: ListOptions): Promise<ListPage> {
    const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    const before = opts.before ? decodeCursor(opts.before) : undefined;
    const ns = opts.namespaces === 'all' ? undefined : new Set(opts.namespaces);
    const all = [...this.entries.values()]
      .map((e) => e.rec)
      .filter(
        (r) =>
          (!ns || ns.has(r.namespace)) &&
          (!after || newer(after, r)) &&
          (!before || newer(r, before)) &&
          (opts.createdAfter === undefined || r.createdAt >= opts.createdAfter) &&
          (opts.createdBefore === undefined || r.createdAt < opts.createdBefore),
      );
    all.sort((a, b) => (newer(a, b) ? -1 : 1));
    // Backwards from a position: the `limit` closest to it.
    const items = (before ? all.slice(-opts.limit) : all.slice(0, opts.limit)).map(copy);
    return { items, ...pageCursors(items, opts, all.length > opts.limit) };
  }

  async findByIdempotencyKey(namespace: string, key: string): Promise<StoredPrediction | undefined> {
    const id = this.keys.get(`${namespace}\n${key}`);
    return id === undefined ? undefined : this.get(id);
  }

  async requestCancel(id: string): Promise<StoredPrediction | undefined> {
    const e = this.entries.get(id);
    if (!e) return undefined;
    if (!isTerminal(e.rec.status)) {
      e.rec.cancelRequested = true;
      this.emit({ kind: 'cancel', id, driver: e.driver });
    }
    return copy(e.rec);
  }

  subscribe(listener: (n: StoreNotice) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async heartbeat(replica: string): Promise<void> {
    this.replicas.set(replica, this.clock.now());
  }

  async leave(replica: string): Promise<void> {
    this.replicas.delete(replica);
  }

  async adopt(replica: string, staleMs: number): Promise<StoredPrediction[]> {
    const now = this.clock.now();
    const alive = (r: string | undefined) => {
      const at = r === undefined ? undefined : this.replicas.get(r);
      return at !== undefined && now - at < staleMs;
    };
    const out: StoredPrediction[] = [];
    for (const e of this.entries.values()) {
      if ((isTerminal(e.rec.status) && !e.rec.webhookPending) || e.driver === replica || alive(e.driver))
        continue;
      e.driver = replica;
      out.push(copy(e.rec));
    }
    return out;
  }

  async removeData(before: number): Promise<number> {
    let n = 0;
    for (const id of this.finished) {
      const e = this.entries.get(id)!;
      if ((e.rec.completedAt ?? 0) >= before) break; // in order of finishing
      if (e.rec.dataRemoved) continue;
      e.rec = { ...e.rec, input: {}, output: null, logs: '', dataRemoved: true };
      e.events = [];
      n++;
    }
    return n;
  }

  async purge(before: number): Promise<number> {
    let n = 0;
    for (const id of this.finished) {
      if ((this.entries.get(id)!.rec.completedAt ?? 0) >= before) break;
      this.remove(id);
      n++;
    }
    return n;
  }

  async insertFile(rec: FileRecord): Promise<void> {
    this.files.set(rec.id, { ...rec });
  }

  async getFile(id: string): Promise<FileRecord | undefined> {
    const f = this.files.get(id);
    return f && { ...f };
  }

  async listFiles(opts: FileListOptions): Promise<FileListPage> {
    const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    const before = opts.before ? decodeCursor(opts.before) : undefined;
    const ns = opts.namespaces === 'all' ? undefined : new Set(opts.namespaces);
    const all = [...this.files.values()].filter(
      (f) => (!ns || ns.has(f.namespace)) && (!after || newer(after, f)) && (!before || newer(f, before)),
    );
    all.sort((a, b) => (newer(a, b) ? -1 : 1));
    const items = (before ? all.slice(-opts.limit) : all.slice(0, opts.limit)).map((f) => ({ ...f }));
    return { items, ...pageCursors(items, opts, all.length > opts.limit) };
  }

  async deleteFile(id: string): Promise<FileRecord | undefined> {
    const f = this.files.get(id);
    this.files.delete(id);
    return f;
  }

  async goneFiles(now: number, limit: number): Promise<FileRecord[]> {
    const out: FileRecord[] = [];
    for (const f of this.files.values()) {
      if (out.length >= limit) break;
      const p = f.prediction === undefined ? undefined : this.entries.get(f.prediction)?.rec;
      const gone =
        (f.expiresAt !== undefined && f.expiresAt <= now) ||
        (f.prediction !== undefined && (!p || p.dataRemoved === true));
      if (gone) out.push({ ...f });
    }
    return out;
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.listeners.clear();
  }

  private append(e: MemoryEntry, events: readonly StreamEvent[]): void {
    if (!events.length) return;
    e.events.push(...events);
    this.emit({ kind: 'events', id: e.rec.id, lastId: events.at(-1)!.id });
  }

  private track(rec: StoredPrediction): void {
    if (isTerminal(rec.status) && !this.finished.has(rec.id)) this.finished.add(rec.id);
  }

  private emit(n: StoreNotice): void {
    for (const l of this.listeners) l(n);
  }

  /** Over the bound: drops the oldest finished predictions (never unfinished ones). */
  private evict(): void {
    for (const id of this.finished) {
      if (this.entries.size <= this.maxRecords) return;
      this.remove(id);
    }
  }

  private remove(id: string): void {
    const e = this.entries.get(id);
    this.entries.delete(id);
    this.finished.delete(id);
    if (e?.rec.idempotencyKey) {
      const k = `${e.rec.namespace}\n${e.rec.idempotencyKey}`;
      if (this.keys.get(k) === id) this.keys.delete(k);
    }
  }
}

/** A copy that the caller may change without changing the stored one. */
function copy(rec: StoredPrediction): StoredPrediction {
  return { ...rec };
}
