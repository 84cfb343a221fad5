/**
 * The durable prediction store: `openStore` opens the store its settings name — in memory,
 * embedded (PGlite in a directory), or on PostgreSQL — migrated and listening for notices.
 * See docs/store.md.
 */
import { randomBytes } from 'node:crypto';
import { MemoryStore, type PredictionStore } from '../predictions/store.ts';
import { type Database, EmbeddedDatabase, PostgresDatabase, type StoreLog } from './database.ts';
import { migrate } from './migrate.ts';
import { SqlPredictionStore } from './sql-store.ts';

export type { Database, StoreLog } from './database.ts';
export { EmbeddedDatabase, PostgresDatabase } from './database.ts';
export { migrate } from './migrate.ts';
export { NOTICE_CHANNEL, SqlPredictionStore } from './sql-store.ts';

export type StoreSettings =
  /** In this process's memory: lost when it ends (tests, benchmarks). */
  | { kind: 'memory'; log: StoreLog }
  /** PGlite in `dir` (created when missing): one process at most opens it. */
  | { kind: 'embedded'; dir: string; log: StoreLog; lockRenewMs?: number }
  /** A PostgreSQL server (≥ 14): several replicas share it. */
  | {
      kind: 'postgres';
      /** postgres://user:password@host:port/database */
      url: string;
      log: StoreLog;
      /** Most connections of this replica's pool (default 10; one more is kept for LISTEN). */
      maxConnections?: number;
      /** Give up connecting after this long (default 5 s). */
      connectTimeoutMs?: number;
      /** Give up a query after this long (default 15 s). */
      queryTimeoutMs?: number;
    };

/**
 * Opens the store: connects (or opens the directory), applies the migrations under their
 * lock, and listens for notices. Rejects with a StoreUnavailableError when PostgreSQL cannot
 * be reached, and with an Error when the embedded directory is held by another process.
 */
export async function openStore(settings: StoreSettings): Promise<PredictionStore> {
  if (settings.kind === 'memory') return new MemoryStore();
  let db: Database;
  if (settings.kind === 'embedded') {
    db = await EmbeddedDatabase.open({
      dir: settings.dir,
      log: settings.log,
      ...(settings.lockRenewMs === undefined ? {} : { lockRenewMs: settings.lockRenewMs }),
    });
  } else {
    db = new PostgresDatabase(settings);
  }
  try {
    await migrate(db, undefined, settings.log);
    return await SqlPredictionStore.create(db, { log: settings.log });
  } catch (err) {
    await db.close().catch(() => {});
    throw err;
  }
}

const processKeys = new WeakMap<PredictionStore, Buffer>();

/**
 * The key that signs stream URLs: shared by every replica on the same database (kept in the
 * database), or, for the memory store, random and this process's own.
 */
export async function streamKey(store: PredictionStore): Promise<Buffer> {
  if (store instanceof SqlPredictionStore) return store.streamKey();
  let key = processKeys.get(store);
  if (!key) {
    key = randomBytes(32);
    processKeys.set(store, key);
  }
  return key;
}
