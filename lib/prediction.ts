/**
 * The prediction vocabulary the operator and the sidecar share: statuses and the terminal
 * set, stream event names and the stream event, prediction ids, webhook event names, and
 * the prediction object as the API returns it. Each is defined here and nowhere else.
 */
import { createHash, randomBytes } from 'node:crypto';

/** Prediction statuses, as the prediction API reports them. `aborted` is never used. */
export const PREDICTION_STATUSES = ['starting', 'processing', 'succeeded', 'failed', 'canceled'] as const;
export type PredictionStatus = (typeof PREDICTION_STATUSES)[number];

/** The statuses a prediction ends in; nothing changes it after one of them. */
export const TERMINAL_STATUSES = ['succeeded', 'failed', 'canceled'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];

const TERMINAL: ReadonlySet<string> = new Set(TERMINAL_STATUSES);
export function isTerminal(status: string | undefined): status is TerminalStatus {
  return status !== undefined && TERMINAL.has(status);
}

/** The events of a prediction's stream (server-sent events), in the hosted API's names. */
export const STREAM_EVENTS = ['output', 'logs', 'error', 'done'] as const;
export type StreamEventName = (typeof STREAM_EVENTS)[number];

/** One event of a prediction's stream. */
export interface StreamEvent {
  /** 1, 2, 3, ... per prediction: the SSE `id:` line. */
  id: number;
  event: StreamEventName;
  data: string;
}

/** The `data` of the `done` event a prediction that ended with `status` sends. */
export function doneData(status: TerminalStatus): string {
  return status === 'succeeded'
    ? '{}'
    : JSON.stringify({ reason: status === 'failed' ? 'error' : 'canceled' });
}

/** An output value as stream data: strings as raw text, anything else as JSON. */
export function outputText(v: unknown): string {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

/** Webhook events a caller can subscribe to (all of them when the filter is absent). */
export const WEBHOOK_EVENTS = ['start', 'output', 'logs', 'completed'] as const;
export type WebhookEvent = (typeof WEBHOOK_EVENTS)[number];

const ID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz234567';
const ID_LENGTH = 26;
/** A prediction id: 26 characters of lowercase base32, like the hosted API's. */
export const PREDICTION_ID = /^[a-z2-7]{26}$/;

let idPool = Buffer.alloc(0);
let idOffset = 0;

/**
 * The prediction id that `seed` (a unique name, e.g. an object's uid) always gets: 26
 * characters of lowercase base32 of its SHA-256, like a random id.
 */
export function predictionIdFor(seed: string): string {
  const h = createHash('sha256').update(seed).digest();
  let id = '';
  for (let i = 0; i < ID_LENGTH; i++) id += ID_ALPHABET[h[i]! & 31];
  return id;
}

/** A new random prediction id (130 random bits), drawn from a pool of random bytes. */
export function newPredictionId(): string {
  if (idOffset + ID_LENGTH > idPool.length) {
    idPool = randomBytes(ID_LENGTH * 256);
    idOffset = 0;
  }
  let id = '';
  for (let i = 0; i < ID_LENGTH; i++) id += ID_ALPHABET[idPool[idOffset + i]! & 31];
  idOffset += ID_LENGTH;
  return id;
}

/**
 * The `metrics` of a prediction object: the timings, in seconds, and beside them the metrics
 * the model recorded itself (Cog's `record_metric`: `image_count`, `input_token_count`, ...).
 */
export interface PredictionMetrics {
  /** Seconds the model ran: the model server's own figure, else the sidecar's wall clock. */
  predict_time?: number;
  /** Seconds from creation to completion. */
  total_time?: number;
  /** Seconds from creation until the model server took it (queued or waiting for a slot). */
  queue_time?: number;
  /** A metric the model recorded: any JSON value (numbers, strings, lists, nested objects). */
  [name: string]: unknown;
}

/** The metrics modelplane measures itself; a model's own metric of the same name gives way. */
export const TIMING_METRICS = ['predict_time', 'total_time', 'queue_time'] as const;
const TIMING: ReadonlySet<string> = new Set(TIMING_METRICS);

/**
 * The metrics a model recorded itself, out of a `metrics` object (the model server's, or a
 * prediction object's): every entry but the timings. Undefined when there is none.
 */
export function modelMetrics(metrics: unknown): Record<string, unknown> | undefined {
  if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) return undefined;
  let out: Record<string, unknown> | undefined;
  for (const [name, value] of Object.entries(metrics)) {
    if (TIMING.has(name) || value === undefined || value === null) continue;
    out ??= {};
    out[name] = value;
  }
  return out;
}

/** The prediction object as the API returns it (`GET /v1/predictions/{id}` and the rest). */
export interface PredictionObject {
  id: string;
  model?: string;
  version: string;
  input: Record<string, unknown>;
  output: unknown;
  logs: string;
  error: string | null;
  status: PredictionStatus;
  created_at: string;
  started_at: string | null;
  completed_at: string | null;
  urls?: { get: string; cancel: string; stream?: string };
  metrics: PredictionMetrics;
  data_removed: boolean;
  source: 'api';
  deployment?: string;
  hardware?: string;
  /** Exact cost, a decimal string in the price's currency. */
  cost?: string;
}

/** The fields of a prediction that every copy of it holds, times as epoch milliseconds. */
export interface PredictionCore
  extends Pick<PredictionObject, 'id' | 'version' | 'input' | 'output' | 'logs' | 'error' | 'status'> {
  createdAt: number;
  startedAt?: number | undefined;
  completedAt?: number | undefined;
}

/** What a prediction object is built from. */
export interface PredictionFields
  extends PredictionCore,
    Pick<PredictionObject, 'model' | 'metrics' | 'urls' | 'deployment' | 'hardware' | 'cost'> {
  /** Its input, output and logs were removed after the data retention time. */
  dataRemoved?: boolean | undefined;
}

const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());

/** The prediction object, the one way the operator and the sidecar build it. */
export function predictionObject(f: PredictionFields): PredictionObject {
  const out: PredictionObject = {
    id: f.id,
    ...(f.model === undefined ? {} : { model: f.model }),
    version: f.version,
    input: f.input,
    output: f.output,
    logs: f.logs,
    error: f.error,
    status: f.status,
    created_at: iso(f.createdAt)!,
    started_at: iso(f.startedAt),
    completed_at: iso(f.completedAt),
    ...(f.urls ? { urls: f.urls } : {}),
    metrics: f.metrics,
    data_removed: f.dataRemoved ?? false,
    source: 'api',
  };
  if (f.deployment) out.deployment = f.deployment;
  if (f.hardware) out.hardware = f.hardware;
  if (f.cost !== undefined) out.cost = f.cost;
  return out;
}
