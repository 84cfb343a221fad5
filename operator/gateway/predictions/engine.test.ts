/**
 * The queue logic of the engine with scripted instances: order, the choice of instance,
 * requeueing at the front, bounds, holding and its timeout. (The engine against real
 * sidecars is engine.int.test.ts.)
 */
import { createHmac } from 'node:crypto';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { waitFor } from '../../../harness/processes.ts';
import { HttpError } from '../../../lib/http.ts';
import { StaticCatalog } from './catalog.ts';
import { StaticEndpoints } from './endpoints.ts';
import { PredictionEngine } from './engine.ts';
import type { CreateResult, GetResult, SidecarClient, SidecarPrediction } from './sidecar-client.ts';

type Behaviour = 'accept' | 'refuse' | 'unreachable';

/** Instances that take predictions and end them when the test says so. */
class ScriptedInstances {
  behaviour = new Map<string, Behaviour>();
  /** Order in which instances were asked to create, as `url id`. */
  creates: string[] = [];
  private readonly running = new Map<string, { end: () => void }>();
  private readonly finished = new Map<string, SidecarPrediction>();

  client(): SidecarClient {
    return {
      create: async (base: string, id: string): Promise<CreateResult> => {
        this.creates.push(`${base} ${id}`);
        const b = this.behaviour.get(base) ?? 'accept';
        if (b === 'refuse') return { kind: 'refused', status: 503, detail: 'draining', retryAfterMs: 1000 };
        if (b === 'unreachable') return { kind: 'unreachable', error: 'connect ECONNREFUSED' };
        return { kind: 'accepted', body: { id, status: 'processing', started_at: new Date().toISOString() } };
      },
      get: async (_base: string, id: string): Promise<GetResult> => {
        const f = this.finished.get(id);
        return f ? { kind: 'ok', body: f } : { kind: 'ok', body: { id, status: 'processing' } };
      },
      cancel: async () => true,
      stream: (_base: string, id: string) =>
        new Promise<'done'>((resolve) => {
          this.running.set(id, { end: () => resolve('done') });
        }),
    } as unknown as SidecarClient;
  }

  /** Ends a running prediction. */
  finish(id: string): void {
    this.finished.set(id, { id, status: 'succeeded', output: 'ok', metrics: { predict_time: 0.1 } });
    this.running.get(id)?.end();
  }

  get runningIds(): string[] {
    return [...this.running.keys()].filter((id) => !this.finished.has(id));
  }
}

const NS = 'ns';
let engine: PredictionEngine | undefined;
afterEach(() => engine?.close());

function setup(opts: { maxLength?: number; maxWaitSeconds?: number; concurrency?: number } = {}) {
  const catalog = new StaticCatalog();
  catalog.setDeployment({
    namespace: NS,
    name: 'd',
    model: 'm',
    versionId: 'a'.repeat(64),
    maxConcurrency: opts.concurrency ?? 1,
    maxLength: opts.maxLength ?? 100,
    maxWaitSeconds: opts.maxWaitSeconds ?? 60,
    conditions: [
      { type: 'Ready', status: 'False', reason: 'ScaledToZero', message: 'no instances: scaled to zero' },
    ],
  });
  const endpoints = new StaticEndpoints();
  const instances = new ScriptedInstances();
  const pokes: string[] = [];
  engine = new PredictionEngine({
    catalog,
    endpoints,
    sidecar: instances.client(),
    log: pino({ level: 'silent' }),
    avoidMs: 60_000,
  });
  engine.onPoke((ns, name) => pokes.push(`${ns}/${name}`));
  const create = async (text: string) =>
    (await engine!.create({ namespace: NS, deployment: 'd', input: { text }, baseUrl: 'http://gw/v1' }))
      .record;
  return { engine, endpoints, instances, pokes, create };
}

describe('the prediction queue', () => {
  it('dispatches in order to the instance with the fewest outstanding, within its concurrency', async () => {
    const { engine, endpoints, instances, create } = setup({ concurrency: 2 });
    endpoints.set(NS, 'd', [
      { id: 'a', url: 'http://a' },
      { id: 'b', url: 'http://b' },
    ]);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await create(`p${i}`)).id);
    // a, b, a, b take four; two wait.
    expect(instances.creates).toEqual([
      `http://a ${ids[0]}`,
      `http://b ${ids[1]}`,
      `http://a ${ids[2]}`,
      `http://b ${ids[3]}`,
    ]);
    expect(engine.demand()).toEqual([
      expect.objectContaining({ queued: 2, inflight: 4, perPod: { a: 2, b: 2 } }),
    ]);
    await waitFor('the first four to run', () => instances.runningIds.length === 4);
    instances.finish(ids[1]!); // b frees a slot: the oldest waiting one goes there
    await waitFor('p4 to be sent', () => instances.creates.length === 5);
    expect(instances.creates[4]).toBe(`http://b ${ids[4]}`);
    expect(engine.get(ids[1]!)?.status).toBe('succeeded');
    expect(engine.get(ids[5]!)?.status).toBe('starting');
  });

  it('puts a prediction an instance refuses back at the front, for another instance', async () => {
    const { engine, endpoints, instances, create } = setup();
    endpoints.set(NS, 'd', [
      { id: 'a', url: 'http://a' },
      { id: 'b', url: 'http://b' },
    ]);
    instances.behaviour.set('http://a', 'refuse');
    instances.behaviour.set('http://b', 'accept');
    const first = await create('first');
    expect(instances.creates).toEqual([`http://a ${first.id}`, `http://b ${first.id}`]);
    expect(engine.get(first.id)).toMatchObject({ status: 'processing', instance: 'b' });
    const second = await create('second');
    // a is passed over for a while; b is busy: second waits at the head of the queue.
    expect(instances.creates).toHaveLength(2);
    instances.finish(first.id);
    await waitFor('second to go to b', () => instances.creates.at(-1) === `http://b ${second.id}`);
  });

  it('refuses past spec.queue.maxLength with 429 and Retry-After', async () => {
    const { create } = setup({ maxLength: 2 });
    await create('1');
    await create('2');
    const err = await create('3').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpError);
    expect(err).toMatchObject({ status: 429, headers: { 'retry-after': '1' } });
  });

  it('holds without an instance, pokes at once, and fails at maxWaitSeconds quoting the Deployment', async () => {
    const { engine, pokes, create } = setup({ maxWaitSeconds: 1 });
    const p = await create('held');
    expect(p.status).toBe('starting');
    expect(pokes).toEqual([`${NS}/d`]);
    await waitFor('the hold to time out', () => engine.get(p.id)?.status === 'failed', { timeoutMs: 5000 });
    expect(engine.get(p.id)?.error).toBe(
      `no instance of deployment ${NS}/d became ready within 1 s (spec.queue.maxWaitSeconds): ScaledToZero: no instances: scaled to zero`,
    );
    expect(engine.get(p.id)?.events.map((e) => e.event)).toEqual(['error', 'done']);
    expect(engine.demand()[0]).toMatchObject({ queued: 0, inflight: 0 });
  });

  it('cancels a queued prediction at once, and keys repeat the first prediction', async () => {
    const { engine, create } = setup();
    const p = await create('queued');
    const canceled = await engine.cancel(p.id);
    expect(canceled).toMatchObject({ status: 'canceled', error: null });
    const req = { namespace: NS, deployment: 'd', input: {}, baseUrl: 'http://gw/v1', idempotencyKey: 'k' };
    const a = await engine.create(req);
    const b = await engine.create(req);
    expect(a.replayed).toBe(false);
    expect(b).toMatchObject({ replayed: true, record: { id: a.record.id } });
    const other = await engine.create({ ...req, namespace: NS, idempotencyKey: 'k2' });
    expect(other.record.id).not.toBe(a.record.id);
  });
});

describe('stream tokens', () => {
  it('are an HMAC-SHA256 of the prediction id under the stream key, and only those verify', () => {
    const key = Buffer.alloc(32, 7);
    engine = new PredictionEngine({
      catalog: new StaticCatalog(),
      endpoints: new StaticEndpoints(),
      log: pino({ level: 'silent' }),
      streamKey: key,
    });
    const want = createHmac('sha256', key).update('stream:p1').digest('base64url');
    expect(engine.streamToken('p1')).toBe(want);
    expect(engine.streamToken('p1')).toBe(want); // the same on every call
    expect(engine.verifyStreamToken('p1', want)).toBe(true);
    expect(engine.verifyStreamToken('p2', want)).toBe(false);
    expect(engine.verifyStreamToken('p1', `${want[0] === 'A' ? 'B' : 'A'}${want.slice(1)}`)).toBe(false);
    expect(engine.verifyStreamToken('p1', undefined)).toBe(false);
  });
});

describe('following a prediction on its instance', () => {
  /** An instance whose event stream the test writes; counts the reads of the record. */
  function streamingInstance() {
    const reads: string[] = [];
    let emit: ((e: { id: number; event: string; data: string }) => void) | undefined;
    let end: (() => void) | undefined;
    let record: SidecarPrediction = { id: '', status: 'processing', output: null };
    const client = {
      create: async (_base: string, id: string): Promise<CreateResult> => {
        record = { ...record, id };
        return { kind: 'accepted', body: { id, status: 'processing', started_at: new Date().toISOString() } };
      },
      get: async (): Promise<GetResult> => {
        reads.push(record.status);
        return { kind: 'ok', body: record };
      },
      cancel: async () => true,
      stream: (_base: string, _id: string, _after: number, onEvent: typeof emit) =>
        new Promise<'done'>((resolve) => {
          emit = onEvent;
          end = () => resolve('done');
        }),
    } as unknown as SidecarClient;
    return {
      client,
      reads,
      set: (r: Partial<SidecarPrediction>) => {
        record = { ...record, ...r };
      },
      emit: (id: number, event: string, data: string) => emit?.({ id, event, data }),
      end: () => end?.(),
      streaming: () => emit !== undefined,
    };
  }

  function start(client: SidecarClient) {
    const catalog = new StaticCatalog();
    catalog.setDeployment({
      namespace: NS,
      name: 'd',
      model: 'm',
      versionId: 'a'.repeat(64),
      maxConcurrency: 1,
      maxLength: 10,
      maxWaitSeconds: 60,
      conditions: [],
    });
    const endpoints = new StaticEndpoints();
    endpoints.set(NS, 'd', [{ id: 'a', url: 'http://a' }]);
    engine = new PredictionEngine({ catalog, endpoints, sidecar: client, log: pino({ level: 'silent' }) });
    return engine.create({ namespace: NS, deployment: 'd', input: {}, baseUrl: 'http://gw/v1' });
  }

  it('reads a running prediction for its output when the stream brings an output event', async () => {
    const inst = streamingInstance();
    const { record } = await start(inst.client);
    await waitFor('the stream to be followed', () => inst.streaming());
    inst.set({ output: ['a'] });
    inst.emit(1, 'output', 'a');
    await waitFor('the output read from the instance', () => engine!.get(record.id)?.output !== null);
    expect(engine!.get(record.id)?.output).toEqual(['a']);
    expect(inst.reads).toEqual(['processing']);
    inst.set({ status: 'succeeded', output: ['a', 'b'] });
    inst.emit(2, 'output', 'b');
    inst.emit(3, 'done', '{}');
    inst.end();
    await waitFor('the end', () => engine!.get(record.id)?.status === 'succeeded');
    expect(engine!.get(record.id)?.output).toEqual(['a', 'b']);
  });

  it('makes one read, the final one, when the output comes with the end', async () => {
    const inst = streamingInstance();
    const { record } = await start(inst.client);
    await waitFor('the stream to be followed', () => inst.streaming());
    inst.set({ status: 'succeeded', output: 'hello' });
    inst.emit(1, 'output', 'hello');
    inst.emit(2, 'done', '{}');
    inst.end();
    await waitFor('the end', () => engine!.get(record.id)?.status === 'succeeded');
    expect(engine!.get(record.id)?.output).toBe('hello');
    await new Promise((r) => setImmediate(r));
    expect(inst.reads).toEqual(['succeeded']);
  });
});
