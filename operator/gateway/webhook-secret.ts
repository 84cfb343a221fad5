/**
 * The key that signs webhooks to callers, one per namespace (the prediction API's "owner"),
 * `whsec_` + 24 random bytes in standard base64 (Standard Webhooks).
 *
 * Each key lives in a Secret in the gateway's own namespace (the token namespace),
 * `modelplane-webhook-<namespace>`, made the first time it is asked for. Keeping them there
 * rather than in each owner's namespace keeps the gateway's Secret permissions inside its
 * own namespace: being able to create Secrets in every namespace would let it mint
 * ServiceAccount token Secrets anywhere.
 */
import { randomBytes } from 'node:crypto';
import { GROUP, LABEL } from '../../crds/index.ts';
import { Secrets } from '../resources.ts';
import { isConflict, type KubeClient } from '../runtime/index.ts';

export const WEBHOOK_SECRET_KEY = 'key';
export const WEBHOOK_SECRET_LABEL = `${GROUP}/webhook-secret-for`;
export const WEBHOOK_SECRET_FIELD_MANAGER = 'modelplane-gateway';

export function webhookSecretName(namespace: string): string {
  return `modelplane-webhook-${namespace}`;
}

/** A fresh signing key: `whsec_` and standard base64 of 24 random bytes (no `_` after the prefix). */
export function newWebhookKey(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

export class WebhookSecrets {
  private readonly cache = new Map<string, { key: string; expires: number }>();
  private readonly pending = new Map<string, Promise<string>>();

  private readonly client: KubeClient;
  /** Where the Secrets live: the gateway's namespace. */
  readonly secretNamespace: string;
  private readonly ttlMs: number;

  constructor(client: KubeClient, secretNamespace: string, ttlMs = 60_000) {
    this.client = client;
    this.secretNamespace = secretNamespace;
    this.ttlMs = ttlMs;
  }

  /** The namespace's signing key, made (and stored) the first time. */
  get(namespace: string): Promise<string> {
    const hit = this.cache.get(namespace);
    if (hit && hit.expires > Date.now()) return Promise.resolve(hit.key);
    let p = this.pending.get(namespace);
    if (!p) {
      p = this.load(namespace).finally(() => this.pending.delete(namespace));
      this.pending.set(namespace, p);
    }
    return p;
  }

  private async load(namespace: string): Promise<string> {
    const name = webhookSecretName(namespace);
    const read = async () => {
      const s = await this.client.find(Secrets, name, this.secretNamespace);
      const raw = s?.data?.[WEBHOOK_SECRET_KEY];
      return raw ? Buffer.from(raw, 'base64').toString('utf8') : undefined;
    };
    let key = await read();
    if (!key) {
      try {
        await this.client.create(
          Secrets,
          {
            apiVersion: 'v1',
            kind: 'Secret',
            type: 'Opaque',
            metadata: {
              name,
              namespace: this.secretNamespace,
              labels: { [WEBHOOK_SECRET_LABEL]: namespace, [LABEL.appManagedBy]: 'modelplane' },
            },
            stringData: { [WEBHOOK_SECRET_KEY]: newWebhookKey() },
          },
          { fieldManager: WEBHOOK_SECRET_FIELD_MANAGER },
        );
      } catch (err) {
        // Another replica made it first: theirs is the key.
        if (!isConflict(err)) throw err;
      }
      key = await read();
      if (!key)
        throw new Error(
          `the webhook signing Secret ${this.secretNamespace}/${name} has no "${WEBHOOK_SECRET_KEY}"`,
        );
    }
    this.cache.set(namespace, { key, expires: Date.now() + this.ttlMs });
    return key;
  }
}

let defaultStore: WebhookSecrets | undefined;

/** Makes `store` the one `webhookSecret` reads from (the gateway does this when it is built). */
export function setWebhookSecrets(store: WebhookSecrets | undefined): void {
  defaultStore = store;
}

/**
 * The signing key (`whsec_...`) of webhooks for predictions in `namespace`, from the
 * gateway built in this process.
 */
export function webhookSecret(namespace: string): Promise<string> {
  if (!defaultStore)
    return Promise.reject(new Error('no gateway in this process: webhook secrets are not configured'));
  return defaultStore.get(namespace);
}
