/**
 * Lanes and dispatch with scripted instances on a fake clock: order, the choice of instance,
 * requeueing at the front, bounds, holding and its timeout, idempotency, the demand the
 * autoscaler reads. (The lifecycle of one prediction is lifecycle.test.ts; the engine against
 * real sidecars is gateway/predictions/routes.int.test.ts.)
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HttpError } from '../../lib/http.ts';
import { engineOnFakeClock, type FakeEngine, NS } from './testing.ts';

let t: FakeEngine | undefined;
afterEach(() => t?.engine.close());

function setup(deployment: { maxLength?: number; maxWaitSeconds?: number; maxConcurrency?: number } = {}) {
  t = engineOnFakeClock({ deployment, engine: { avoidMs: 60_000 } });
  return t;
}

const creates = () => t!.instances.calls.filter((c) => c.startsWith('create '));

const A = { id: 'a', url: 'http://a' };
const B = { id: 'b', url: 'http://b' };

describe('the prediction queue', () => {
  it('dispatches in order to the instance with the fewest outstanding, within its concurrency', async () => {
    const { engine, endpoints, instances, create, settle } = setup({ maxConcurrency: 2 });
    endpoints.set(NS, 'd', [A, B]);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await create({ text: `p${i}` })).record.id);
    // a, b, a, b take four; two wait.
    expect(creates()).toEqual([
      `create http://a ${ids[0]}`,
      `create http://b ${ids[1]}`,
      `create http://a ${ids[2]}`,
      `create http://b ${ids[3]}`,
    ]);
    expect(engine.demand()).toEqual([
      expect.objectContaining({ queued: 2, inflight: 4, perPod: { a: 2, b: 2 } }),
    ]);
    await settle();
    expect(instances.followed()).toHaveLength(4);
    instances.end(ids[1]!, { status: 'succeeded', output: 'ok' }); // b frees a slot: the oldest waiting one goes there
    await settle();
    expect(creates()[4]).toBe(`create http://b ${ids[4]}`);
    expect((await engine.get(ids[1]!))?.status).toBe('succeeded');
    expect((await engine.get(ids[5]!))?.status).toBe('starting');
  });

  it('puts a prediction an instance refuses back at the front, for another instance', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A, B]);
    instances.answers.set('http://a', 'draining');
    const first = (await create({ text: 'first' })).record;
    expect(creates()).toEqual([`create http://a ${first.id}`, `create http://b ${first.id}`]);
    expect(await engine.get(first.id)).toMatchObject({ status: 'starting', instance: 'b' });
    const second = (await create({ text: 'second' })).record;
    // a is passed over for a while; b is busy: second waits at the head of the queue.
    expect(instances.count('create')).toBe(2);
    expect(engine.demand()[0]).toMatchObject({ queued: 1, inflight: 1 });
    await settle();
    instances.end(first.id, { status: 'succeeded' });
    await settle();
    expect(creates().at(-1)).toBe(`create http://b ${second.id}`);
  });

  it('passes over an unreachable instance and one that is busy (429) for its Retry-After, then asks again', async () => {
    t = engineOnFakeClock({ engine: { avoidMs: 1000 } });
    const { engine, endpoints, instances, create, advance } = t;
    endpoints.set(NS, 'd', [A, B]);
    instances.answers.set('http://a', 'busy'); // Retry-After 5 s
    instances.answers.set('http://b', 'unreachable');
    const p = (await create()).record;
    expect(creates()).toEqual([`create http://a ${p.id}`, `create http://b ${p.id}`]);
    expect((await engine.get(p.id))?.status).toBe('starting');
    instances.answers.set('http://a', 'accept');
    instances.answers.set('http://b', 'accept');
    await advance(999);
    expect(creates()).toHaveLength(2);
    await advance(1); // b's pass-over (1 s) ends first
    expect(creates()).toHaveLength(3);
    expect(creates()[2]).toBe(`create http://b ${p.id}`);
    expect(await engine.get(p.id)).toMatchObject({ instance: 'b' });
  });

  it('refuses past spec.queue.maxLength with 429 and Retry-After', async () => {
    const { create } = setup({ maxLength: 2 });
    await create({ text: '1' });
    await create({ text: '2' });
    const err = await create({ text: '3' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({ status: 429, headers: { 'retry-after': '1' } });
  });

  it('refuses an input past the byte budget with 429 and Retry-After, and takes one once another ended', async () => {
    t = engineOnFakeClock({
      engine: { inputBudget: { perDeploymentBytes: 2_500, perReplicaBytes: 10_000 } },
    });
    const { engine, create } = t;
    const big = 'x'.repeat(1_000); // {"text":"x…"}: 1,011 bytes
    const first = (await create({ text: big })).record;
    await create({ text: big });
    const err = await create({ text: big }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({
      status: 429,
      title: 'Too many bytes queued',
      headers: { 'retry-after': '1' },
    });
    // A small one still fits; the queue's length was never the limit.
    await create({ text: 'small' });
    await engine.cancel(first.id);
    expect((await create({ text: big })).record.status).toBe('starting');
  });

  it('holds without an instance, pokes at once, and fails at maxWaitSeconds quoting the Deployment', async () => {
    const { engine, pokes, create, advance } = setup({ maxWaitSeconds: 1 });
    const p = (await create({ text: 'held' })).record;
    expect(p.status).toBe('starting');
    expect(pokes).toEqual([`${NS}/d`]);
    await advance(999);
    expect((await engine.get(p.id))?.status).toBe('starting');
    await advance(1);
    expect((await engine.get(p.id))?.error).toBe(
      `no instance of deployment ${NS}/d became ready within 1 s (spec.queue.maxWaitSeconds): ScaledToZero: no instances: scaled to zero`,
    );
    expect((await t!.events(p.id)).map((e) => e.event)).toEqual(['error', 'done']);
    expect(engine.demand()[0]).toMatchObject({ queued: 0, inflight: 0 });
  });

  it('fails a held prediction saying its instances stayed busy, when they did', async () => {
    const { engine, endpoints, create, advance } = setup({ maxWaitSeconds: 2 });
    endpoints.set(NS, 'd', [A]);
    await create(); // takes a's only slot
    const waiting = (await create()).record;
    await advance(2000);
    expect(await engine.get(waiting.id)).toMatchObject({
      status: 'failed',
      error: `the prediction waited 2 s (spec.queue.maxWaitSeconds) in the queue of deployment ${NS}/d: its 1 ready instance(s) stayed busy`,
    });
  });

  it('pokes while instances are busy at most every second', async () => {
    const { endpoints, pokes, create, advance } = setup();
    endpoints.set(NS, 'd', [A]);
    await create();
    await create(); // waits: a is busy
    await create();
    expect(pokes).toEqual([`${NS}/d`]);
    await advance(1000);
    await create();
    expect(pokes).toHaveLength(2);
  });

  it('sends a held prediction as soon as an instance becomes ready', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    const p = (await create()).record;
    expect(instances.calls).toEqual([]);
    endpoints.set(NS, 'd', [A]);
    await settle();
    expect(creates()).toEqual([`create http://a ${p.id}`]);
    expect(engine.demand()[0]).toMatchObject({ queued: 0, inflight: 1, perPod: { a: 1 } });
  });

  it('repeats the first prediction for a repeated Idempotency-Key, per namespace', async () => {
    const { engine, create } = setup();
    const a = await create({}, { idempotencyKey: 'k' });
    const b = await create({}, { idempotencyKey: 'k' });
    expect(a.replayed).toBe(false);
    expect(b).toMatchObject({ replayed: true, record: { id: a.record.id } });
    const other = await create({}, { idempotencyKey: 'k2' });
    expect(other.record.id).not.toBe(a.record.id);
    const given = await create({}, { id: a.record.id });
    expect(given).toMatchObject({ replayed: true, record: { id: a.record.id } });
    expect(engine.demand()[0]).toMatchObject({ queued: 2 });
  });

  it('refuses input that fails the schema, or an unknown deployment, before queueing', async () => {
    const { create, engine } = setup();
    const schema = {
      components: {
        schemas: {
          Input: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
        },
      },
    };
    t!.catalog.setDeployment({ ...t!.catalog.deployment(NS, 'd')!, openapi: schema });
    await expect(create({})).rejects.toMatchObject({ status: 422 });
    await expect(create({ text: 'ok' }, { deployment: 'nope' })).rejects.toMatchObject({ status: 404 });
    expect(engine.demand()).toEqual([]);
    expect((await engine.list({ namespaces: 'all', limit: 10 })).items).toEqual([]);
  });

  it('fails one the instance refuses (500), naming the instance', async () => {
    const { engine, endpoints, instances, create } = setup();
    endpoints.set(NS, 'd', [A]);
    instances.answers.set('http://a', 'error');
    const p = (await create()).record;
    expect(await engine.get(p.id)).toMatchObject({
      status: 'failed',
      error: 'instance a refused the prediction (500): boom',
    });
  });

  it('answers 422 and forgets the prediction when the instance refuses its input', async () => {
    const { engine, endpoints, instances, create } = setup();
    endpoints.set(NS, 'd', [A]);
    instances.answers.set('http://a', 'invalid');
    const err = await create().catch((e: unknown) => e);
    expect(err).toMatchObject({
      status: 422,
      extra: { invalid_fields: [{ field: 'input.text', description: 'text is required' }] },
    });
    expect((await engine.list({ namespaces: 'all', limit: 10 })).items).toEqual([]);
  });
});

describe('following a prediction on its instance', () => {
  it('reads a running prediction for its output when the stream brings an output event', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.output(record.id, 'a');
    await settle();
    expect(await engine.get(record.id)).toMatchObject({ status: 'processing', output: ['a'] });
    expect(instances.count('get')).toBe(1);
    // Output events that arrive together make one read.
    instances.output(record.id, 'b');
    instances.output(record.id, 'c');
    await settle();
    expect(instances.count('get')).toBe(2);
    expect((await engine.get(record.id))?.output).toEqual(['a', 'b', 'c']);
    instances.end(record.id, { status: 'succeeded' });
    await settle();
    expect(await engine.get(record.id)).toMatchObject({ status: 'succeeded', output: ['a', 'b', 'c'] });
  });

  it('makes one read, the final one, when the output comes with the end', async () => {
    const { engine, endpoints, instances, create, settle } = setup();
    endpoints.set(NS, 'd', [A]);
    const { record } = await create();
    await settle();
    instances.output(record.id, 'hello');
    instances.end(record.id, { status: 'succeeded', output: 'hello' });
    await settle();
    expect(await engine.get(record.id)).toMatchObject({ status: 'succeeded', output: 'hello' });
    expect(instances.count('get')).toBe(1);
  });
});
