/**
 * The usage store on PostgreSQL or PGlite (migration 0005_usage.sql): `recordInstance` reads
 * the instance's last sample under a transaction-level advisory lock on the instance, so
 * replicas recording the same instance at once — its first reading too — count its growth once.
 */
import { format, parseDecimal } from '../../lib/decimal.ts';
import {
  bucketStart,
  type InstanceSample,
  type InstanceUsage,
  isEmptyDelta,
  type UsageBucket,
  type UsageDelta,
  type UsageQuery,
  type UsageStore,
  usageDelta,
} from '../predictions/usage-store.ts';
import type { Database } from './database.ts';

type Row = Record<string, unknown>;

const MS = ['setup_ms', 'idle_ms', 'busy_ms', 'down_ms'] as const;

function msOf(r: Row) {
  return {
    setup: Number(r.setup_ms),
    idle: Number(r.idle_ms),
    busy: Number(r.busy_ms),
    down: Number(r.down_ms),
  };
}

const INSTANCE_COLUMNS = `instance, pod, namespace, deployment, model, hardware, price_per_second,
  first_seen::float8 AS first_seen, last_seen::float8 AS last_seen, ended,
  ${MS.map((c) => `${c}::float8 AS ${c}`).join(', ')}, predictions::float8 AS predictions, prediction_cost`;

function instanceOf(r: Row): InstanceUsage {
  return {
    instance: String(r.instance),
    pod: String(r.pod),
    namespace: String(r.namespace),
    deployment: String(r.deployment),
    model: String(r.model),
    hardware: String(r.hardware),
    pricePerSecond: String(r.price_per_second),
    firstSeen: Number(r.first_seen),
    lastSeen: Number(r.last_seen),
    ended: Boolean(r.ended),
    ms: msOf(r),
    predictions: Number(r.predictions),
    predictionCost: String(r.prediction_cost),
  };
}

const UPSERT_INSTANCE = `
  INSERT INTO usage_instances (instance, pod, namespace, deployment, model, hardware, price_per_second,
    first_seen, last_seen, ended, setup_ms, idle_ms, busy_ms, down_ms, predictions, prediction_cost)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $9, $10, $11, $12, $13, $14, $15)
  ON CONFLICT (instance) DO UPDATE SET
    pod = EXCLUDED.pod, namespace = EXCLUDED.namespace, deployment = EXCLUDED.deployment,
    model = EXCLUDED.model, hardware = EXCLUDED.hardware, price_per_second = EXCLUDED.price_per_second,
    last_seen = GREATEST(usage_instances.last_seen, EXCLUDED.last_seen),
    ended = usage_instances.ended OR EXCLUDED.ended,
    setup_ms = EXCLUDED.setup_ms, idle_ms = EXCLUDED.idle_ms, busy_ms = EXCLUDED.busy_ms,
    down_ms = EXCLUDED.down_ms, predictions = EXCLUDED.predictions,
    prediction_cost = EXCLUDED.prediction_cost`;

const UPSERT_BUCKET = `
  INSERT INTO usage_buckets (bucket_start, namespace, deployment, model, hardware, price_per_second,
    setup_ms, idle_ms, busy_ms, down_ms, predictions, prediction_cost)
  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12::numeric)
  ON CONFLICT (bucket_start, namespace, deployment, model, hardware, price_per_second) DO UPDATE SET
    ${MS.map((c) => `${c} = usage_buckets.${c} + EXCLUDED.${c}`).join(', ')},
    predictions = usage_buckets.predictions + EXCLUDED.predictions,
    prediction_cost = usage_buckets.prediction_cost + EXCLUDED.prediction_cost`;

function namespaceFilter(q: UsageQuery, params: unknown[]): string {
  if (q.namespaces === 'all') return '';
  params.push([...q.namespaces]);
  return ` AND namespace = ANY($${params.length}::text[])`;
}

export class SqlUsageStore implements UsageStore {
  private readonly db: Database;

  constructor(db: Database) {
    this.db = db;
  }

  async recordInstance(s: InstanceSample): Promise<UsageDelta> {
    return this.db.transaction(async (tx) => {
      // One recorder of an instance at a time, even for its first reading (no row to lock yet).
      await tx.query('SELECT pg_advisory_xact_lock(hashtext($1)::bigint)', [`usage:${s.instance}`]);
      const rows = await tx.query<Row>(
        `SELECT ${INSTANCE_COLUMNS} FROM usage_instances WHERE instance = $1 FOR UPDATE`,
        [s.instance],
      );
      const prev = rows[0] && instanceOf(rows[0]);
      const delta = usageDelta(prev, s);
      await tx.query(UPSERT_INSTANCE, [
        s.instance,
        s.pod,
        s.namespace,
        s.deployment,
        s.model,
        s.hardware,
        s.pricePerSecond,
        s.at,
        s.ended ?? false,
        Math.round(s.ms.setup),
        Math.round(s.ms.idle),
        Math.round(s.ms.busy),
        Math.round(s.ms.down),
        s.predictions,
        s.predictionCost,
      ]);
      if (!isEmptyDelta(delta))
        await tx.query(UPSERT_BUCKET, [
          bucketStart(s.at),
          s.namespace,
          s.deployment,
          s.model,
          s.hardware,
          s.pricePerSecond,
          delta.ms.setup,
          delta.ms.idle,
          delta.ms.busy,
          delta.ms.down,
          delta.predictions,
          delta.predictionCost,
        ]);
      return delta;
    });
  }

  async buckets(q: UsageQuery): Promise<UsageBucket[]> {
    const params: unknown[] = [q.since, q.until];
    const rows = await this.db.query<Row>(
      `SELECT bucket_start::float8 AS bucket_start, namespace, deployment, model, hardware, price_per_second,
         ${MS.map((c) => `${c}::float8 AS ${c}`).join(', ')}, predictions::float8 AS predictions,
         prediction_cost::text AS prediction_cost
       FROM usage_buckets WHERE bucket_start >= $1 AND bucket_start < $2${namespaceFilter(q, params)}
       ORDER BY bucket_start, namespace, deployment, model, hardware, price_per_second`,
      params,
    );
    return rows.map((r) => ({
      start: Number(r.bucket_start),
      namespace: String(r.namespace),
      deployment: String(r.deployment),
      model: String(r.model),
      hardware: String(r.hardware),
      pricePerSecond: String(r.price_per_second),
      ms: msOf(r),
      predictions: Number(r.predictions),
      predictionCost: format(parseDecimal(String(r.prediction_cost))),
    }));
  }

  async instances(q: UsageQuery): Promise<InstanceUsage[]> {
    const params: unknown[] = [q.since, q.until];
    const rows = await this.db.query<Row>(
      `SELECT ${INSTANCE_COLUMNS} FROM usage_instances
       WHERE last_seen >= $1 AND first_seen < $2${namespaceFilter(q, params)}
       ORDER BY first_seen, instance`,
      params,
    );
    return rows.map(instanceOf);
  }

  async runCounts(): Promise<Record<string, number>> {
    const rows = await this.db.query<Row>(
      'SELECT model, sum(predictions)::float8 AS n FROM usage_buckets GROUP BY model',
    );
    return Object.fromEntries(rows.map((r) => [String(r.model), Number(r.n)]));
  }

  async purgeUsage(before: number): Promise<number> {
    const a = await this.db.query('DELETE FROM usage_buckets WHERE bucket_start < $1 RETURNING 1', [before]);
    const b = await this.db.query('DELETE FROM usage_instances WHERE ended AND last_seen < $1 RETURNING 1', [
      before,
    ]);
    return a.length + b.length;
  }
}
