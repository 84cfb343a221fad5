/**
 * Test helpers of the store: the check that a database made by the first schema, holding
 * data, is brought up to the latest schema and still reads and writes. Its data is written
 * with the first schema's own columns (frozen here: never change this SQL when adding a
 * migration), so that a later migration that breaks an existing database fails it.
 */
import { expect } from 'vitest';
import type { Database, StoreLog } from './database.ts';
import { loadMigrations, migrate } from './migrate.ts';
import { SqlPredictionStore } from './sql-store.ts';

const V1_ID = 'v1predictionaaaaaaaaaaaaaa';

/** Rows as a replica running the first schema wrote them. */
const V1_DATA = `
  INSERT INTO predictions (id, namespace, deployment, via_deployment, model, version, input, output, logs,
    error, status, created_at, started_at, completed_at, predict_time, cost, instance, webhook, webhook_events,
    idempotency_key, deadline, base_url, origin, cancel_requested, data_removed, driver)
  VALUES ('${V1_ID}', 'team', 'dep', true, 'team/model', '${'b'.repeat(64)}', '{"prompt":"old"}', '["x"]', 'log\n',
    NULL, 'processing', '2025-01-02T03:04:05.678Z', '2025-01-02T03:04:06Z', NULL, NULL, NULL, 'pod-1',
    'https://hook/x', '["completed"]', 'idem-v1', NULL, 'http://gw/v1', NULL, false, false, 'replica-v1');
  INSERT INTO prediction_events (prediction_id, id, event, data) VALUES ('${V1_ID}', 1, 'output', 'x');
  INSERT INTO replicas (id, heartbeat_at) VALUES ('replica-v1', now());
  INSERT INTO settings (name, value) VALUES ('stream_key', '${Buffer.alloc(32, 7).toString('base64')}');`;

export async function checkFirstSchemaUpgrade(db: Database, log?: StoreLog): Promise<void> {
  const all = loadMigrations();
  expect(await migrate(db, all.slice(0, 1), log)).toEqual([1]);
  await db.transaction((tx) => tx.exec(V1_DATA));
  expect(await migrate(db, all, log)).toEqual(all.slice(1).map((m) => m.version));
  expect(await migrate(db, all, log)).toEqual([]);
  const recorded = await db.query<{ version: number }>(
    'SELECT version FROM schema_migrations ORDER BY version',
  );
  expect(recorded.map((r) => r.version)).toEqual(all.map((m) => m.version));

  const store = await SqlPredictionStore.create(db, { ownsDatabase: false });
  try {
    const old = await store.get(V1_ID);
    expect(old).toMatchObject({
      id: V1_ID,
      namespace: 'team',
      viaDeployment: true,
      input: { prompt: 'old' },
      output: ['x'],
      logs: 'log\n',
      status: 'processing',
      createdAt: Date.parse('2025-01-02T03:04:05.678Z'),
      startedAt: Date.parse('2025-01-02T03:04:06Z'),
      instance: 'pod-1',
      webhookEvents: ['completed'],
      idempotencyKey: 'idem-v1',
    });
    expect(await store.events(V1_ID, 0)).toEqual([{ id: 1, event: 'output', data: 'x' }]);
    expect((await store.findByIdempotencyKey('team', 'idem-v1'))?.id).toBe(V1_ID);
    // Its driver still drives it, and it finishes on the new schema.
    const done = { ...old!, status: 'succeeded' as const, completedAt: Date.now() };
    expect(await store.update(done, 'replica-v1', [{ id: 2, event: 'done', data: '{}' }])).toBe(true);
    expect(await store.get(V1_ID)).toEqual(done);
    expect((await store.list({ namespaces: ['team'], limit: 5 })).items.map((r) => r.id)).toEqual([V1_ID]);
    expect((await store.streamKey()).equals(Buffer.alloc(32, 7))).toBe(true);
  } finally {
    await store.close();
  }
}
