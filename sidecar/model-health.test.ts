/**
 * The model server's health as the sidecar follows it, on a fake clock against a fake model
 * server: setup and its timeout, a failed setup, and a model server lost mid-prediction
 * (unreachable, reporting itself broken, restarted between two checks).
 */
import { describe, expect, it } from 'vitest';
import { Unreachable } from './cog-client.ts';
import type { Prediction } from './prediction.ts';
import { type UnitSidecar, unitSidecar } from './testing/fake-cog.ts';

async function create(u: UnitSidecar, id: string): Promise<Prediction> {
  return (await u.sidecar.create({ id, input: {} })).prediction;
}

const READY_AGAIN = { status: 'READY', setup: { started_at: '2026-01-01T00:01:00.000000+00:00', logs: '' } };

describe('setup', () => {
  it('is not ready while the model server sets up, reports the setup timeout, and turns ready after all', async () => {
    const u = await unitSidecar({ setupTimeout: 10 }, { ready: false });
    expect(u.sidecar.readiness()).toEqual({
      ready: false,
      reason: 'SettingUp',
      message: 'the model server is running its setup',
    });
    await expect(u.sidecar.create({ id: 'a', input: {} })).rejects.toMatchObject({
      status: 503,
      extra: { reason: 'SettingUp' },
    });
    await u.run(9_900);
    expect(u.sidecar.readiness().reason).toBe('SettingUp');
    await u.run(500);
    expect(u.sidecar.readiness()).toEqual({
      ready: false,
      reason: 'SetupTimeout',
      message: 'the model server was not ready within the setup timeout of 10 s',
    });
    expect(u.logs.some((l) => l.msg === 'model setup timed out')).toBe(true);
    u.cog.schema = { components: { schemas: { Output: { type: 'string' } } } };
    u.cog.state = { status: 'READY', setup: { started_at: 'x', logs: 'loaded weights\n' } };
    await u.run(500);
    expect(u.sidecar.readiness().reason).toBe('Ready');
    expect(u.sidecar.openapi()).toEqual(u.cog.schema);
    const status = u.sidecar.status() as {
      setup: { seconds: number; logs: string };
      instance_seconds: object;
    };
    expect(status.setup).toEqual({ seconds: 10.5, logs: 'loaded weights\n' });
    expect(status.instance_seconds).toEqual({ setup: 10.5, idle: 0.4, busy: 0, down: 0 });
  });

  it('says it waits for a model server that does not answer yet', async () => {
    const u = await unitSidecar({}, { ready: false });
    u.cog.unreachable = new Unreachable('model server: connect ECONNREFUSED 127.0.0.1:5000', 'ECONNREFUSED');
    await u.run(500);
    expect(u.sidecar.readiness()).toEqual({
      ready: false,
      reason: 'ModelServerStarting',
      message:
        'waiting for the model server at http://127.0.0.1:5000: model server: connect ECONNREFUSED 127.0.0.1:5000',
    });
    // Checks follow one another at the health interval.
    const before = u.cog.healthChecks;
    await u.run(2000);
    expect(u.cog.healthChecks - before).toBe(4);
  });

  it('reports a failed setup with the last line of its logs', async () => {
    const u = await unitSidecar({}, { ready: false });
    u.cog.state = { status: 'SETUP_FAILED', setup: { logs: 'loading\nweights not found\n' } };
    await u.run(500);
    expect(u.sidecar.readiness()).toEqual({
      ready: false,
      reason: 'SetupFailed',
      message: 'model setup failed: weights not found',
    });
    expect(u.sidecar.setupLogs()).toBe('loading\nweights not found\n');
    expect(u.sidecar.status()).toMatchObject({ state: 'down' });
  });
});

describe('the model server lost mid-prediction', () => {
  it('fails what it ran and what waited when it cannot be reached, turns not ready, and comes back', async () => {
    const u = await unitSidecar({ concurrency: 1 });
    const a = await create(u, 'a');
    const b = await create(u, 'b');
    await u.run(1000);
    u.cog.unreachable = new Unreachable('model server: read ECONNRESET', 'ECONNRESET');
    await u.run(500);
    expect(a).toMatchObject({ status: 'failed', error: 'model server exited' });
    expect(a.metrics.predict_time).toBe(1.5);
    expect(b).toMatchObject({ status: 'failed', error: 'model server exited before the prediction started' });
    expect(u.sidecar.readiness()).toMatchObject({ ready: false, reason: 'ModelServerExited' });
    await expect(u.sidecar.create({ id: 'c', input: {} })).rejects.toMatchObject({
      status: 503,
      extra: { reason: 'ModelServerExited' },
    });
    await u.run(1000);
    expect(u.sidecar.status()).toMatchObject({
      state: 'down',
      predictions: { failed: 2 },
      instance_seconds: { setup: 0, idle: 0, busy: 1.5, down: 1 },
    });
    u.cog.unreachable = undefined;
    u.cog.state = READY_AGAIN;
    await u.run(500);
    expect(u.sidecar.ready()).toBe(true);
    const c = await create(u, 'c');
    expect(c.status).toBe('processing');
  });

  it('waits for three failed checks when the model server only times out', async () => {
    const u = await unitSidecar();
    const a = await create(u, 'a');
    u.cog.unreachable = new Unreachable('model server did not answer', 'ETIMEDOUT');
    await u.run(1000);
    expect(a.status).toBe('processing');
    expect(u.sidecar.ready()).toBe(true);
    await u.run(500);
    expect(a.error).toBe('model server exited');
    expect(u.sidecar.readiness().reason).toBe('ModelServerExited');
  });

  it('fails what it ran when the model server reports itself broken', async () => {
    const u = await unitSidecar();
    const a = await create(u, 'a');
    u.cog.state = { status: 'DEFUNCT', user_healthcheck_error: 'CUDA error' };
    await u.run(500);
    expect(a.error).toBe('model server unhealthy (DEFUNCT: CUDA error)');
    expect(u.sidecar.readiness()).toEqual({
      ready: false,
      reason: 'ModelServerUnhealthy',
      message: 'the model server reports DEFUNCT: CUDA error',
    });
  });

  it('fails what a model server that restarted between two checks lost, and stays ready', async () => {
    const u = await unitSidecar();
    const a = await create(u, 'a');
    u.cog.state = READY_AGAIN;
    await u.run(500);
    expect(a.error).toBe('model server exited: it restarted while the prediction ran');
    expect(u.sidecar.ready()).toBe(true);
    expect(u.logs.some((l) => l.msg === 'the model server restarted; its predictions were lost')).toBe(true);
  });

  it('with progress final, fails a prediction whose held request broke, and checks the health at once', async () => {
    const u = await unitSidecar({ progress: 'final', concurrency: 2, healthInterval: 10 });
    const broken = new Unreachable('model server: socket hang up', 'ECONNRESET');
    broken.afterSend = true;
    u.cog.answers.push('hold');
    const a = await create(u, 'a');
    const checks = u.cog.healthChecks;
    u.cog.answers.push(broken);
    const b = await create(u, 'b');
    u.cog.answer('a', { kind: 'finished', body: { id: 'a', status: 'succeeded', output: 1 } });
    await u.flush();
    expect(a.status).toBe('succeeded');
    expect(b).toMatchObject({ status: 'failed', error: 'model server exited' });
    expect(u.cog.healthChecks).toBe(checks + 1);
  });
});
