/**
 * The state of a prediction while it is under way, and of one deployment's lane: plain data
 * that the parts of the engine share. Lanes (lanes.ts) queue and dispatch, the follower
 * (follower.ts) reads an instance's stream, the lifecycle (lifecycle.ts) keeps timers and ends
 * predictions; the facade (engine.ts) puts them together.
 */
import { byteLength } from '../../lib/bounded.ts';
import type { Timer } from '../../lib/clock.ts';
import type { InvalidField } from '../../lib/openapi-input.ts';
import type { StreamEvent } from '../../lib/prediction.ts';
import type { Endpoint } from './endpoints.ts';
import type { PredictionRecord } from './record.ts';

/** Receives a prediction's stream events as they happen. */
export type Listener = (e: StreamEvent) => void;

/** One deployment's queue in front of its instances. */
export interface Lane {
  namespace: string;
  name: string;
  /** `namespace/name`. */
  key: string;
  /** Waiting for an instance, oldest first. */
  queue: Live[];
  /** Sent to an instance (being taken, or running there), by prediction id. */
  running: Map<string, Live>;
  /** Outstanding predictions per instance (pod name). */
  perPod: Map<string, number>;
  /** Instances passed over until a time (epoch ms): they refused or could not be reached. */
  avoid: Map<string, number>;
  /** Epoch ms of the last prediction accepted or ended. */
  lastActivityMs: number | undefined;
  lastPokeMs: number;
  /** Tries the queue again when the first passed-over instance may be asked again. */
  retryTimer: Timer | undefined;
}

/** How one attempt to hand a prediction to an instance ended. */
export type DispatchOutcome =
  | { kind: 'accepted' }
  | { kind: 'requeued' }
  | { kind: 'invalid'; fields: InvalidField[]; detail: string }
  | { kind: 'failed' };

/** A prediction that has not ended. */
export interface Live {
  rec: PredictionRecord;
  lane: Lane;
  /** Stream subscribers (SSE). */
  listeners: Set<Listener>;
  /** Called once when it ends. */
  waiters: Set<() => void>;
  /** The instance it was sent to. */
  endpoint: Endpoint | undefined;
  /** The instance has taken it. */
  accepted: boolean;
  cancelRequested: boolean;
  /** Epoch ms after which it fails if no instance has taken it (spec.queue.maxWaitSeconds). */
  holdUntil: number;
  holdTimer: Timer | undefined;
  /** Cancel-After. */
  deadlineTimer: Timer | undefined;
  /** Resolves when the current dispatch attempt has an outcome. */
  dispatching: Promise<DispatchOutcome> | undefined;
  /** The last event id read from the instance's stream. */
  sidecarEventId: number;
  /** The instance's stream has said the prediction ended: its final record is read next. */
  sidecarEnded: boolean;
  /** The caller asked for live events (`stream: true`): the instance follows it live. */
  wantsLive: boolean;
  /** Its input was checked against the version's schema: the instance need not check it again. */
  inputChecked: boolean;
  /** Output items the instance's create stream brought so far (the output while it runs). */
  items: unknown[];
  /** Bytes of the output items its instance's streams brought so far (their JSON). */
  outputBytes: number;
  refreshing: boolean;
  refreshAgain: boolean;
  /** Aborted when it ends or the engine closes: stops following the instance. */
  abort: AbortController;
  /** Events not written to the store yet. */
  unsaved: StreamEvent[];
  /** Its state changed since the last write to the store began. */
  dirty: boolean;
  /** Resolves true once its row is stored (rejects when it could not be): writes wait for it. */
  stored: Promise<boolean>;
  /** A write due soon (`saveSoon`). */
  saveTimer: Timer | undefined;
  /** The writes under way: resolves true when the state is stored, false when another replica drives it now. */
  writing: Promise<boolean> | undefined;
  /** The id of the last event the listeners have had (its last ones wait for the end to be stored). */
  delivered: number;
  /** Bytes of the data of `rec.events` (kept within the lifecycle's maxEventBytes). */
  eventBytes: number;
}

export function newLive(rec: PredictionRecord, lane: Lane, holdUntil: number): Live {
  return {
    rec,
    lane,
    listeners: new Set(),
    waiters: new Set(),
    endpoint: undefined,
    accepted: false,
    cancelRequested: false,
    holdUntil,
    holdTimer: undefined,
    deadlineTimer: undefined,
    dispatching: undefined,
    sidecarEventId: 0,
    sidecarEnded: false,
    wantsLive: false,
    inputChecked: false,
    items: [],
    outputBytes: 0,
    refreshing: false,
    refreshAgain: false,
    abort: new AbortController(),
    unsaved: [],
    dirty: false,
    stored: Promise.resolve(true),
    saveTimer: undefined,
    writing: undefined,
    delivered: rec.events.at(-1)?.id ?? 0,
    eventBytes: rec.events.reduce((n, e) => n + byteLength(e.data), 0),
  };
}
