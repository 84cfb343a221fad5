/**
 * Webhooks from the sidecar to the caller that created a prediction (the gateway): the
 * prediction as GET returns it, on the events the caller asked for (`start`, `output`,
 * `logs`, `completed`). Per prediction, deliveries go one after another, so they arrive in
 * order; `output` and `logs` are sent at most every `throttleMs` (the latest state, trailing);
 * only the terminal one is retried, with exponential backoff. No redirects are followed.
 */
import type { Logger } from 'pino';

export type WebhookEvent = 'start' | 'output' | 'logs' | 'completed';

export interface WebhookOptions {
  throttleMs?: number;
  /** Delay before retry n is baseMs * 2^(n-1). */
  retryBaseMs?: number;
  retries?: number;
  timeoutMs?: number;
}

interface Target {
  url: string;
  filter: ReadonlySet<string>;
  chain: Promise<void>;
  lastSent: number;
  trailing: NodeJS.Timeout | undefined;
  finished: boolean;
}

export class WebhookSender {
  private readonly targets = new Map<string, Target>();
  private readonly inflight = new Set<Promise<void>>();
  private readonly log: Logger;
  private readonly throttleMs: number;
  private readonly retryBaseMs: number;
  private readonly retries: number;
  private readonly timeoutMs: number;

  constructor(log: Logger, opts: WebhookOptions = {}) {
    this.log = log;
    this.throttleMs = opts.throttleMs ?? 500;
    this.retryBaseMs = opts.retryBaseMs ?? 500;
    this.retries = opts.retries ?? 7;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Registers a prediction's webhook; `filter` lists the events wanted. */
  register(id: string, url: string, filter: readonly string[]): void {
    this.targets.set(id, {
      url,
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
    const terminal = event === 'completed';
    if (terminal) {
      t.finished = true;
      if (t.trailing) clearTimeout(t.trailing);
      t.trailing = undefined;
      if (t.filter.has('completed')) this.enqueue(t, id, body, true);
      // The target stays until its chain drains, then goes.
      this.track(t.chain.then(() => void this.targets.delete(id)));
      return;
    }
    if (!t.filter.has(event)) return;
    if (event === 'start') {
      this.enqueue(t, id, body, false);
      return;
    }
    const wait = t.lastSent + this.throttleMs - Date.now();
    if (wait <= 0) {
      this.enqueue(t, id, body, false);
    } else if (!t.trailing) {
      t.trailing = setTimeout(() => {
        t.trailing = undefined;
        if (!t.finished) this.enqueue(t, id, body, false);
      }, wait);
    }
  }

  private enqueue(t: Target, id: string, body: () => unknown, retry: boolean): void {
    t.lastSent = Date.now();
    t.chain = t.chain.then(() => this.deliver(t.url, id, body(), retry));
    this.track(t.chain);
  }

  private track(p: Promise<void>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  private async deliver(url: string, id: string, body: unknown, retry: boolean): Promise<void> {
    const payload = JSON.stringify(body);
    for (let attempt = 0; ; attempt++) {
      let status = 0;
      let failure = '';
      try {
        const res = await fetch(url, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: payload,
          redirect: 'manual',
          signal: AbortSignal.timeout(this.timeoutMs),
        });
        status = res.status;
        await res.arrayBuffer();
        if (status >= 200 && status < 300) return;
        failure = `answered ${status}`;
      } catch (err) {
        failure = (err as Error).message;
      }
      const retryable = status === 0 || status === 429 || status >= 500;
      if (!retry || !retryable || attempt >= this.retries) {
        this.log.warn({ prediction: id, attempts: attempt + 1, failure }, 'webhook delivery failed');
        return;
      }
      await new Promise((r) => setTimeout(r, this.retryBaseMs * 2 ** attempt));
    }
  }

  /** Resolves when every queued delivery has finished (delivered or given up). */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Stops trailing timers (deliveries already under way finish). */
  close(): void {
    for (const t of this.targets.values()) if (t.trailing) clearTimeout(t.trailing);
  }
}
