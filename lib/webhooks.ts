/**
 * Webhook delivery shared by the sidecar and the gateway: the prediction POSTed to a URL on
 * the events its caller asked for (`start`, `output`, `logs`, `completed`). Per prediction,
 * deliveries go one after another, so they arrive in order; `output` and `logs` go at most
 * every `throttleMs` (a trailing one carries the latest state); only the terminal one is
 * retried, with exponential backoff. Redirects are not followed and at most 64 KiB of an answer
 * is read. Targets go through an egress policy (lib/egress.ts): by default only public
 * addresses are reached, and a refused target is not retried. A registration may carry a hook
 * that gives each delivery its headers (the gateway signs them).
 *
 * Nothing here throws into the caller or leaves a promise rejected: a body that cannot be
 * serialised (a value nested too deep for JSON.stringify, a BigInt, a cycle) is logged and its
 * delivery dropped, and the deliveries after it still go.
 */
import type { Logger } from 'pino';
import { Backoff } from './backoff.ts';
import { type Clock, realClock, sleep, type Timer } from './clock.ts';
import { EgressPolicy, EgressRefused, postJson } from './egress.ts';
import type { WebhookEvent } from './prediction.ts';

/** The headers of each attempt of one delivery. */
export type AttemptHeaders = () => Record<string, string>;

/**
 * Called once per delivery, before its first attempt, with the body as it is sent; returns
 * the function that gives each attempt's headers, or undefined to not send the delivery.
 */
export type DeliveryHeaders = (d: {
  prediction: string;
  event: WebhookEvent;
  body: string;
}) => AttemptHeaders | undefined | Promise<AttemptHeaders | undefined>;

export interface WebhookOptions {
  throttleMs?: number;
  /** First delay before a retry, doubling (with jitter) after each (default 500 ms: 7 retries span ~1 min). */
  retryBaseMs?: number;
  retries?: number;
  timeoutMs?: number;
  /** Called after each attempt of a delivery (tests, metrics). */
  onAttempt?(e: {
    url: string;
    event: WebhookEvent;
    status: number;
    error?: string;
    /** The egress policy refused the target; it is not retried. */
    refused?: boolean;
  }): void;
  /** Throttle windows and retry delays (default: real time). */
  clock?: Clock;
  /** Which addresses deliveries may reach (default: public ones only). */
  egress?: EgressPolicy;
  /** Bytes of a receiver's answer read at most (default 64 KiB). */
  maxResponseBytes?: number;
}

/** Longest delay between two attempts of a delivery. */
const RETRY_MAX_MS = 60_000;

interface Target {
  url: string;
  filter: ReadonlySet<string>;
  headers: DeliveryHeaders | undefined;
  chain: Promise<void>;
  lastSent: number;
  trailing: Timer | undefined;
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
  private readonly onAttempt: WebhookOptions['onAttempt'];
  private readonly clock: Clock;
  private readonly egress: EgressPolicy;
  private readonly maxResponseBytes: number;

  constructor(log: Logger, opts: WebhookOptions = {}) {
    this.log = log;
    this.throttleMs = opts.throttleMs ?? 500;
    this.retryBaseMs = opts.retryBaseMs ?? 500;
    this.retries = opts.retries ?? 7;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.onAttempt = opts.onAttempt;
    this.clock = opts.clock ?? realClock;
    this.egress = opts.egress ?? new EgressPolicy();
    this.maxResponseBytes = opts.maxResponseBytes ?? 64 * 1024;
  }

  /** Registers a prediction's webhook; `filter` lists the events wanted. */
  register(id: string, url: string, filter: readonly string[], headers?: DeliveryHeaders): void {
    this.targets.set(id, {
      url,
      filter: new Set(filter),
      headers,
      chain: Promise.resolve(),
      lastSent: Number.NEGATIVE_INFINITY,
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
      t.trailing?.cancel();
      t.trailing = undefined;
      if (t.filter.has('completed')) this.enqueue(t, id, event, body, true);
      // The target stays until its chain drains, then goes.
      this.track(t.chain.then(() => void this.targets.delete(id)));
      return;
    }
    if (!t.filter.has(event)) return;
    if (event === 'start') {
      this.enqueue(t, id, event, body, false);
      return;
    }
    const wait = t.lastSent + this.throttleMs - this.clock.mono();
    if (wait <= 0) {
      this.enqueue(t, id, event, body, false);
    } else if (!t.trailing) {
      t.trailing = this.clock.setTimer(() => {
        t.trailing = undefined;
        if (!t.finished) this.enqueue(t, id, event, body, false);
      }, wait);
    }
  }

  private enqueue(t: Target, id: string, event: WebhookEvent, body: () => unknown, retry: boolean): void {
    t.lastSent = this.clock.mono();
    t.chain = t.chain
      .then(() => this.deliver(t, id, event, body, retry))
      .catch((err: unknown) => {
        this.log.error({ prediction: id, event, err }, 'webhook delivery failed unexpectedly; dropped');
      });
    this.track(t.chain);
  }

  /** Keeps `p` (which never rejects: every chain ends in a catch) until it settles. */
  private track(p: Promise<void>): void {
    this.inflight.add(p);
    p.then(
      () => this.inflight.delete(p),
      () => this.inflight.delete(p),
    );
  }

  private async deliver(
    t: Target,
    id: string,
    event: WebhookEvent,
    body: () => unknown,
    retry: boolean,
  ): Promise<void> {
    let payload: string;
    try {
      payload = JSON.stringify(body());
    } catch (err) {
      this.log.warn(
        { prediction: id, event, err: (err as Error).message },
        'webhook body cannot be serialised; the webhook is not sent',
      );
      this.onAttempt?.({
        url: t.url,
        event,
        status: 0,
        error: `body not serialisable: ${(err as Error).message}`,
      });
      return;
    }
    let headers: AttemptHeaders | undefined = () => ({});
    if (t.headers) {
      try {
        headers = await t.headers({ prediction: id, event, body: payload });
      } catch (err) {
        this.log.warn(
          { prediction: id, event, err: (err as Error).message },
          'webhook headers failed; the webhook is not sent',
        );
        return;
      }
      if (!headers) return;
    }
    const backoff = new Backoff(this.retryBaseMs, RETRY_MAX_MS);
    for (let attempt = 0; ; attempt++) {
      let status = 0;
      let failure = '';
      try {
        const res = await postJson(t.url, {
          headers: { 'content-type': 'application/json', ...headers() },
          body: payload,
          timeoutMs: this.timeoutMs,
          policy: this.egress,
          maxResponseBytes: this.maxResponseBytes,
        });
        status = res.status;
        if (status >= 200 && status < 300) {
          this.onAttempt?.({ url: t.url, event, status });
          return;
        }
        failure = `answered ${status}`;
      } catch (err) {
        failure = (err as Error).message;
        if (err instanceof EgressRefused) {
          this.onAttempt?.({ url: t.url, event, status, error: failure, refused: true });
          this.log.warn({ prediction: id, event, url: t.url, failure }, 'webhook refused');
          return;
        }
      }
      this.onAttempt?.({ url: t.url, event, status, error: failure });
      const retryable = status === 0 || status === 429 || status >= 500;
      if (!retry || !retryable || attempt >= this.retries) {
        this.log.warn({ prediction: id, event, attempts: attempt + 1, failure }, 'webhook delivery failed');
        return;
      }
      await sleep(backoff.next(), undefined, this.clock);
    }
  }

  /** Resolves when the deliveries queued so far for prediction `id` have finished (delivered or given up). */
  settled(id: string): Promise<void> {
    return this.targets.get(id)?.chain ?? Promise.resolve();
  }

  /** Resolves when every queued delivery has finished (delivered or given up). */
  async drain(): Promise<void> {
    while (this.inflight.size > 0) await Promise.allSettled([...this.inflight]);
  }

  /** Stops trailing timers (deliveries already under way finish). */
  close(): void {
    for (const t of this.targets.values()) t.trailing?.cancel();
  }
}
