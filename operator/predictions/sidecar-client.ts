/**
 * The gateway's calls to a sidecar's API (docs/sidecar.md): create a prediction (idempotent
 * by id), read it, cancel it, and follow its server-sent events.
 */
import { Agent, request } from 'node:http';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';
import { readSse } from '../../lib/http.ts';
import type { InvalidField } from '../../lib/openapi-input.ts';
import { type PredictionObject, STREAM_EVENTS, type StreamEvent } from '../../lib/prediction.ts';

/**
 * A prediction as an instance's sidecar answers it: the API's prediction object, of which only
 * `id` and `status` are relied on being there.
 */
export type InstancePrediction = Pick<PredictionObject, 'id' | 'status'> &
  Partial<Omit<PredictionObject, 'id' | 'status'>>;

export type CreateResult =
  | { kind: 'accepted'; body: InstancePrediction }
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
        headers: data ? { 'content-type': 'application/json', 'content-length': String(data.length) } : {},
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
  /**
   * Hands it prediction `id` (idempotent by id); `uploadUrl` is where the instance uploads
   * the prediction's output files (`<uploadUrl>/<filename>`).
   */
  create(base: string, id: string, input: Record<string, unknown>, uploadUrl?: string): Promise<CreateResult>;
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
  }

  async create(
    base: string,
    id: string,
    input: Record<string, unknown>,
    uploadUrl?: string,
  ): Promise<CreateResult> {
    let res: Answer;
    try {
      res = await exchange(this.agent, this.clock, 'POST', `${base}/predictions`, this.timeoutMs, {
        id,
        input,
        ...(uploadUrl ? { output_upload_url: uploadUrl } : {}),
      });
    } catch (err) {
      return { kind: 'unreachable', error: describe(err) };
    }
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

  async get(base: string, id: string): Promise<GetResult> {
    try {
      const res = await exchange(
        this.agent,
        this.clock,
        'GET',
        `${base}/predictions/${encodeURIComponent(id)}`,
        this.timeoutMs,
      );
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
      const res = await exchange(
        this.agent,
        this.clock,
        'POST',
        `${base}/predictions/${encodeURIComponent(id)}/cancel`,
        this.timeoutMs,
      );
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
      const res = await fetch(`${base}/predictions/${encodeURIComponent(id)}/stream`, {
        headers: {
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
