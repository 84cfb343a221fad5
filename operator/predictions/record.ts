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
