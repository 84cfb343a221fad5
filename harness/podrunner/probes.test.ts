import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { ProbeResult, probeTiming, resolvePort, runProbe } from './probes.ts';

describe('ProbeResult', () => {
  it('turns ready after successThreshold successes and not ready after failureThreshold failures', () => {
    const r = new ProbeResult(2, 3, false);
    expect(r.record(true)).toBe(false);
    expect(r.ok).toBe(false);
    expect(r.record(true)).toBe(true);
    expect(r.ok).toBe(true);
    expect(r.record(false)).toBe(false);
    expect(r.record(false)).toBe(false);
    expect(r.record(true)).toBe(false); // the run of failures starts again
    r.record(false);
    r.record(false);
    expect(r.record(false, 'HTTP probe failed with statuscode: 503')).toBe(true);
    expect(r.ok).toBe(false);
    expect(r.lastMessage).toContain('503');
  });

  it('starts passed for liveness', () => {
    const r = new ProbeResult(1, 1, true);
    expect(r.ok).toBe(true);
    expect(r.record(false)).toBe(true);
  });
});

describe('probe settings', () => {
  it('applies the kubelet defaults', () => {
    expect(probeTiming({})).toEqual({
      initialDelayMs: 0,
      periodMs: 10_000,
      timeoutMs: 1_000,
      successThreshold: 1,
      failureThreshold: 3,
    });
    expect(probeTiming({ periodSeconds: 2, failureThreshold: 1 })).toMatchObject({
      periodMs: 2_000,
      failureThreshold: 1,
    });
  });

  it('resolves named ports from the container', () => {
    const c = { ports: [{ name: 'api', containerPort: 8080 }] };
    expect(resolvePort('api', c)).toBe(8080);
    expect(resolvePort(9090, c)).toBe(9090);
    expect(resolvePort('5000', c)).toBe(5000);
    expect(() => resolvePort('metrics', c)).toThrow(/not a named port/);
  });
});

describe('runProbe', () => {
  let code = 200;
  const server = createServer((req, res) => {
    res.writeHead(req.url === '/ready' ? code : 404).end();
  });
  const listening = new Promise<number>((r) =>
    server.listen(0, '127.0.0.1', () => r((server.address() as AddressInfo).port)),
  );
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  it('GETs the path on the pod IP and port: 2xx and 3xx pass, others fail', async () => {
    const port = await listening;
    const c = { ports: [{ name: 'api', containerPort: port }] };
    expect(await runProbe({ httpGet: { path: '/ready', port: 'api' } }, c, '127.0.0.1')).toEqual({
      ok: true,
      message: '',
    });
    code = 302;
    expect((await runProbe({ httpGet: { path: '/ready', port } }, c, '127.0.0.1')).ok).toBe(true);
    code = 503;
    expect(await runProbe({ httpGet: { path: '/ready', port } }, c, '127.0.0.1')).toEqual({
      ok: false,
      message: 'HTTP probe failed with statuscode: 503',
    });
  });

  it('connects for tcpSocket, fails on a closed port, and never dials off loopback', async () => {
    const port = await listening;
    expect((await runProbe({ tcpSocket: { port } }, {}, '127.0.0.1')).ok).toBe(true);
    const closed = await runProbe({ tcpSocket: { port: 1 } }, {}, '127.0.0.1');
    expect(closed.ok).toBe(false);
    const off = await runProbe({ httpGet: { port, host: '10.0.0.1' } }, {}, '127.0.0.1');
    expect(off).toEqual({ ok: false, message: expect.stringContaining('loopback only') });
    expect((await runProbe({ exec: { command: ['true'] } }, {}, '127.0.0.1')).ok).toBe(false);
  });
});
