/** A prediction as the predictions module keeps it, and the object callers read. */
import { boundLogs } from '../../lib/bounded.ts';
import {
  type PredictionCore,
  type PredictionObject,
  predictionObject,
  type StreamEvent,
  type WebhookEvent,
} from '../../lib/prediction.ts';

export interface PredictionRecord extends PredictionCore {
  /** The namespace (the "owner") the prediction runs in. */
  namespace: string;
  /** Name of the Deployment that runs it. */
  deployment: string;
  /** True when created through `/deployments/...`: the object then names its deployment. */
  viaDeployment: boolean;
  /** `owner/name` of the model. */
  model: string;
  /** Seconds the model ran (the sidecar's figure). */
  predictTime?: number;
  /** Exact cost from the instance, a decimal string. */
  cost?: string;
  /**
   * The metrics the model recorded itself (Cog's `record_metric`: `image_count`,
   * `input_token_count`, ...), by name; the timings are not among them.
   */
  metrics?: Record<string, unknown>;
  /** The instance (pod) that ran it. */
  instance?: string;
  webhook?: string;
  webhookEvents: WebhookEvent[];
  idempotencyKey?: string;
  /** Epoch ms at which it is canceled (Cancel-After). */
  deadline?: number;
  /** Absolute API base URL (`.../v1`) its urls are built from. */
  baseUrl: string;
  /** Where it came from: the HTTP API, or a Prediction object (`namespace/name`). */
  origin?: string;
  /** Someone asked to cancel it (through any replica): its driver cancels it. */
  cancelRequested?: boolean;
  /** Its `completed` webhook is owed: set when it ends, cleared once delivered or given up. */
  webhookPending?: boolean;
  /** Its input, output, logs and events were removed after the data retention time. */
  dataRemoved?: boolean;
  /** Its stream events, for SSE and resume. */
  events: StreamEvent[];
}

/** The record without its stream events: what the store keeps in the prediction's row. */
export function withoutEvents(rec: PredictionRecord): Omit<PredictionRecord, 'events'> {
  const { events: _, ...state } = rec;
  return state;
}

/** The most bytes of logs a prediction keeps: the last ones (1 MiB), as the sidecar does. */
export const LOG_TAIL_BYTES = 1 << 20;

/** The last LOG_TAIL_BYTES bytes of `logs`, behind a line counting the bytes dropped. */
export function logTail(logs: string): string {
  return boundLogs(logs, LOG_TAIL_BYTES);
}

/** The prediction object as the API returns it, with `urls` and the record's `model`. */
export type PredictionView = PredictionObject & Required<Pick<PredictionObject, 'model' | 'urls'>>;

/** The prediction object as the API returns it. `streamUrl` is the stream URL (the HTTP side signs it). */
export function toView(rec: Omit<PredictionRecord, 'events'>, streamUrl?: string): PredictionView {
  const self = `${rec.baseUrl}/predictions/${rec.id}`;
  const urls: PredictionView['urls'] = { get: self, cancel: `${self}/cancel` };
  if (streamUrl) urls.stream = streamUrl;
  const metrics: PredictionView['metrics'] = { ...rec.metrics };
  if (rec.predictTime !== undefined) metrics.predict_time = rec.predictTime;
  if (rec.completedAt !== undefined) metrics.total_time = (rec.completedAt - rec.createdAt) / 1000;
  return predictionObject({
    id: rec.id,
    model: rec.model,
    version: rec.version,
    input: rec.input,
    output: rec.output,
    logs: rec.logs,
    error: rec.error,
    status: rec.status,
    createdAt: rec.createdAt,
    startedAt: rec.startedAt,
    completedAt: rec.completedAt,
    urls,
    metrics,
    cost: rec.cost,
    deployment: rec.viaDeployment ? `${rec.namespace}/${rec.deployment}` : undefined,
    dataRemoved: rec.dataRemoved,
  }) as PredictionView;
}

/**
 * A file the API keeps: one a caller uploaded (`POST /v1/files`), or an output file of a
 * prediction (`prediction` set: removed with the prediction's data). Its bytes are in the files
 * backend under `key`; this record is what the store keeps of it.
 */
export interface FileRecord {
  /** Lowercase base32, like prediction ids. */
  id: string;
  namespace: string;
  name: string;
  contentType: string;
  size: number;
  /** Hex SHA-256 of the bytes. */
  sha256: string;
  /** Hex MD5 of the bytes (the file's etag). */
  md5: string;
  metadata: Record<string, unknown>;
  createdAt: number;
  /** When it expires (epoch ms); absent for outputs, which go with their prediction's data. */
  expiresAt?: number;
  /** The prediction whose output it is. */
  prediction?: string;
  /** Where the files backend keeps the bytes. */
  key: string;
}
