/**
 * The gateway's calls to a sidecar's API (docs/sidecar.md): create a prediction (idempotent
 * by id) and follow it to its end in the same exchange (the create's event stream, which
 * ends with the final record), read it, cancel it, and follow its server-sent events.
 */
import { Agent, type IncomingMessage, request } from 'node:http';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';
import { readSse } from '../../lib/http.ts';
import type { InvalidField } from '../../lib/openapi-input.ts';
import { outputText, type PredictionObject, STREAM_EVENTS, type StreamEvent } from '../../lib/prediction.ts';

/**
 * A prediction as an instance's sidecar answers it: the API's prediction object, of which only
 * `id` and `status` are relied on being there.
 */
export type InstancePrediction = Pick<PredictionObject, 'id' | 'status'> &
  Partial<Omit<PredictionObject, 'id' | 'status'>>;

/** A `logs` or `output` event of a prediction as its create's stream brings it. */
export interface InstanceEvent {
  /** The event's id on the instance (as on its `/stream`). */
  id: number;
  event: 'logs' | 'output';
  /** As on `/stream`: the log text; the output item (strings raw, anything else JSON). */
  data: string;
  /** The output item itself (`output` events). */
  value?: unknown;
}

/** How the create's event stream ended: with the final record, or broken. */
export type FinalResult = { kind: 'final'; body: InstancePrediction } | { kind: 'broken'; error: string };

export interface CreateOptions {
  /** The caller wants the prediction's logs and output as they happen. */
  live?: boolean;
  /** The input was checked against the version's schema already. */
  inputChecked?: boolean;
  /** Each `logs` and `output` event of the create's stream. */
  onEvent?: (e: InstanceEvent) => void;
  /** Stops following the create's stream. */
  signal?: AbortSignal;
  /** Where the instance uploads the prediction's output files (`<uploadUrl>/<filename>`). */
  uploadUrl?: string;
}

export type CreateResult =
  /**
   * Taken. `final`: the end of the create's event stream (absent when the instance answered
   * with a plain record: follow it with `stream` and `get`).
   */
  | { kind: 'accepted'; body: InstancePrediction; final?: Promise<FinalResult> }
  /** Refused before taking it (429 busy, 503 not ready or draining): send it elsewhere. */
  | { kind: 'refused'; status: number; detail: string; retryAfterMs: number }
  /** No answer: connection refused, reset, timed out. */
  | { kind: 'unreachable'; error: string }
  | { kind: 'invalid'; fields: InvalidField[]; detail: string }
  | { kind: 'error'; status: number; detail: string };

export type GetResult =
  | { kind: 'ok'; body: InstancePrediction }
  | { kind: 'not-found' }
  | { kind: 'unreachable'; error: string }
  | { kind: 'error'; status: number; detail: string };

/** The blank line that ends a server-sent event. */
const FRAME_END = Buffer.from('\n\n');

const isStreamEvent = (name: string): name is StreamEvent['event'] =>
  (STREAM_EVENTS as readonly string[]).includes(name);

function describe(err: unknown): string {
  const e = err as { message?: string; code?: string; cause?: { code?: string; message?: string } };
  const cause = e.cause?.code ?? e.cause?.message ?? e.code;
  return cause && !e.message?.includes(cause)
    ? `${e.message ?? 'error'} (${cause})`
    : (e.message ?? String(err));
}

function parseBody(text: string): Record<string, unknown> {
  try {
    const v = JSON.parse(text) as unknown;
    return typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : { detail: text };
  } catch {
    return { detail: text };
  }
}

function toCreateResult(res: Answer): CreateResult {
  const body = res.body;
  const detail = typeof body.detail === 'string' ? body.detail : `HTTP ${res.status}`;
  if (res.status === 200 || res.status === 201)
    return { kind: 'accepted', body: body as unknown as InstancePrediction };
  if (res.status === 429 || res.status === 503) {
    const ra = Number(res.retryAfter);
    return {
      kind: 'refused',
      status: res.status,
      detail,
      retryAfterMs: Number.isFinite(ra) && ra > 0 ? Math.min(ra, 10) * 1000 : 1000,
    };
  }
  if (res.status === 422) {
    const fields = Array.isArray(body.invalid_fields) ? (body.invalid_fields as InvalidField[]) : [];
    return { kind: 'invalid', fields, detail };
  }
  return { kind: 'error', status: res.status, detail };
}

interface Answer {
  status: number;
  body: Record<string, unknown>;
  retryAfter: string | undefined;
}

/**
 * One request with a JSON answer, on node:http with keep-alive connections: the gateway's
 * creates and reads of predictions (a third of the CPU of fetch for the same exchange).
 */
function exchange(
  agent: Agent,
  clock: Clock,
  method: string,
  url: string,
  timeoutMs: number,
  body?: unknown,
  authorization?: string,
): Promise<Answer> {
  const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
  const timeout = new AbortController();
  const timer = clock.setTimer(
    () => timeout.abort(new DOMException(`no answer within ${timeoutMs} ms`, 'TimeoutError')),
    timeoutMs,
  );
  const answer = new Promise<Answer>((resolve, reject) => {
    const req = request(
      url,
      {
        method,
        agent,
        signal: timeout.signal,
        headers: {
          ...(data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {}),
          ...(authorization ? { authorization } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const ra = res.headers['retry-after'];
          resolve({
            status: res.statusCode ?? 0,
            body: parseBody(Buffer.concat(chunks).toString('utf8')),
            retryAfter: Array.isArray(ra) ? ra[0] : ra,
          });
        });
      },
    );
    req.on('error', reject);
    req.end(data);
  });
  return answer.finally(() => timer.cancel());
}

/** What the engine asks of an instance: `SidecarClient` over HTTP, a fake in unit tests. */
export interface InstanceClient {
  /** Hands it prediction `id` (idempotent by id). */
  create(
    base: string,
    id: string,
    input: Record<string, unknown>,
    opts?: CreateOptions,
  ): Promise<CreateResult>;
  /** Reads its record of prediction `id`. */
  get(base: string, id: string): Promise<GetResult>;
  /** Asks it to cancel; resolves with whether it answered. */
  cancel(base: string, id: string): Promise<boolean>;
  /**
   * Follows the prediction's events after `lastEventId` until `done` ('done'), the stream
   * ends without it or `signal` aborts ('ended'); throws when the stream breaks.
   */
  stream(
    base: string,
    id: string,
    lastEventId: number,
    onEvent: (e: StreamEvent) => void,
    signal?: AbortSignal,
  ): Promise<'done' | 'ended'>;
}

export interface SidecarClientOptions {
  /** Limit of a create or a read (default 30 s). */
  timeoutMs?: number;
  /** A stream that brings nothing, not even a keep-alive, this long is dropped (default 45 s). */
  streamIdleMs?: number;
  /** The time limits' clock (default: real time). */
  clock?: Clock;
  /** The `Authorization` header for calls to the sidecar at `base` (operator/sidecar-key.ts); none: no header. */
  authorization?: (base: string) => Promise<string>;
}

export class SidecarClient implements InstanceClient {
  private readonly timeoutMs: number;
  private readonly streamIdleMs: number;
  private readonly clock: Clock;
  private readonly agent = new Agent({ keepAlive: true });

  constructor(opts: SidecarClientOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 30_000;
    this.streamIdleMs = opts.streamIdleMs ?? 45_000;
    this.clock = opts.clock ?? realClock;
    this.authorization = opts.authorization;
  }

  private readonly authorization: ((base: string) => Promise<string>) | undefined;
  /** Where creates go, by sidecar base URL: parsed once per instance, not per prediction. */
  private readonly targets = new Map<string, { hostname: string; port: string; path: string }>();

  private target(base: string): { hostname: string; port: string; path: string } {
    let t = this.targets.get(base);
    if (!t) {
      const url = new URL(`${base}/predictions`);
      t = { hostname: url.hostname, port: url.port, path: url.pathname };
      // Instances come and go: a bounded map, cleared when full.
      if (this.targets.size >= 10_000) this.targets.clear();
      this.targets.set(base, t);
    }
    return t;
  }

  /** One exchange with the sidecar at `base`, with the operator's credential when there is one. */
  private async call(base: string, method: string, path: string, body?: unknown): Promise<Answer> {
    const auth = this.authorization ? await this.authorization(base) : undefined;
    return exchange(this.agent, this.clock, method, `${base}${path}`, this.timeoutMs, body, auth);
  }

  /**
   * `POST /predictions` asking for `text/event-stream`: the answer is the whole life of the
   * prediction — taken (`accepted`), its events (to `opts.onEvent`), its final record
   * (`final`). A refusal comes back as a plain problem answer.
   */
  async create(
    base: string,
    id: string,
    input: Record<string, unknown>,
    opts: CreateOptions = {},
  ): Promise<CreateResult> {
    // A string, not a Buffer: node:http writes the headers and a string body in one write (a
    // Buffer body goes out as a second chunk of a writev).
    const data = JSON.stringify({
      id,
      input,
      ...(opts.live ? { stream: true } : {}),
      ...(opts.uploadUrl ? { output_upload_url: opts.uploadUrl } : {}),
    });
    const url = this.target(base);
    let auth: string | undefined;
    try {
      auth = this.authorization ? await this.authorization(base) : undefined;
    } catch (err) {
      return { kind: 'unreachable', error: describe(err) };
    }
    return new Promise<CreateResult>((resolve) => {
      let settled = false;
      const answer = (r: CreateResult) => {
        if (settled) return;
        settled = true;
        timer.cancel();
        resolve(r);
      };
      const timer = this.clock.setTimer(() => {
        req.destroy(new Error(`no answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      const headers: Record<string, string> = {
        accept: 'text/event-stream',
        'content-type': 'application/json',
        'content-length': String(Buffer.byteLength(data)),
      };
      if (opts.inputChecked) headers['x-modelplane-input-checked'] = '1';
      if (auth) headers.authorization = auth;
      const req = request(
        {
          hostname: url.hostname,
          port: url.port,
          path: url.path,
          method: 'POST',
          agent: this.agent,
          headers,
        },
        (res) => {
          const type = res.headers['content-type'] ?? '';
          if ((res.statusCode === 200 || res.statusCode === 201) && type.startsWith('text/event-stream')) {
            this.followCreate(res, req, opts, answer);
            return;
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => answer({ kind: 'unreachable', error: describe(err) }));
          res.on('end', () => {
            const ra = res.headers['retry-after'];
            answer(
              toCreateResult({
                status: res.statusCode ?? 0,
                body: parseBody(Buffer.concat(chunks).toString('utf8')),
                retryAfter: Array.isArray(ra) ? ra[0] : ra,
              }),
            );
          });
        },
      );
      req.on('error', (err) => answer({ kind: 'unreachable', error: describe(err) }));
      req.end(data);
    });
  }

  /**
   * Reads the create's event stream: its `accepted` event answers the create, its events go
   * to `onEvent`, its `prediction` event is the final record.
   */
  private followCreate(
    res: IncomingMessage,
    req: ReturnType<typeof request>,
    opts: CreateOptions,
    answer: (r: CreateResult) => void,
  ): void {
    let endFinal!: (r: FinalResult) => void;
    const final = new Promise<FinalResult>((r) => {
      endFinal = r;
    });
    let over = false;
    const end = (r: FinalResult) => {
      if (over) return;
      over = true;
      idle?.cancel();
      opts.signal?.removeEventListener('abort', onAbort);
      // A stream that did not end with its record may have been taken: the create answers.
      answer({ kind: 'accepted', body: { id: '', status: 'starting' }, final });
      endFinal(r);
    };
    const onAbort = () => {
      end({ kind: 'broken', error: 'no longer followed' });
      req.destroy();
    };
    // One idle timer for the stream, not one per chunk: when it fires it looks at when the
    // last chunk came, and waits the rest of the limit from then if that was not long ago.
    let idle: Timer | undefined;
    let lastData = this.clock.mono();
    const arm = (ms: number) => {
      idle = this.clock.setTimer(() => {
        const quiet = this.clock.mono() - lastData;
        if (quiet < this.streamIdleMs) {
          arm(this.streamIdleMs - quiet);
          return;
        }
        end({ kind: 'broken', error: `the create's stream was silent for ${this.streamIdleMs / 1000} s` });
        req.destroy();
      }, ms);
    };
    if (opts.signal?.aborted) {
      onAbort();
      return;
    }
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    arm(this.streamIdleMs);
    // Frames are split on the bytes of their blank line and each decoded whole: a UTF-8
    // character never holds a newline byte, so none is cut (no stream decoder to set up).
    // The bytes of a frame not yet ended, in the chunks they came in (joined once it ends).
    let held: Buffer[] = [];
    res.on('data', (chunk: Buffer) => {
      lastData = this.clock.mono();
      if (held.length) {
        const last = held[held.length - 1]!;
        const ends = chunk.includes(FRAME_END) || (last[last.length - 1] === 10 && chunk[0] === 10);
        held.push(chunk);
        if (!ends) return;
      }
      const b = held.length ? Buffer.concat(held) : chunk;
      held = [];
      let at = 0;
      for (let i = b.indexOf(FRAME_END); i >= 0; i = b.indexOf(FRAME_END, at)) {
        const frame = b.toString('utf8', at, i);
        at = i + 2;
        if (over) return;
        try {
          this.onCreateFrame(frame, opts, (body) => answer({ kind: 'accepted', body, final }), end);
        } catch (err) {
          end({ kind: 'broken', error: `unreadable event: ${(err as Error).message}` });
          req.destroy();
          return;
        }
      }
      if (at < b.length) held.push(at ? b.subarray(at) : b);
    });
    res.on('error', (err) => end({ kind: 'broken', error: describe(err) }));
    res.on('close', () => end({ kind: 'broken', error: 'the stream ended before the final record' }));
  }

  private onCreateFrame(
    frame: string,
    opts: CreateOptions,
    accepted: (body: InstancePrediction) => void,
    end: (r: FinalResult) => void,
  ): void {
    let id: number | undefined;
    let event = '';
    let data = '';
    for (const line of frame.split('\n')) {
      if (line.startsWith('data: ')) data = line.slice(6);
      else if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('id: ')) id = Number(line.slice(4));
    }
    switch (event) {
      case 'accepted':
        accepted(JSON.parse(data) as InstancePrediction);
        return;
      case 'logs':
        if (id !== undefined) opts.onEvent?.({ id, event, data: JSON.parse(data) as string });
        return;
      case 'output':
        if (id !== undefined) {
          const value = JSON.parse(data) as unknown;
          opts.onEvent?.({ id, event, data: outputText(value), value });
        }
        return;
      case 'prediction':
        end({ kind: 'final', body: JSON.parse(data) as InstancePrediction });
        return;
    }
  }

  async get(base: string, id: string): Promise<GetResult> {
    try {
      const res = await this.call(base, 'GET', `/predictions/${encodeURIComponent(id)}`);
      const body = res.body;
      if (res.status === 200) return { kind: 'ok', body: body as unknown as InstancePrediction };
      if (res.status === 404) return { kind: 'not-found' };
      return { kind: 'error', status: res.status, detail: String(body.detail ?? `HTTP ${res.status}`) };
    } catch (err) {
      return { kind: 'unreachable', error: describe(err) };
    }
  }

  /** Asks the sidecar to cancel; resolves with whether it answered. */
  async cancel(base: string, id: string): Promise<boolean> {
    try {
      const res = await this.call(base, 'POST', `/predictions/${encodeURIComponent(id)}/cancel`);
      return res.status >= 200 && res.status < 300;
    } catch {
      return false;
    }
  }

  /**
   * Follows the prediction's events after `lastEventId` until `done` (resolves 'done'), the
   * stream ends without it ('ended'), or `signal` aborts. Throws on a connection error, an
   * answer other than 200, or a stream idle past the limit.
   */
  async stream(
    base: string,
    id: string,
    lastEventId: number,
    onEvent: (e: StreamEvent) => void,
    signal?: AbortSignal,
  ): Promise<'done' | 'ended'> {
    const abort = new AbortController();
    const onOuter = () => abort.abort(signal?.reason);
    signal?.addEventListener('abort', onOuter, { once: true });
    let idle: Timer | undefined;
    let idled = false;
    let done = false;
    const arm = () => {
      idle?.cancel();
      idle = this.clock.setTimer(() => {
        idled = true;
        abort.abort();
      }, this.streamIdleMs);
    };
    arm();
    try {
      const auth = this.authorization ? await this.authorization(base) : undefined;
      const res = await fetch(`${base}/predictions/${encodeURIComponent(id)}/stream`, {
        headers: {
          ...(auth ? { authorization: auth } : {}),
          accept: 'text/event-stream',
          ...(lastEventId > 0 ? { 'last-event-id': String(lastEventId) } : {}),
        },
        signal: abort.signal,
      });
      if (res.status !== 200 || !res.body) {
        const text = await res.text().catch(() => '');
        throw new Error(`the stream answered ${res.status}: ${text.slice(0, 200)}`);
      }
      for await (const block of readSse(res.body, arm)) {
        const eid = block.id === undefined ? undefined : Number(block.id);
        if (eid === undefined || !Number.isFinite(eid) || !isStreamEvent(block.event)) continue;
        onEvent({ id: eid, event: block.event, data: block.data ?? '' });
        if (block.event === 'done') {
          // Closing the connection makes leaving the loop throw the abort: that is the end.
          done = true;
          abort.abort();
          return 'done';
        }
      }
      return 'ended';
    } catch (err) {
      if (done) return 'done';
      if (idled) throw new Error(`the stream was silent for ${this.streamIdleMs / 1000} s`);
      if (signal?.aborted) return 'ended';
      throw new Error(describe(err));
    } finally {
      idle?.cancel();
      signal?.removeEventListener('abort', onOuter);
    }
  }
}
