/**
 * A small JSON client for the Kubernetes API. @kubernetes/client-node's KubeConfig loads the
 * kubeconfig (or the in-cluster service account) and supplies TLS and credentials; requests
 * go out over node:https, so the runtime controls timeouts, streaming and errors itself.
 *
 * Objects travel as the API server writes them: plain JSON, timestamps as RFC 3339 strings.
 * A `ResourceType` names what a request is about (no discovery round trips).
 */
import * as http from 'node:http';
import * as https from 'node:https';
import { KubeConfig } from '@kubernetes/client-node';
import type { IObjectMeta } from '@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta';
import type { IOwnerReference } from '@kubernetes-models/apimachinery/apis/meta/v1/OwnerReference';
import { FencedError, type WriteFence } from './fence.ts';

/**
 * An object as the API server sends it: its metadata typed by `@kubernetes-models`, the rest
 * by the kind (`ResourceType<T>`).
 */
export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata?: IObjectMeta;
}

export type OwnerReference = IOwnerReference;

/**
 * A built-in kind typed by `kubernetes-models` (`Listed<IPod>`) as the API server sends it:
 * apiVersion and kind are optional, since it leaves them out of the items of a list.
 */
export type Listed<T extends { apiVersion: string; kind: string }> = Omit<T, 'apiVersion' | 'kind'> & {
  apiVersion?: T['apiVersion'];
  kind?: T['kind'];
};

/** A kind of object and where it is served. `T` only types what the client returns. */
export interface ResourceType<T extends KubeObject = KubeObject> {
  /** `v1` for the core group, otherwise `group/version`. */
  apiVersion: string;
  kind: string;
  /** The resource name in URLs, e.g. `configmaps`. */
  plural: string;
  namespaced: boolean;
  /** Never set: carries `T` for type inference. */
  readonly object?: T;
}

/** Declares a ResourceType whose objects have the type `T`. */
export function resourceType<T extends KubeObject>(r: Omit<ResourceType<T>, 'object'>): ResourceType<T> {
  return r;
}

/** The API group of an apiVersion (`''` for the core group). */
export function apiGroup(apiVersion: string): string {
  const slash = apiVersion.indexOf('/');
  return slash < 0 ? '' : apiVersion.slice(0, slash);
}

export function resourcePath(
  type: ResourceType,
  where: { namespace?: string; name?: string; subresource?: string } = {},
): string {
  const root = type.apiVersion.includes('/') ? `/apis/${type.apiVersion}` : `/api/${type.apiVersion}`;
  let path = root;
  if (type.namespaced && where.namespace) path += `/namespaces/${encodeURIComponent(where.namespace)}`;
  path += `/${type.plural}`;
  if (where.name !== undefined) path += `/${encodeURIComponent(where.name)}`;
  if (where.subresource) path += `/${where.subresource}`;
  return path;
}

/** The API server's answer to a failed request (its `Status` object, when it sent one). */
export class ApiError extends Error {
  readonly code: number;
  readonly reason: string | undefined;
  readonly method: string;
  readonly path: string;

  constructor(code: number, message: string, reason: string | undefined, method: string, path: string) {
    super(`${method} ${path}: ${code}${reason ? ` ${reason}` : ''}: ${message}`);
    this.name = 'ApiError';
    this.code = code;
    this.reason = reason;
    this.method = method;
    this.path = path;
  }
}

export const isNotFound = (err: unknown): boolean => err instanceof ApiError && err.code === 404;
export const isConflict = (err: unknown): boolean => err instanceof ApiError && err.code === 409;
/** 410 Gone: a resourceVersion (or continue token) older than what the server still has. */
export const isGone = (err: unknown): boolean => err instanceof ApiError && err.code === 410;

export interface ListResult<T> {
  items: T[];
  /** The collection's resourceVersion: watch from here to see every later change. */
  resourceVersion: string;
}

export interface ListOptions {
  namespace?: string;
  labelSelector?: string;
  fieldSelector?: string;
  /** Page size (default 500); pages are fetched until the list is complete. */
  limit?: number;
}

export interface WatchEvent<T> {
  type: 'ADDED' | 'MODIFIED' | 'DELETED' | 'BOOKMARK' | 'ERROR';
  object: T;
}

export interface WatchOptions extends Omit<ListOptions, 'limit'> {
  resourceVersion?: string;
  allowWatchBookmarks?: boolean;
  /** The server ends the watch after this long (a clean end, not an error). */
  timeoutSeconds?: number;
}

/** An open watch. `done` resolves when the server ends it or `stop` is called, and rejects on errors. */
export interface WatchStream {
  done: Promise<void>;
  stop(reason?: Error): void;
}

export interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  body?: unknown;
  contentType?: string;
  /** Fails the request if the connection is idle this long (default 30 s). */
  timeoutMs?: number;
}

export interface KubeClientOptions {
  /** Called once per finished request, with its HTTP status (0 when no answer came). */
  onResponse?: (method: string, code: number) => void;
}

const keepAlive = { https: new https.Agent({ keepAlive: true }), http: new http.Agent({ keepAlive: true }) };

export const APPLY_PATCH = 'application/apply-patch+yaml';
export const MERGE_PATCH = 'application/merge-patch+json';

/** Methods that only read: a fenced client lets them through. */
const READS = new Set(['GET', 'HEAD', 'OPTIONS']);

export class KubeClient {
  readonly kubeConfig: KubeConfig;
  readonly server: string;
  /** Gates this client's writes (see fence.ts); undefined for an unfenced client. */
  readonly fence: WriteFence | undefined;
  private readonly onResponse: ((method: string, code: number) => void) | undefined;
  private readonly opts: KubeClientOptions;

  constructor(kubeConfig: KubeConfig, opts: KubeClientOptions & { fence?: WriteFence } = {}) {
    const cluster = kubeConfig.getCurrentCluster();
    if (!cluster) throw new Error('the kubeconfig has no current cluster');
    this.kubeConfig = kubeConfig;
    this.server = cluster.server.replace(/\/+$/, '');
    this.onResponse = opts.onResponse;
    this.fence = opts.fence;
    this.opts = opts;
  }

  /**
   * The same client whose writes (every method but GET, HEAD and OPTIONS) pass only while
   * `fence` is open: refused with FencedError otherwise, and aborted in flight when it closes.
   */
  fenced(fence: WriteFence): KubeClient {
    return new KubeClient(this.kubeConfig, { ...this.opts, fence });
  }

  /** A client for $KUBECONFIG, ~/.kube/config, or the pod's service account, whichever applies. */
  static fromDefault(opts: KubeClientOptions = {}): KubeClient {
    const kc = new KubeConfig();
    kc.loadFromDefault();
    return new KubeClient(kc, opts);
  }

  async get<T extends KubeObject>(type: ResourceType<T>, name: string, namespace?: string): Promise<T> {
    return this.request<T>('GET', resourcePath(type, { namespace, name }));
  }

  /** Like `get`, but `undefined` when the object does not exist. */
  async find<T extends KubeObject>(
    type: ResourceType<T>,
    name: string,
    namespace?: string,
  ): Promise<T | undefined> {
    try {
      return await this.get(type, name, namespace);
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
  }

  /** Every object of `type` (in `namespace`, or all namespaces), fetched page by page. */
  async list<T extends KubeObject>(type: ResourceType<T>, opts: ListOptions = {}): Promise<ListResult<T>> {
    const path = resourcePath(type, { namespace: opts.namespace });
    const items: T[] = [];
    let resourceVersion = '';
    let cont: string | undefined;
    do {
      const page = await this.request<{
        items?: T[];
        metadata?: { resourceVersion?: string; continue?: string };
      }>('GET', path, {
        query: {
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
          limit: opts.limit ?? 500,
          continue: cont,
        },
      });
      for (const item of page.items ?? []) {
        // Items of a list carry neither apiVersion nor kind; put them back.
        items.push({ apiVersion: type.apiVersion, kind: type.kind, ...item });
      }
      // Every page is a snapshot at the first page's resourceVersion.
      if (!cont) resourceVersion = page.metadata?.resourceVersion ?? '';
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion };
  }

  async create<T extends KubeObject>(
    type: ResourceType<T>,
    obj: T,
    opts: { fieldManager?: string } = {},
  ): Promise<T> {
    return this.request<T>('POST', resourcePath(type, { namespace: obj.metadata?.namespace }), {
      body: obj,
      query: { fieldManager: opts.fieldManager },
    });
  }

  /** PUT: fails with 409 Conflict when `obj.metadata.resourceVersion` is no longer current. */
  async replace<T extends KubeObject>(
    type: ResourceType<T>,
    obj: T,
    opts: { fieldManager?: string; subresource?: string } = {},
  ): Promise<T> {
    const { name, namespace } = requireName(obj);
    return this.request<T>('PUT', resourcePath(type, { namespace, name, subresource: opts.subresource }), {
      body: obj,
      query: { fieldManager: opts.fieldManager },
    });
  }

  /** A JSON merge patch (RFC 7386). */
  async mergePatch<T extends KubeObject>(
    type: ResourceType<T>,
    name: string,
    namespace: string | undefined,
    patch: unknown,
    opts: { fieldManager?: string; subresource?: string } = {},
  ): Promise<T> {
    return this.request<T>('PATCH', resourcePath(type, { namespace, name, subresource: opts.subresource }), {
      body: patch,
      contentType: MERGE_PATCH,
      query: { fieldManager: opts.fieldManager },
    });
  }

  /**
   * Server-side apply: `obj` is the complete intent of `fieldManager` (fields it applied
   * before and leaves out now are removed). `force` takes over fields other managers own.
   */
  async apply<T extends KubeObject>(
    type: ResourceType<T>,
    obj: T,
    opts: { fieldManager: string; force?: boolean; subresource?: string },
  ): Promise<T> {
    const { name, namespace } = requireName(obj);
    return this.request<T>('PATCH', resourcePath(type, { namespace, name, subresource: opts.subresource }), {
      // JSON is YAML, so the apply patch can be sent as JSON.
      body: { apiVersion: type.apiVersion, kind: type.kind, ...obj },
      contentType: APPLY_PATCH,
      query: { fieldManager: opts.fieldManager, force: opts.force ?? true },
    });
  }

  async delete(
    type: ResourceType,
    name: string,
    namespace?: string,
    opts: { propagationPolicy?: 'Foreground' | 'Background' | 'Orphan'; gracePeriodSeconds?: number } = {},
  ): Promise<void> {
    await this.request('DELETE', resourcePath(type, { namespace, name }), {
      query: { propagationPolicy: opts.propagationPolicy, gracePeriodSeconds: opts.gracePeriodSeconds },
    });
  }

  /** One request; JSON in and out. Throws ApiError for any status of 400 or more. */
  async request<T>(method: string, path: string, opts: RequestOptions = {}): Promise<T> {
    const fence = READS.has(method) ? undefined : this.fence;
    fence?.check(`${method} ${path}`);
    const payload = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const req = await this.open(method, path, opts.query, {
      accept: 'application/json',
      contentType: payload === undefined ? undefined : (opts.contentType ?? 'application/json'),
      // Node sends a DELETE's body neither chunked nor sized unless told its length, and the
      // server would read it as the start of the connection's next request.
      contentLength: payload === undefined ? undefined : Buffer.byteLength(payload),
      timeoutMs: opts.timeoutMs ?? 30_000,
    });
    return new Promise<T>((resolve, reject) => {
      let onAbort: (() => void) | undefined;
      if (fence) {
        // Checked again as late as possible: the clock may have jumped while `open` ran.
        try {
          fence.check(`${method} ${path}`);
        } catch (err) {
          req.destroy();
          return reject(err);
        }
        const signal = fence.signal;
        onAbort = () => req.destroy(new FencedError(`${method} ${path}: aborted, the leader's term ended`));
        signal.addEventListener('abort', onAbort, { once: true });
        req.once('close', () => signal.removeEventListener('abort', onAbort as () => void));
      }
      req.on('error', (err) => {
        this.onResponse?.(method, 0);
        reject(err);
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const code = res.statusCode ?? 0;
          this.onResponse?.(method, code);
          const text = Buffer.concat(chunks).toString('utf8');
          if (code >= 400) return reject(statusError(code, text, method, path));
          try {
            resolve((text ? JSON.parse(text) : undefined) as T);
          } catch (err) {
            reject(new Error(`${method} ${path}: the answer is not JSON: ${(err as Error).message}`));
          }
        });
      });
      req.end(payload);
    });
  }

  /**
   * Opens a watch and calls `onEvent` for each event, in order. An exception from `onEvent`
   * ends the watch with that error. The stream applies no inactivity timeout of its own.
   */
  watch<T extends KubeObject>(
    type: ResourceType<T>,
    opts: WatchOptions,
    onEvent: (event: WatchEvent<T>) => void,
  ): WatchStream {
    const path = resourcePath(type, { namespace: opts.namespace });
    let req: http.ClientRequest | undefined;
    let stopped: Error | null | undefined;
    let settled = false;
    let finish: (err?: Error | null) => void = () => {};
    const done = new Promise<void>((resolve, reject) => {
      finish = (err) => {
        if (settled) return;
        settled = true;
        req?.destroy();
        if (err) reject(err);
        else resolve();
      };
    });
    const stop = (reason?: Error) => {
      stopped = reason ?? null;
      finish(reason);
    };
    this.open('GET', path, {
      watch: true,
      resourceVersion: opts.resourceVersion,
      allowWatchBookmarks: opts.allowWatchBookmarks,
      timeoutSeconds: opts.timeoutSeconds,
      labelSelector: opts.labelSelector,
      fieldSelector: opts.fieldSelector,
    })
      .then((r) => {
        req = r;
        r.on('error', (err) => finish(stopped === undefined ? err : stopped));
        if (stopped !== undefined) {
          r.destroy();
          return;
        }
        r.on('response', (res) => {
          const code = res.statusCode ?? 0;
          this.onResponse?.('GET', code);
          if (code !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () =>
              finish(statusError(code, Buffer.concat(chunks).toString('utf8'), 'GET', path)),
            );
            return;
          }
          let buffered = '';
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffered += chunk;
            let nl = buffered.indexOf('\n');
            while (nl >= 0 && !settled) {
              const line = buffered.slice(0, nl).trim();
              buffered = buffered.slice(nl + 1);
              nl = buffered.indexOf('\n');
              if (!line) continue;
              try {
                onEvent(JSON.parse(line) as WatchEvent<T>);
              } catch (err) {
                return finish(err as Error);
              }
            }
          });
          res.on('error', (err) => finish(err));
          res.on('end', () => finish());
          res.on('close', () => finish(stopped ?? (res.complete ? undefined : new Error('watch closed'))));
        });
        r.end();
      })
      .catch((err: Error) => finish(err));
    return { done, stop };
  }

  private async open(
    method: string,
    path: string,
    query: RequestOptions['query'] = {},
    opts: {
      accept?: string;
      contentType?: string | undefined;
      contentLength?: number;
      timeoutMs?: number;
    } = {},
  ): Promise<http.ClientRequest> {
    const url = new URL(this.server + path);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept: opts.accept ?? 'application/json' };
    if (opts.contentType) headers['content-type'] = opts.contentType;
    if (opts.contentLength !== undefined) headers['content-length'] = String(opts.contentLength);
    const options: https.RequestOptions = { method, headers };
    await this.kubeConfig.applyToHTTPSOptions(options);
    // KubeConfig's agent opens a connection per request; reuse them instead. Its TLS
    // settings stay on `options`, and Node pools connections by them. Proxy agents are kept.
    if (options.agent?.constructor === https.Agent) options.agent = keepAlive.https;
    else if (options.agent?.constructor === http.Agent) options.agent = keepAlive.http;
    const req = (url.protocol === 'http:' ? http : https).request(url, options);
    if (opts.timeoutMs)
      req.setTimeout(opts.timeoutMs, () => req.destroy(new Error(`${method} ${path} timed out`)));
    return req;
  }
}

function requireName(obj: KubeObject): { name: string; namespace: string | undefined } {
  const name = obj.metadata?.name;
  if (!name) throw new Error(`a ${obj.kind ?? 'object'} without metadata.name`);
  return { name, namespace: obj.metadata?.namespace };
}

function statusError(code: number, text: string, method: string, path: string): ApiError {
  let message = text.trim() || http.STATUS_CODES[code] || 'error';
  let reason: string | undefined;
  try {
    const status = JSON.parse(text) as { message?: string; reason?: string };
    message = status.message ?? message;
    reason = status.reason;
  } catch {}
  return new ApiError(code, message, reason, method, path);
}
