/**
 * The prediction store on SQL: PostgreSQL, or PGlite embedded (database.ts) — the same
 * statements for both. Semantics are MemoryStore's (operator/predictions/store.ts), checked by
 * the same contract suite (operator/predictions/store.contract.ts).
 *
 * The hot path is one round trip per write: `insert` is one statement (the row, and its
 * notice), `update` is one statement (the fenced row update, its events, its notice), by
 * data-modifying CTEs. Notices travel by NOTIFY on one channel, sent by the statement that
 * writes, so that they are delivered when, and only when, the write commits; every replica
 * (this one included) hears them on its LISTEN connection.
 */
import { randomBytes } from 'node:crypto';
import { PREDICTION_STATUSES, type StreamEvent, TERMINAL_STATUSES } from '../../lib/prediction.ts';
import type { FileRecord } from '../predictions/record.ts';
import type {
  FileListOptions,
  FileListPage,
  ListOptions,
  ListPage,
  PredictionStore,
  StoredPrediction,
  StoreNotice,
} from '../predictions/store.ts';
import { decodeCursor, pageCursors } from '../predictions/store.ts';
import type { Database, Row, StoreLog } from './database.ts';
import { SqlUsageStore } from './sql-usage.ts';

/** The one NOTIFY channel of the store. */
export const NOTICE_CHANNEL = 'modelplane_predictions';

const TERMINAL_SQL = TERMINAL_STATUSES.map((s) => `'${s}'`).join(', ');
const STATUSES: ReadonlySet<string> = new Set(PREDICTION_STATUSES);

/** The columns written from a record, in parameter order ($1…$27). */
const COLUMNS = [
  'id',
  'namespace',
  'deployment',
  'via_deployment',
  'model',
  'version',
  'input',
  'output',
  'logs',
  'error',
  'status',
  'created_at',
  'started_at',
  'completed_at',
  'predict_time',
  'cost',
  'instance',
  'webhook',
  'webhook_events',
  'idempotency_key',
  'deadline',
  'base_url',
  'origin',
  'cancel_requested',
  'data_removed',
  'webhook_pending',
  'metrics',
] as const;
const JSONB: ReadonlySet<string> = new Set(['input', 'output', 'webhook_events', 'metrics']);
const param = (col: string, i: number) => `$${i + 1}${JSONB.has(col) ? '::jsonb' : ''}`;
const N = COLUMNS.length;
const SELECT = `SELECT ${COLUMNS.join(', ')} FROM predictions`;

const date = (ms: number | undefined): Date | null => (ms === undefined ? null : new Date(ms));

/** The parameters $1…$27 of a record. */
function params(rec: StoredPrediction): unknown[] {
  return [
    rec.id,
    rec.namespace,
    rec.deployment,
    rec.viaDeployment,
    rec.model,
    rec.version,
    JSON.stringify(rec.input ?? {}),
    rec.output === undefined || rec.output === null ? null : JSON.stringify(rec.output),
    rec.logs,
    rec.error ?? null,
    rec.status,
    new Date(rec.createdAt),
    date(rec.startedAt),
    date(rec.completedAt),
    rec.predictTime ?? null,
    rec.cost ?? null,
    rec.instance ?? null,
    rec.webhook ?? null,
    JSON.stringify(rec.webhookEvents ?? []),
    rec.idempotencyKey ?? null,
    date(rec.deadline),
    rec.baseUrl,
    rec.origin ?? null,
    rec.cancelRequested ?? false,
    rec.dataRemoved ?? false,
    rec.webhookPending ?? false,
    rec.metrics === undefined ? null : JSON.stringify(rec.metrics),
  ];
}

const ms = (v: unknown): number => (v instanceof Date ? v.getTime() : new Date(v as string).getTime());

/** A record from a row: optional fields absent when NULL (or false), as MemoryStore keeps them. */
function fromRow(r: Row): StoredPrediction {
  const rec: StoredPrediction = {
    id: r.id as string,
    namespace: r.namespace as string,
    deployment: r.deployment as string,
    viaDeployment: r.via_deployment as boolean,
    model: r.model as string,
    version: r.version as string,
    input: r.input as Record<string, unknown>,
    output: r.output ?? null,
    logs: r.logs as string,
    error: (r.error as string | null) ?? null,
    status: r.status as StoredPrediction['status'],
    createdAt: ms(r.created_at),
    webhookEvents: r.webhook_events as StoredPrediction['webhookEvents'],
    baseUrl: r.base_url as string,
  };
  if (r.started_at != null) rec.startedAt = ms(r.started_at);
  if (r.completed_at != null) rec.completedAt = ms(r.completed_at);
  if (r.predict_time != null) rec.predictTime = r.predict_time as number;
  if (r.cost != null) rec.cost = r.cost as string;
  if (r.instance != null) rec.instance = r.instance as string;
  if (r.webhook != null) rec.webhook = r.webhook as string;
  if (r.idempotency_key != null) rec.idempotencyKey = r.idempotency_key as string;
  if (r.deadline != null) rec.deadline = ms(r.deadline);
  if (r.origin != null) rec.origin = r.origin as string;
  if (r.cancel_requested) rec.cancelRequested = true;
  if (r.data_removed) rec.dataRemoved = true;
  if (r.webhook_pending) rec.webhookPending = true;
  if (r.metrics != null) rec.metrics = r.metrics as Record<string, unknown>;
  return rec;
}

const eventsJson = (events: readonly StreamEvent[]) =>
  JSON.stringify(events.map((e) => ({ id: e.id, event: e.event, data: e.data })));

/**
 * A notice's payload: kept small (NOTIFY payloads must stay under 8000 bytes): ids are 26
 * characters, statuses and drivers short.
 *   {"t":"c","id":…,"s":status[,"l":lastEventId]}   changed (and events appended)
 *   {"t":"e","id":…,"l":lastEventId}                events appended
 *   {"t":"x","id":…,"d":driver|null}                cancel asked
 */
function changedPayload(id: string, status: string, events?: readonly StreamEvent[]): string {
  const last = events?.length ? events.at(-1)!.id : undefined;
  return JSON.stringify(last === undefined ? { t: 'c', id, s: status } : { t: 'c', id, s: status, l: last });
}

/** The notices a payload carries (events before the change, as MemoryStore sends them). */
export function parseNotice(payload: string): StoreNotice[] {
  let p: { t?: string; id?: string; s?: string; l?: number; d?: string | null };
  try {
    p = JSON.parse(payload);
  } catch {
    return [];
  }
  if (typeof p.id !== 'string') return [];
  const id = p.id;
  switch (p.t) {
    case 'c': {
      const out: StoreNotice[] = [];
      if (typeof p.l === 'number') out.push({ kind: 'events', id, lastId: p.l });
      if (typeof p.s === 'string' && STATUSES.has(p.s)) {
        out.push({ kind: 'changed', id, status: p.s as StoredPrediction['status'] });
      }
      return out;
    }
    case 'e':
      return typeof p.l === 'number' ? [{ kind: 'events', id, lastId: p.l }] : [];
    case 'x':
      return [{ kind: 'cancel', id, driver: p.d ?? undefined }];
    default:
      return [];
  }
}

const INSERT = `
  WITH i AS (
    INSERT INTO predictions (${COLUMNS.join(', ')}, driver)
    VALUES (${COLUMNS.map(param).join(', ')}, $${N + 1})
    ON CONFLICT (namespace, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
    RETURNING id
  )
  SELECT pg_notify($${N + 2}, $${N + 3}) FROM i`;

/**
 * The columns an update writes: what changes while a prediction runs. The rest (its input,
 * target, webhook, times of creation) is written once, by the insert; an update leaves them,
 * and a large input is not sent or rewritten again.
 */
const MUTABLE = [
  'output',
  'logs',
  'error',
  'status',
  'started_at',
  'completed_at',
  'predict_time',
  'cost',
  'metrics',
  'instance',
  'cancel_requested',
  'webhook_pending',
] as const;
const M = MUTABLE.length;

/** The parameters $2…$(M+1) of an update (after the id). */
function mutableParams(rec: StoredPrediction): unknown[] {
  const all = params(rec);
  return MUTABLE.map((c) => all[COLUMNS.indexOf(c)]);
}

const UPDATE = `
  WITH u AS (
    UPDATE predictions SET
      ${MUTABLE.map((c, i) =>
        c === 'cancel_requested'
          ? `${c} = predictions.${c} OR ${param(c, i + 1)}`
          : `${c} = ${param(c, i + 1)}`,
      ).join(',\n      ')},
      updated_at = now()
    WHERE id = $1 AND driver = $${M + 2}
    RETURNING id
  ), e AS (
    INSERT INTO prediction_events (prediction_id, id, event, data)
    SELECT $1, x.id, x.event, x.data
    FROM jsonb_to_recordset($${M + 5}::jsonb) AS x(id integer, event text, data text)
    WHERE EXISTS (SELECT 1 FROM u)
    ON CONFLICT DO NOTHING
  )
  SELECT pg_notify($${M + 3}, $${M + 4}) FROM u`;

const APPEND = `
  WITH p AS (
    SELECT id FROM predictions WHERE id = $1 AND driver = $2 FOR SHARE
  ), e AS (
    INSERT INTO prediction_events (prediction_id, id, event, data)
    SELECT $1, x.id, x.event, x.data
    FROM jsonb_to_recordset($3::jsonb) AS x(id integer, event text, data text)
    WHERE EXISTS (SELECT 1 FROM p)
    ON CONFLICT DO NOTHING
  )
  SELECT pg_notify($4, $5) FROM p`;

const CANCEL = `
  WITH c AS (
    UPDATE predictions SET cancel_requested = true, updated_at = now()
    WHERE id = $1 AND status NOT IN (${TERMINAL_SQL})
    RETURNING driver
  ), n AS (
    SELECT pg_notify($2, json_build_object('t', 'x', 'id', $1::text, 'd', driver)::text) FROM c
  )
  SELECT ${COLUMNS.map((c) => `p.${c}`).join(', ')}, (SELECT count(*)::integer FROM n) AS asked
  FROM predictions p WHERE p.id = $1`;

/** The advisory lock adopters take in turn ("mpad"). */
const ADOPT_LOCK = 0x6d706164;

const ADOPT = `
  UPDATE predictions p SET driver = $1, updated_at = now()
  WHERE p.id IN (
    SELECT q.id FROM predictions q
    WHERE (q.status NOT IN (${TERMINAL_SQL}) OR q.webhook_pending)
      AND q.driver IS DISTINCT FROM $1
      AND NOT EXISTS (
        SELECT 1 FROM replicas r
        WHERE r.id = q.driver AND r.heartbeat_at > now() - $2::double precision * interval '1 millisecond'
      )
    FOR UPDATE SKIP LOCKED
  )
  AND p.driver IS DISTINCT FROM $1
  RETURNING ${COLUMNS.map((c) => `p.${c}`).join(', ')}`;

/** 9999-12-31T23:59:59.999Z: later times are clamped to it (timestamptz ends in year 294276, JS Dates later). */
const MAX_TIME = 253_402_300_799_999;

const FILE_COLUMNS = [
  'id',
  'namespace',
  'name',
  'content_type',
  'size',
  'sha256',
  'md5',
  'metadata',
  'created_at',
  'expires_at',
  'prediction_id',
  'key',
] as const;
const SELECT_FILE = `SELECT ${FILE_COLUMNS.join(', ')} FROM files`;
const INSERT_FILE = `INSERT INTO files (${FILE_COLUMNS.join(', ')})
  VALUES (${FILE_COLUMNS.map((c, i) => `$${i + 1}${c === 'metadata' ? '::jsonb' : ''}`).join(', ')})`;
/** Expired files, and outputs of predictions whose data was removed or whose record is gone. */
const GONE_FILES = `SELECT ${FILE_COLUMNS.map((c) => `f.${c}`).join(', ')} FROM files f
  LEFT JOIN predictions p ON p.id = f.prediction_id
  WHERE f.expires_at <= $1 OR (f.prediction_id IS NOT NULL AND (p.id IS NULL OR p.data_removed))
  LIMIT $2`;

function fileFromRow(r: Row): FileRecord {
  const rec: FileRecord = {
    id: r.id as string,
    namespace: r.namespace as string,
    name: r.name as string,
    contentType: r.content_type as string,
    size: Number(r.size),
    sha256: r.sha256 as string,
    md5: r.md5 as string,
    metadata: r.metadata as Record<string, unknown>,
    createdAt: ms(r.created_at),
    key: r.key as string,
  };
  if (r.expires_at != null) rec.expiresAt = ms(r.expires_at);
  if (r.prediction_id != null) rec.prediction = r.prediction_id as string;
  return rec;
}

/** Rows changed per statement by removeData and purge (each batch is one short transaction). */
const BATCH = 1000;

const REMOVE_DATA = `
  WITH r AS (
    UPDATE predictions SET input = '{}'::jsonb, output = NULL, logs = '', data_removed = true, updated_at = now()
    WHERE id IN (
      SELECT id FROM predictions
      WHERE status IN (${TERMINAL_SQL}) AND (completed_at < $1 OR completed_at IS NULL) AND NOT data_removed
      LIMIT ${BATCH}
    )
    RETURNING id
  ), d AS (
    DELETE FROM prediction_events e USING r WHERE e.prediction_id = r.id
  )
  SELECT count(*)::integer AS n FROM r`;

const PURGE = `
  WITH d AS (
    DELETE FROM predictions
    WHERE id IN (
      SELECT id FROM predictions
      WHERE status IN (${TERMINAL_SQL}) AND (completed_at < $1 OR completed_at IS NULL)
      LIMIT ${BATCH}
    )
    RETURNING id
  )
  SELECT count(*)::integer AS n FROM d`;

const STREAM_KEY = `
  WITH i AS (
    INSERT INTO settings (name, value) VALUES ('stream_key', $1) ON CONFLICT (name) DO NOTHING RETURNING value
  )
  SELECT value FROM i UNION ALL SELECT value FROM settings WHERE name = 'stream_key'`;

export interface SqlStoreOptions {
  log?: StoreLog;
  /** Close the database with the store (default true). */
  ownsDatabase?: boolean;
}

export class SqlPredictionStore implements PredictionStore {
  readonly kind: 'postgres' | 'embedded';
  readonly exclusive: boolean;
  readonly db: Database;
  readonly usage: SqlUsageStore;
  private readonly listeners = new Set<(n: StoreNotice) => void>();
  private readonly resumedListeners = new Set<() => void>();
  private readonly ownsDatabase: boolean;
  private readonly log: StoreLog | undefined;
  private key: Promise<Buffer> | undefined;
  private unlisten: (() => Promise<void>) | undefined;

  private constructor(db: Database, opts: SqlStoreOptions) {
    this.db = db;
    this.usage = new SqlUsageStore(db);
    this.kind = db.kind;
    this.exclusive = db.kind === 'embedded';
    this.ownsDatabase = opts.ownsDatabase ?? true;
    this.log = opts.log;
  }

  /** The store on `db` (migrated already), listening for notices. */
  static async create(db: Database, opts: SqlStoreOptions = {}): Promise<SqlPredictionStore> {
    const store = new SqlPredictionStore(db, opts);
    store.unlisten = await db.listen(
      NOTICE_CHANNEL,
      (payload) => store.dispatch(payload),
      () => store.resumed(),
    );
    return store;
  }

  async insert(rec: StoredPrediction, driver: string): Promise<StoredPrediction | undefined> {
    const rows = await this.db.query(INSERT, [
      ...params(rec),
      driver,
      NOTICE_CHANNEL,
      changedPayload(rec.id, rec.status),
    ]);
    if (rows.length > 0) return undefined;
    // Not inserted: its namespace has a prediction with this key (the only conflict ignored).
    const first = rec.idempotencyKey && (await this.findByIdempotencyKey(rec.namespace, rec.idempotencyKey));
    if (first) return first;
    throw new Error(`prediction ${rec.id} was neither inserted nor found by its idempotency key`);
  }

  async update(rec: StoredPrediction, driver: string, events: readonly StreamEvent[] = []): Promise<boolean> {
    const rows = await this.db.query(UPDATE, [
      rec.id,
      ...mutableParams(rec),
      driver,
      NOTICE_CHANNEL,
      changedPayload(rec.id, rec.status, events),
      eventsJson(events),
    ]);
    return rows.length > 0;
  }

  async appendEvents(id: string, driver: string, events: readonly StreamEvent[]): Promise<boolean> {
    if (!events.length) {
      return (
        (await this.db.query('SELECT 1 FROM predictions WHERE id = $1 AND driver = $2', [id, driver]))
          .length > 0
      );
    }
    const payload = JSON.stringify({ t: 'e', id, l: events.at(-1)!.id });
    const rows = await this.db.query(APPEND, [id, driver, eventsJson(events), NOTICE_CHANNEL, payload]);
    return rows.length > 0;
  }

  async delete(id: string): Promise<void> {
    await this.db.query('DELETE FROM predictions WHERE id = $1', [id]);
  }

  async get(id: string): Promise<StoredPrediction | undefined> {
    const rows = await this.db.query(`${SELECT} WHERE id = $1`, [id]);
    return rows[0] && fromRow(rows[0]);
  }

  async events(id: string, afterId: number): Promise<StreamEvent[]> {
    const rows = await this.db.query<{ id: number; event: StreamEvent['event']; data: string }>(
      'SELECT id, event, data FROM prediction_events WHERE prediction_id = $1 AND id > $2 ORDER BY id',
      [id, afterId],
    );
    return rows.map((r) => ({ id: r.id, event: r.event, data: r.data }));
  }

  async list(opts: ListOptions): Promise<ListPage> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => {
      args.push(v);
      return `$${args.length}`;
    };
    if (opts.namespaces !== 'all') {
      if (opts.namespaces.length === 0) return { items: [] };
      where.push(
        opts.namespaces.length === 1
          ? `namespace = ${arg(opts.namespaces[0])}`
          : `namespace IN (SELECT jsonb_array_elements_text(${arg(JSON.stringify(opts.namespaces))}::jsonb))`,
      );
    }
    const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    if (after) where.push(`(created_at, id) < (${arg(new Date(after.createdAt))}, ${arg(after.id)})`);
    const before = opts.before ? decodeCursor(opts.before) : undefined;
    if (before) where.push(`(created_at, id) > (${arg(new Date(before.createdAt))}, ${arg(before.id)})`);
    if (opts.createdAfter !== undefined) where.push(`created_at >= ${arg(new Date(opts.createdAfter))}`);
    if (opts.createdBefore !== undefined) where.push(`created_at < ${arg(new Date(opts.createdBefore))}`);
    const sql = `${SELECT}${where.length ? ` WHERE ${where.join(' AND ')}` : ''}
      ORDER BY ${before ? 'created_at ASC, id ASC' : 'created_at DESC, id DESC'} LIMIT ${arg(opts.limit + 1)}`;
    const rows = await this.db.query(sql, args);
    const items = rows.slice(0, opts.limit).map(fromRow);
    // Read backwards from a position: newest first again.
    if (before) items.reverse();
    return { items, ...pageCursors(items, opts, rows.length > opts.limit) };
  }

  async findByIdempotencyKey(namespace: string, key: string): Promise<StoredPrediction | undefined> {
    const rows = await this.db.query(`${SELECT} WHERE namespace = $1 AND idempotency_key = $2`, [
      namespace,
      key,
    ]);
    return rows[0] && fromRow(rows[0]);
  }

  async requestCancel(id: string): Promise<StoredPrediction | undefined> {
    const rows = await this.db.query(CANCEL, [id, NOTICE_CHANNEL]);
    const row = rows[0];
    if (!row) return undefined;
    const rec = fromRow(row);
    // The statement reads the row as it was before its own update.
    if (row.asked) rec.cancelRequested = true;
    return rec;
  }

  subscribe(listener: (n: StoreNotice) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * Calls `listener` when listening for notices resumed after the connection to the database
   * was lost: notices sent meanwhile were missed, so whoever waits on them reads again.
   * Returns the unsubscribe.
   */
  onResumed(listener: () => void): () => void {
    this.resumedListeners.add(listener);
    return () => this.resumedListeners.delete(listener);
  }

  async heartbeat(replica: string): Promise<void> {
    await this.db.query(
      `INSERT INTO replicas (id, heartbeat_at) VALUES ($1, now())
       ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()`,
      [replica],
    );
  }

  async leave(replica: string): Promise<void> {
    await this.db.query('DELETE FROM replicas WHERE id = $1', [replica]);
  }

  async adopt(replica: string, staleMs: number): Promise<StoredPrediction[]> {
    // One adopter at a time (a transaction-scoped advisory lock): each statement then sees
    // what the previous adopters committed, so no prediction is taken twice.
    const rows = await this.db.transaction(async (tx) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [ADOPT_LOCK]);
      return tx.query(ADOPT, [replica, staleMs]);
    });
    return rows.map(fromRow).sort((a, b) => a.createdAt - b.createdAt || (a.id < b.id ? -1 : 1));
  }

  async insertFile(rec: FileRecord): Promise<void> {
    await this.db.query(INSERT_FILE, [
      rec.id,
      rec.namespace,
      rec.name,
      rec.contentType,
      rec.size,
      rec.sha256,
      rec.md5,
      JSON.stringify(rec.metadata ?? {}),
      new Date(rec.createdAt),
      date(rec.expiresAt),
      rec.prediction ?? null,
      rec.key,
    ]);
  }

  async getFile(id: string): Promise<FileRecord | undefined> {
    const rows = await this.db.query(`${SELECT_FILE} WHERE id = $1`, [id]);
    return rows[0] && fileFromRow(rows[0]);
  }

  async listFiles(opts: FileListOptions): Promise<FileListPage> {
    const where: string[] = [];
    const args: unknown[] = [];
    const arg = (v: unknown) => {
      args.push(v);
      return `$${args.length}`;
    };
    if (opts.namespaces !== 'all') {
      if (opts.namespaces.length === 0) return { items: [] };
      where.push(
        `namespace IN (SELECT jsonb_array_elements_text(${arg(JSON.stringify(opts.namespaces))}::jsonb))`,
      );
    }
    const after = opts.cursor ? decodeCursor(opts.cursor) : undefined;
    if (after) where.push(`(created_at, id) < (${arg(new Date(after.createdAt))}, ${arg(after.id)})`);
    const before = opts.before ? decodeCursor(opts.before) : undefined;
    if (before) where.push(`(created_at, id) > (${arg(new Date(before.createdAt))}, ${arg(before.id)})`);
    const sql = `${SELECT_FILE}${where.length ? ` WHERE ${where.join(' AND ')}` : ''}
      ORDER BY ${before ? 'created_at ASC, id ASC' : 'created_at DESC, id DESC'} LIMIT ${arg(opts.limit + 1)}`;
    const rows = await this.db.query(sql, args);
    const items = rows.slice(0, opts.limit).map(fileFromRow);
    if (before) items.reverse();
    return { items, ...pageCursors(items, opts, rows.length > opts.limit) };
  }

  async deleteFile(id: string): Promise<FileRecord | undefined> {
    const rows = await this.db.query(`DELETE FROM files WHERE id = $1 RETURNING ${FILE_COLUMNS.join(', ')}`, [
      id,
    ]);
    return rows[0] && fileFromRow(rows[0]);
  }

  async goneFiles(now: number, limit: number): Promise<FileRecord[]> {
    const rows = await this.db.query(GONE_FILES, [new Date(Math.min(now, MAX_TIME)), limit]);
    return rows.map(fileFromRow);
  }

  async removeData(before: number): Promise<number> {
    return this.batched(REMOVE_DATA, before);
  }

  async purge(before: number): Promise<number> {
    return this.batched(PURGE, before);
  }

  private async batched(sql: string, before: number): Promise<number> {
    let total = 0;
    for (;;) {
      const at = new Date(Math.min(before, MAX_TIME));
      const n = (await this.db.query<{ n: number }>(sql, [at]))[0]?.n ?? 0;
      total += n;
      if (n < BATCH) return total;
    }
  }

  /**
   * The key that signs stream URLs, the same for every replica on this database: 32 random
   * bytes, made by the first replica that asks and kept in the `settings` table.
   */
  streamKey(): Promise<Buffer> {
    this.key ??= (async () => {
      const fresh = randomBytes(32).toString('base64');
      let rows = await this.db.query<{ value: string }>(STREAM_KEY, [fresh]);
      // Another replica made it at the same moment: its row is visible to the next statement.
      if (!rows.length) {
        rows = await this.db.query<{ value: string }>("SELECT value FROM settings WHERE name = 'stream_key'");
      }
      if (!rows[0]) throw new Error('the stream key could not be made');
      return Buffer.from(rows[0].value, 'base64');
    })();
    this.key.catch(() => {
      this.key = undefined;
    });
    return this.key;
  }

  async ping(): Promise<void> {
    await this.db.ping();
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.resumedListeners.clear();
    if (this.ownsDatabase) await this.db.close();
    else await this.unlisten?.();
  }

  private dispatch(payload: string): void {
    for (const n of parseNotice(payload)) {
      for (const l of this.listeners) {
        try {
          l(n);
        } catch (err) {
          this.log?.error({ err: (err as Error).message }, 'store: a notice listener failed');
        }
      }
    }
  }

  private resumed(): void {
    for (const l of this.resumedListeners) {
      try {
        l();
      } catch (err) {
        this.log?.error({ err: (err as Error).message }, 'store: a listener of resumed notices failed');
      }
    }
  }
}
