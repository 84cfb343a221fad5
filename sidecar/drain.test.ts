/**
 * The preStop drain on a fake clock against a fake model server: it refuses new work with
 * 503, finishes what is running and queued, waits for the final records to be read, asks the
 * model server to shut down and stops; its timeouts bound each wait.
 */
import { describe, expect, it } from 'vitest';
import type { Prediction } from './prediction.ts';
import { call } from './testing/client.ts';
import { type UnitSidecar, unitSidecar } from './testing/fake-cog.ts';

async function create(u: UnitSidecar, id: string): Promise<Prediction> {
  return (await u.sidecar.create({ id, input: {} })).prediction;
}

function settled(p: Promise<unknown>): () => boolean {
  let done = false;
  void p.then(() => {
    done = true;
  });
  return () => done;
}

describe('drain', () => {
  it('stops the meter at its end and waits for the final usage to be read, bounded by usageReadTimeout', async () => {
    const u = await unitSidecar({ usageReadTimeout: 5 });
    await u.run(3000);
    const drained = settled(u.sidecar.drain());
    await u.run(1000);
    expect(drained()).toBe(false);
    const first = u.sidecar.status() as {
      final: boolean;
      uptime_seconds: number;
      instance_seconds: Record<string, number>;
    };
    expect(first.final).toBe(true);
    await u.flush();
    expect(drained()).toBe(true);
    // Frozen: later reads give the same figures.
    await u.run(2000);
    expect(u.sidecar.status()).toMatchObject({
      uptime_seconds: first.uptime_seconds,
      instance_seconds: first.instance_seconds,
    });

    // Nobody reads: it exits after the timeout.
    const v = await unitSidecar({ usageReadTimeout: 5 });
    const gone = settled(v.sidecar.drain());
    await v.run(4900);
    expect(gone()).toBe(false);
    await v.run(200);
    expect(gone()).toBe(true);
  });

  it('refuses new work, finishes running and queued predictions, waits for their reads, then stops', async () => {
    const u = await unitSidecar({ concurrency: 1, shutdownModel: true });
    const a = await create(u, 'a');
    const b = await create(u, 'b');
    const drained = settled(u.sidecar.drain());
    await u.flush();
    expect(u.sidecar.readiness()).toEqual({
      ready: false,
      reason: 'Draining',
      message: 'draining: finishing accepted predictions before exit',
    });
    await expect(u.sidecar.create({ id: 'c', input: {} })).rejects.toMatchObject({
      status: 503,
      title: 'Draining',
      headers: { 'retry-after': '1' },
    });
    expect(u.sidecar.load()).toMatchObject({ accepting: false, ready: false });

    await u.run(2000);
    u.cog.send('a', { status: 'succeeded', output: 'a' });
    await u.flush();
    // The queued one still runs.
    expect(b.status).toBe('processing');
    await u.run(2000);
    expect(drained()).toBe(false);
    u.cog.send('b', { status: 'succeeded', output: 'b' });
    await u.run(1000);
    // Both ended; their callers have not read them yet.
    expect(drained()).toBe(false);
    expect(u.cog.shutdowns).toBe(0);
    u.sidecar.read(a);
    await u.flush();
    expect(drained()).toBe(false);
    u.sidecar.read(b);
    await u.flush();
    expect(drained()).toBe(true);
    expect(u.cog.shutdowns).toBe(1);
    expect(u.cog.closed).toBe(true);
    expect(u.sidecar.live()).toBe(false);
    expect(u.logs.find((l) => l.msg === 'drained')).toMatchObject({ succeeded: 2, failed: 0, canceled: 0 });
    // Nothing is left on the clock.
    expect(u.clock.pending).toBe(0);
  });

  it('fails what is left at the drain timeout, and stops without the reads after the read timeout', async () => {
    const u = await unitSidecar({ drainTimeout: 30, drainReadTimeout: 10 });
    const a = await create(u, 'a');
    const drained = settled(u.sidecar.drain());
    await u.run(29_900, 1000);
    expect(a.status).toBe('processing');
    await u.run(100);
    expect(a).toMatchObject({
      status: 'failed',
      error: 'the instance shut down before the prediction finished (drain timeout)',
    });
    expect(u.logs.some((l) => l.msg === 'drain timeout reached; failing what is left')).toBe(true);
    await u.run(9_900, 1000);
    expect(drained()).toBe(false);
    await u.run(100);
    expect(drained()).toBe(true);
    expect(u.logs.find((l) => l.msg === 'exiting with final records no caller has read')).toMatchObject({
      unread: ['a'],
    });
    expect(u.cog.shutdowns).toBe(1);
    expect(u.clock.pending).toBe(0);
  });

  it('with nothing to wait for, stops at once', async () => {
    const u = await unitSidecar();
    await u.sidecar.drain();
    expect(u.sidecar.live()).toBe(false);
    expect(u.clock.pending).toBe(0);
  });

  it('over HTTP: answers 503 problem+json with Retry-After, and /ready says Draining', async () => {
    const u = await unitSidecar({
      host: '127.0.0.1',
      port: 0,
      metricsHost: '127.0.0.1',
      metricsPort: 0,
      webhookHost: '127.0.0.1',
      webhookPort: 0,
    });
    const listening = await u.sidecar.start();
    try {
      await create(u, 'a');
      const drained = u.sidecar.drain();
      const refused = await call('POST', `${listening.api}/predictions`, { input: {} });
      expect(refused.status).toBe(503);
      expect(refused.headers.get('content-type')).toBe('application/problem+json');
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body).toMatchObject({ title: 'Draining', status: 503 });
      const ready = await call('GET', `${listening.api}/ready`);
      expect(ready.status).toBe(503);
      expect(ready.body).toMatchObject({ ready: false, reason: 'Draining' });
      // Reading the final record is what the drain waits for.
      u.cog.send('a', { status: 'succeeded', output: 'ok' });
      const final = await call('GET', `${listening.api}/predictions/a`);
      expect(final.body).toMatchObject({ status: 'succeeded', output: 'ok' });
      await drained;
      expect(u.sidecar.live()).toBe(false);
    } finally {
      await u.sidecar.stop();
    }
  });
});
