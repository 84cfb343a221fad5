/**
 * Keeps the serving certificate of a replica current. Every replica runs one:
 *
 * - `CertKeeper` (the operator's own certificates): reads the certificate Secret, writes
 *   what `plan` says it should hold next (a create, or a replace at the resourceVersion read,
 *   so that replicas racing to rotate make one rotation), publishes the CA bundle to the
 *   webhook configuration's `caBundle`, and hands the serving certificate to the server;
 * - `FileCertKeeper` (cert-manager's certificates, mounted from its Secret): reads
 *   `tls.crt` and `tls.key` from a folder and hands them on when they change.
 *
 * Both check again every `intervalMs`, and after a failure sooner (1 s, then doubling).
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { exponentialDelay } from '../lib/backoff.ts';
import { type Clock, realClock, sleep } from '../lib/clock.ts';
import { type CertBundle, type CertLifetimes, DEFAULT_LIFETIMES, plan, splitPem } from './certs.ts';

/** A key pair for the server. */
export interface ServingCert {
  cert: string;
  key: string;
}

/** Where the certificates are kept and the CA is published (the operator's Kubernetes side). */
export interface CertStore {
  /** The Secret's certificates (undefined when there is none) and its resourceVersion. */
  read(): Promise<{ bundle: CertBundle | undefined; version: string | undefined }>;
  /**
   * Creates the Secret (`version` undefined) or replaces it at `version`; throws
   * `StoreConflict` when another replica wrote first.
   */
  write(bundle: CertBundle, version: string | undefined): Promise<void>;
  /** The webhook configuration's caBundle (PEM; '' when unset), or null when it does not exist. */
  published(): Promise<string | null>;
  /** Sets the webhook configuration's caBundle. */
  publish(caBundle: string): Promise<void>;
}

/** Another replica wrote the Secret first. */
export class StoreConflict extends Error {}

interface LogLike {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
}

export interface KeeperOptions {
  /** Called with every new serving certificate (the first one included). */
  onCertificate: (cert: ServingCert) => void;
  log: LogLike;
  /** How often to check (default 30 s). */
  intervalMs?: number;
  clock?: Clock;
}

/** Runs `pass` every `intervalMs` until `signal` aborts; retries sooner after a failure. */
async function loop(
  pass: () => Promise<void>,
  what: string,
  opts: KeeperOptions,
  signal: AbortSignal,
): Promise<void> {
  const clock = opts.clock ?? realClock;
  let failures = 0;
  while (!signal.aborted) {
    try {
      await pass();
      failures = 0;
    } catch (err) {
      failures++;
      opts.log.warn({ err, failures }, `${what} failed; trying again`);
    }
    const wait = failures
      ? Math.min(exponentialDelay(failures - 1, 1000, 30_000), opts.intervalMs ?? 30_000)
      : (opts.intervalMs ?? 30_000);
    await sleep(wait, signal, clock);
  }
}

const normalize = (pem: string): string => splitPem(pem).join('\n');

export class CertKeeper {
  private readonly store: CertStore;
  private readonly names: readonly string[];
  private readonly lifetimes: CertLifetimes;
  private readonly opts: KeeperOptions;
  private served: ServingCert | undefined;

  constructor(
    store: CertStore,
    names: readonly string[],
    opts: KeeperOptions & { lifetimes?: Partial<CertLifetimes> },
  ) {
    this.store = store;
    this.names = names;
    this.lifetimes = { ...DEFAULT_LIFETIMES, ...opts.lifetimes };
    this.opts = opts;
  }

  /** The serving certificate handed on last. */
  get current(): ServingCert | undefined {
    return this.served;
  }

  /** One check: rotate what is due, publish the CA bundle, hand on a new serving certificate. */
  async pass(): Promise<void> {
    const clock = this.opts.clock ?? realClock;
    let { bundle, version } = await this.store.read();
    const published = await this.store.published();
    const next = await plan(bundle, {
      names: this.names,
      now: clock.now(),
      lifetimes: this.lifetimes,
      published,
    });
    if (next) {
      try {
        await this.store.write(next, version);
        this.opts.log.info(
          {
            created: !bundle,
            caRotated: !!bundle && next.caKey !== bundle.caKey,
            servingRotated: next.tlsCert !== bundle?.tlsCert,
          },
          'webhook certificates written',
        );
        bundle = next;
      } catch (err) {
        if (!(err instanceof StoreConflict)) throw err;
        // Another replica wrote first: take what it wrote.
        ({ bundle } = await this.store.read());
      }
    }
    if (!bundle) throw new Error('the certificate Secret is not readable after writing it');
    if (published !== null && normalize(published) !== normalize(bundle.caBundle)) {
      await this.store.publish(normalize(bundle.caBundle));
      this.opts.log.info({ cas: splitPem(bundle.caBundle).length }, 'webhook caBundle published');
    }
    if (this.served?.cert !== bundle.tlsCert || this.served?.key !== bundle.tlsKey) {
      this.served = { cert: bundle.tlsCert, key: bundle.tlsKey };
      this.opts.onCertificate(this.served);
    }
  }

  /** Checks every `intervalMs` until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    return loop(() => this.pass(), 'the webhook certificate check', this.opts, signal);
  }
}

/** Serving certificates written by someone else (cert-manager) into `dir`. */
export class FileCertKeeper {
  private readonly dir: string;
  private readonly opts: KeeperOptions;
  private served: ServingCert | undefined;

  constructor(dir: string, opts: KeeperOptions) {
    this.dir = dir;
    this.opts = opts;
  }

  get current(): ServingCert | undefined {
    return this.served;
  }

  async pass(): Promise<void> {
    const [cert, key] = await Promise.all([
      readFile(join(this.dir, 'tls.crt'), 'utf8'),
      readFile(join(this.dir, 'tls.key'), 'utf8'),
    ]);
    if (this.served?.cert === cert && this.served.key === key) return;
    this.served = { cert, key };
    this.opts.onCertificate(this.served);
  }

  run(signal: AbortSignal): Promise<void> {
    return loop(() => this.pass(), `reading the webhook certificate in ${this.dir}`, this.opts, signal);
  }
}
