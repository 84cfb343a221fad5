/**
 * The webhook's own certificates, without cert-manager: a CA, and a serving certificate it
 * signs for the names the API server dials. `plan` decides, from what is stored and the time,
 * what the Secret should hold next; the keeper (keeper.ts) stores it and publishes the CA to
 * the webhook configuration's `caBundle`.
 *
 * Rotation never leaves the API server without trust in the certificate being served:
 * - the serving certificate is renewed once two thirds of its life have passed, signed by
 *   the same CA (already trusted), so replicas may swap it in at any moment;
 * - the CA is renewed the same way, but the new CA joins the bundle beside the old one, and
 *   only once the bundle with it has been published (the configuration's `caBundle`) for a
 *   while (`propagationMs`) is a serving certificate signed by it issued;
 * - a CA leaves the bundle when it expires.
 *
 * Certificates are made with node-forge (X.509 writing is not in node:crypto); keys are RSA
 * 2048 from node:crypto; reading and checking uses node:crypto's X509Certificate.
 */
import { createPrivateKey, generateKeyPair, X509Certificate } from 'node:crypto';
import { isIP } from 'node:net';
import { promisify } from 'node:util';
import forge from 'node-forge';

const generateKeyPairAsync = promisify(generateKeyPair);

/** What the certificate Secret holds. */
export interface CertBundle {
  /** The CAs the API server should trust, PEM, the current (signing) CA first. */
  caBundle: string;
  /** The current CA's private key, PEM (PKCS#8). */
  caKey: string;
  /** The serving certificate, PEM. */
  tlsCert: string;
  /** Its private key, PEM (PKCS#8). */
  tlsKey: string;
  /** When the current CA was first seen in the published `caBundle` (RFC 3339). */
  caPublishedAt?: string;
}

export interface CertLifetimes {
  /** How long a CA is valid (default 3 years). */
  caMs: number;
  /** How long a serving certificate is valid (default 90 days). */
  servingMs: number;
  /** How long a new CA must have been published before it signs the serving certificate. */
  propagationMs: number;
}

const DAY = 86_400_000;
export const DEFAULT_LIFETIMES: CertLifetimes = {
  caMs: 3 * 365 * DAY,
  servingMs: 90 * DAY,
  propagationMs: 60_000,
};

/** Certificates start this long before they are made, for clocks a little behind. */
const BACKDATE_MS = 5 * 60_000;
/** A certificate is renewed once this share of its life has passed. */
const RENEW_AFTER = 2 / 3;

/** Splits concatenated PEM certificates. */
export function splitPem(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/** PEM with `\n` line ends and no trailing newline, as splitPem gives it back. */
function toPem(cert: forge.pki.Certificate): string {
  return forge.pki.certificateToPem(cert).replace(/\r\n/g, '\n').trim();
}

async function newKey(): Promise<{ privateKey: string; publicKey: string }> {
  return generateKeyPairAsync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
}

function serial(): string {
  // Positive, 16 bytes: the first hex digit below 8.
  const hex = forge.util.bytesToHex(forge.random.getBytesSync(16));
  return (Number.parseInt(hex[0]!, 16) & 7).toString(16) + hex.slice(1);
}

function validity(cert: forge.pki.Certificate, now: number, lifetimeMs: number, notAfterMax?: number): void {
  cert.validity.notBefore = new Date(now - BACKDATE_MS);
  cert.validity.notAfter = new Date(Math.min(now + lifetimeMs, notAfterMax ?? Number.POSITIVE_INFINITY));
}

/** A new self-signed CA. */
export async function newCa(now: number, lifetimeMs: number): Promise<{ cert: string; key: string }> {
  const { privateKey, publicKey } = await newKey();
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = serial();
  validity(cert, now, lifetimeMs);
  const subject = [{ name: 'commonName', value: `modelplane-webhook-ca-${Math.floor(now / 1000)}` }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  cert.setExtensions([
    { name: 'basicConstraints', cA: true, pathLenConstraint: 0, critical: true },
    { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    { name: 'subjectKeyIdentifier' },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
  return { cert: toPem(cert), key: privateKey };
}

/** A serving certificate for `names` (DNS names and IP addresses), signed by the CA. */
export async function issueServing(
  ca: { cert: string; key: string },
  names: readonly string[],
  now: number,
  lifetimeMs: number,
): Promise<{ cert: string; key: string }> {
  if (names.length === 0) throw new Error('a serving certificate needs at least one name');
  const { privateKey, publicKey } = await newKey();
  const caCert = forge.pki.certificateFromPem(ca.cert);
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = serial();
  validity(cert, now, lifetimeMs, caCert.validity.notAfter.getTime());
  cert.setSubject([{ name: 'commonName', value: names[0]! }]);
  cert.setIssuer(caCert.subject.attributes);
  cert.setExtensions([
    { name: 'basicConstraints', cA: false, critical: true },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
    { name: 'extKeyUsage', serverAuth: true },
    {
      name: 'subjectAltName',
      altNames: names.map((n) => (isIP(n) ? { type: 7, ip: n } : { type: 2, value: n })),
    },
    { name: 'authorityKeyIdentifier', keyIdentifier: caCert.generateSubjectKeyIdentifier().getBytes() },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(ca.key), forge.md.sha256.create());
  return { cert: toPem(cert), key: privateKey };
}

/** The names (DNS and IP) a certificate is for, sorted. */
export function certNames(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '')
    .split(', ')
    .filter(Boolean)
    .map((entry) => entry.replace(/^(DNS|IP Address):/, ''))
    .sort();
}

function parse(pem: string): X509Certificate | undefined {
  try {
    return new X509Certificate(pem);
  } catch {
    return undefined;
  }
}

const expires = (c: X509Certificate): number => new Date(c.validTo).getTime();
const starts = (c: X509Certificate): number => new Date(c.validFrom).getTime();
function due(c: X509Certificate, now: number): boolean {
  const from = starts(c) + BACKDATE_MS;
  return now >= from + (expires(c) - from) * RENEW_AFTER;
}

/** Why the stored certificates are not usable as they are (undefined when they are). */
export function servingProblem(b: CertBundle, names: readonly string[], now: number): string | undefined {
  const ca = parse(splitPem(b.caBundle)[0] ?? '');
  const tls = parse(b.tlsCert);
  if (!ca || !tls) return 'unreadable';
  if (now >= expires(tls)) return 'expired';
  if (!tls.checkIssued(ca) || !tls.verify(ca.publicKey)) return 'not signed by the current CA';
  if (certNames(tls).join(',') !== [...names].sort().join(',')) return 'names changed';
  if (due(tls, now)) return 'due for renewal';
  return undefined;
}

/**
 * What the Secret should hold next, or undefined when it is right as it is. `published` is
 * the `caBundle` the webhook configuration has now (undefined when there is no
 * configuration: nobody calls the webhook, so nothing waits on trust).
 */
export async function plan(
  stored: CertBundle | undefined,
  opts: { names: readonly string[]; now: number; lifetimes: CertLifetimes; published: string | null },
): Promise<CertBundle | undefined> {
  const { names, now, lifetimes } = opts;
  const cas = stored ? splitPem(stored.caBundle).map((pem) => ({ pem, x: parse(pem) })) : [];
  const current = cas[0]?.x;
  const keyMatches = (() => {
    if (!current || !stored) return false;
    try {
      return current.checkPrivateKey(createPrivateKey(stored.caKey));
    } catch {
      return false;
    }
  })();
  if (!stored || !current || !keyMatches || now >= expires(current) || !parse(stored.tlsCert)) {
    const ca = await newCa(now, lifetimes.caMs);
    const tls = await issueServing(ca, names, now, lifetimes.servingMs);
    return { caBundle: ca.cert, caKey: ca.key, tlsCert: tls.cert, tlsKey: tls.key };
  }
  // Expired CAs leave the bundle.
  const trusted = cas.filter((c) => c.x && now < expires(c.x));
  let next: CertBundle = { ...stored, caBundle: trusted.map((c) => c.pem).join('\n') };
  if (due(current, now)) {
    const ca = await newCa(now, lifetimes.caMs);
    // The serving certificate stays as it is (signed by the old CA, still in the bundle) until
    // the new CA has been published for a while.
    return {
      ...next,
      caBundle: [ca.cert, ...trusted.map((c) => c.pem)].join('\n'),
      caKey: ca.key,
      caPublishedAt: undefined,
    };
  }
  const caPem = trusted[0]!.pem;
  const isPublished = opts.published === null || opts.published.includes(caPem.trim());
  if (isPublished && !next.caPublishedAt) next = { ...next, caPublishedAt: new Date(now).toISOString() };
  const problem = servingProblem(next, names, now);
  if (problem) {
    const settled =
      opts.published === null ||
      (isPublished &&
        next.caPublishedAt !== undefined &&
        now - Date.parse(next.caPublishedAt) >= lifetimes.propagationMs);
    // The served certificate is no longer valid at all: a new one at once, trusted or not yet.
    if (settled || problem === 'expired' || problem === 'unreadable' || problem === 'names changed') {
      const tls = await issueServing({ cert: caPem, key: next.caKey }, names, now, lifetimes.servingMs);
      next = { ...next, tlsCert: tls.cert, tlsKey: tls.key };
    }
  }
  return sameBundle(next, stored) ? undefined : next;
}

function sameBundle(a: CertBundle, b: CertBundle): boolean {
  return (
    a.caBundle.trim() === b.caBundle.trim() &&
    a.caKey === b.caKey &&
    a.tlsCert === b.tlsCert &&
    a.tlsKey === b.tlsKey &&
    a.caPublishedAt === b.caPublishedAt
  );
}
