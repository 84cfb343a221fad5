/**
 * Events (events.k8s.io/v1) about the objects a controller manages, aggregated like
 * client-go's recorder: an event that repeats (same object, type, reason, action and note)
 * within six minutes does not make a new object; the first one gets a `series` whose
 * `count` and `lastObservedTime` are patched, at most once per `seriesWriteIntervalMs`.
 *
 * Recording never throws: a failure to write an Event is logged and dropped.
 */
import { randomBytes } from 'node:crypto';
import type { IEvent } from 'kubernetes-models/events.k8s.io/v1/Event';
import type { IObjectReference } from 'kubernetes-models/v1/ObjectReference';
import {
  type KubeClient,
  type KubeObject,
  type Listed,
  MERGE_PATCH,
  resourcePath,
  resourceType,
} from './client.ts';
import { microTime } from './leader-election.ts';
import { type Logger, silentLogger } from './log.ts';

export type ObjectReference = IObjectReference;

/** The Event type of events.k8s.io/v1; `type` is Normal or Warning. */
export type Event = Listed<IEvent>;

export const Events = resourceType<Event>({
  apiVersion: 'events.k8s.io/v1',
  kind: 'Event',
  plural: 'events',
  namespaced: true,
});

export interface EventRecorderOptions {
  client: KubeClient;
  /** The controller's name, e.g. `modelplane.dev/deployment-controller`. */
  reportingController: string;
  /** This process (the manager's identity). */
  reportingInstance: string;
  /** How often a repeating event's series is written at most (default 30 s). */
  seriesWriteIntervalMs?: number;
  log?: Logger;
}

export interface EventInput {
  type: 'Normal' | 'Warning';
  /** Why, in CamelCase: `InsufficientCapacity`. */
  reason: string;
  /** What the controller did or tried, in CamelCase: `Scale`, `Reconcile`. Defaults to `Reconcile`. */
  action?: string;
  /** For a person: what happened and what to do about it (at most 1 kB). */
  note: string;
}

/** A repeating event's entry: where its object is and what is left to write. */
interface Series {
  namespace: string;
  name: string;
  count: number;
  written: number;
  lastObserved: number;
  lastWrite: number;
  flushTimer: NodeJS.Timeout | undefined;
  /** Writes of this series, one after another. */
  chain: Promise<void>;
  /** False once its create failed: later repeats start a new Event. */
  ok: boolean;
}

const SERIES_WINDOW_MS = 6 * 60_000;
const MAX_SERIES = 4096;
const MAX_NOTE = 1024;

export class EventRecorder {
  private readonly opts: EventRecorderOptions;
  private readonly log: Logger;
  private readonly intervalMs: number;
  private readonly series = new Map<string, Series>();

  constructor(opts: EventRecorderOptions) {
    this.opts = opts;
    this.intervalMs = opts.seriesWriteIntervalMs ?? 30_000;
    this.log = (opts.log ?? silentLogger).child({ reportingController: opts.reportingController });
  }

  normal(regarding: KubeObject, reason: string, note: string, action?: string): Promise<void> {
    return this.record(regarding, { type: 'Normal', reason, note, action });
  }

  warning(regarding: KubeObject, reason: string, note: string, action?: string): Promise<void> {
    return this.record(regarding, { type: 'Warning', reason, note, action });
  }

  /** Records an event; the promise settles once it is written (or has failed and been logged). */
  record(regarding: KubeObject, input: EventInput): Promise<void> {
    const now = Date.now();
    const ref = reference(regarding);
    const action = input.action ?? 'Reconcile';
    const note = input.note.length > MAX_NOTE ? `${input.note.slice(0, MAX_NOTE - 1)}…` : input.note;
    const key = JSON.stringify([
      ref.uid ?? `${ref.kind}/${ref.namespace}/${ref.name}`,
      input.type,
      input.reason,
      action,
      note,
    ]);
    const existing = this.series.get(key);
    if (existing?.ok && now - existing.lastObserved < SERIES_WINDOW_MS) {
      existing.count++;
      existing.lastObserved = now;
      this.touch(key, existing);
      // The first repeat is written at once (the object turns into a series); later ones at
      // most once per interval, carrying the count reached by then.
      const due = existing.count === 2 ? 0 : existing.lastWrite + this.intervalMs - now;
      if (due <= 0) return this.writeSeries(existing);
      existing.flushTimer ??= setTimeout(() => void this.writeSeries(existing), due).unref();
      return existing.chain;
    }
    if (existing) {
      clearTimeout(existing.flushTimer);
      this.series.delete(key);
    }
    const namespace = ref.namespace || 'default';
    const entry: Series = {
      namespace,
      name: `${ref.name ?? 'object'}.${randomBytes(8).toString('hex')}`,
      count: 1,
      written: 0,
      lastObserved: now,
      lastWrite: now,
      flushTimer: undefined,
      chain: Promise.resolve(),
      ok: true,
    };
    this.touch(key, entry);
    const event: Event = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name: entry.name, namespace },
      eventTime: microTime(now),
      reportingController: this.opts.reportingController,
      reportingInstance: this.opts.reportingInstance,
      action,
      reason: input.reason,
      note,
      type: input.type,
      regarding: ref,
    };
    entry.chain = this.opts.client
      .create(Events, event)
      .then(() => {
        entry.written = 1;
      })
      .catch((err) => {
        entry.ok = false;
        this.log.warn({ err, reason: input.reason }, 'could not write an Event');
      });
    return entry.chain;
  }

  /** Writes every series with unwritten repeats, and waits for all writes. */
  async flush(): Promise<void> {
    await Promise.all(
      [...this.series.values()].map((s) => (s.count > s.written ? this.writeSeries(s) : s.chain)),
    );
  }

  private writeSeries(s: Series): Promise<void> {
    clearTimeout(s.flushTimer);
    s.flushTimer = undefined;
    s.chain = s.chain.then(async () => {
      if (!s.ok || s.count <= s.written) return;
      const count = s.count;
      try {
        await this.opts.client.request(
          'PATCH',
          resourcePath(Events, { namespace: s.namespace, name: s.name }),
          {
            body: { series: { count, lastObservedTime: microTime(s.lastObserved) } },
            contentType: MERGE_PATCH,
          },
        );
        s.written = count;
        s.lastWrite = Date.now();
      } catch (err) {
        // Gone (its TTL ran out) or unwritable: the next repeat starts a new Event.
        s.ok = false;
        this.log.warn({ err }, 'could not update an Event series');
      }
    });
    return s.chain;
  }

  /** Keeps the map in least-recently-used order and bounded. */
  private touch(key: string, entry: Series): void {
    this.series.delete(key);
    this.series.set(key, entry);
    if (this.series.size > MAX_SERIES) {
      const oldest = this.series.keys().next().value as string;
      clearTimeout(this.series.get(oldest)?.flushTimer);
      this.series.delete(oldest);
    }
  }
}

function reference(obj: KubeObject): ObjectReference {
  const m = obj.metadata ?? {};
  return { apiVersion: obj.apiVersion, kind: obj.kind, name: m.name, namespace: m.namespace, uid: m.uid };
}
