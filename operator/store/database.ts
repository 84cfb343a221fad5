/**
 * The database under the prediction store: one small interface, two implementations that run
 * the same SQL — a PostgreSQL server through the `pg` driver (a pool for queries, one
 * dedicated connection for LISTEN that reconnects by itself), and PGlite, PostgreSQL compiled
 * to WebAssembly, embedded in this process and persisted to a directory (locked, see
 * dir-lock.ts).
 *
 * Every error a query meets comes back as a `StoreUnavailableError` (with the driver's error
 * as its cause): the callers answer 503 and try again later.
 */
import { join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import pg from 'pg';
import { Backoff } from '../../lib/backoff.ts';
import { StoreUnavailableError } from '../predictions/store.ts';
import { type DirLock, lockDirectory } from './dir-lock.ts';
import type { StoreLog } from './log.ts';

export type { StoreLog } from './log.ts';

/** A row as the drivers return it: timestamptz as Date, jsonb parsed, int4 as number. */
export type Row = Record<string, unknown>;

export interface Queryable {
  /** Runs one statement with `$1…` parameters; resolves its rows. */
  query<R extends Row = Row>(text: string, params?: readonly unknown[]): Promise<R[]>;
}

export interface Transaction extends Queryable {
  /** Runs a script of several statements without parameters (a migration). */
  exec(script: string): Promise<void>;
}

export interface Database extends Queryable {
  readonly kind: 'postgres' | 'embedded';
  /** Runs `fn` in one transaction on one connection: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T>;
  /**
   * Calls `onPayload` with the payload of every NOTIFY on `channel`, from any connection.
   * Resolves once listening. `onResumed` is called after listening was lost and has been
   * taken up again: notifications sent meanwhile were missed. Resolves the unlisten.
   */
  listen(
    channel: string,
    onPayload: (payload: string) => void,
    onResumed?: () => void,
  ): Promise<() => Promise<void>>;
  /** Resolves when the database answers; rejects with a StoreUnavailableError saying why not. */
  ping(): Promise<void>;
  close(): Promise<void>;
}

function unavailable(what: string, err: unknown): StoreUnavailableError {
  if (err instanceof StoreUnavailableError) return err;
  const msg = err instanceof Error ? err.message || String((err as { code?: string }).code) : String(err);
  return new StoreUnavailableError(`${what}: ${msg}`, { cause: err });
}

/** Most prepared statements a connection keeps. */
const MAX_PREPARED = 100;

// ── PostgreSQL ─────────────────────────────────────────────────────────────────────────

export interface PostgresOptions {
  /** postgres://user:password@host:port/database (and libpq-style query parameters). */
  url: string;
  /** Most connections in the pool (default 10). */
  maxConnections?: number;
  /** Give up connecting after this long (default 5 s). */
  connectTimeoutMs?: number;
  /** Give up a query after this long (default 15 s): a server that stopped answering. */
  queryTimeoutMs?: number;
  log: StoreLog;
}

/** PostgreSQL through `pg`: a pool, plus one connection of its own for LISTEN. */
export class PostgresDatabase implements Database {
  readonly kind = 'postgres';
  private readonly pool: pg.Pool;
  private readonly opts: PostgresOptions;
  private listener: pg.Client | undefined;
  private readonly channels = new Map<string, { onPayload: (p: string) => void; onResumed?: () => void }>();
  private closed = false;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly backoff = new Backoff(200, 5_000);
  /** Prepared statement names, by statement text. */
  private readonly statements = new Map<string, string>();

  constructor(opts: PostgresOptions) {
    this.opts = opts;
    this.pool = new pg.Pool({
      connectionString: opts.url,
      max: opts.maxConnections ?? 10,
      connectionTimeoutMillis: opts.connectTimeoutMs ?? 5_000,
      query_timeout: opts.queryTimeoutMs ?? 15_000,
      keepAlive: true,
      application_name: 'modelplane',
    });
    // An idle connection that the server closes must not crash the process: the pool drops it.
    this.pool.on('error', (err) =>
      opts.log.warn({ err: err.message }, 'store: an idle database connection failed'),
    );
  }

  async query<R extends Row = Row>(text: string, params: readonly unknown[] = []): Promise<R[]> {
    try {
      // Named: each connection parses and plans a statement once, not on every call.
      return (await this.pool.query<R>({ name: this.statementName(text), text, values: params as unknown[] }))
        .rows;
    } catch (err) {
      throw unavailable('database query failed', err);
    }
  }

  /**
   * The prepared statement name of `text`: one per distinct statement this process runs, up
   * to MAX_PREPARED (statements made up at run time past that go unnamed).
   */
  private statementName(text: string): string | undefined {
    let name = this.statements.get(text);
    if (!name && this.statements.size < MAX_PREPARED) {
      name = `modelplane_${this.statements.size + 1}`;
      this.statements.set(text, name);
    }
    return name;
  }

  async transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (err) {
      throw unavailable('could not connect to the database', err);
    }
    const tx: Transaction = {
      query: async <R extends Row>(text: string, params: readonly unknown[] = []) =>
        (await client.query<R>(text, params as unknown[])).rows,
      exec: async (script) => {
        await client.query(script);
      },
    };
    let broken: unknown;
    try {
      await client.query('BEGIN');
      const out = await fn(tx);
      await client.query('COMMIT');
      return out;
    } catch (err) {
      try {
        await client.query('ROLLBACK');
      } catch (rollbackErr) {
        broken = rollbackErr;
      }
      throw unavailable('database transaction failed', err);
    } finally {
      client.release(broken instanceof Error ? broken : undefined);
    }
  }

  async listen(
    channel: string,
    onPayload: (payload: string) => void,
    onResumed?: () => void,
  ): Promise<() => Promise<void>> {
    if (this.channels.has(channel)) throw new Error(`already listening on ${channel}`);
    this.channels.set(channel, { onPayload, ...(onResumed ? { onResumed } : {}) });
    try {
      if (this.listener) await this.listener.query(`LISTEN ${ident(channel)}`);
      else await this.connectListener(false);
    } catch (err) {
      this.channels.delete(channel);
      throw unavailable('could not listen for notifications', err);
    }
    return async () => {
      this.channels.delete(channel);
      await this.listener?.query(`UNLISTEN ${ident(channel)}`).catch(() => {});
    };
  }

  /** Connects the LISTEN connection and listens on every channel; on failure, tries again later. */
  private async connectListener(resumed: boolean): Promise<void> {
    const client = new pg.Client({
      connectionString: this.opts.url,
      connectionTimeoutMillis: this.opts.connectTimeoutMs ?? 5_000,
      keepAlive: true,
      application_name: 'modelplane-listen',
    });
    let lost = false;
    const onLost = (why: string) => {
      if (lost) return;
      lost = true;
      if (this.listener === client) this.listener = undefined;
      client.end().catch(() => {});
      if (this.closed) return;
      this.opts.log.warn({ reason: why }, 'store: lost the LISTEN connection to the database; reconnecting');
      this.scheduleListener();
    };
    client.on('error', (err) => onLost(err.message));
    client.on('end', () => onLost('the connection ended'));
    client.on('notification', (msg) => {
      if (msg.payload !== undefined) this.channels.get(msg.channel)?.onPayload(msg.payload);
    });
    try {
      await client.connect();
      for (const channel of this.channels.keys()) await client.query(`LISTEN ${ident(channel)}`);
    } catch (err) {
      lost = true;
      client.end().catch(() => {});
      if (!resumed) throw unavailable('could not listen for notifications', err);
      this.scheduleListener();
      return;
    }
    if (this.closed) {
      await client.end().catch(() => {});
      return;
    }
    this.listener = client;
    this.backoff.reset();
    if (resumed) {
      this.opts.log.info({}, 'store: listening for notifications again');
      for (const c of this.channels.values()) c.onResumed?.();
    }
  }

  private scheduleListener(): void {
    if (this.closed || this.reconnectTimer) return;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = undefined;
      void this.connectListener(true);
    }, this.backoff.next());
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.listener !== undefined;
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
    if (this.channels.size > 0 && !this.listener) {
      throw new StoreUnavailableError('not listening for notifications (reconnecting to the database)');
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnectTimer);
    const l = this.listener;
    this.listener = undefined;
    await l?.end().catch(() => {});
    await this.pool.end();
  }
}

/** A channel name as an SQL identifier. */
function ident(name: string): string {
  if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return name;
}

// ── PGlite ─────────────────────────────────────────────────────────────────────────────

export interface EmbeddedOptions {
  /** The directory that holds the database (created when missing): pgdata/ and a lock. */
  dir: string;
  log: StoreLog;
  /** How often the lock is renewed (default 5 s); see dir-lock.ts. */
  lockRenewMs?: number;
}

/**
 * PGlite, in this process, persisted to `dir/pgdata`. One process at most opens a directory:
 * `open` takes the directory's lock and fails while another live process holds it.
 */
export class EmbeddedDatabase implements Database {
  readonly kind = 'embedded';
  private readonly db: PGlite;
  private readonly lock: DirLock;

  private constructor(db: PGlite, lock: DirLock) {
    this.db = db;
    this.lock = lock;
  }

  static async open(opts: EmbeddedOptions): Promise<EmbeddedDatabase> {
    const lock = await lockDirectory(opts.dir, { renewMs: opts.lockRenewMs, log: opts.log });
    try {
      const db = await PGlite.create(join(opts.dir, 'pgdata'));
      return new EmbeddedDatabase(db, lock);
    } catch (err) {
      await lock.release();
      throw unavailable(`could not open the embedded database in ${opts.dir}`, err);
    }
  }

  async query<R extends Row = Row>(text: string, params: readonly unknown[] = []): Promise<R[]> {
    this.checkLock();
    try {
      return (await this.db.query<R>(text, params as unknown[])).rows;
    } catch (err) {
      throw unavailable('embedded database query failed', err);
    }
  }

  async transaction<T>(fn: (tx: Transaction) => Promise<T>): Promise<T> {
    this.checkLock();
    try {
      return await this.db.transaction(async (t) =>
        fn({
          query: async <R extends Row>(text: string, params: readonly unknown[] = []) =>
            (await t.query<R>(text, params as unknown[])).rows,
          exec: async (script) => {
            await t.exec(script);
          },
        }),
      );
    } catch (err) {
      throw unavailable('embedded database transaction failed', err);
    }
  }

  async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
    const cb = (payload: string) => onPayload(payload);
    await this.db.listen(channel, cb);
    return async () => {
      if (!this.db.closed) await this.db.unlisten(channel, cb);
    };
  }

  async ping(): Promise<void> {
    await this.query('SELECT 1');
  }

  private checkLock(): void {
    const lost = this.lock.lost;
    if (lost) throw new StoreUnavailableError(lost);
  }

  async close(): Promise<void> {
    try {
      if (!this.db.closed) await this.db.close();
    } finally {
      await this.lock.release();
    }
  }
}
