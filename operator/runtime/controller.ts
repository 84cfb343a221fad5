/**
 * A controller: informers feed keys into a work queue, N workers take keys out and call
 * `reconcile(key)`. Reconciles are level-triggered: a key says "look at this object again",
 * never what changed, so the reconciler reads the current state from the informer's cache.
 *
 * Outcomes of a reconcile:
 * - it returns nothing: done; the key's failure history is forgotten;
 * - `{ requeueAfter: ms }`: done, and reconcile again after `ms`;
 * - `{ requeue: true }`: reconcile again after the key's backoff delay;
 * - it throws: retried after the key's backoff delay (5 ms doubling to 1000 s), unless the
 *   error is a `TerminalError`, which is logged and not retried until the object changes.
 */
import { randomUUID } from 'node:crypto';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';
import { apiGroup, type KubeObject, type ResourceType } from './client.ts';
import { isFenced } from './fence.ts';
import { type EventHandler, objectKey, splitKey } from './informer.ts';
import { type Logger, silentLogger } from './log.ts';
import type { ReconcileResultLabel, RuntimeMetrics } from './metrics.ts';
import { type RateLimiter, WorkQueue } from './workqueue.ts';

export interface ReconcileResult {
  /** Reconcile again after this many milliseconds. */
  requeueAfter?: number;
  /** Reconcile again after the key's backoff delay. */
  requeue?: boolean;
}

export interface ReconcileContext {
  /** A child logger carrying controller, kind, namespace, name and a reconcileID. */
  log: Logger;
  namespace: string | undefined;
  name: string;
  /**
   * Aborts when the controller stops (this replica lost the Lease, or shuts down): writes
   * through the manager's `leaderClient` fail from then on; long waits should end too.
   */
  signal: AbortSignal;
}

// biome-ignore lint/suspicious/noConfusingVoidType: a reconciler with nothing to ask returns nothing.
export type Reconcile = (key: string, ctx: ReconcileContext) => Promise<ReconcileResult | void>;

/** A failure that retrying cannot fix (invalid spec, say): logged and counted, not retried. */
export class TerminalError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'TerminalError';
  }
}

/** What a controller needs of an informer (Informer provides it; unit tests fake it). */
export interface Source<T extends KubeObject = KubeObject> {
  readonly type: ResourceType<T>;
  addEventHandler(handler: EventHandler<T>): () => void;
  waitForSync(opts?: { signal?: AbortSignal }): Promise<void>;
  keys(): string[];
}

/** Another kind of object whose changes concern some primary objects. */
export interface Watch<T extends KubeObject = KubeObject> {
  source: Source<T>;
  /** The primary keys an object of this kind concerns. */
  map: (obj: T) => string[];
  /**
   * Whether an update matters to the primary objects (default: every update does). A
   * controller that reads only an object's spec ignores its status writes with
   * `specChanged`, so that one HardwareClass's status does not reconcile every Deployment.
   */
  changed?: (old: T, obj: T) => boolean;
  /**
   * Queue the keys this long after the event rather than at once: a burst of events (a
   * thousand Deployments of one Model applied together) becomes one reconcile per period.
   */
  delayMs?: number;
}

/** An update changed the object's spec (its generation), not only its status or metadata. */
export function specChanged(old: KubeObject, obj: KubeObject): boolean {
  return old.metadata?.generation !== obj.metadata?.generation;
}

export interface ControllerOptions<T extends KubeObject = KubeObject> {
  /** Names the controller in logs, metrics (`controller` label) and its queue (`name` label). */
  name: string;
  /** The primary kind: its keys are what `reconcile` receives. */
  for: Source<T>;
  /** Kinds this controller creates: a change to one reconciles its controlling owner. */
  owns?: Source[];
  watches?: Watch[];
  reconcile: Reconcile;
  /** Concurrent reconciles (default 1); one key is never reconciled twice at once. */
  workers?: number;
  /** Reconcile every cached primary object this often (default: never). */
  resyncPeriodMs?: number;
  log?: Logger;
  metrics?: RuntimeMetrics;
  clock?: Clock;
  /** A fresh rate limiter for each run (default: client-go's). */
  rateLimiter?: () => RateLimiter;
}

/** The keys of the owners of `obj` of kind `owner` that control it (`controller: true`). */
export function controllerOwnerKeys(obj: KubeObject, owner: ResourceType): string[] {
  const group = apiGroup(owner.apiVersion);
  return (obj.metadata?.ownerReferences ?? [])
    .filter((r) => r.controller && r.kind === owner.kind && apiGroup(r.apiVersion) === group)
    .map((r) =>
      owner.namespaced && obj.metadata?.namespace ? `${obj.metadata.namespace}/${r.name}` : r.name,
    );
}

export class Controller<T extends KubeObject = KubeObject> {
  readonly name: string;
  private readonly opts: ControllerOptions<T>;
  private readonly workers: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private queue: WorkQueue | undefined;
  private unregister: (() => void)[] = [];
  private resyncTimer: Timer | undefined;
  private active = 0;
  private signal: AbortSignal = new AbortController().signal;

  constructor(opts: ControllerOptions<T>) {
    this.name = opts.name;
    this.opts = opts;
    this.workers = Math.max(1, opts.workers ?? 1);
    this.clock = opts.clock ?? realClock;
    this.log = (opts.log ?? silentLogger).child({ controller: opts.name });
    opts.metrics?.initController(opts.name, this.workers);
  }

  /** Every source the controller reads: the primary first. */
  get sources(): Source[] {
    return [
      this.opts.for as Source,
      ...(this.opts.owns ?? []),
      ...(this.opts.watches ?? []).map((w) => w.source),
    ];
  }

  get isRunning(): boolean {
    return this.queue !== undefined;
  }

  /** Keys waiting in the queue. */
  get queueLength(): number {
    return this.queue?.length ?? 0;
  }

  /**
   * Subscribes to the sources, waits until their caches have synced, queues every primary
   * object, and starts the workers. The sources must be started by the caller.
   */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.queue) return;
    this.signal = signal ?? new AbortController().signal;
    const queue = new WorkQueue({
      clock: this.clock,
      rateLimiter: this.opts.rateLimiter?.(),
      metrics: this.opts.metrics?.queue(this.name),
    });
    this.queue = queue;
    this.subscribe(queue);
    try {
      await Promise.all(this.sources.map((s) => s.waitForSync({ signal })));
    } catch (err) {
      await this.stop(0);
      throw err;
    }
    if (this.queue !== queue) return; // stopped while waiting
    this.enqueueAll();
    for (let i = 0; i < this.workers; i++) void this.work(queue);
    this.scheduleResync(queue);
    this.log.info({ workers: this.workers }, 'controller started');
  }

  /**
   * Stops taking work and waits up to `timeoutMs` for reconciles in flight. Resolves true
   * when they all finished in time. `start` may be called again afterwards.
   */
  async stop(timeoutMs = 30_000): Promise<boolean> {
    const queue = this.queue;
    if (!queue) return true;
    this.queue = undefined;
    for (const off of this.unregister.splice(0)) off();
    this.resyncTimer?.cancel();
    const drained = await queue.shutDownWithDrain(timeoutMs);
    if (drained) this.log.info('controller stopped');
    else
      this.log.warn({ timeoutMs, inFlight: this.active }, 'controller stopped with reconciles still running');
    return drained;
  }

  /** Queues a key for reconciling. */
  enqueue(key: string): void {
    this.queue?.add(key);
  }

  /** Queues every object in the primary cache. */
  enqueueAll(): void {
    for (const key of this.opts.for.keys()) this.enqueue(key);
  }

  private subscribe(queue: WorkQueue): void {
    const add = (key: string) => queue.add(key);
    const primary: EventHandler<T> = {
      onAdd: (obj) => add(objectKey(obj)),
      onUpdate: (_old, obj) => add(objectKey(obj)),
      onDelete: (obj) => add(objectKey(obj)),
    };
    this.unregister.push(this.opts.for.addEventHandler(primary));
    const owner = this.opts.for.type as ResourceType;
    const mapped = (map: (obj: KubeObject) => string[]): EventHandler<KubeObject> => ({
      onAdd: (obj) => map(obj).forEach(add),
      onUpdate: (old, obj) => new Set([...map(old), ...map(obj)]).forEach(add),
      onDelete: (obj) => map(obj).forEach(add),
    });
    for (const source of this.opts.owns ?? []) {
      this.unregister.push(source.addEventHandler(mapped((obj) => controllerOwnerKeys(obj, owner))));
    }
    for (const w of this.opts.watches ?? []) {
      const delay = w.delayMs ?? 0;
      const queue1 = delay > 0 ? (key: string) => queue.addAfter(key, delay) : add;
      const changed = w.changed;
      this.unregister.push(
        w.source.addEventHandler({
          onAdd: (obj) => w.map(obj).forEach(queue1),
          onUpdate: (old, obj) => {
            if (changed && !changed(old, obj)) return;
            new Set([...w.map(old), ...w.map(obj)]).forEach(queue1);
          },
          onDelete: (obj) => w.map(obj).forEach(queue1),
        }),
      );
    }
  }

  private scheduleResync(queue: WorkQueue): void {
    const period = this.opts.resyncPeriodMs;
    if (!period) return;
    this.resyncTimer = this.clock.setTimer(() => {
      if (this.queue !== queue) return;
      this.enqueueAll();
      this.scheduleResync(queue);
    }, period);
  }

  private async work(queue: WorkQueue): Promise<void> {
    for (;;) {
      const key = await queue.get();
      if (key === undefined) return;
      this.active++;
      this.opts.metrics?.activeWorkers.set({ controller: this.name }, this.active);
      try {
        await this.reconcileOne(queue, key);
      } finally {
        this.active--;
        this.opts.metrics?.activeWorkers.set({ controller: this.name }, this.active);
        queue.done(key);
      }
    }
  }

  private async reconcileOne(queue: WorkQueue, key: string): Promise<void> {
    const { namespace, name } = splitKey(key);
    // Made when first used: most reconciles log nothing, and a child logger costs its bindings.
    let child: Logger | undefined;
    const base = this.log;
    const kind = this.opts.for.type.kind;
    const logger = () => (child ??= base.child({ kind, namespace, name, reconcileID: randomUUID() }));
    const signal = this.signal;
    const metrics = this.opts.metrics;
    const started = this.clock.now();
    let result: ReconcileResultLabel = 'success';
    try {
      const res = await this.opts.reconcile(key, {
        get log() {
          return logger();
        },
        namespace,
        name,
        signal,
      });
      if (res?.requeueAfter !== undefined && res.requeueAfter > 0) {
        queue.forget(key);
        queue.addAfter(key, res.requeueAfter);
        result = 'requeue_after';
      } else if (res?.requeue) {
        queue.addRateLimited(key);
        result = 'requeue';
      } else {
        queue.forget(key);
      }
    } catch (err) {
      result = 'error';
      metrics?.reconcileErrors.inc({ controller: this.name });
      if (signal.aborted && isFenced(err)) {
        // This replica stopped leading mid-reconcile: its successor reconciles the key.
        queue.forget(key);
        logger().info({ err: (err as Error).message }, 'reconcile stopped: this replica no longer leads');
      } else if (err instanceof TerminalError) {
        metrics?.terminalReconcileErrors.inc({ controller: this.name });
        queue.forget(key);
        logger().error({ err }, 'reconcile failed with a terminal error; not retrying');
      } else {
        queue.addRateLimited(key);
        logger().error({ err, retries: queue.retries(key) }, 'reconcile failed; will retry');
      }
    } finally {
      metrics?.reconcileTime.observe({ controller: this.name }, (this.clock.now() - started) / 1000);
      metrics?.reconcileTotal.inc({ controller: this.name, result });
    }
  }
}
