/**
 * The store on a real PostgreSQL server (harness/postgres.ts): the PredictionStore contract
 * with two replicas on one database (notices by LISTEN/NOTIFY from another connection,
 * concurrent adopters), migrations by replicas starting together, a database made by the
 * first schema, the stream key every replica shares, and the server going away and coming
 * back (StoreUnavailableError meanwhile; the LISTEN connection comes back by itself).
 */
import pg from 'pg';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresServer } from '../../harness/postgres.ts';
import { eventually, recordNotices, storeContract, storedRecord } from '../predictions/store.contract.ts';
import { type PredictionStore, StoreUnavailableError } from '../predictions/store.ts';
import { usageContract } from '../predictions/usage-store.contract.ts';
import { PostgresDatabase } from './database.ts';
import { openStore } from './index.ts';
import { loadMigrations, migrate } from './migrate.ts';
import type { SqlPredictionStore } from './sql-store.ts';
import { checkFirstSchemaUpgrade } from './testing.ts';

const log = pino({ level: 'silent' });
let server: PostgresServer;
let contractUrl: string;
let admin: pg.Pool;

beforeAll(async () => {
  server = await PostgresServer.start({ fsync: false });
  contractUrl = await server.createDatabase('contract');
  admin = new pg.Pool({ connectionString: contractUrl, max: 1 });
  admin.on('error', () => {}); // its idle connection, when a test stops the server
  const db = new PostgresDatabase({ url: contractUrl, log });
  await migrate(db);
  await db.close();
});
afterAll(async () => {
  await admin?.end();
  await server?.destroy();
});

storeContract('PostgreSQL', {
  async open() {
    await admin.query('TRUNCATE predictions, prediction_events, replicas, files');
    return openStore({ kind: 'postgres', url: contractUrl, log });
  },
  another: () => openStore({ kind: 'postgres', url: contractUrl, log }),
});

usageContract('PostgreSQL', {
  async open() {
    await admin.query('TRUNCATE usage_instances, usage_buckets');
    return openStore({ kind: 'postgres', url: contractUrl, log });
  },
});

describe('the store on PostgreSQL', () => {
  it('migrates once when several replicas open a new database together', async () => {
    const url = await server.createDatabase('together');
    const dbs = Array.from({ length: 4 }, () => new PostgresDatabase({ url, log }));
    try {
      const applied = await Promise.all(dbs.map((db) => migrate(db)));
      const all = loadMigrations().map((m) => m.version);
      expect(applied.filter((a) => a.length > 0)).toEqual([all]);
      const rows = await dbs[0]!.query<{ n: number }>('SELECT count(*)::integer AS n FROM schema_migrations');
      expect(rows[0]!.n).toBe(all.length);
      const stores = await Promise.all(dbs.map(() => openStore({ kind: 'postgres', url, log })));
      const keys = await Promise.all(stores.map((s) => (s as SqlPredictionStore).streamKey()));
      expect(keys[0]).toHaveLength(32);
      expect(keys.every((k) => k.equals(keys[0]!))).toBe(true); // every replica signs alike
      expect(stores.map((s) => [s.kind, s.exclusive])).toEqual(stores.map(() => ['postgres', false]));
      await Promise.all(stores.map((s) => s.close()));
    } finally {
      await Promise.all(dbs.map((db) => db.close()));
    }
  });

  it('brings a database made by the first schema up to the latest, keeping its data', async () => {
    const db = new PostgresDatabase({ url: await server.createDatabase('first'), log });
    try {
      await checkFirstSchemaUpgrade(db, log);
    } finally {
      await db.close();
    }
  });

  it('is unavailable while the server is down, and recovers by itself when it returns', async () => {
    const url = await server.createDatabase('outage');
    const a = (await openStore({ kind: 'postgres', url, log })) as SqlPredictionStore;
    let b: PredictionStore | undefined;
    try {
      const rec = storedRecord();
      await a.insert(rec, 'a');
      let resumed = 0;
      a.onResumed(() => resumed++);
      const onA = recordNotices(a);

      await server.stop();
      await expect(a.get(rec.id)).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(a.insert(storedRecord(), 'a')).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(a.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
      await expect(openStore({ kind: 'postgres', url, log })).rejects.toBeInstanceOf(StoreUnavailableError);

      await server.start();
      await eventually('the store to answer again, listening', () =>
        a.ping().then(
          () => true,
          () => false,
        ),
      );
      expect(resumed).toBe(1);
      expect(await a.get(rec.id)).toEqual(rec);
      // Notices flow again, from another replica's writes.
      b = await openStore({ kind: 'postgres', url, log });
      const later = storedRecord();
      await b.insert(later, 'b');
      await eventually('the notice of a write after the outage', () =>
        onA.got.some((n) => n.id === later.id && n.kind === 'changed'),
      );

      // The same after a crash of the server (SIGKILL), with the store idle meanwhile.
      await server.kill();
      await server.start();
      await eventually('the store to answer after a crash', () =>
        a.ping().then(
          () => true,
          () => false,
        ),
      );
      await eventually('listening again after the crash', () => resumed === 2);
      const last = storedRecord();
      await b.insert(last, 'b');
      await eventually('the notice of a write after the crash', () => onA.got.some((n) => n.id === last.id));
    } finally {
      await b?.close();
      await a.close();
    }
  });
});
