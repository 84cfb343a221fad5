/** What callers send with a prediction, parsed on the HTTP side. */
import { describe, expect, it } from 'vitest';
import { EgressPolicy } from '../../../lib/egress.ts';
import { HttpError } from '../../../lib/http.ts';
import { parseCancelAfter, parsePreferWait, parseVersionRef, parseWebhook } from './parse.ts';

describe('Prefer: wait', () => {
  it('reads bare wait as 60 and clamps wait=N to 1..60', () => {
    expect(parsePreferWait(undefined)).toBeUndefined();
    expect(parsePreferWait('respond-async')).toBeUndefined();
    expect(parsePreferWait('wait')).toBe(60);
    expect(parsePreferWait('wait=5')).toBe(5);
    expect(parsePreferWait('wait=0')).toBe(1);
    expect(parsePreferWait('wait=600')).toBe(60);
    expect(parsePreferWait('respond-async, wait=10')).toBe(10);
  });
});

describe('Cancel-After', () => {
  it('parses durations', () => {
    expect(parseCancelAfter(undefined)).toBeUndefined();
    expect(parseCancelAfter('30s')).toBe(30_000);
    expect(parseCancelAfter('5m')).toBe(300_000);
    expect(parseCancelAfter('1h30m')).toBe(5_400_000);
    expect(parseCancelAfter('1h2m3s')).toBe(3_723_000);
    expect(parseCancelAfter('90')).toBe(90_000);
    expect(parseCancelAfter('1.5m')).toBe(90_000);
  });
  it('refuses malformed values and anything under 5 s with 422', () => {
    for (const bad of ['4s', 'soon', '5x', '1h30', '-5s', 'm']) {
      const err = (() => {
        try {
          parseCancelAfter(bad);
        } catch (e) {
          return e;
        }
      })();
      expect(err, bad).toBeInstanceOf(HttpError);
      expect((err as HttpError).status).toBe(422);
    }
    expect(() => parseCancelAfter('4s')).toThrow(/at least 5s/);
  });
});

describe('the version of POST /predictions', () => {
  const id = 'ab'.repeat(32);
  it('reads an id, owner/name:id and owner/name', () => {
    expect(parseVersionRef(id)).toEqual({ kind: 'id', id });
    expect(parseVersionRef(`acme/llm:${id}`)).toEqual({
      kind: 'model-version',
      owner: 'acme',
      name: 'llm',
      id,
    });
    expect(parseVersionRef('acme/llm')).toEqual({ kind: 'model', owner: 'acme', name: 'llm' });
  });
  it('refuses anything else with 422 naming the field', () => {
    for (const bad of [undefined, '', 'abc', 'acme/llm:xyz', 'a/b/c', 'ACME/llm', 42]) {
      expect(() => parseVersionRef(bad), String(bad)).toThrow(HttpError);
    }
    try {
      parseVersionRef('nope');
    } catch (e) {
      expect((e as HttpError).extra.invalid_fields).toEqual([expect.objectContaining({ field: 'version' })]);
    }
  });
});

describe('webhook fields', () => {
  it('defaults the filter to every event and checks the URL and events', () => {
    expect(parseWebhook('https://example.com/hook', undefined)).toEqual({
      webhook: 'https://example.com/hook',
      events: ['start', 'output', 'logs', 'completed'],
    });
    expect(parseWebhook(undefined, ['completed']).events).toEqual(['completed']);
    expect(() => parseWebhook('ftp://x', undefined)).toThrow(/http\(s\) URL/);
    expect(() => parseWebhook('https://x', ['done'])).toThrow(/webhook_events_filter/);
  });

  it('refuses a webhook whose literal host is a private, loopback or link-local address (422 on webhook)', () => {
    const strict = new EgressPolicy();
    for (const url of [
      'http://127.0.0.1:9000/hook',
      'http://localhost/hook',
      'http://169.254.169.254/latest/meta-data/',
      'http://10.0.0.8/',
      'http://[::1]/',
      'http://[fd00::5]/',
      'http://100.64.1.1/',
      'http://0.0.0.0/',
    ]) {
      let err: HttpError | undefined;
      try {
        parseWebhook(url, undefined, strict);
      } catch (e) {
        err = e as HttpError;
      }
      expect(err?.status, url).toBe(422);
      expect(err?.extra.invalid_fields).toEqual([
        expect.objectContaining({
          field: 'webhook',
          description: expect.stringMatching(/may not point at a private/),
        }),
      ]);
    }
    // A public address, a name (checked when it connects), and an allowed range pass.
    expect(parseWebhook('http://8.8.8.8/hook', undefined, strict).webhook).toBe('http://8.8.8.8/hook');
    expect(parseWebhook('https://hooks.internal/x', undefined, strict).webhook).toBe(
      'https://hooks.internal/x',
    );
    const loopback = new EgressPolicy(['127.0.0.0/8']);
    expect(parseWebhook('http://127.0.0.1:9000/hook', undefined, loopback).webhook).toBe(
      'http://127.0.0.1:9000/hook',
    );
  });
});
