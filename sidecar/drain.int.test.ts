/**
 * `modelplane sidecar` as its own process in front of a real Cog server: SIGTERM drains it
 * without losing an accepted prediction. Needs the venv of `make python`.
 */

import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { waitFor } from '../harness/processes.ts';
import { call } from './testing/client.ts';
import { type ModelServer, startModelServer } from './testing/model-server.ts';
import { type RunningSidecar, type SidecarProcess, spawnSidecar, startSidecar } from './testing/sidecar.ts';
import { openSse } from './testing/sse.ts';

const cleanup: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const c of cleanup.reverse()) await c();
});

describe('modelplane sidecar on SIGTERM', () => {
  it('stops taking work, finishes running and queued predictions, delivers them, then exits', async () => {
    const completed = new Map<string, { status: string; output: unknown }>();
    const receiver: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
          id: string;
          status: string;
          output: unknown;
        };
        completed.set(body.id, body);
        res.writeHead(204).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    cleanup.push(() => new Promise((r) => receiver.close(() => r())));
    const hook = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/done`;

    // As in a pod: the model server ignores SIGTERM and stops when the sidecar says so.
    const ms: ModelServer = await startModelServer('sleep', {
      concurrency: 2,
      awaitExplicitShutdown: true,
      throttleSeconds: 0,
    });
    cleanup.push(() => ms.stop());
    const sc: SidecarProcess = await spawnSidecar([
      '--model-url',
      ms.url,
      '--concurrency',
      '2',
      '--queue-size',
      '4',
      '--health-interval',
      '0.1',
      // The webhook receiver listens on loopback.
      '--webhook-allow-cidrs',
      '127.0.0.0/8',
    ]);
    cleanup.push(() => sc.process.stop());
    await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).ok, {
      timeoutMs: 60_000,
    });

    const ids = ['d-1', 'd-2', 'd-3', 'd-4'];
    const seconds = [1.5, 1.5, 0.5, 0.5];
    for (const [i, id] of ids.entries()) {
      const r = await call('POST', `${sc.api}/predictions`, {
        id,
        input: { seconds: seconds[i] },
        webhook: hook,
        webhook_events_filter: ['completed'],
      });
      expect(r.status).toBe(201);
    }
    const load = await call('GET', `${sc.api}/load`);
    expect(load.body).toMatchObject({ inflight: 2, queued: 2 });
    const held = call<{ status: string }>('GET', `${sc.api}/predictions/d-4`, undefined, {
      prefer: 'wait=60',
    });

    sc.process.signal('SIGTERM');
    const ready = await waitFor('readiness to drop', async () => {
      const r = await call('GET', `${sc.api}/ready`);
      return r.status === 503 ? r : undefined;
    });
    expect(ready.body).toMatchObject({ ready: false, reason: 'Draining' });
    const refused = await call('POST', `${sc.api}/predictions`, { input: { seconds: 0.1 } });
    expect(refused.status).toBe(503);
    expect(refused.body).toMatchObject({ title: 'Draining', status: 503 });
    expect(refused.headers.get('content-type')).toBe('application/problem+json');

    expect((await held).body.status).toBe('succeeded');
    const code = await Promise.race([
      sc.process.exited,
      new Promise((_, reject) =>
        setTimeout(() => reject(new Error(`the sidecar did not exit:\n${sc.process.log()}`)), 30_000),
      ),
    ]);
    expect(code).toBe(0);
    expect([...completed.keys()].sort()).toEqual(ids);
    for (const [i, id] of ids.entries()) {
      expect(completed.get(id)).toMatchObject({ status: 'succeeded', output: `slept ${seconds[i]} s` });
    }
    // It asked the model server to shut down once everything was done.
    await waitFor('the model server to exit', () => !ms.process.running, { timeoutMs: 15_000 });
    expect(sc.process.log()).toContain('"msg":"drained"');
  });
});

describe('a draining sidecar and the final records', () => {
  let ms: ModelServer;
  const sleepServer = async () => {
    if (!ms) {
      ms = await startModelServer('sleep', { concurrency: 2, throttleSeconds: 0 });
      cleanup.push(() => ms.stop());
    }
    return ms;
  };
  const readySidecar = async (drainReadTimeout: number): Promise<RunningSidecar> => {
    const sc = await startSidecar((await sleepServer()).url, { concurrency: 2, drainReadTimeout });
    cleanup.push(() => sc.stop());
    await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).ok, {
      timeoutMs: 60_000,
    });
    return sc;
  };

  it('keeps answering after its last prediction ends until the caller has read the final record', async () => {
    const sc = await readySidecar(30);
    expect((await call('POST', `${sc.api}/predictions`, { id: 'r-1', input: { seconds: 1 } })).status).toBe(
      201,
    );
    // As the gateway follows a prediction: its event stream, then the record once it is done.
    const stream = await openSse(`${sc.api}/predictions/r-1/stream`);
    let drainedAt: number | undefined;
    const drained = sc.sidecar.drain().then(() => {
      drainedAt = performance.now();
    });
    const events = await stream.events;
    expect(events.at(-1)?.event).toBe('done');
    expect(drainedAt).toBeUndefined();
    const got = await call<{ status: string; output: unknown }>('GET', `${sc.api}/predictions/r-1`);
    const readAt = performance.now();
    expect(got.status).toBe(200);
    expect(got.body).toMatchObject({ status: 'succeeded', output: 'slept 1 s' });
    // The read, not the 30 s limit, let it finish.
    await drained;
    expect(drainedAt! - readAt).toBeLessThan(5_000);
    await expect(fetch(`${sc.api}/live`)).rejects.toThrow();
  });

  it('exits after the drain read timeout when nobody reads a final record', async () => {
    const sc = await readySidecar(0.5);
    expect((await call('POST', `${sc.api}/predictions`, { id: 'u-1', input: { seconds: 0.2 } })).status).toBe(
      201,
    );
    const started = performance.now();
    await sc.sidecar.drain();
    const took = performance.now() - started;
    expect(took).toBeGreaterThanOrEqual(500);
    expect(took).toBeLessThan(10_000);
    expect(readFileSync(sc.logFile, 'utf8')).toContain('exiting with final records no caller has read');
  });
});
