/** A prediction as the gateway keeps it, and the object callers read. */
import type { WebhookEvent } from './parse.ts';

export type Status = 'starting' | 'processing' | 'succeeded' | 'failed' | 'canceled';
export const TERMINAL: ReadonlySet<Status> = new Set(['succeeded', 'failed', 'canceled']);
export const isTerminal = (s: Status): boolean => TERMINAL.has(s);

export type EventName = 'output' | 'logs' | 'error' | 'done';
export interface StreamEvent {
  /** 1, 2, 3, ... per prediction: the SSE `id:` line. */
  id: number;
  event: EventName;
  data: string;
}

export interface PredictionRecord {
  id: string;
  /** The namespace (the "owner") the prediction runs in. */
  namespace: string;
  /** Name of the Deployment that runs it. */
  deployment: string;
  /** True when created through `/deployments/...`: the object then names its deployment. */
  viaDeployment: boolean;
  /** `owner/name` of the model. */
  model: string;
  /** The 64-hex version id. */
  version: string;
  input: Record<string, unknown>;
  output: unknown;
  logs: string;
  error: string | null;
  status: Status;
  /** Epoch ms. */
  createdAt: number;
  startedAt?: number;
  completedAt?: number;
  /** Seconds the model ran (the sidecar's figure). */
  predictTime?: number;
  /** Exact cost from the instance, a decimal string. */
  cost?: string;
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
  /** Its stream events, for SSE and resume. */
  events: StreamEvent[];
}

/** The prediction object: the record's fields of the same name, times as ISO strings, urls, metrics. */
export interface PredictionView
  extends Pick<
    PredictionRecord,
    'id' | 'model' | 'version' | 'input' | 'output' | 'logs' | 'error' | 'status'
  > {
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  urls: { get: string; cancel: string; stream?: string };
  metrics: { predict_time?: number; total_time?: number };
  data_removed: boolean;
  source: 'api';
  deployment?: string;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The prediction object as the API returns it. `streamUrl` is the signed stream URL. */
export function toView(rec: PredictionRecord, streamUrl?: string): PredictionView {
  const self = `${rec.baseUrl}/predictions/${rec.id}`;
  const urls: PredictionView['urls'] = { get: self, cancel: `${self}/cancel` };
  if (streamUrl) urls.stream = streamUrl;
  const metrics: PredictionView['metrics'] = {};
  if (rec.predictTime !== undefined) metrics.predict_time = rec.predictTime;
  if (rec.completedAt !== undefined) metrics.total_time = (rec.completedAt - rec.createdAt) / 1000;
  const view: PredictionView = {
    id: rec.id,
    model: rec.model,
    version: rec.version,
    input: rec.input,
    output: rec.output,
    logs: rec.logs,
    error: rec.error,
    status: rec.status,
    created_at: iso(rec.createdAt)!,
    started_at: iso(rec.startedAt),
    completed_at: iso(rec.completedAt),
    urls,
    metrics,
    data_removed: false,
    source: 'api',
  };
  if (rec.viaDeployment) view.deployment = `${rec.namespace}/${rec.deployment}`;
  return view;
}

/** An output value as SSE data: strings as raw text, anything else as JSON. */
export function outputText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}
