/**
 * The operator's key for its calls to model pods' sidecars (lib/sidecar-token.ts): an Ed25519
 * key pair in the Secret `modelplane-sidecar-key` of the operator's own namespace, made by the
 * first replica that needs it and read by every other. The controllers put the public half in
 * each model pod's environment; the gateway signs its calls with the private half.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { LABEL } from '../crds/index.ts';
import { publicKeyText, signSidecarToken } from '../lib/sidecar-token.ts';
import { Secrets } from './resources.ts';
import { isConflict, type KubeClient } from './runtime/index.ts';

export const SIDECAR_KEY_SECRET = 'modelplane-sidecar-key';
const PRIVATE_KEY = 'ed25519.pem';
/** How long a token is good for; one is reused for half of that. */
const TOKEN_SECONDS = 600;

export interface SidecarKeyPair {
  privateKey: KeyObject;
  /** base64 SPKI DER, as MODELPLANE_OPERATOR_KEY carries it. */
  publicKey: string;
}

function fromPem(pem: string): SidecarKeyPair {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new Error(`${SIDECAR_KEY_SECRET} does not hold an Ed25519 key`);
  return { privateKey, publicKey: publicKeyText(createPublicKey(privateKey)) };
}

/** The key pair of the Secret in `namespace`, made the first time. */
export async function loadSidecarKey(client: KubeClient, namespace: string): Promise<SidecarKeyPair> {
  const read = async () => {
    const s = await client.find(Secrets, SIDECAR_KEY_SECRET, namespace);
    const raw = s?.data?.[PRIVATE_KEY];
    return raw ? Buffer.from(raw, 'base64').toString('utf8') : undefined;
  };
  let pem = await read();
  if (!pem) {
    const { privateKey } = generateKeyPairSync('ed25519');
    try {
      await client.create(
        Secrets,
        {
          apiVersion: 'v1',
          kind: 'Secret',
          type: 'Opaque',
          metadata: {
            name: SIDECAR_KEY_SECRET,
            namespace,
            labels: { [LABEL.appManagedBy]: 'modelplane', [LABEL.appPartOf]: 'modelplane' },
          },
          stringData: { [PRIVATE_KEY]: privateKey.export({ format: 'pem', type: 'pkcs8' }).toString() },
        },
        { fieldManager: 'modelplane-sidecar-key' },
      );
    } catch (err) {
      // Another replica made it first: theirs is the key.
      if (!isConflict(err)) throw err;
    }
    pem = await read();
    if (!pem) throw new Error(`the Secret ${namespace}/${SIDECAR_KEY_SECRET} has no "${PRIVATE_KEY}"`);
  }
  return fromPem(pem);
}

/**
 * The key, loaded once (a failed load is tried again on the next call), and the tokens it
 * signs, one per pod address, reused for half their life.
 */
export class SidecarKey {
  private loading: Promise<SidecarKeyPair> | undefined;
  /** The `Authorization` header for each sidecar base URL, and when to sign a new one. */
  private readonly tokens = new Map<string, { token: string; renewAt: number }>();
  private readonly load: () => Promise<SidecarKeyPair>;

  constructor(load: () => Promise<SidecarKeyPair>) {
    this.load = load;
  }

  static inNamespace(client: KubeClient, namespace: string): SidecarKey {
    return new SidecarKey(() => loadSidecarKey(client, namespace));
  }

  pair(): Promise<SidecarKeyPair> {
    this.loading ??= this.load().catch((err: unknown) => {
      this.loading = undefined;
      throw err;
    });
    return this.loading;
  }

  async publicKey(): Promise<string> {
    return (await this.pair()).publicKey;
  }

  /** The `Authorization` header for a call to the sidecar at `base` (`http://ip:port`). */
  async authorization(base: string, nowMs = Date.now()): Promise<string> {
    // Kept by `base` as given, the whole header: a call finds it without parsing the URL.
    const hit = this.tokens.get(base);
    if (hit && hit.renewAt > nowMs) return hit.token;
    const aud = new URL(base).host;
    const { privateKey } = await this.pair();
    const token = `Bearer ${signSidecarToken(privateKey, aud, nowMs / 1000 + TOKEN_SECONDS)}`;
    if (this.tokens.size >= 10_000) this.tokens.clear();
    this.tokens.set(base, { token, renewAt: nowMs + (TOKEN_SECONDS * 1000) / 2 });
    return token;
  }
}
