/**
 * The Cog model server's HTTP API as the sidecar uses it (the Cog container contract): the
 * health check, the OpenAPI schema, idempotent async prediction creation with a webhook,
 * cancel and shutdown. `CogClient` is what the sidecar depends on (unit tests give it a fake
 * model server); `HttpCogClient` is the real one, plain node:http with a keep-alive agent:
 * this sits on every prediction's path.
 */
import { Agent, request } from 'node:http';
import { WEBHOOK_EVENTS } from '../lib/prediction.ts';

export interface CogHealth {
  /** UNKNOWN, STARTING, READY, BUSY, SETUP_FAILED, DEFUNCT or UNHEALTHY. */
  status: string;
  setup?: { started_at?: string; completed_at?: string; status?: string; logs?: string };
  version?: Record<string, unknown>;
  user_healthcheck_error?: string;
}

export type CreateResult =
  | { kind: 'accepted'; body: Record<string, unknown> }
  | { kind: 'finished'; body: Record<string, unknown> }
  | { kind: 'busy' }
  | { kind: 'not-ready'; message: string }
  | { kind: 'invalid'; body: unknown }
  | { kind: 'error'; message: string };

/** The model server could not be reached (refused, reset, timed out). */
export class Unreachable extends Error {
  readonly code: string;
  /** The connection was made: the server may have acted on the request. */
  afterSend = false;
  constructor(message: string, code: string) {
    super(message);
    this.code = code;
  }
}

/** The model server as the sidecar calls it. */
export interface CogClient {
  /** `GET /health-check`; throws `Unreachable` when the server does not answer. */
  health(timeoutMs?: number): Promise<CogHealth>;
  /** The OpenAPI document, or undefined when the server has none (503). */
  openapi(timeoutMs?: number): Promise<unknown>;
  /**
   * `PUT /predictions/{id}`: async with a `webhook` (progress comes to it), else held until
   * the prediction ends. Throws `Unreachable` when the request did not get an answer.
   */
  create(id: string, input: unknown, webhook: string | undefined): Promise<CreateResult>;
  /** True when the server knew the prediction (200), false when it did not (404). */
  cancel(id: string, timeoutMs?: number): Promise<boolean>;
  /** `POST /shutdown`. */
  shutdown(timeoutMs?: number): Promise<void>;
  /** Releases connections. */
  close(): void;
}

interface Reply {
  status: number;
  text: string;
}

export class HttpCogClient implements CogClient {
  readonly base: URL;
  private readonly agent = new Agent({ keepAlive: true, maxSockets: 256 });

  constructor(baseUrl: string) {
    this.base = new URL(baseUrl);
  }

  close(): void {
    this.agent.destroy();
  }

  private call(
    method: string,
    path: string,
    body: unknown,
    headers: Record<string, string>,
    timeoutMs: number,
  ): Promise<Reply> {
    return new Promise((resolveReply, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request(
        {
          protocol: this.base.protocol,
          hostname: this.base.hostname,
          port: this.base.port,
          path,
          method,
          agent: this.agent,
          headers: {
            ...headers,
            ...(payload
              ? { 'content-type': 'application/json', 'content-length': String(payload.length) }
              : {}),
          },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () =>
            resolveReply({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }),
          );
          res.on('error', (err) => reject(new Unreachable(`model server: ${err.message}`, 'ERESPONSE')));
        },
      );
      if (timeoutMs > 0) {
        req.setTimeout(timeoutMs, () => {
          req.destroy(
            new Unreachable(
              `model server did not answer ${method} ${path} within ${timeoutMs} ms`,
              'ETIMEDOUT',
            ),
          );
        });
      }
      req.on('error', (err: NodeJS.ErrnoException) => {
        const e =
          err instanceof Unreachable
            ? err
            : new Unreachable(`model server: ${err.message}`, err.code ?? 'EUNKNOWN');
        // Refused: nothing reached the server. Any other break may have come after it.
        e.afterSend = e.code !== 'ECONNREFUSED';
        reject(e);
      });
      req.end(payload);
    });
  }

  async health(timeoutMs = 2000): Promise<CogHealth> {
    const r = await this.call('GET', '/health-check', undefined, {}, timeoutMs);
    const body = parse(r.text) as CogHealth | undefined;
    if (r.status !== 200 || !body || typeof body.status !== 'string') {
      throw new Error(`model server health check answered ${r.status}: ${r.text.slice(0, 200)}`);
    }
    return body;
  }

  /** The OpenAPI document, or undefined when the server has none (503). */
  async openapi(timeoutMs = 5000): Promise<unknown> {
    const r = await this.call('GET', '/openapi.json', undefined, {}, timeoutMs);
    return r.status === 200 ? parse(r.text) : undefined;
  }

  /**
   * `PUT /predictions/{id}`. With a `webhook`: `Prefer: respond-async`, answered at once, and
   * progress comes to the webhook. Without: the request is held until the prediction ends
   * and answers with its final state (`finished`).
   */
  async create(id: string, input: unknown, webhook: string | undefined): Promise<CreateResult> {
    // Cog's webhook events have the API's names; the sidecar wants every one of them.
    const body = webhook ? { id, input, webhook, webhook_events_filter: WEBHOOK_EVENTS } : { id, input };
    const r = await this.call(
      'PUT',
      `/predictions/${encodeURIComponent(id)}`,
      body,
      webhook ? { prefer: 'respond-async' } : {},
      webhook ? 30_000 : 0,
    );
    const parsed = parse(r.text);
    switch (r.status) {
      case 200:
      case 201:
      case 202:
        return { kind: webhook ? 'accepted' : 'finished', body: (parsed as Record<string, unknown>) ?? {} };
      case 409:
        return { kind: 'busy' };
      case 503:
        return { kind: 'not-ready', message: errorText(parsed, r.text) };
      case 422: {
        // Held requests also answer 422 for input the predictor itself rejected at run time.
        const p = parsed as Record<string, unknown> | undefined;
        if (p && typeof p.status === 'string') return { kind: 'finished', body: p };
        return { kind: 'invalid', body: parsed };
      }
      default:
        return { kind: 'error', message: `model server answered ${r.status}: ${errorText(parsed, r.text)}` };
    }
  }

  /** True when the server knew the prediction (200), false when it did not (404). */
  async cancel(id: string, timeoutMs = 5000): Promise<boolean> {
    const r = await this.call(
      'POST',
      `/predictions/${encodeURIComponent(id)}/cancel`,
      undefined,
      {},
      timeoutMs,
    );
    return r.status === 200;
  }

  async shutdown(timeoutMs = 5000): Promise<void> {
    await this.call('POST', '/shutdown', undefined, {}, timeoutMs);
  }
}

function parse(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function errorText(body: unknown, text: string): string {
  const e = (body as { error?: unknown; detail?: unknown } | undefined)?.error;
  return typeof e === 'string' ? e : text.slice(0, 500);
}
