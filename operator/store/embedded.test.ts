/**
 * The store on embedded PGlite, in this process: the PredictionStore contract, persistence
 * across close and reopen, the directory lock (a second process refused, a dead one's lock
 * taken over), and migrations from the first schema.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { storeContract, storedRecord } from '../predictions/store.contract.ts';
import { usageContract } from '../predictions/usage-store.contract.ts';
import { type Database, EmbeddedDatabase } from './database.ts';
import { lockDirectory } from './dir-lock.ts';
import { openStore } from './index.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { SqlPredictionStore } from './sql-store.ts';
import { checkFirstSchemaUpgrade } from './testing.ts';

const log = pino({ level: 'silent' });
const temps: string[] = [];
const temp = () => {
  const dir = mkdtempSync(join(tmpdir(), 'modelplane-store-'));
  temps.push(dir);
  return dir;
};
afterAll(() => {
  for (const t of temps) rmSync(t, { recursive: true, force: true });
});

let shared: EmbeddedDatabase;
beforeAll(async () => {
  shared = await EmbeddedDatabase.open({ dir: temp(), log });
  await migrate(shared);
}, 120_000);
afterAll(async () => {
  await shared?.close();
});

storeContract('embedded (PGlite)', {
  async open() {
    await shared.query('TRUNCATE predictions, prediction_events, replicas, files');
    return SqlPredictionStore.create(shared, { log, ownsDatabase: false });
  },
});

usageContract('embedded (PGlite)', {
  async open() {
    await shared.query('TRUNCATE usage_instances, usage_buckets');
    return SqlPredictionStore.create(shared, { log, ownsDatabase: false });
  },
});

/** Runs a node script (ESM, type stripping) from this folder; resolves its output once `until` is printed, or its exit. */
function child(script: string) {
  const proc = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: import.meta.dirname,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout.on('data', (d) => {
    out += d;
  });
  proc.stderr.on('data', (d) => {
    out += d;
  });
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  const printed = async (text: string) => {
    const deadline = Date.now() + 60_000;
    while (!out.includes(text)) {
      if (proc.exitCode !== null || Date.now() > deadline)
        throw new Error(`no "${text}" from the child: ${out}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { proc, exited, printed, output: () => out };
}

describe('the embedded store', () => {
  it('keeps what it stored across close and reopen, and its stream key', async () => {
    const dir = temp();
    const first = (await openStore({ kind: 'embedded', dir, log })) as SqlPredictionStore;
    expect(first.kind).toBe('embedded');
    expect(first.exclusive).toBe(true);
    const rec = storedRecord({ idempotencyKey: 'kept' });
    await first.insert(rec, 'r1');
    await first.update({ ...rec, status: 'processing' }, 'r1', [{ id: 1, event: 'logs', data: 'hello' }]);
    const key = await first.streamKey();
    expect(key).toHaveLength(32);
    await first.close();
    const again = (await openStore({ kind: 'embedded', dir, log })) as SqlPredictionStore;
    try {
      expect(await again.get(rec.id)).toEqual({ ...rec, status: 'processing' });
      expect(await again.events(rec.id, 0)).toEqual([{ id: 1, event: 'logs', data: 'hello' }]);
      expect((await again.streamKey()).equals(key)).toBe(true);
      expect(await migrate(again.db)).toEqual([]); // already at the latest: nothing to do
    } finally {
      await again.close();
    }
  }, 120_000);

  it('keeps what a process committed before it was killed (SIGKILL), and lets the next one open it', async () => {
    const dir = temp();
    const rec = storedRecord();
    const writer = child(
      `import pino from 'pino';
       import { openStore } from './index.ts';
       const store = await openStore({ kind: 'embedded', dir: ${JSON.stringify(dir)}, log: pino({ level: 'silent' }) });
       const rec = ${JSON.stringify(rec)};
       await store.insert(rec, 'w');
       await store.update({ ...rec, status: 'processing' }, 'w', [{ id: 1, event: 'logs', data: 'x' }]);
       console.log('COMMITTED');
       setInterval(() => {}, 1000);`,
    );
    await writer.printed('COMMITTED');
    writer.proc.kill('SIGKILL');
    await writer.exited;
    const store = await openStore({ kind: 'embedded', dir, log });
    try {
      expect(await store.get(rec.id)).toEqual({ ...rec, status: 'processing' });
      expect(await store.events(rec.id, 0)).toEqual([{ id: 1, event: 'logs', data: 'x' }]);
      expect((await store.adopt('next', 1)).map((r) => r.id)).toEqual([rec.id]);
    } finally {
      await store.close();
    }
  }, 120_000);

  it('refuses a second opener while the first holds the directory, in this process or another', async () => {
    const dir = temp();
    const first = await openStore({ kind: 'embedded', dir, log });
    try {
      await expect(openStore({ kind: 'embedded', dir, log })).rejects.toThrow(/in use by this process/);
      const other = child(
        `import { lockDirectory } from './dir-lock.ts';
         try { await lockDirectory(${JSON.stringify(dir)}); console.log('LOCKED'); }
         catch (err) { console.log('REFUSED', err.message); }`,
      );
      await other.exited;
      expect(other.output()).toMatch(new RegExp(`REFUSED .*in use by process ${process.pid}`));
    } finally {
      await first.close();
    }
    const after = await lockDirectory(dir); // released on close
    await after.release();
  }, 120_000);

  it('takes over the lock of a process that was killed', async () => {
    const dir = temp();
    const holder = child(
      `import { lockDirectory } from './dir-lock.ts';
       await lockDirectory(${JSON.stringify(dir)}); console.log('LOCKED'); setInterval(() => {}, 1000);`,
    );
    await holder.printed('LOCKED');
    await expect(lockDirectory(dir)).rejects.toThrow(new RegExp(`in use by process ${holder.proc.pid}`));
    holder.proc.kill('SIGKILL');
    await holder.exited;
    const store = await openStore({ kind: 'embedded', dir, log });
    await store.ping();
    await store.close();
  }, 120_000);

  it('brings a database made by the first schema up to the latest, keeping its data', async () => {
    const db = await EmbeddedDatabase.open({ dir: temp(), log });
    try {
      await checkFirstSchemaUpgrade(db, log);
    } finally {
      await db.close();
    }
  }, 120_000);

  it('writes a prediction in one round trip per write: insert, update with events, append', async () => {
    const statements: string[] = [];
    const counting: Database = {
      kind: shared.kind,
      query: (text, params) => {
        statements.push(text);
        return shared.query(text, params);
      },
      transaction: (fn) => shared.transaction(fn),
      listen: (channel, onPayload) => shared.listen(channel, onPayload),
      ping: () => shared.ping(),
      close: async () => {},
    };
    const store = await SqlPredictionStore.create(counting, { log, ownsDatabase: false });
    try {
      const rec = storedRecord();
      await store.insert(rec, 'r1');
      expect(statements).toHaveLength(1);
      await store.update({ ...rec, status: 'processing' }, 'r1', [{ id: 1, event: 'logs', data: 'a' }]);
      expect(statements).toHaveLength(2);
      await store.appendEvents(rec.id, 'r1', [{ id: 2, event: 'output', data: 'b' }]);
      expect(statements).toHaveLength(3);
      await store.update({ ...rec, status: 'succeeded', completedAt: rec.createdAt + 1 }, 'r1', [
        { id: 3, event: 'done', data: '{}' },
      ]);
      expect(statements).toHaveLength(4);
      expect(await store.events(rec.id, 0)).toHaveLength(3);
    } finally {
      await store.close();
    }
  });

  it('loads the migrations in order of version, from 1', () => {
    const migrations = loadMigrations();
    const versions = migrations.map((m) => m.version);
    expect(versions).toEqual([...versions].sort((a, b) => a - b));
    expect(new Set(versions).size).toBe(versions.length);
    expect(migrations.at(-1)?.name).toBe('usage');
    expect(migrations[0]?.name).toBe('predictions');
  });
});
