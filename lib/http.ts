/** HTTP building blocks shared by the sidecar and the gateway: JSON bodies, problem+json errors, Prefer. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Clock, realClock, type Timer } from './clock.ts';
import type { InvalidField } from './openapi-input.ts';
import type { StreamEvent } from './prediction.ts';

export class HttpError extends Error {
  readonly status: number;
  readonly title: string;
  readonly extra: Record<string, unknown>;
  readonly headers: Record<string, string>;
  constructor(
    status: number,
    title: string,
    detail: string,
    extra: Record<string, unknown> = {},
    headers: Record<string, string> = {},
  ) {
    super(detail);
    this.status = status;
    this.title = title;
    this.extra = extra;
    this.headers = headers;
  }
}

/**
 * A 422 problem listing `invalid_fields`; its detail defaults to the fields' descriptions.
 * The one way the gateway and the predictions module refuse what a caller sent.
 */
export function invalid(fields: InvalidField[], opts: { title?: string; detail?: string } = {}): HttpError {
  return new HttpError(
    422,
    opts.title ?? 'Invalid request',
    opts.detail ?? fields.map((f) => f.description).join('; '),
    { invalid_fields: fields },
  );
}

/** 422 for a prediction input that breaks the model's schema. */
export function invalidInput(fields: InvalidField[], detail?: string): HttpError {
  return invalid(fields, {
    title: 'Invalid input',
    detail:
      detail ?? (fields.map((f) => f.description).join('; ') || 'the input does not match the model schema'),
  });
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  contentType = 'application/json',
): void {
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': String(Buffer.byteLength(payload)),
    ...headers,
  });
  res.end(payload);
}

/** An `application/problem+json` error: `{title, detail, status, ...extra}`. */
export function sendProblem(res: ServerResponse, err: HttpError): void {
  sendJson(
    res,
    err.status,
    { title: err.title, detail: err.message, status: err.status, ...err.extra },
    err.headers,
    'application/problem+json',
  );
}

/**
 * Deepest nesting of arrays and objects a caller's JSON body may have. JSON.parse takes any
 * depth, but JSON.stringify, structuredClone and the input checks recurse, and a body nested
 * some hundred thousand levels deep overflows their stack; no model input needs more than this.
 */
export const MAX_JSON_DEPTH = 64;

/**
 * The largest request body the gateway reads by default, and the most the sidecar ever reads:
 * what the gateway accepts reaches the sidecar whole, and nothing larger is read into a pod.
 */
export const MAX_BODY_BYTES = 10 * 1024 * 1024;

/** Whether `value` nests arrays and objects more than `max` levels deep (walked without recursion). */
export function nestedDeeperThan(value: unknown, max: number): boolean {
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth + 1 > max) return true;
    for (const child of Array.isArray(v) ? v : Object.values(v)) {
      if (typeof child === 'object' && child !== null) stack.push([child, depth + 1]);
    }
  }
  return false;
}

/** 400 for a body nested deeper than `max`. */
export function tooDeep(max: number): HttpError {
  return new HttpError(
    400,
    'JSON nested too deeply',
    `the body nests arrays and objects more than ${max} levels deep`,
    {
      max_depth: max,
    },
  );
}

/**
 * Reads a UTF-8 JSON body of at most `limit` bytes (413 past it, before reading when the
 * declared length is over); an empty body reads as `{}`, one that is not JSON, or (with
 * `maxDepth`) is nested deeper than that, is a 400. Lighter
 * than `jsonBody` (lib/express.ts), which also inflates and decodes other charsets: for a hot
 * route whose only caller is known, such as the Cog server's webhooks to the sidecar.
 */
export function readJson(req: IncomingMessage, limit: number, maxDepth?: number): Promise<unknown> {
  const tooLarge = () => new HttpError(413, 'Request body too large', `the body is over ${limit} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > limit) return Promise.reject(tooLarge());
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size <= limit) {
        chunks.push(chunk);
        return;
      }
      req.off('data', onData);
      req.off('end', onEnd);
      reject(tooLarge());
    };
    const onEnd = () => {
      const text = Buffer.concat(chunks).toString('utf8').trim();
      if (!text) return resolveBody({});
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch (err) {
        return reject(
          new HttpError(400, 'Malformed JSON', `the body is not JSON: ${(err as Error).message}`),
        );
      }
      if (maxDepth !== undefined && nestedDeeperThan(body, maxDepth)) return reject(tooDeep(maxDepth));
      resolveBody(body);
    };
    req.on('data', onData);
    req.once('end', onEnd);
    req.once('error', reject);
  });
}

/**
 * Seconds to hold a request from its `Prefer` header: `wait` alone is `max`, `wait=N` is N
 * clamped to [0, max]; no wait preference is undefined.
 */
export function preferWait(header: string | string[] | undefined, max: number): number | undefined {
  const raw = Array.isArray(header) ? header.join(',') : header;
  if (!raw) return undefined;
  for (const part of raw.split(/[,;]/)) {
    const m = /^\s*wait(?:\s*=\s*"?(\d+(?:\.\d+)?)"?)?\s*$/i.exec(part);
    if (!m) continue;
    if (m[1] === undefined) return max;
    return Math.min(max, Math.max(0, Number(m[1])));
  }
  return undefined;
}

/** One server-sent event: an `id:` line, the event name, and one `data:` line per line of text. */
export function sseFrame(e: { id: number; event: string; data: string }): string {
  const data = e.data
    .split('\n')
    .map((line) => `data: ${line}`)
    .join('\n');
  return `id: ${e.id}\nevent: ${e.event}\n${data}\n\n`;
}

/** One block of a server-sent event stream as read: its fields, and its comment lines. */
export interface SseBlock {
  id: string | undefined;
  /** `message` when the block names none. */
  event: string;
  /** The `data:` lines joined with newlines; undefined when there are none. */
  data: string | undefined;
  comments: string[];
}

/**
 * Reads a server-sent event stream block by block (a keep-alive comment is a block with only
 * `comments`). `onChunk` is called as each chunk of the body arrives.
 */
export async function* readSse(
  body: AsyncIterable<Uint8Array>,
  onChunk?: () => void,
): AsyncGenerator<SseBlock> {
  const decoder = new TextDecoder();
  let buf = '';
  for await (const chunk of body) {
    onChunk?.();
    buf += decoder.decode(chunk, { stream: true });
    for (let i = buf.indexOf('\n\n'); i >= 0; i = buf.indexOf('\n\n')) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      let id: string | undefined;
      let event = 'message';
      const data: string[] = [];
      const comments: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) comments.push(line);
        else if (line.startsWith('id:')) id = line.slice(3).trimStart();
        else if (line.startsWith('event:')) event = line.slice(6).trimStart();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      yield { id, event, data: data.length ? data.join('\n') : undefined, comments };
    }
  }
}

/** Bytes an event stream may leave unsent for a slow client before it is cut. */
export const SSE_MAX_BUFFERED_BYTES = 4 * 1024 * 1024;

/**
 * Answers `req` with a server-sent event stream of one prediction's events: those after
 * `Last-Event-ID` (all without it), then the live ones, with a keep-alive comment every
 * `keepAliveMs` (on `clock`, the real one by default). It ends after the `done` event, when
 * `signal` aborts, or at once when there is no live subscription to wait on (the prediction
 * had ended, its `done` already sent).
 */

export function sendEventStream(
  req: IncomingMessage,
  res: ServerResponse,
  opts: {
    keepAliveMs: number;
    /** The events after `afterId`, and a subscription that passes each later one to `send`. */
    events(
      afterId: number,
      send: (e: StreamEvent) => void,
    ): { past: readonly StreamEvent[]; unsubscribe?: () => void };
    signal?: AbortSignal;
    clock?: Clock;
    /**
     * Bytes that may wait unsent for a slow client (default SSE_MAX_BUFFERED_BYTES): past it
     * the stream is cut, and the client reconnects with Last-Event-ID and reads on from there.
     */
    maxBufferedBytes?: number;
  },
): void {
  const maxBuffered = opts.maxBufferedBytes ?? SSE_MAX_BUFFERED_BYTES;
  let replaying = true;
  const raw = req.headers['last-event-id'];
  const last = Number((Array.isArray(raw) ? raw[0] : raw) ?? 0);
  res.writeHead(200, {
    'content-type': 'text/event-stream; charset=utf-8',
    'cache-control': 'no-cache',
    connection: 'keep-alive',
    'x-accel-buffering': 'no',
  });
  res.flushHeaders();
  let keepAlive: Timer | undefined;
  let unsubscribe: (() => void) | undefined;
  let ended = false;
  const close = () => {
    keepAlive?.cancel();
    unsubscribe?.();
  };
  const end = () => {
    if (ended) return;
    ended = true;
    close();
    res.end();
  };
  const send = (e: StreamEvent) => {
    if (ended) return;
    // A client that does not read holds what is written for it: cut it rather than buffer on.
    // (The events it asked for on connecting go out whole: the prediction's own are bounded.)
    if (!replaying && res.writableLength > maxBuffered) {
      ended = true;
      close();
      res.destroy();
      return;
    }
    res.write(sseFrame(e));
    if (e.event === 'done') end();
  };
  res.on('close', close);
  opts.signal?.addEventListener('abort', end, { once: true });
  const sub = opts.events(Number.isFinite(last) ? last : 0, send);
  unsubscribe = sub.unsubscribe;
  for (const e of sub.past) send(e);
  replaying = false;
  // Without a subscription it ended before this stream opened, its done event sent earlier.
  if (!unsubscribe) end();
  if (ended) return;
  const clock = opts.clock ?? realClock;
  const beat = () => {
    keepAlive = clock.setTimer(() => {
      res.write(': keep-alive\n\n');
      beat();
    }, opts.keepAliveMs);
  };
  beat();
}
