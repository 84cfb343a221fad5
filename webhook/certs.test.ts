import { X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { type CertBundle, certNames, plan, servingProblem, splitPem } from './certs.ts';
import { CertKeeper, type CertStore, StoreConflict } from './keeper.ts';

const S = 1000;
const lifetimes = { caMs: 300 * S, servingMs: 90 * S, propagationMs: 10 * S };
const names = ['modelplane-webhook.mp.svc', '127.0.0.1'];
const t0 = Date.parse('2026-03-01T00:00:00Z');

const x = (pem: string) => new X509Certificate(pem);
const ca = (b: CertBundle) => x(splitPem(b.caBundle)[0]!);

async function first(): Promise<CertBundle> {
  const b = await plan(undefined, { names, now: t0, lifetimes, published: '' });
  if (!b) throw new Error('want certificates');
  return b;
}

describe('plan', () => {
  it('makes a CA and a serving certificate it signs, for every name', async () => {
    const b = await first();
    const tls = x(b.tlsCert);
    expect(ca(b).ca).toBe(true);
    expect(tls.ca).toBe(false);
    expect(tls.checkIssued(ca(b))).toBe(true);
    expect(tls.verify(ca(b).publicKey)).toBe(true);
    expect(certNames(tls)).toEqual([...names].sort());
    expect(Date.parse(tls.validTo) - t0).toBe(90 * S);
    expect(servingProblem(b, names, t0)).toBeUndefined();
  });

  it('changes nothing until two thirds of the serving life have passed, then renews it with the same CA', async () => {
    const b = await first();
    const published = b.caBundle;
    const settled = await plan(b, { names, now: t0 + S, lifetimes, published });
    expect(settled?.caPublishedAt).toBeDefined(); // the CA was seen published
    const steady = settled!;
    expect(await plan(steady, { names, now: t0 + 59 * S, lifetimes, published })).toBeUndefined();
    const renewed = await plan(steady, { names, now: t0 + 61 * S, lifetimes, published });
    expect(renewed?.tlsCert).not.toBe(steady.tlsCert);
    expect(renewed?.caBundle).toBe(steady.caBundle);
    expect(x(renewed!.tlsCert).checkIssued(ca(steady))).toBe(true);
  });

  it('renews the serving certificate at once when the names change', async () => {
    const b = await first();
    const next = await plan(b, { names: ['other.mp.svc'], now: t0 + S, lifetimes, published: b.caBundle });
    expect(certNames(x(next!.tlsCert))).toEqual(['other.mp.svc']);
  });

  it('rotates the CA in two steps: the new CA joins the bundle, and signs only once published a while', async () => {
    // A serving certificate as long-lived as its CA, so that it is still valid when the CA is due.
    const lifetimes = { caMs: 300 * S, servingMs: 400 * S, propagationMs: 10 * S };
    let b = (await plan(undefined, { names, now: t0, lifetimes, published: '' }))!;
    const oldCa = splitPem(b.caBundle)[0]!;
    // Two thirds of the CA's life: a new CA first in the bundle, the old one kept, the served
    // certificate unchanged (it still chains to the old CA, which the API server trusts).
    const at = t0 + 201 * S;
    b = (await plan(
      { ...b, caPublishedAt: new Date(t0).toISOString() },
      { names, now: at, lifetimes, published: oldCa },
    ))!;
    const cas = splitPem(b.caBundle);
    expect(cas).toHaveLength(2);
    expect(cas[1]).toBe(oldCa);
    expect(b.caPublishedAt).toBeUndefined();
    expect(servingProblem(b, names, at)).toBe('not signed by the current CA');
    // Not published yet: the served certificate stays.
    expect(await plan(b, { names, now: at + S, lifetimes, published: oldCa })).toBeUndefined();
    // Published: noted, and after the propagation time a certificate signed by the new CA.
    const noted = (await plan(b, { names, now: at + 2 * S, lifetimes, published: b.caBundle }))!;
    expect(noted.tlsCert).toBe(b.tlsCert);
    expect(noted.caPublishedAt).toBe(new Date(at + 2 * S).toISOString());
    expect(await plan(noted, { names, now: at + 5 * S, lifetimes, published: b.caBundle })).toBeUndefined();
    const signed = (await plan(noted, { names, now: at + 13 * S, lifetimes, published: b.caBundle }))!;
    expect(x(signed.tlsCert).checkIssued(x(cas[0]!))).toBe(true);
    // The old CA leaves the bundle when it expires.
    const later = (await plan(signed, { names, now: t0 + 301 * S, lifetimes, published: signed.caBundle }))!;
    expect(splitPem(later.caBundle)).toEqual([cas[0]]);
  });

  it('starts over when the Secret holds something unreadable', async () => {
    const b = await first();
    const next = await plan(
      { ...b, caKey: 'garbage' },
      { names, now: t0 + S, lifetimes, published: b.caBundle },
    );
    expect(next?.caBundle).not.toBe(b.caBundle);
  });
});

/** A Secret and a configuration in memory, as the API server would keep them. */
class MemoryStore implements CertStore {
  bundle: CertBundle | undefined;
  version = 0;
  config: string | null = '';
  writes = 0;
  async read() {
    return { bundle: this.bundle, version: this.bundle ? String(this.version) : undefined };
  }
  async write(b: CertBundle, version: string | undefined) {
    if (
      (version === undefined) !== (this.bundle === undefined) ||
      (version && version !== String(this.version))
    )
      throw new StoreConflict('conflict');
    this.bundle = b;
    this.version++;
    this.writes++;
  }
  async published() {
    return this.config;
  }
  async publish(caBundle: string) {
    this.config = caBundle;
  }
}

describe('CertKeeper', () => {
  const log = { info: () => {}, warn: () => {} };
  const clock = (now: () => number) => ({ now, mono: now, setTimer: () => ({ cancel: () => {} }) });

  it('makes the Secret, publishes the CA and hands on the certificate; a second pass writes nothing', async () => {
    const store = new MemoryStore();
    const served: string[] = [];
    const keeper = new CertKeeper(store, names, {
      log,
      lifetimes,
      clock: clock(() => t0),
      onCertificate: (c) => served.push(c.cert),
    });
    await keeper.pass();
    expect(store.config).toBe(splitPem(store.bundle!.caBundle).join('\n'));
    expect(served).toEqual([store.bundle!.tlsCert]);
    await keeper.pass(); // notes the CA as published
    const writes = store.writes;
    await keeper.pass();
    expect(store.writes).toBe(writes);
    expect(served).toHaveLength(1);
  });

  it('takes what another replica wrote when it loses the race', async () => {
    const store = new MemoryStore();
    const a = new CertKeeper(store, names, {
      log,
      lifetimes,
      clock: clock(() => t0),
      onCertificate: () => {},
    });
    await a.pass();
    const theirs = store.bundle!;
    // A replica that read before the write: its create conflicts, and it serves the Secret's.
    const racing: CertStore = {
      ...store,
      read: async () => ({ bundle: undefined, version: undefined }),
      write: store.write.bind(store),
      published: store.published.bind(store),
      publish: store.publish.bind(store),
    };
    let got: string | undefined;
    const b = new CertKeeper(
      {
        ...racing,
        read: (() => {
          let n = 0;
          return async () => (n++ === 0 ? { bundle: undefined, version: undefined } : store.read());
        })(),
      },
      names,
      {
        log,
        lifetimes,
        clock: clock(() => t0),
        onCertificate: (c) => {
          got = c.cert;
        },
      },
    );
    await b.pass();
    expect(got).toBe(theirs.tlsCert);
    expect(store.bundle).toBe(theirs);
  });
});
