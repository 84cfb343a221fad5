/**
 * The lifecycle of a prediction through the engine, with scripted instances on a fake clock:
 * queued → dispatched → streamed → finished; cancel at each step; the Cancel-After deadline;
 * an instance lost or restarted mid-stream; a stream that drops and is followed again;
 * re-attaching after a restart; drain; expiry from the store.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../lib/prediction.ts';
import { engineOnFakeClock, type FakeEngine, NS, T0 } from './testing.ts';
import { sample } from './usage-store.contract.ts';
import { USAGE_BUCKET_MS } from './usage-store.ts';

let t: FakeEngine | undefined;
afterEach(() => t?.engine.close());

const A = { id: 'a', url: 'http://a' };
const B = { id: 'b', url: 'http://b' };

function setup(opts: Parameters<typeof engineOnFakeClock>[0] = {}): FakeEngine {
  t = engineOnFakeClock(opts);
  return t;
}

/** The events a subscriber to the prediction's stream receives from now on. */
async function subscribe(t: FakeEngine, id: string): Promise<StreamEvent[]> {
  const got: StreamEvent[] = [];
  const { past } = (await t.engine.stream(id, 0, (e) => got.push(e)))!;
  got.push(...past);
  return got;
}

describe('a prediction from queue to end', () => {
  it('is held, dispatched when an instance is ready, streamed, and finished with the final record', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    const { record } = await create({ text: 'hi' }, { webhookEvents: ['completed'] });
    const id = record.id;
    const events = await subscribe(t!, id);
    const done = engine.waitDone(id, 60_000);
    expect(record).toMatchObject({ status: 'starting', createdAt: T0, model: `${NS}/m` });
    expect(engine.demand()).toEqual([expect.objectContaining({ queued: 1, inflight: 0 })]);

    // Queued → dispatched: an instance becomes ready 3 s later.
    await advance(3000);
    endpoints.set(NS, 'd', [A]);
    await settle();
    expect(instances.calls).toEqual([`create http://a ${id}`, `stream http://a ${id} 0`]);
    expect(await engine.get(id)).toMatchObject({ status: 'starting', instance: 'a' });
    expect(engine.demand()[0]).toMatchObject({ queued: 0, inflight: 1, perPod: { a: 1 } });

    // Streamed: logs and output as the model makes them.
    await advance(500);
    instances.log(id, 'loading\n');
    await settle();
    expect(await engine.get(id)).toMatchObject({
      status: 'processing',
      startedAt: T0 + 3500,
      logs: 'loading\n',
    });
    instances.output(id, 'hello');
    await settle();
    expect((await engine.get(id))?.output).toEqual(['hello']);

    // Finished: the final record brings output, logs and the model's own predict time.
    await advance(1500);
    instances.end(id, { status: 'succeeded', output: ['hello', 'world'], metrics: { predict_time: 1.25 } });
    await settle();
    expect(await done).toBe(true);
    const rec = (await engine.get(id))!;
    expect(rec).toMatchObject({
      status: 'succeeded',
      output: ['hello', 'world'],
      error: null,
      predictTime: 1.25,
      completedAt: T0 + 5000,
    });
    expect(engine.view(rec)).toMatchObject({
      status: 'succeeded',
      created_at: new Date(T0).toISOString(),
      started_at: new Date(T0 + 3500).toISOString(),
      completed_at: new Date(T0 + 5000).toISOString(),
      metrics: { predict_time: 1.25, total_time: 5 },
    });
    expect(events.map((e) => `${e.id} ${e.event} ${e.data}`)).toEqual([
      '1 logs loading\n',
      '2 output hello',
      '3 done {}',
    ]);
    expect(engine.demand()[0]).toMatchObject({
      queued: 0,
      inflight: 0,
      perPod: {},
      lastActivityMs: T0 + 5000,
    });
    // A late subscriber gets every event and no subscription.
    expect(await engine.stream(id, 1, () => {})).toEqual({ past: (await t!.events(id)).slice(1) });
  });

  it('resumes a stream that dropped from the last event it had, while the instance still runs it', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.log(record.id, 'one ');
    await settle();
    instances.dropStream(record.id);
    await settle();
    // The engine reads the record (still running), then follows again after a short pause.
    expect(instances.count('stream')).toBe(1);
    instances.log(record.id, 'two ');
    await advance(200);
    expect(instances.calls.at(-1)).toBe(`stream http://a ${record.id} 1`);
    expect((await engine.get(record.id))?.logs).toBe('one two ');
    instances.end(record.id, { status: 'succeeded' });
    await settle();
    expect((await engine.get(record.id))?.status).toBe('succeeded');
  });
});

describe('the events a prediction keeps in memory', () => {
  const line = (i: number) => `line ${String(i).padStart(2, '0')} ${'.'.repeat(11)}\n`; // 20 bytes

  it('drops the oldest past the cap, keeping ids; replays start at the oldest kept; a resume reads on', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup({
      engine: { maxEventBytes: 100 },
    });
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    const id = record.id;
    const all = await subscribe(t!, id);
    await settle();
    for (let i = 1; i <= 10; i++) instances.log(id, line(i));
    await settle();
    // 200 bytes went past 100 twice: each time the oldest went, down to 75 bytes.
    const past = async (after: number) => (await engine.stream(id, after, () => {}))!.past.map((e) => e.id);
    expect(await past(0)).toEqual([7, 8, 9, 10]);
    expect(await past(8)).toEqual([9, 10]);
    expect((await engine.stream(id, 0, () => {}))!.past[0]).toEqual({ id: 7, event: 'logs', data: line(7) });
    // The logs themselves are kept whole (within their own cap).
    expect((await engine.get(id))?.logs).toBe(Array.from({ length: 10 }, (_, i) => line(i + 1)).join(''));
    // The stream drops: the engine reads on from the instance's event 10, its ids going on.
    instances.dropStream(id);
    await settle();
    instances.log(id, line(11));
    await advance(200);
    expect(instances.calls.at(-1)).toBe(`stream http://a ${id} 10`);
    expect(await past(0)).toEqual([7, 8, 9, 10, 11]); // 100 bytes: at the cap, not past it
    instances.end(id, { status: 'succeeded' });
    await settle();
    // A subscriber from the start had every event once, in order; the store keeps them all.
    expect(all.map((e) => e.id)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect((await t!.events(id)).map((e) => e.id)).toEqual(all.map((e) => e.id));
    expect(all.at(-1)).toMatchObject({ id: 12, event: 'done' });
  });
});

describe('canceling', () => {
  it('cancels a queued prediction at once', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    await create(); // takes a's slot
    const { record } = await create();
    const events = await subscribe(t!, record.id);
    const canceled = await engine.cancel(record.id);
    expect(canceled).toMatchObject({ status: 'canceled', error: null, completedAt: T0 });
    expect(events.map((e) => `${e.event} ${e.data}`)).toEqual(['done {"reason":"canceled"}']);
    await settle();
    expect(instances.calls.filter((c) => c.includes(record.id))).toEqual([]);
    expect(engine.demand()[0]).toMatchObject({ queued: 0, inflight: 1 });
  });

  it('cancels one held while the deployment starts, and never sends it', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    const { record } = await create();
    await advance(10_000);
    expect((await engine.cancel(record.id))?.status).toBe('canceled');
    endpoints.set(NS, 'd', [A]);
    await settle();
    expect(instances.calls).toEqual([]);
    // Its hold timer is gone with it.
    await advance(60_000);
    expect(await engine.get(record.id)).toMatchObject({ status: 'canceled', error: null });
  });

  it('cancels one being handed to an instance as soon as the instance takes it', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    instances.answers.set('http://a', 'hold');
    const created = create();
    await settle();
    const id = instances.calls[0]!.split(' ')[2]!;
    const during = await engine.cancel(id);
    expect(during?.status).toBe('starting');
    instances.release(id);
    await settle();
    expect((await created).record.id).toBe(id);
    expect(instances.calls).toContain(`cancel http://a ${id}`);
    expect((await engine.get(id))?.status).toBe('canceled');
    expect(engine.demand()[0]).toMatchObject({ inflight: 0 });
  });

  it('cancels one an instance has taken, on the instance', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    const after = await engine.cancel(record.id);
    expect(instances.calls).toContain(`cancel http://a ${record.id}`);
    expect(after?.status).toBe('canceled');
    await settle();
    expect(engine.demand()[0]).toMatchObject({ inflight: 0, perPod: {} });
  });

  it('cancels one while it streams, keeping what it wrote', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.log(record.id, 'working\n');
    await settle();
    expect((await engine.get(record.id))?.status).toBe('processing');
    const after = await engine.cancel(record.id);
    expect(after).toMatchObject({ status: 'canceled', logs: 'working\n', error: null });
    expect((await t!.events(record.id)).at(-1)).toMatchObject({
      event: 'done',
      data: '{"reason":"canceled"}',
    });
  });

  it('gives up waiting after a second when the instance does not confirm, and ends when it does', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.cancel = async () => false; // the instance does not answer the cancel
    const canceling = engine.cancel(record.id);
    await advance(1000);
    expect((await canceling)?.status).toBe('starting');
    instances.end(record.id, { status: 'canceled' });
    await settle();
    expect((await engine.get(record.id))?.status).toBe('canceled');
  });
});

describe('Cancel-After', () => {
  it('cancels a running prediction on its instance at the deadline', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create({}, { cancelAfterMs: 5000 });
    expect(record.deadline).toBe(T0 + 5000);
    await settle();
    await advance(4999);
    expect((await engine.get(record.id))?.status).toBe('starting');
    await advance(1);
    expect(instances.calls).toContain(`cancel http://a ${record.id}`);
    expect(await engine.get(record.id)).toMatchObject({ status: 'canceled', completedAt: T0 + 5000 });
  });

  it('cancels a prediction still waiting for an instance at the deadline', async () => {
    const { engine, create, advance } = setup();
    const { record } = await create({}, { cancelAfterMs: 5000 });
    await advance(5000);
    expect(await engine.get(record.id)).toMatchObject({ status: 'canceled', completedAt: T0 + 5000 });
    expect(engine.demand()[0]).toMatchObject({ queued: 0 });
  });

  it('counts from a given creation time (a Prediction object created earlier)', async () => {
    const { engine, create, advance } = setup();
    const { record } = await create({}, { cancelAfterMs: 5000, createdAt: T0 - 4000 });
    await advance(1000);
    expect((await engine.get(record.id))?.status).toBe('canceled');
  });
});

describe('an instance that goes away', () => {
  it('fails the prediction naming the instance when it is lost mid-stream', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.log(record.id, 'half way\n');
    await settle();
    instances.kill('http://a');
    await settle();
    // Three more reads over about 1.5 s (backoff), then it gives up.
    expect((await engine.get(record.id))?.status).toBe('processing');
    await advance(199);
    expect(instances.count('get')).toBe(1);
    await advance(1800);
    expect(instances.count('get')).toBe(4);
    const rec = (await engine.get(record.id))!;
    expect(rec).toMatchObject({ status: 'failed', logs: 'half way\n' });
    expect(rec.error).toBe(
      'instance a (http://a) went away while running the prediction: connect ECONNREFUSED; its event stream broke: read ECONNRESET',
    );
    expect((await t!.events(record.id)).slice(-2).map((e) => e.event)).toEqual(['error', 'done']);
    expect(engine.demand()[0]).toMatchObject({ inflight: 0, perPod: {} });
  });

  it('fails the prediction when its instance restarted and no longer knows it', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.restart('http://a');
    await settle();
    expect(await engine.get(record.id)).toMatchObject({
      status: 'failed',
      error: 'instance a no longer knows the prediction (it restarted while running it)',
    });
  });

  it('sends a prediction to another instance when the first cannot be reached before taking it', async () => {
    const { engine, endpoints, instances, create } = setup();
    endpoints.set(NS, 'd', [A, B]);
    instances.kill('http://a');
    const { record } = await create();
    expect(await engine.get(record.id)).toMatchObject({ instance: 'b' });
  });
});

describe('re-attaching', () => {
  it('finds a prediction on an instance by id and follows it there', async () => {
    const first = setup();
    first.endpoints.set(NS, 'd', [A]);
    const { record } = await first.create();
    await first.settle();
    first.instances.log(record.id, 'x');
    first.engine.close();
    // A new engine (the operator restarted) over the same instance.
    const { engine, endpoints, instances, settle } = setup({ instances: first.instances });
    endpoints.set(NS, 'd', [A]);
    const req = { namespace: NS, deployment: 'd', input: {}, baseUrl: 'http://gw/v1' };
    expect(await engine.attach({ ...req, id: 'unknown' })).toBeUndefined();
    const again = await engine.attach({ ...req, id: record.id });
    expect(again).toMatchObject({ id: record.id, status: 'processing', instance: 'a', logs: 'x' });
    expect(engine.demand()[0]).toMatchObject({ inflight: 1, perPod: { a: 1 } });
    await settle();
    instances.end(record.id, { status: 'succeeded', output: 'done' });
    await settle();
    expect(await engine.get(record.id)).toMatchObject({ status: 'succeeded', output: 'done' });
  });
});

describe('drain', () => {
  it('refuses new predictions, lets running ones finish, fails waiting ones, then stops', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    const running = (await create()).record;
    const waiting = (await create()).record;
    await settle();
    const drained = engine.drain(10_000);
    await expect(create()).rejects.toMatchObject({ status: 503, headers: { 'retry-after': '1' } });
    await advance(3000);
    instances.end(running.id, { status: 'succeeded', output: 'ok' });
    await settle();
    // The waiting one got the freed slot and runs now; the drain waits for it too.
    expect((await engine.get(waiting.id))?.instance).toBe('a');
    instances.end(waiting.id, { status: 'succeeded' });
    await settle();
    await drained;
    expect((await engine.get(running.id))?.status).toBe('succeeded');
    expect((await engine.get(waiting.id))?.status).toBe('succeeded');
  });

  it('fails what still waits for an instance at the timeout, and leaves running ones to their instance', async () => {
    const { engine, endpoints, instances, create, settle, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    const running = (await create()).record;
    const waiting = (await create()).record;
    await settle();
    let finished = false;
    const drained = engine.drain(5000).then(() => {
      finished = true;
    });
    await advance(4999);
    expect(finished).toBe(false);
    await advance(1);
    await drained;
    expect(await engine.get(waiting.id)).toMatchObject({
      status: 'failed',
      error: 'the gateway shut down before an instance took the prediction',
    });
    expect((await engine.get(running.id))?.status).toBe('starting');
    expect(instances.followed()).toEqual([]);
    expect(t!.clock.pending).toBe(0);
  });
});

describe('retention', () => {
  it('removes input, output and logs after the data retention, and the record after its own', async () => {
    const { engine, create, advance } = setup({
      engine: { retention: { dataMs: 3_600_000, recordMs: 7_200_000, everyMs: 60_000 } },
    });
    void engine.start();
    const { record } = await create({ text: 'secret' });
    expect((await engine.cancel(record.id))?.status).toBe('canceled');
    await advance(3_600_000);
    expect(await engine.get(record.id)).toMatchObject({ input: { text: 'secret' } });
    await advance(60_000);
    const kept = (await engine.get(record.id))!;
    expect(kept).toMatchObject({ status: 'canceled', input: {}, output: null, logs: '', dataRemoved: true });
    expect(engine.view(kept).data_removed).toBe(true);
    expect(await t!.events(record.id)).toEqual([]);
    await advance(3_600_000);
    expect(await engine.get(record.id)).toBeUndefined();
    await engine.close();
  });
  it('removes usage buckets and ended instances after the usage retention', async () => {
    const { engine, advance } = setup({
      // An hour, not the default 400 days: the fake clock runs every timer of the engine (its
      // heartbeat each second) on the way there.
      engine: { retention: { dataMs: 3_600_000, recordMs: 7_200_000, usageMs: 3_600_000, everyMs: 60_000 } },
    });
    void engine.start();
    await advance(0);
    const usage = engine.usageStore()!;
    const at = t!.clock.now();
    const ms = { setup: 1000, idle: 2000, busy: 0, down: 0 };
    await usage.recordInstance(sample({ at, ms, ended: true }));
    const all = { since: 0, until: Number.MAX_SAFE_INTEGER, namespaces: 'all' as const };
    await advance(3_600_000 - 60_000);
    expect((await usage.buckets(all)).length).toBe(1);
    await advance(USAGE_BUCKET_MS + 60_000);
    expect(await usage.buckets(all)).toEqual([]);
    expect(await usage.instances(all)).toEqual([]);
    await engine.close();
  });
});
