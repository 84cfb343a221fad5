/**
 * Two replicas on one store, on a fake clock: each serves the predictions the other drives —
 * reads, lists, streams, cancels — and one takes over what a stopped one left, each
 * prediction once.
 */

import { afterEach, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../lib/prediction.ts';
import { MemoryStore, type StoredPrediction, StoreUnavailableError } from './store.ts';
import { engineOnFakeClock, type FakeEngine, FakeInstances, NS } from './testing.ts';

const A_POD = { id: 'a', url: 'http://a' };
let replicas: FakeEngine[] = [];

afterEach(async () => {
  for (const r of replicas) await r.engine.close();
  replicas = [];
});

function twoReplicas(maxEventBytes?: number): [FakeEngine, FakeEngine, MemoryStore] {
  const first = engineOnFakeClock();
  const store = new MemoryStore({ clock: first.clock, exclusive: false });
  const instances = new FakeInstances();
  const a = engineOnFakeClock({
    clock: first.clock,
    instances,
    engine: { store, replica: 'a', maxEventBytes },
  });
  const b = engineOnFakeClock({
    clock: first.clock,
    instances,
    engine: { store, replica: 'b', maxEventBytes },
  });
  void first.engine.close();
  replicas = [a, b];
  return [a, b, store];
}

describe('two replicas on one store', () => {
  it('read and list the predictions the other drives', async () => {
    const [a, b] = twoReplicas();
    const { record } = await a.create({ text: 'x' });
    expect(await b.engine.get(record.id)).toMatchObject({ id: record.id, status: 'starting' });
    expect((await b.engine.list({ namespaces: [NS], limit: 10 })).items.map((r) => r.id)).toEqual([
      record.id,
    ]);
    expect(b.engine.drives(record.id)).toBe(false);
    expect(a.engine.drives(record.id)).toBe(true);
  });

  it('cancel through the other: its driver cancels it and the answer shows it', async () => {
    const [a, b] = twoReplicas();
    const { record } = await a.create({ text: 'x' });
    const after = await b.engine.cancel(record.id);
    expect(after).toMatchObject({ status: 'canceled' });
    expect(await a.engine.get(record.id)).toMatchObject({ status: 'canceled' });
  });

  it('stream through the other: the same events, in the same order, with the same ids', async () => {
    const [a, b] = twoReplicas();
    a.endpoints.set(NS, 'd', [A_POD]);
    const { record } = await a.create({ text: 'x' });
    const id = record.id;
    const there: StreamEvent[] = [];
    const sub = await b.engine.stream(id, 0, (e) => there.push(e));
    there.push(...(sub?.past ?? []));
    a.instances.log(id, 'one\n');
    await a.settle();
    a.instances.output(id, 'hello');
    await a.settle();
    a.instances.end(id, { status: 'succeeded', output: ['hello'] });
    await a.advance(10);
    const here = (await a.engine.stream(id, 0, () => {}))!.past;
    expect(here.map((e) => e.event)).toEqual(['logs', 'output', 'done']);
    expect(there).toEqual(here);
    expect(await b.engine.get(id)).toMatchObject({ status: 'succeeded', output: ['hello'] });
  });

  it('take over what a stopped replica drove: queued ones queue again, running ones are followed, each runs once', async () => {
    const [a, b] = twoReplicas();
    a.endpoints.set(NS, 'd', [A_POD]);
    const running = (await a.create({ text: 'running' })).record;
    const queued = (await a.create({ text: 'queued' })).record;
    a.instances.log(running.id, 'half way\n');
    await a.settle();
    expect(a.engine.demand()[0]).toMatchObject({ queued: 1, inflight: 1 });
    // A stops without a word (it never sent a heartbeat: it is not alive for the store).
    await a.engine.close();
    b.endpoints.set(NS, 'd', [A_POD]);
    void b.engine.start();
    await b.advance(1000);
    expect(b.engine.drives(running.id)).toBe(true);
    expect(b.engine.drives(queued.id)).toBe(true);
    b.instances.log(running.id, 'done\n');
    b.instances.end(running.id, { status: 'succeeded', output: 'r' });
    await b.advance(1000);
    b.instances.end(queued.id, { status: 'succeeded', output: 'q' });
    await b.advance(1000);
    expect(await b.engine.get(running.id)).toMatchObject({
      status: 'succeeded',
      output: 'r',
      logs: 'half way\ndone\n',
    });
    expect(await b.engine.get(queued.id)).toMatchObject({ status: 'succeeded', output: 'q' });
    const creates = b.instances.calls.filter((c) => c.startsWith('create '));
    expect(creates).toEqual([`create http://a ${running.id}`, `create http://a ${queued.id}`]);
    const events = (await b.engine.stream(running.id, 0, () => {}))!.past;
    expect(events.map((e) => `${e.id} ${e.event}`)).toEqual(['1 logs', '2 logs', '3 done']);
  });

  it('take over a prediction whose oldest events the stopped one dropped from memory: ids go on from the instance', async () => {
    const [a, b] = twoReplicas(100);
    a.endpoints.set(NS, 'd', [A_POD]);
    const { id } = (await a.create()).record;
    await a.settle();
    const line = (i: number) => `line ${String(i).padStart(2, '0')} ${'.'.repeat(11)}\n`; // 20 bytes
    for (let i = 1; i <= 10; i++) a.instances.log(id, line(i));
    await a.advance(1000);
    expect((await a.engine.stream(id, 0, () => {}))!.past.map((e) => e.id)).toEqual([7, 8, 9, 10]);
    await a.engine.close();
    b.endpoints.set(NS, 'd', [A_POD]);
    void b.engine.start();
    await b.advance(1000);
    expect(b.engine.drives(id)).toBe(true);
    // B read the stored events (all of them) and keeps the newest within the cap.
    expect(b.instances.calls.filter((c) => c.startsWith('stream ')).at(-1)).toBe(`stream http://a ${id} 10`);
    expect((await b.engine.stream(id, 0, () => {}))!.past.map((e) => e.id)).toEqual([8, 9, 10]);
    b.instances.log(id, line(11));
    b.instances.end(id, { status: 'succeeded', output: 'ok' });
    await b.advance(1000);
    expect(await b.engine.get(id)).toMatchObject({ status: 'succeeded', output: 'ok' });
    const stored = (await b.engine.stream(id, 0, () => {}))!.past;
    expect(stored.map((e) => e.id)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    expect(stored.at(10)).toEqual({ id: 11, event: 'logs', data: line(11) });
  });

  it('answers 503 with Retry-After when the store cannot take a new prediction, and stops it on its instance', async () => {
    const t = engineOnFakeClock({
      engine: {
        store: new (class extends MemoryStore {
          override async insert(_rec: StoredPrediction): Promise<StoredPrediction | undefined> {
            // Fails after the instance has taken the prediction (the two go side by side).
            await new Promise((r) => setImmediate(r));
            throw new StoreUnavailableError('connect ECONNREFUSED 127.0.0.1:5432');
          }
        })(),
      },
    });
    replicas = [t];
    t.endpoints.set(NS, 'd', [A_POD]);
    const refused = await t.create({ text: 'x' }).catch((err: unknown) => err);
    expect(refused).toMatchObject({ status: 503, headers: { 'retry-after': '2' } });
    await t.settle();
    const id = t.instances.calls[0]!.split(' ')[2]!;
    expect(t.instances.calls).toContain(`cancel http://a ${id}`);
    expect(t.engine.drives(id)).toBe(false);
    expect(t.engine.demand()[0]).toMatchObject({ queued: 0, inflight: 0 });
  });
});
