import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  checkSidecarToken,
  operatorPublicKey,
  podAudience,
  publicKeyText,
  signSidecarToken,
} from './sidecar-token.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const now = 1_800_000_000;

describe('sidecar tokens', () => {
  it('are good for their pod until they expire (with a minute of clock skew)', () => {
    const token = signSidecarToken(privateKey, '10.0.0.7:8080', now + 600);
    expect(token).toMatch(/^mps1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/);
    expect(checkSidecarToken(publicKey, token, '10.0.0.7:8080', now)).toBeUndefined();
    expect(checkSidecarToken(publicKey, token, '10.0.0.7:8080', now + 659)).toBeUndefined();
    expect(checkSidecarToken(publicKey, token, '10.0.0.7:8080', now + 661)).toBe('the token has expired');
    expect(checkSidecarToken(publicKey, token, '10.0.0.8:8080', now)).toBe('the token is for another pod');
  });

  it('refuse another key, a changed payload and other forms', () => {
    const other = generateKeyPairSync('ed25519');
    const forged = signSidecarToken(other.privateKey, '10.0.0.7:8080', now + 600);
    expect(checkSidecarToken(publicKey, forged, '10.0.0.7:8080', now)).toContain('signature');
    const [p, , s] = signSidecarToken(privateKey, '10.0.0.7:8080', now + 600).split('.');
    const payload = Buffer.from(JSON.stringify({ aud: '10.0.0.7:8080', exp: now + 99_999 })).toString(
      'base64url',
    );
    expect(checkSidecarToken(publicKey, `${p}.${payload}.${s}`, '10.0.0.7:8080', now)).toContain('signature');
    expect(checkSidecarToken(publicKey, 'mp_abc', '10.0.0.7:8080', now)).toBe(
      'not a modelplane operator token',
    );
  });

  it('carry the public key as base64 SPKI DER, and name IPv6 pods as URLs do', () => {
    const text = publicKeyText(publicKey);
    expect(operatorPublicKey(text).equals(publicKey)).toBe(true);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey;
    expect(() => operatorPublicKey(publicKeyText(rsa))).toThrow(/Ed25519/);
    expect(podAudience('fd00::7', 8080)).toBe('[fd00::7]:8080');
    expect(podAudience('fd00::7', 8080)).toBe(new URL('http://[fd00::7]:8080').host);
    expect(podAudience('10.0.0.7', '8080')).toBe('10.0.0.7:8080');
  });
});
