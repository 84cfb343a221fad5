/**
 * An informer keeps a local copy of one kind of object (a cache keyed by namespace/name)
 * and tells handlers what changed. It lists once, then watches from the list's
 * resourceVersion, resuming each new watch from the last resourceVersion it saw.
 *
 * - 410 Gone (as an HTTP status or as a watch ERROR event): the resourceVersion is too old,
 *   so it lists again and reports the difference as adds, updates and deletes.
 * - Any other error: it retries, from the same resourceVersion, after an exponential backoff.
 * - A watch that brings neither an event nor a bookmark for `silenceTimeoutMs` is presumed
 *   broken (a half-open connection, a stuck server): it is dropped and the informer re-lists.
 * - A handler that throws is logged; the informer and the process carry on.
 *
 * Objects in the cache are shared with every handler and reader: treat them as read-only.
 * They come without `metadata.managedFields` (often half an object's size), unless
 * `managedFieldsDepth` keeps them: the entries, with their `fieldsV1` cut that many levels
 * deep (2 answers "does this manager own `spec.replicas`?").
 */
import { Backoff } from '../../lib/backoff.ts';
import { realClock, sleep, type Timer } from '../../lib/clock.ts';
import {
  ApiError,
  isGone,
  type KubeClient,
  type KubeObject,
  type ResourceType,
  resourcePath,
  type WatchEvent,
  type WatchStream,
} from './client.ts';
import { type Logger, silentLogger } from './log.ts';

export interface EventHandler<T> {
  onAdd?(obj: T): void;
  onUpdate?(oldObj: T, newObj: T): void;
  onDelete?(obj: T): void;
}

export interface InformerOptions {
  /** Only this namespace (default: all namespaces). */
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /**
   * Keep `metadata.managedFields` in the cached objects, each entry's `fieldsV1` cut to this
   * many levels (default: no managedFields at all).
   */
  managedFieldsDepth?: number;
  /** Re-list when a watch is silent this long (default 5 min; the server bookmarks every minute). */
  silenceTimeoutMs?: number;
  /** Delays between retries after errors (default 800 ms doubling to 30 s, with jitter). */
  backoff?: Backoff;
  log?: Logger;
}

/** Drops `obj.metadata.managedFields`, or cuts each entry's `fieldsV1` to `depth` levels. */
export function trimManagedFields(obj: KubeObject, depth: number | undefined): void {
  const meta = obj.metadata;
  if (!meta?.managedFields) return;
  if (depth === undefined) {
    delete meta.managedFields;
    return;
  }
  for (const f of meta.managedFields)
    if (f.fieldsV1) f.fieldsV1 = cut(f.fieldsV1, depth) as typeof f.fieldsV1;
}

function cut(node: unknown, depth: number): unknown {
  if (!node || typeof node !== 'object') return node;
  if (depth <= 0) return {};
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(node as Record<string, unknown>)) out[k] = cut(v, depth - 1);
  return out;
}

/** The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects. */
export function objectKey(obj: KubeObject): string {
  const { name, namespace } = obj.metadata ?? {};
  if (!name) throw new Error(`a ${obj.kind ?? 'object'} without metadata.name`);
  return namespace ? `${namespace}/${name}` : name;
}

/** The inverse of `objectKey`. */
export function splitKey(key: string): { namespace: string | undefined; name: string } {
  const slash = key.indexOf('/');
  return slash < 0
    ? { namespace: undefined, name: key }
    : { namespace: key.slice(0, slash), name: key.slice(slash + 1) };
}

/** The watch brought nothing for longer than the silence timeout. */
class SilentWatchError extends Error {
  constructor(ms: number) {
    super(`no event or bookmark for ${ms} ms`);
    this.name = 'SilentWatchError';
  }
}

export class Informer<T extends KubeObject = KubeObject> {
  readonly type: ResourceType<T>;
  readonly namespace: string | undefined;
  private readonly client: KubeClient;
  private readonly opts: InformerOptions;
  private readonly silenceMs: number;
  private readonly log: Logger;
  private readonly store = new Map<string, T>();
  /** Indexes: name → (value → keys of the objects with that value). */
  private readonly indexers = new Map<string, (obj: T) => string | undefined>();
  private readonly indexes = new Map<string, Map<string, Set<string>>>();
  private handlers: EventHandler<T>[] = [];
  private resourceVersion: string | undefined;
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private lists = 0;
  private abort: AbortController | undefined;
  private loop: Promise<void> | undefined;

  constructor(client: KubeClient, type: ResourceType<T>, opts: InformerOptions = {}) {
    this.client = client;
    this.type = type;
    this.namespace = opts.namespace;
    this.opts = opts;
    this.silenceMs = opts.silenceTimeoutMs ?? 5 * 60_000;
    this.log = (opts.log ?? silentLogger).child({
      informer: opts.namespace
        ? `${type.plural}.${type.apiVersion} in ${opts.namespace}`
        : `${type.plural}.${type.apiVersion}`,
    });
  }

  /** True once the first list has filled the cache (it stays true across re-lists). */
  hasSynced(): boolean {
    return this.synced;
  }

  /** How many lists have completed: 1 after the initial one, one more for each re-list. */
  get listCount(): number {
    return this.lists;
  }

  /** The resourceVersion the cache reflects (undefined before the first list). */
  get lastResourceVersion(): string | undefined {
    return this.resourceVersion;
  }

  get isRunning(): boolean {
    return this.abort !== undefined;
  }

  /** Resolves once the cache has synced; rejects after `timeoutMs` or when `signal` aborts. */
  waitForSync(opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const cleanup = () => {
        if (timer) clearTimeout(timer);
        opts.signal?.removeEventListener('abort', onAbort);
        this.syncWaiters = this.syncWaiters.filter((w) => w !== onSync);
      };
      const onSync = () => {
        cleanup();
        resolve();
      };
      const onAbort = () => {
        cleanup();
        reject(new Error(`stopped before ${this.type.plural} synced`));
      };
      const timer =
        opts.timeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              cleanup();
              reject(new Error(`${this.type.plural} did not sync within ${opts.timeoutMs} ms`));
            }, opts.timeoutMs);
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.syncWaiters.push(onSync);
    });
  }

  get(name: string, namespace?: string): T | undefined {
    return this.store.get(namespace ? `${namespace}/${name}` : name);
  }

  getByKey(key: string): T | undefined {
    return this.store.get(key);
  }

  /** Every cached object, or those of one namespace. */
  list(namespace?: string): T[] {
    if (namespace === undefined) return [...this.store.values()];
    const out: T[] = [];
    for (const o of this.store.values()) if (o.metadata?.namespace === namespace) out.push(o);
    return out;
  }

  /**
   * Keeps an index of the cache by `value(obj)` (a label, say), so `byIndex` finds the objects
   * with one value without walking the whole cache. Add it before the informer starts.
   */
  addIndex(name: string, value: (obj: T) => string | undefined): void {
    if (this.indexers.has(name)) return;
    this.indexers.set(name, value);
    const index = new Map<string, Set<string>>();
    this.indexes.set(name, index);
    for (const [key, obj] of this.store) this.indexOne(index, value, key, obj);
  }

  /** The cached objects whose index `name` has `value` (see `addIndex`). */
  byIndex(name: string, value: string): T[] {
    const index = this.indexes.get(name);
    if (!index) throw new Error(`no index ${name} on ${this.type.plural}`);
    const out: T[] = [];
    for (const key of index.get(value) ?? []) {
      const obj = this.store.get(key);
      if (obj) out.push(obj);
    }
    return out;
  }

  private indexOne(
    index: Map<string, Set<string>>,
    value: (obj: T) => string | undefined,
    key: string,
    obj: T,
  ): void {
    const v = value(obj);
    if (v === undefined) return;
    const keys = index.get(v);
    if (keys) keys.add(key);
    else index.set(v, new Set([key]));
  }

  private unindexOne(
    index: Map<string, Set<string>>,
    value: (obj: T) => string | undefined,
    key: string,
    obj: T,
  ) {
    const v = value(obj);
    if (v === undefined) return;
    const keys = index.get(v);
    keys?.delete(key);
    if (keys?.size === 0) index.delete(v);
  }

  /** Puts `obj` in the cache under `key` (undefined: removes it), keeping the indexes. */
  private put(key: string, obj: T | undefined): void {
    if (obj) trimManagedFields(obj, this.opts.managedFieldsDepth);
    const prev = this.store.get(key);
    for (const [name, value] of this.indexers) {
      const index = this.indexes.get(name) as Map<string, Set<string>>;
      if (prev) this.unindexOne(index, value, key, prev);
      if (obj) this.indexOne(index, value, key, obj);
    }
    if (obj) this.store.set(key, obj);
    else this.store.delete(key);
  }

  keys(): string[] {
    return [...this.store.keys()];
  }

  /**
   * Registers handlers; they run synchronously, in event order, and should only enqueue
   * keys. Added after the cache synced, `onAdd` first runs for every cached object.
   * Returns a function that removes them.
   */
  addEventHandler(handler: EventHandler<T>): () => void {
    this.handlers.push(handler);
    if (this.synced) for (const obj of this.store.values()) this.call('onAdd', () => handler.onAdd?.(obj));
    return () => {
      this.handlers = this.handlers.filter((h) => h !== handler);
    };
  }

  /** Starts listing and watching in the background; after a `stop`, resumes where it stopped. */
  start(): void {
    if (this.abort) return;
    const abort = new AbortController();
    this.abort = abort;
    this.loop = this.run(abort.signal).catch((err) => this.log.error({ err }, 'informer stopped by a bug'));
  }

  /** Stops watching; the cache and resourceVersion are kept. */
  async stop(): Promise<void> {
    this.abort?.abort();
    this.abort = undefined;
    await this.loop;
  }

  private async run(signal: AbortSignal): Promise<void> {
    const backoff = this.opts.backoff ?? new Backoff();
    while (!signal.aborted) {
      try {
        if (this.resourceVersion === undefined) {
          await this.relist();
          backoff.reset();
        }
        const started = Date.now();
        const events = await this.watchOnce(signal);
        if (events > 0) backoff.reset();
        // A watch the server ends at once, with nothing in it, must not become a busy loop.
        else if (Date.now() - started < 1_000) await sleep(backoff.next(), signal);
      } catch (err) {
        if (signal.aborted) break;
        if (isGone(err) && this.resourceVersion !== undefined) {
          this.log.info(
            { resourceVersion: this.resourceVersion },
            'resourceVersion expired (410 Gone); re-listing',
          );
          this.resourceVersion = undefined;
          continue;
        }
        if (err instanceof SilentWatchError) {
          this.log.warn({ silenceMs: this.silenceMs }, 'the watch went silent; re-listing');
          this.resourceVersion = undefined;
          continue;
        }
        const delayMs = backoff.next();
        this.log.warn({ err, delayMs }, 'list/watch failed; retrying');
        await sleep(delayMs, signal);
      }
    }
  }

  /** Lists everything and reports the difference with the cache to the handlers. */
  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.list(this.type, {
      namespace: this.opts.namespace,
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
    });
    const old = new Map(this.store);
    this.store.clear();
    for (const index of this.indexes.values()) index.clear();
    for (const obj of items) this.put(objectKey(obj), obj);
    this.resourceVersion = resourceVersion;
    this.lists++;
    for (const [key, obj] of this.store) {
      const prev = old.get(key);
      if (!prev) this.emit('onAdd', obj);
      else if (prev.metadata?.resourceVersion !== obj.metadata?.resourceVersion)
        this.emit('onUpdate', prev, obj);
    }
    for (const [key, prev] of old) if (!this.store.has(key)) this.emit('onDelete', prev);
    this.log.debug({ objects: items.length, resourceVersion, lists: this.lists }, 'listed');
    if (!this.synced) {
      this.synced = true;
      for (const wake of this.syncWaiters.splice(0)) wake();
    }
  }

  /** One watch from the current resourceVersion; resolves with its event count when it ends cleanly. */
  private async watchOnce(signal: AbortSignal): Promise<number> {
    let events = 0;
    let watchdog: Timer | undefined;
    let stream: WatchStream | undefined;
    const arm = () => {
      watchdog?.cancel();
      watchdog = realClock.setTimer(() => stream?.stop(new SilentWatchError(this.silenceMs)), this.silenceMs);
    };
    stream = this.client.watch(
      this.type,
      {
        namespace: this.opts.namespace,
        labelSelector: this.opts.labelSelector,
        fieldSelector: this.opts.fieldSelector,
        resourceVersion: this.resourceVersion,
        allowWatchBookmarks: true,
        // Like client-go: the server ends each watch after 5 to 10 minutes, spreading reconnects.
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      },
      (event) => {
        arm();
        events++;
        this.apply(event);
      },
    );
    const onAbort = () => stream?.stop();
    signal.addEventListener('abort', onAbort, { once: true });
    if (signal.aborted) stream.stop(); // stopped before the listener was in place
    arm();
    try {
      await stream.done;
    } finally {
      watchdog?.cancel();
      signal.removeEventListener('abort', onAbort);
    }
    return events;
  }

  private apply(event: WatchEvent<T>): void {
    const obj = event.object;
    switch (event.type) {
      case 'ADDED':
      case 'MODIFIED': {
        const key = objectKey(obj);
        const prev = this.store.get(key);
        this.put(key, obj);
        this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
        if (prev) this.emit('onUpdate', prev, obj);
        else this.emit('onAdd', obj);
        return;
      }
      case 'DELETED': {
        const key = objectKey(obj);
        const prev = this.store.get(key);
        this.put(key, undefined);
        this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
        this.emit('onDelete', prev ?? obj);
        return;
      }
      case 'BOOKMARK':
        this.resourceVersion = obj.metadata?.resourceVersion ?? this.resourceVersion;
        return;
      case 'ERROR': {
        const status = obj as { code?: number; reason?: string; message?: string };
        throw new ApiError(
          status.code ?? 500,
          status.message ?? 'watch error',
          status.reason,
          'WATCH',
          resourcePath(this.type, { namespace: this.opts.namespace }),
        );
      }
    }
  }

  private emit(kind: 'onAdd' | 'onDelete', obj: T): void;
  private emit(kind: 'onUpdate', oldObj: T, newObj: T): void;
  private emit(kind: keyof EventHandler<T>, a: T, b?: T): void {
    for (const h of this.handlers) {
      this.call(kind, () => (kind === 'onUpdate' ? h.onUpdate?.(a, b as T) : h[kind]?.(a)));
    }
  }

  private call(kind: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.error({ err, handler: kind }, 'event handler failed');
    }
  }
}
