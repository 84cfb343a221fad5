/**
 * Versioned migrations: the files `migrations/NNNN_name.sql`, applied in order when the store
 * opens, each once, recorded in `schema_migrations`. All of it runs in one transaction under
 * a transaction-level advisory lock, so that replicas starting together migrate once: the
 * others wait for the lock, then find every migration recorded.
 *
 * A migration is never edited once released; a change to the schema is a new file.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Database, StoreLog } from './database.ts';

export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The advisory lock key the migrations take (an arbitrary constant: "mplane" in ASCII). */
export const MIGRATION_LOCK = 0x6d706c616e65;

const MIGRATIONS_DIR = new URL('./migrations/', import.meta.url);

/** The migrations in `dir` (default: migrations/ beside this file), in order of version. */
export function loadMigrations(dir: URL | string = MIGRATIONS_DIR): Migration[] {
  const out: Migration[] = [];
  for (const file of readdirSync(dir).sort()) {
    const m = /^(\d{4})_([a-z0-9_]+)\.sql$/.exec(file);
    if (!m) continue;
    const url = typeof dir === 'string' ? `${dir}/${file}` : new URL(file, dir);
    out.push({ version: Number(m[1]), name: m[2]!, sql: readFileSync(url, 'utf8') });
  }
  // Versions increase; a gap is allowed (a migration that another line of work numbered
  // first is applied whenever it arrives, each migration once, in order of version).
  out.forEach((mig, i) => {
    const prev = i === 0 ? 0 : out[i - 1]!.version;
    if (mig.version <= prev)
      throw new Error(`migration ${mig.version}_${mig.name}: expected a version above ${prev}`);
  });
  return out;
}

/**
 * Brings the database up to the last of `migrations`; resolves the versions it applied
 * (none when the database was up to date).
 */
export async function migrate(
  db: Database,
  migrations: readonly Migration[] = loadMigrations(),
  log?: StoreLog,
): Promise<number[]> {
  return db.transaction(async (tx) => {
    await tx.query(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    await tx.exec(
      `CREATE TABLE IF NOT EXISTS schema_migrations (
         version    integer PRIMARY KEY,
         name       text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    const done = new Set(
      (await tx.query<{ version: number }>('SELECT version FROM schema_migrations')).map((r) => r.version),
    );
    const known = migrations.at(-1)?.version ?? 0;
    const newest = Math.max(0, ...done);
    if (newest > known) {
      log?.warn(
        { schema: newest, known },
        'store: the database schema is newer than this operator knows (a newer replica migrated it)',
      );
    }
    const applied: number[] = [];
    for (const mig of migrations) {
      if (done.has(mig.version)) continue;
      await tx.exec(mig.sql);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        mig.version,
        mig.name,
      ]);
      applied.push(mig.version);
    }
    if (applied.length) log?.info({ applied }, 'store: migrated the database');
    return applied;
  });
}
