/**
 * The contract of a `PredictionStore`, as tests: every implementation (MemoryStore here in
 * store.test.ts; PGlite and PostgreSQL in operator/store/) runs the same suite, from a
 * factory that opens an empty store. Notices may arrive after the write resolves (from a
 * database's LISTEN connection): the suite waits for them, with a deadline.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../lib/prediction.ts';
import type { FileRecord } from './record.ts';
import type { PredictionStore, StoredPrediction, StoreNotice } from './store.ts';

export interface StoreFactory {
  /** An empty store. */
  open(): Promise<PredictionStore>;
  /**
   * Another store on the same data as the last one `open` made: a second replica. Absent for
   * kinds that one process at most uses (memory, embedded).
   */
  another?(): Promise<PredictionStore>;
}

let seq = 0;
/** A record with a unique id (lowercase base32 like real ids). */
export function storedRecord(over: Partial<StoredPrediction> = {}): StoredPrediction {
  seq++;
  const id = `p${String(seq).padStart(8, '0')}${'a'.repeat(17)}`;
  return {
    id,
    namespace: 'ns',
    deployment: 'dep',
    viaDeployment: false,
    model: 'ns/model',
    version: 'a'.repeat(64),
    input: { prompt: 'hi' },
    output: null,
    logs: '',
    error: null,
    status: 'starting',
    createdAt: 1_700_000_000_000 + seq,
    webhookEvents: ['completed'],
    baseUrl: 'http://gw/v1',
    ...over,
  };
}

let fileSeq = 0;
/** A file record with a unique id, created after the ones before it. */
export function fileRecord(over: Partial<FileRecord> = {}): FileRecord {
  fileSeq++;
  const id = `f${String(fileSeq).padStart(8, '0')}${'b'.repeat(17)}`;
  return {
    id,
    namespace: 'ns',
    name: `file-${fileSeq}.png`,
    contentType: 'image/png',
    size: 1234 + fileSeq,
    sha256: 'c'.repeat(64),
    md5: 'd'.repeat(32),
    metadata: {},
    createdAt: 1_700_000_000_000 + fileSeq * 1000,
    key: `ns/${id}`,
    ...over,
  };
}

/** Polls `check` until it holds (deadline 10 s): no fixed sleeps. */
export async function eventually<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v as T;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Collects the notices a store sends. */
export function recordNotices(store: PredictionStore): { got: StoreNotice[]; stop: () => void } {
  const got: StoreNotice[] = [];
  const stop = store.subscribe((n) => got.push(n));
  return { got, stop };
}

const ev = (id: number, event: StreamEvent['event'] = 'output', data = `o${id}`): StreamEvent => ({
  id,
  event,
  data,
});

export function storeContract(name: string, factory: StoreFactory): void {
  describe(`${name}: the PredictionStore contract`, () => {
    const opened: PredictionStore[] = [];
    const open = async () => {
      const s = await factory.open();
      opened.push(s);
      return s;
    };
    afterEach(async () => {
      for (const s of opened.splice(0).reverse()) await s.close();
    });

    it('keeps every field of a record, and reads back what it stored', async () => {
      const s = await open();
      const full = storedRecord({
        namespace: 'team-a',
        viaDeployment: true,
        input: { prompt: 'a', n: 3, nested: { list: [1, 'two', null] } },
        output: ['https://x/1.png', 'https://x/2.png'],
        logs: 'line 1\nline 2\n',
        error: 'it broke',
        status: 'failed',
        startedAt: 1_700_000_000_500,
        completedAt: 1_700_000_001_250,
        predictTime: 0.625,
        cost: '0.000123450',
        metrics: { image_count: 2, seed: 'abc', timing: { inference: 0.5 }, steps: [1, 2] },
        instance: 'dep-abc-123',
        webhook: 'https://hooks.example/x',
        webhookEvents: ['start', 'completed'],
        idempotencyKey: 'key-1',
        deadline: 1_700_000_060_000,
        origin: 'team-a/pred-1',
      });
      const minimal = storedRecord();
      expect(await s.insert(full, 'r1')).toBeUndefined();
      expect(await s.insert(minimal, 'r1')).toBeUndefined();
      expect(await s.get(full.id)).toEqual(full);
      expect(await s.get(minimal.id)).toEqual(minimal);
      expect(await s.get('nosuchpredictionaaaaaaaaaa')).toBeUndefined();
      const scalar = storedRecord({ output: 'just text' });
      await s.insert(scalar, 'r1');
      expect((await s.get(scalar.id))?.output).toBe('just text');
    });

    it('stores one prediction per Idempotency-Key and namespace', async () => {
      const s = await open();
      const first = storedRecord({ idempotencyKey: 'k' });
      expect(await s.insert(first, 'r1')).toBeUndefined();
      const retry = storedRecord({ idempotencyKey: 'k' });
      expect((await s.insert(retry, 'r2'))?.id).toBe(first.id);
      expect(await s.get(retry.id)).toBeUndefined();
      const elsewhere = storedRecord({ idempotencyKey: 'k', namespace: 'other' });
      expect(await s.insert(elsewhere, 'r1')).toBeUndefined();
      expect((await s.findByIdempotencyKey('ns', 'k'))?.id).toBe(first.id);
      expect((await s.findByIdempotencyKey('other', 'k'))?.id).toBe(elsewhere.id);
      expect(await s.findByIdempotencyKey('ns', 'nope')).toBeUndefined();
    });

    it('lets only the driver update a prediction, keeping a cancel request', async () => {
      const s = await open();
      const rec = storedRecord();
      await s.insert(rec, 'r1');
      const running = {
        ...rec,
        status: 'processing' as const,
        startedAt: rec.createdAt + 10,
        instance: 'pod-1',
      };
      expect(await s.update(running, 'r1')).toBe(true);
      expect(await s.get(rec.id)).toEqual(running);
      expect(await s.update({ ...running, status: 'succeeded' }, 'r2')).toBe(false);
      expect((await s.get(rec.id))?.status).toBe('processing');
      expect(await s.update(storedRecord(), 'r1')).toBe(false); // unknown: nothing written
      expect((await s.requestCancel(rec.id))?.cancelRequested).toBe(true);
      expect(await s.update({ ...running, logs: 'more' }, 'r1')).toBe(true);
      expect(await s.get(rec.id)).toMatchObject({ logs: 'more', cancelRequested: true });
      // What the insert wrote once (its input, its target) an update leaves as it is.
      expect(await s.update({ ...running, input: { other: 1 }, deployment: 'elsewhere' }, 'r1')).toBe(true);
      expect(await s.get(rec.id)).toMatchObject({ input: rec.input, deployment: rec.deployment });
    });

    it('appends stream events in order, for the driver only, and reads them after an id', async () => {
      const s = await open();
      const rec = storedRecord();
      await s.insert(rec, 'r1');
      expect(await s.update({ ...rec, status: 'processing' }, 'r1', [ev(1, 'logs', 'starting'), ev(2)])).toBe(
        true,
      );
      expect(await s.appendEvents(rec.id, 'r1', [ev(3), ev(4, 'logs', 'x\ny')])).toBe(true);
      expect(await s.appendEvents(rec.id, 'r2', [ev(5)])).toBe(false);
      expect(await s.update({ ...rec, status: 'succeeded' }, 'r2', [ev(5, 'done', '{}')])).toBe(false);
      expect(await s.events(rec.id, 0)).toEqual([
        ev(1, 'logs', 'starting'),
        ev(2),
        ev(3),
        ev(4, 'logs', 'x\ny'),
      ]);
      expect(await s.events(rec.id, 2)).toEqual([ev(3), ev(4, 'logs', 'x\ny')]);
      expect(await s.events(rec.id, 4)).toEqual([]);
      expect(await s.events('nosuchpredictionaaaaaaaaaa', 0)).toEqual([]);
    });

    it('lists newest first in cursor pages, by namespace and creation time', async () => {
      const s = await open();
      const t = 1_800_000_000_000;
      const recs = [0, 1, 2, 3, 4].map((i) =>
        storedRecord({ createdAt: t + i * 1000, namespace: i % 2 ? 'a' : 'b' }),
      );
      // Two created in the same millisecond: the greater id comes first.
      const twinA = storedRecord({ createdAt: t + 2000, namespace: 'c' });
      const twinB = storedRecord({ createdAt: t + 2000, namespace: 'c' });
      for (const r of [...recs, twinA, twinB]) await s.insert(r, 'r1');
      const ids = (page: { items: StoredPrediction[] }) => page.items.map((r) => r.id);
      const order = [recs[4]!, recs[3]!, twinB, twinA, recs[2]!, recs[1]!, recs[0]!].map((r) => r.id);
      const seen: string[] = [];
      let cursor: string | undefined;
      let pages = 0;
      do {
        const page = await s.list({ namespaces: 'all', limit: 3, ...(cursor ? { cursor } : {}) });
        seen.push(...ids(page));
        cursor = page.next;
        pages++;
      } while (cursor);
      expect(seen).toEqual(order);
      expect(pages).toBe(3);
      // And back: from the last page, `previous` pages lead to the first, in the same order.
      const first = await s.list({ namespaces: 'all', limit: 3 });
      expect(first.previous).toBeUndefined();
      const second = await s.list({ namespaces: 'all', limit: 3, cursor: first.next! });
      const third = await s.list({ namespaces: 'all', limit: 3, cursor: second.next! });
      expect(ids(third)).toEqual(order.slice(6));
      const backToSecond = await s.list({ namespaces: 'all', limit: 3, before: third.previous! });
      expect(ids(backToSecond)).toEqual(order.slice(3, 6));
      expect(backToSecond.next).toBe(second.next);
      const backToFirst = await s.list({ namespaces: 'all', limit: 3, before: backToSecond.previous! });
      expect(ids(backToFirst)).toEqual(order.slice(0, 3));
      expect(backToFirst.previous).toBeUndefined();
      expect(ids(await s.list({ namespaces: ['a'], limit: 10 }))).toEqual([recs[3]!.id, recs[1]!.id]);
      expect(ids(await s.list({ namespaces: ['a', 'c'], limit: 10 }))).toEqual([
        recs[3]!.id,
        twinB.id,
        twinA.id,
        recs[1]!.id,
      ]);
      expect(await s.list({ namespaces: [], limit: 10 })).toEqual({ items: [] });
      expect(
        ids(await s.list({ namespaces: 'all', limit: 10, createdAfter: t + 1000, createdBefore: t + 3000 })),
      ).toEqual([twinB.id, twinA.id, recs[2]!.id, recs[1]!.id]);
      const exact = await s.list({ namespaces: 'all', limit: 2, createdBefore: t + 4000 });
      expect(ids(exact)).toEqual([recs[3]!.id, twinB.id]);
      expect(exact.items[0]).toEqual(recs[3]);
    });

    it('tells its subscribers of writes, events and cancel requests, with the driver', async () => {
      const s = await open();
      const { got, stop } = recordNotices(s);
      const rec = storedRecord();
      await s.insert(rec, 'r1');
      await s.update({ ...rec, status: 'processing' }, 'r1', [ev(1), ev(2)]);
      await s.appendEvents(rec.id, 'r1', [ev(3)]);
      const asked = await s.requestCancel(rec.id);
      expect(asked).toMatchObject({ id: rec.id, status: 'processing', cancelRequested: true });
      await eventually('five notices', () => got.length >= 5);
      expect(got).toEqual([
        { kind: 'changed', id: rec.id, status: 'starting' },
        { kind: 'events', id: rec.id, lastId: 2 },
        { kind: 'changed', id: rec.id, status: 'processing' },
        { kind: 'events', id: rec.id, lastId: 3 },
        { kind: 'cancel', id: rec.id, driver: 'r1' },
      ]);
      // A finished prediction is not canceled: no notice, and the record as it is.
      await s.update({ ...rec, status: 'succeeded', completedAt: rec.createdAt + 5 }, 'r1');
      await eventually('the last change', () => got.length >= 6);
      expect(await s.requestCancel(rec.id)).toMatchObject({ status: 'succeeded' });
      expect(await s.requestCancel('nosuchpredictionaaaaaaaaaa')).toBeUndefined();
      const marker = storedRecord();
      await s.insert(marker, 'r1'); // notices arrive in order: once this one is here, none other is coming
      await eventually('the marker', () => got.some((n) => n.id === marker.id));
      expect(got.slice(5).map((n) => n.kind)).toEqual(['changed', 'changed']);
      stop();
      await s.insert(storedRecord(), 'r1');
      const other = recordNotices(s);
      await s.insert(storedRecord(), 'r1');
      await eventually('a notice to the other subscriber', () => other.got.length > 0);
      expect(got.length).toBe(7);
      other.stop();
    });

    it('lets another replica adopt the unfinished predictions of one that left or went silent', async () => {
      const s = await open();
      await s.heartbeat('a');
      await s.heartbeat('b');
      const a1 = storedRecord();
      const a2 = storedRecord({ status: 'processing' });
      const aDone = storedRecord({ status: 'succeeded', completedAt: 1_700_000_100_000 });
      // Ended, its completed webhook still owed: adopted too, to be sent.
      const aOwed = storedRecord({
        status: 'succeeded',
        completedAt: 1_700_000_100_000,
        webhookPending: true,
      });
      const b1 = storedRecord();
      for (const r of [a1, a2, aDone, aOwed]) await s.insert(r, 'a');
      await s.insert(b1, 'b');
      expect(await s.adopt('c', 60_000)).toEqual([]);
      await s.leave('a');
      const adopted = await s.adopt('c', 60_000);
      expect(adopted.map((r) => r.id).sort()).toEqual([a1.id, a2.id, aOwed.id].sort());
      expect(adopted.find((r) => r.id === aOwed.id)?.webhookPending).toBe(true);
      expect(await s.adopt('c', 60_000)).toEqual([]);
      // The old driver's writes are refused; the new driver's go through.
      expect(await s.update({ ...a1, status: 'processing' }, 'a')).toBe(false);
      expect(await s.update({ ...a1, status: 'processing' }, 'c')).toBe(true);
      // b goes silent: once its heartbeat is older than staleMs, its prediction is adopted.
      const late = await eventually('b to go stale', async () => {
        const got = await s.adopt('c', 150);
        return got.length ? got : undefined;
      });
      expect(late.map((r) => r.id)).toEqual([b1.id]);
    });

    it('gives each unfinished prediction to one adopter only, however many ask at once', async () => {
      const s = await open();
      const t = await (factory.another ? factory.another() : Promise.resolve(s));
      if (t !== s) opened.push(t);
      const recs = Array.from({ length: 40 }, () => storedRecord());
      for (const r of recs) await s.insert(r, 'gone');
      await s.heartbeat('x');
      await t.heartbeat('y');
      const rounds = await Promise.all([
        s.adopt('x', 60_000),
        t.adopt('y', 60_000),
        s.adopt('x', 60_000),
        t.adopt('y', 60_000),
      ]);
      const all = rounds.flat().map((r) => r.id);
      expect(all.length).toBe(recs.length);
      expect(new Set(all).size).toBe(recs.length);
    });

    it('removes the data of finished predictions after the retention (keeping their metrics and cost), then their records', async () => {
      const s = await open();
      const old = storedRecord({ idempotencyKey: 'old', output: { a: 1 }, logs: 'l' });
      const recent = storedRecord({ output: 'r', logs: 'l' });
      const running = storedRecord({ status: 'processing', logs: 'l' });
      for (const r of [old, recent, running]) await s.insert(r, 'r1');
      const oldDone = {
        ...old,
        status: 'succeeded' as const,
        completedAt: 2_000,
        cost: '0.5',
        predictTime: 1,
        metrics: { output_token_count: 12 },
      };
      await s.update(oldDone, 'r1', [ev(1), ev(2, 'done', '{}')]);
      await s.update({ ...recent, status: 'failed', completedAt: 9_000, error: 'x' }, 'r1', [
        ev(1, 'done', '{}'),
      ]);
      await s.update(running, 'r1', [ev(1)]);
      expect(await s.removeData(5_000)).toBe(1);
      expect(await s.get(old.id)).toEqual({
        ...oldDone,
        input: {},
        output: null,
        logs: '',
        dataRemoved: true,
      });
      expect(await s.events(old.id, 0)).toEqual([]);
      expect((await s.get(recent.id))?.output).toBe('r');
      expect(await s.events(recent.id, 0)).toHaveLength(1);
      expect((await s.get(running.id))?.logs).toBe('l');
      expect(await s.removeData(5_000)).toBe(0);
      expect(await s.purge(5_000)).toBe(1);
      expect(await s.get(old.id)).toBeUndefined();
      expect(await s.findByIdempotencyKey('ns', 'old')).toBeUndefined();
      expect(await s.purge(10_000)).toBe(1);
      expect(await s.get(recent.id)).toBeUndefined();
      expect(await s.get(running.id)).toBeDefined();
      expect(await s.purge(Number.MAX_SAFE_INTEGER / 2)).toBe(0);
    });

    it('forgets a deleted prediction', async () => {
      const s = await open();
      const rec = storedRecord({ idempotencyKey: 'del' });
      await s.insert(rec, 'r1');
      await s.update(rec, 'r1', [ev(1)]);
      await s.delete(rec.id);
      expect(await s.get(rec.id)).toBeUndefined();
      expect(await s.events(rec.id, 0)).toEqual([]);
      expect(await s.insert(storedRecord({ idempotencyKey: 'del' }), 'r1')).toBeUndefined();
      await s.ping();
    });

    it('keeps file records: every field, lists newest first by namespace with cursors, forgets deleted ones', async () => {
      const s = await open();
      const full = fileRecord({
        namespace: 'team-a',
        metadata: { a: 1, nested: { b: [true, null] } },
        expiresAt: 1_700_000_900_000,
      });
      const output = fileRecord({ namespace: 'team-a', prediction: 'p1' });
      const other = fileRecord({ namespace: 'team-b' });
      for (const f of [full, output, other]) await s.insertFile(f);
      expect(await s.getFile(full.id)).toEqual(full);
      expect(await s.getFile(output.id)).toEqual(output);
      expect(await s.getFile('nope')).toBeUndefined();
      const first = await s.listFiles({ namespaces: ['team-a'], limit: 1 });
      expect(first.items).toEqual([output]);
      expect(first.previous).toBeUndefined();
      const second = await s.listFiles({ namespaces: ['team-a'], limit: 1, cursor: first.next! });
      expect(second.items).toEqual([full]);
      expect(second.next).toBeUndefined();
      const back = await s.listFiles({ namespaces: ['team-a'], limit: 1, before: second.previous! });
      expect(back.items).toEqual([output]);
      expect((await s.listFiles({ namespaces: 'all', limit: 10 })).items).toEqual([other, output, full]);
      expect((await s.listFiles({ namespaces: [], limit: 10 })).items).toEqual([]);
      expect(await s.deleteFile(other.id)).toEqual(other);
      expect(await s.deleteFile(other.id)).toBeUndefined();
      expect(await s.getFile(other.id)).toBeUndefined();
    });

    it('finds the files that are gone: expired ones, and outputs of predictions whose data was removed or purged', async () => {
      const s = await open();
      const pred = storedRecord();
      const kept = storedRecord();
      await s.insert(pred, 'r1');
      await s.insert(kept, 'r1');
      await s.update({ ...pred, status: 'succeeded', completedAt: 2_000 }, 'r1');
      await s.update({ ...kept, status: 'succeeded', completedAt: 9_000 }, 'r1');
      const expiring = fileRecord({ expiresAt: 5_000 });
      const lasting = fileRecord({ expiresAt: 50_000 });
      const output = fileRecord({ prediction: pred.id });
      const keptOutput = fileRecord({ prediction: kept.id });
      const orphan = fileRecord({ prediction: 'p-never-stored' });
      for (const f of [expiring, lasting, output, keptOutput, orphan]) await s.insertFile(f);
      const ids = async (now: number) => (await s.goneFiles(now, 100)).map((f) => f.id).sort();
      expect(await ids(4_999)).toEqual([orphan.id].sort());
      expect(await ids(5_000)).toEqual([expiring.id, orphan.id].sort());
      await s.removeData(5_000);
      expect(await ids(5_000)).toEqual([expiring.id, output.id, orphan.id].sort());
      expect(await s.goneFiles(5_000, 1)).toHaveLength(1);
      await s.purge(10_000);
      expect(await ids(5_000)).toEqual([expiring.id, keptOutput.id, output.id, orphan.id].sort());
      for (const id of await ids(5_000)) await s.deleteFile(id);
      expect(await ids(5_000)).toEqual([]);
      expect(await s.getFile(lasting.id)).toEqual(lasting);
    });

    if (factory.another) {
      const another = factory.another.bind(factory);
      it('tells every replica of every write, and lets any replica read any prediction', async () => {
        const a = await open();
        const b = await another();
        opened.push(b);
        const onB = recordNotices(b);
        const rec = storedRecord();
        await a.insert(rec, 'a');
        await a.update({ ...rec, status: 'processing' }, 'a', [ev(1)]);
        expect(await b.get(rec.id)).toEqual({ ...rec, status: 'processing' });
        expect(await b.events(rec.id, 0)).toEqual([ev(1)]);
        await b.requestCancel(rec.id);
        await eventually('the notices on b', () => onB.got.length >= 4);
        expect(onB.got).toEqual([
          { kind: 'changed', id: rec.id, status: 'starting' },
          { kind: 'events', id: rec.id, lastId: 1 },
          { kind: 'changed', id: rec.id, status: 'processing' },
          { kind: 'cancel', id: rec.id, driver: 'a' },
        ]);
      });
    }
  });
}
