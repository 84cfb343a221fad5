/**
 * Webhooks to callers: the prediction (as `GET` returns it) POSTed to the caller's URL on
 * the events it asked for (`start`, `output`, `logs`, `completed`), signed the Standard
 * Webhooks way with the namespace's secret. Delivery is lib/webhooks.ts (ordered per
 * prediction, `output` and `logs` throttled, only the terminal one retried, with exponential
 * backoff over about a minute, no redirects); a retried delivery keeps its `webhook-id`, and
 * the `start` and `completed` deliveries of a prediction have the same one from every replica.
 */
import { createHash, createHmac, randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import { type Clock, realClock } from '../../lib/clock.ts';
import type { WebhookEvent } from '../../lib/prediction.ts';
import { type DeliveryHeaders, WebhookSender as Sender, type WebhookOptions } from '../../lib/webhooks.ts';

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

/**
 * The `webhook-id` of a prediction's `start` or `completed` delivery: the same whichever
 * replica sends it, so a receiver can drop the copy a replica that took the prediction over
 * sends again.
 */
export function stableMessageId(prediction: string, event: WebhookEvent): string {
  return `msg_${createHash('sha256').update(`${prediction}:${event}`).digest('base64url').slice(0, 24)}`;
}

export interface WebhookSenderOptions extends WebhookOptions {
  /** The signing secret (`whsec_...`) of a namespace. */
  secretFor(namespace: string): string | Promise<string>;
  log: Logger;
}

export class WebhookSender {
  private readonly sender: Sender;
  private readonly opts: WebhookSenderOptions;
  private readonly clock: Clock;

  constructor(opts: WebhookSenderOptions) {
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.sender = new Sender(opts.log, opts);
  }

  /** Registers a prediction's webhook and the events it wants. */
  register(id: string, namespace: string, url: string, filter: readonly WebhookEvent[]): void {
    this.sender.register(id, url, filter, this.signer(namespace));
  }

  /** Signs each delivery with the namespace's secret; its `webhook-id` stays across retries. */
  private signer(namespace: string): DeliveryHeaders {
    return async ({ prediction, event, body }) => {
      let secret: string;
      try {
        secret = await this.opts.secretFor(namespace);
      } catch (err) {
        this.opts.log.warn(
          { namespace, event, err: (err as Error).message },
          'no webhook signing secret; the webhook is not sent',
        );
        return undefined;
      }
      const msgId =
        event === 'start' || event === 'completed' ? stableMessageId(prediction, event) : newMessageId();
      return () => ({
        'user-agent': 'modelplane-webhooks',
        ...signedHeaders(secret, msgId, Math.floor(this.clock.now() / 1000), body),
      });
    };
  }

  /** Queues a delivery of `body()` (read when sent, so a throttled one carries the latest state). */
  notify(id: string, event: WebhookEvent, body: () => unknown): void {
    this.sender.notify(id, event, body);
  }

  /** Resolves when the deliveries queued so far for prediction `id` have finished. */
  settled(id: string): Promise<void> {
    return this.sender.settled(id);
  }

  /** Resolves when every queued delivery has finished (delivered or given up). */
  drain(): Promise<void> {
    return this.sender.drain();
  }

  close(): void {
    this.sender.close();
  }
}
