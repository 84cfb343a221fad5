/**
 * Webhooks to callers: the prediction (as `GET` returns it) POSTed to the caller's URL on
 * the events it asked for (`start`, `output`, `logs`, `completed`), signed the Standard
 * Webhooks way with the namespace's secret. Per prediction, deliveries go one after another,
 * so they arrive in order; `output` and `logs` go at most every `throttleMs` (a trailing one
 * carries the latest state); only the terminal one is retried, with exponential backoff over
 * about a minute, and it keeps its `webhook-id` across retries. Redirects are not followed.
 */
import { createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import type { WebhookEvent } from './parse.ts';

/** The key a `whsec_...` secret signs with: the base64-decoded part after `whsec_`. */
export function secretKey(secret: string): Buffer {
  const b64 = secret.startsWith('whsec_') ? secret.slice('whsec_'.length) : secret;
  return Buffer.from(b64, 'base64');
}

/** `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`. */
export function sign(secret: string, id: string, timestamp: number, body: string): string {
  const mac = createHmac('sha256', secretKey(secret)).update(`${id}.${timestamp}.${body}`).digest('base64');
  return `v1,${mac}`;
}

/** The Standard Webhooks headers of one delivery. */
export function signedHeaders(
  secret: string,
  id: string,
  timestamp: number,
  body: string,
): Record<string, string> {
  return {
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': sign(secret, id, timestamp, body),
  };
}

export function newMessageId(): string {
  return `msg_${randomBytes(18).toString('base64url')}`;
}

export interface WebhookSenderOptions {
  /** The signing secret (`whsec_...`) of a namespace. */
  secretFor(namespace: string): string | Promise<string>;
  log: Logger;
  throttleMs?: number;
  /** Delay before retry n is retryBaseMs * 2^(n-1) (default 500 ms: 7 retries span ~1 min). */
  retryBaseMs?: number;
  retries?: number;
  timeoutMs?: number;
  /** Called after each attempt of a delivery (tests, metrics). */
  onAttempt?(e: { url: string; event: WebhookEvent; status: number; error?: string }): void;
}

interface Target {
  url: string;
  namespace: string;
  filter: ReadonlySet<WebhookEvent>;
  chain: Promise<void>;
  lastSent: number;
  trailing: NodeJS.Timeout | undefined;
  finished: boolean;
}

export class WebhookSender {
  private readonly targets = new Map<string, Target>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly opts: WebhookSenderOptions;
  private readonly throttleMs: number;
  private readonly retryBaseMs: number;
  private readonly retries: number;
  private readonly timeoutMs: number;

  constructor(opts: WebhookSenderOptions) {
    this.opts = opts;
    this.throttleMs = opts.throttleMs ?? 500;
    this.retryBaseMs = opts.retryBaseMs ?? 500;
    this.retries = opts.retries ?? 7;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Registers a prediction's webhook and the events it wants. */
  register(id: string, namespace: string, url: string, filter: readonly WebhookEvent[]): void {
    this.targets.set(id, {
      url,
      namespace,
      filter: new Set(filter),
      chain: Promise.resolve(),
      lastSent: 0,
      trailing: undefined,
      finished: false,
    });
  }

  /** Queues a delivery of `body()` (read when sent, so a throttled one carries the latest state). */
  notify(id: string, event: WebhookEvent, body: () => unknown): void {
    const t = this.targets.get(id);
    if (!t || t.finished) return;
    if (event === 'completed') {
      t.finished = true;
      if (t.trailing) clearTimeout(t.trailing);
      t.trailing = undefined;
      if (t.filter.has('completed')) this.enqueue(t, event, body, true);
      this.track(t.chain.then(() => void this.targets.delete(id)));
      return;
    }
    if (!t.filter.has(event)) return;
    if (event === 'start') {
      this.enqueue(t, event, body, false);
      return;
    }
    const wait = t.lastSent + this.throttleMs - Date.now();
    if (wait <= 0) {
      this.enqueue(t, event, body, false);
    } else if (!t.trailing) {
      t.trailing = setTimeout(() => {
        t.trailing = undefined;
        if (!t.finished) this.enqueue(t, event, body, false);
      }, wait);
    }
  }

  private enqueue(t: Target, event: WebhookEvent, body: () => unknown, retry: boolean): void {
    t.lastSent = Date.now();
    t.chain = t.chain.then(() => this.deliver(t, event, body(), retry));
    this.track(t.chain);
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async deliver(t: Target, event: WebhookEvent, body: unknown, retry: boolean): Promise<void> {
    const payload = JSON.stringify(body);
    const msgId = newMessageId();
    let secret: string;
    try {
      secret = await this.opts.secretFor(t.namespace);
    } catch (err) {
      this.opts.log.warn(
        { namespace: t.namespace, event, err: (err as Error).message },
        'no webhook signing secret; the webhook is not sent',
      );
      return;
    }
    for (let attempt = 0; ; attempt++) {
      let status = 0;
      let failure = '';
      try {
        const res = await fetch(t.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'user-agent': 'modelplane-webhooks',
            ...signedHeaders(secret, msgId, Math.floor(Date.now() / 1000), payload),
          },
          body: payload,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        status = res.status;
        await res.arrayBuffer().catch(() => undefined);
        if (status >= 200 && status < 300) {
          this.opts.onAttempt?.({ url: t.url, event, status });
          return;
        }
        failure = `answered ${status}`;
      } catch (err) {
        failure = (err as Error).message;
      }
      this.opts.onAttempt?.({ url: t.url, event, status, error: failure });
      const retryable = status === 0 || status === 429 || status >= 500;
      if (!retry || !retryable || attempt >= this.retries) {
        this.opts.log.warn({ event, attempts: attempt + 1, failure }, 'webhook delivery failed');
        return;
      }
      await new Promise((r) => setTimeout(r, this.retryBaseMs * 2 ** attempt));
    }
  }

  /** Resolves when every queued delivery has finished (delivered or given up). */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  close(): void {
    for (const t of this.targets.values()) if (t.trailing) clearTimeout(t.trailing);
  }
}
