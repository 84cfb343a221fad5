/**
 * For the engine's unit tests: instances that answer as sidecars would, scripted by the test
 * (`FakeInstances`), and an engine on a FakeClock in front of one deployment `ns/d`
 * (`engineOnFakeClock`). No process, no socket, no real timer.
 */
import pino from 'pino';
import { FakeClock, type Timer } from '../../lib/clock.ts';
import {
  isTerminal,
  type StreamEvent,
  type StreamEventName,
  type TerminalStatus,
} from '../../lib/prediction.ts';
import { type DeploymentView, StaticCatalog } from './catalog.ts';
import { StaticEndpoints } from './endpoints.ts';
import { type CreateRequest, type EngineOptions, PredictionEngine } from './engine.ts';
import type { CreateResult, GetResult, InstanceClient, InstancePrediction } from './sidecar-client.ts';
import { MemoryStore, type PredictionStore } from './store.ts';

/**
 * How an instance answers a create: takes it; refuses it (503 draining, 429 busy); cannot be
 * reached; refuses its input (422); fails (500); or holds the answer until `release(id)`.
 */
export type CreateAnswer = 'accept' | 'draining' | 'busy' | 'unreachable' | 'invalid' | 'error' | 'hold';

interface OpenStream {
  onEvent: (e: StreamEvent) => void;
  resolve: (r: 'done' | 'ended') => void;
  reject: (err: Error) => void;
}

interface OnInstance {
  base: string;
  record: InstancePrediction;
  /** What the instance's stream has sent. */
  events: StreamEvent[];
  stream: OpenStream | undefined;
}

const unreachable = { kind: 'unreachable', error: 'connect ECONNREFUSED' } as const;

/** Instances that take predictions and run them as the test says. */
export class FakeInstances implements InstanceClient {
  /** How each instance (by base URL) answers a create (default: takes it). */
  readonly answers = new Map<string, CreateAnswer>();
  /** Every call the engine made, e.g. `create http://a <id>`, `stream http://a <id> 0`. */
  readonly calls: string[] = [];
  private readonly gone = new Set<string>();
  private readonly predictions = new Map<string, OnInstance>();
  private readonly held = new Map<string, () => void>();

  // --- what the engine calls ---------------------------------------------------------------

  async create(base: string, id: string): Promise<CreateResult> {
    this.calls.push(`create ${base} ${id}`);
    if (this.gone.has(base)) return unreachable;
    switch (this.answers.get(base) ?? 'accept') {
      case 'draining':
        return { kind: 'refused', status: 503, detail: 'draining', retryAfterMs: 1000 };
      case 'busy':
        return { kind: 'refused', status: 429, detail: 'all slots busy', retryAfterMs: 5000 };
      case 'unreachable':
        return unreachable;
      case 'invalid':
        return {
          kind: 'invalid',
          fields: [{ type: 'required', field: 'input.text', description: 'text is required' }],
          detail: 'invalid input',
        };
      case 'error':
        return { kind: 'error', status: 500, detail: 'boom' };
      case 'hold':
        return new Promise((resolve) => this.held.set(id, () => resolve(this.take(base, id))));
      case 'accept':
        return this.take(base, id);
    }
  }

  async get(base: string, id: string): Promise<GetResult> {
    this.calls.push(`get ${base} ${id}`);
    if (this.gone.has(base)) return unreachable;
    const p = this.on(base, id);
    return p ? { kind: 'ok', body: structuredClone(p.record) } : { kind: 'not-found' };
  }

  async cancel(base: string, id: string): Promise<boolean> {
    this.calls.push(`cancel ${base} ${id}`);
    if (this.gone.has(base)) return false;
    const p = this.on(base, id);
    if (!p) return false;
    if (!isTerminal(p.record.status)) this.end(id, { status: 'canceled' });
    return true;
  }

  stream(
    base: string,
    id: string,
    lastEventId: number,
    onEvent: (e: StreamEvent) => void,
    signal?: AbortSignal,
  ): Promise<'done' | 'ended'> {
    this.calls.push(`stream ${base} ${id} ${lastEventId}`);
    if (this.gone.has(base)) return Promise.reject(new Error('connect ECONNREFUSED'));
    const p = this.on(base, id);
    if (!p) return Promise.reject(new Error('the stream answered 404'));
    return new Promise((resolve, reject) => {
      for (const e of p.events) if (e.id > lastEventId) onEvent(e);
      if (p.events.at(-1)?.event === 'done') return resolve('done');
      p.stream = { onEvent, resolve, reject };
      signal?.addEventListener(
        'abort',
        () => {
          if (p.stream?.onEvent === onEvent) p.stream = undefined;
          resolve('ended');
        },
        { once: true },
      );
    });
  }

  // --- what the test makes the instances do ------------------------------------------------

  /** Answers a create that an instance answering `hold` kept waiting: it takes it now. */
  release(id: string): void {
    this.held.get(id)?.();
    this.held.delete(id);
  }

  /** The model writes logs (the prediction is then processing). */
  log(id: string, text: string): void {
    const p = this.must(id);
    p.record.status = 'processing';
    p.record.logs = `${p.record.logs ?? ''}${text}`;
    this.send(p, 'logs', text);
  }

  /** The model yields an output item (outputs are a list). */
  output(id: string, item: string): void {
    const p = this.must(id);
    p.record.status = 'processing';
    p.record.output = [...((p.record.output as string[] | null) ?? []), item];
    this.send(p, 'output', item);
  }

  /** The prediction ends on the instance: its final record, then the `done` event. */
  end(id: string, final: Partial<InstancePrediction> & { status: TerminalStatus }): void {
    const p = this.must(id);
    Object.assign(p.record, final);
    if (final.status === 'failed') this.send(p, 'error', final.error ?? 'failed');
    this.send(p, 'done', final.status === 'succeeded' ? '{}' : '{"reason":"error"}');
    p.stream?.resolve('done');
    p.stream = undefined;
  }

  /** The event stream of a prediction breaks (the prediction goes on running). */
  dropStream(id: string, error = 'socket hang up'): void {
    const p = this.must(id);
    p.stream?.reject(new Error(error));
    p.stream = undefined;
  }

  /** The instance goes away: it answers nothing more and its streams break. */
  kill(base: string): void {
    this.gone.add(base);
    for (const p of this.predictions.values()) {
      if (p.base !== base) continue;
      p.stream?.reject(new Error('read ECONNRESET'));
      p.stream = undefined;
    }
  }

  /** The instance restarts: it no longer knows the predictions it ran. */
  restart(base: string): void {
    for (const [id, p] of this.predictions) {
      if (p.base !== base) continue;
      p.stream?.reject(new Error('socket hang up'));
      this.predictions.delete(id);
    }
  }

  /** The predictions whose stream the engine follows now. */
  followed(): string[] {
    return [...this.predictions].filter(([, p]) => p.stream).map(([id]) => id);
  }

  /** Calls made to `verb` (create, get, cancel, stream), without their arguments' ids. */
  count(verb: string): number {
    return this.calls.filter((c) => c.startsWith(`${verb} `)).length;
  }

  private take(base: string, id: string): CreateResult {
    const record: InstancePrediction = { id, status: 'starting', output: null, logs: '' };
    this.predictions.set(id, { base, record, events: [], stream: undefined });
    return { kind: 'accepted', body: structuredClone(record) };
  }

  private on(base: string, id: string): OnInstance | undefined {
    const p = this.predictions.get(id);
    return p?.base === base ? p : undefined;
  }

  private must(id: string): OnInstance {
    const p = this.predictions.get(id);
    if (!p) throw new Error(`no instance runs ${id}`);
    return p;
  }

  private send(p: OnInstance, event: StreamEventName, data: string): void {
    const e = { id: p.events.length + 1, event, data };
    p.events.push(e);
    p.stream?.onEvent(e);
  }
}

/**
 * A FakeClock that knows when its next timer is due, so a test can move time from one timer to
 * the next and let the engine's promises settle in between, as they would in real time.
 */
export class SteppingClock extends FakeClock {
  private readonly due = new Set<{ at: number }>();

  override setTimer(fn: () => void, ms: number): Timer {
    const entry = { at: this.now() + Math.max(0, ms) };
    this.due.add(entry);
    const timer = super.setTimer(() => {
      this.due.delete(entry);
      fn();
    }, ms);
    return {
      cancel: () => {
        this.due.delete(entry);
        timer.cancel();
      },
    };
  }

  /** When the next timer is due, if any. */
  nextAt(): number | undefined {
    let next: number | undefined;
    for (const { at } of this.due) if (next === undefined || at < next) next = at;
    return next;
  }
}

export const NS = 'ns';
/** 2026-01-01T00:00:00Z: the fake clock's start. */
export const T0 = Date.UTC(2026, 0, 1);

export interface FakeEngine {
  engine: PredictionEngine;
  clock: SteppingClock;
  catalog: StaticCatalog;
  endpoints: StaticEndpoints;
  instances: FakeInstances;
  /** The engine's store. */
  store: PredictionStore;
  /** The stored stream events of prediction `id`. */
  events(id: string): Promise<StreamEvent[]>;
  /** Deployments the engine poked the autoscaler for, in order. */
  pokes: string[];
  /** Creates a prediction on `ns/d`. */
  create(
    input?: Record<string, unknown>,
    over?: Partial<CreateRequest>,
  ): ReturnType<PredictionEngine['create']>;
  /** Lets every promise the engine has in flight settle (no time passes). */
  settle(): Promise<void>;
  /**
   * Moves the clock forward by `ms`, from one due timer to the next, letting the engine's
   * promises settle before and after each (what a timer starts may start the next timer).
   */
  advance(ms: number): Promise<void>;
}

/** An engine on a FakeClock in front of deployment `ns/d` (no instance until the test sets one). */
export function engineOnFakeClock(
  opts: {
    deployment?: Partial<DeploymentView>;
    engine?: Partial<EngineOptions>;
    /** The instances (default: new ones); another engine's, for one that restarted. */
    instances?: FakeInstances;
    /** The clock (default: a new one at T0); another engine's, for replicas side by side. */
    clock?: SteppingClock;
  } = {},
): FakeEngine {
  const clock = opts.clock ?? new SteppingClock(T0);
  const catalog = new StaticCatalog();
  catalog.setDeployment({
    namespace: NS,
    name: 'd',
    model: 'm',
    versionId: 'a'.repeat(64),
    maxConcurrency: 1,
    maxLength: 100,
    maxWaitSeconds: 60,
    conditions: [
      { type: 'Ready', status: 'False', reason: 'ScaledToZero', message: 'no instances: scaled to zero' },
    ],
    ...opts.deployment,
  });
  const endpoints = new StaticEndpoints();
  const instances = opts.instances ?? new FakeInstances();
  const pokes: string[] = [];
  const store = opts.engine?.store ?? new MemoryStore({ clock });
  const engine = new PredictionEngine({
    catalog,
    endpoints,
    sidecar: instances,
    clock,
    log: pino({ level: 'silent' }),
    ...opts.engine,
    store,
  });
  engine.onPoke((ns, name) => pokes.push(`${ns}/${name}`));
  const settle = async () => {
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  return {
    engine,
    clock,
    catalog,
    endpoints,
    instances,
    store,
    events: (id) => store.events(id, 0),
    pokes,
    create: (input = {}, over = {}) =>
      engine.create({ namespace: NS, deployment: 'd', input, baseUrl: 'http://gw/v1', ...over }),
    settle,
    advance: async (ms) => {
      await settle();
      const end = clock.now() + ms;
      for (let at = clock.nextAt(); at !== undefined && at <= end; at = clock.nextAt()) {
        clock.advance(at - clock.now());
        await settle();
      }
      clock.advance(end - clock.now());
      await settle();
    },
  };
}
