/** SidecarClient.stream against a local server that sends server-sent events as a sidecar does. */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../lib/prediction.ts';
import { type InstanceEvent, SidecarClient } from './sidecar-client.ts';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

/** A sidecar stand-in whose stream sends `frames`, then stays open. */
async function streaming(frames: string[]): Promise<string> {
  const srv = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    for (const f of frames) res.write(f);
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

describe('SidecarClient.stream', () => {
  it('resolves done after the done event, with every event before it', async () => {
    const base = await streaming(['id: 1\nevent: output\ndata: x\n\n', 'id: 2\nevent: done\ndata: {}\n\n']);
    const seen: StreamEvent[] = [];
    await expect(new SidecarClient().stream(base, 'p1', 0, (e) => seen.push(e))).resolves.toBe('done');
    expect(seen.map((e) => e.event)).toEqual(['output', 'done']);
  });

  it('throws when the stream stays silent past the idle limit', async () => {
    const base = await streaming([]);
    await expect(new SidecarClient({ streamIdleMs: 100 }).stream(base, 'p1', 0, () => {})).rejects.toThrow(
      /silent/,
    );
  });
});

/** A sidecar stand-in that answers a create with `status` and `frames` (then ends, or stays open). */
async function creating(status: number, frames: string[], end = true): Promise<string> {
  const srv = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': 'text/event-stream' });
      for (const f of frames) res.write(f);
      if (end) res.end();
    });
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

describe('SidecarClient.create with the create stream', () => {
  it('answers accepted, passes logs and output (with their values) and ends with the final record', async () => {
    const base = await creating(201, [
      'event: accepted\ndata: {"status":"processing","started_at":"2026-01-01T00:00:00.000Z"}\n\n',
      'id: 1\nevent: logs\ndata: "step 1\\n"\n\n',
      'id: 2\nevent: output\ndata: {"n":1}\n\nid: 3\nevent: output\ndata: "two"\n\n',
      'event: prediction\ndata: {"id":"p1","status":"succeeded","output":[{"n":1},"two"]}\n\n',
    ]);
    const seen: InstanceEvent[] = [];
    const r = await new SidecarClient().create(base, 'p1', {}, { onEvent: (e) => seen.push(e) });
    expect(r).toMatchObject({ kind: 'accepted', body: { status: 'processing' } });
    if (r.kind !== 'accepted') throw new Error('not accepted');
    await expect(r.final).resolves.toEqual({
      kind: 'final',
      body: { id: 'p1', status: 'succeeded', output: [{ n: 1 }, 'two'] },
    });
    expect(seen).toEqual([
      { id: 1, event: 'logs', data: 'step 1\n' },
      { id: 2, event: 'output', data: '{"n":1}', value: { n: 1 } },
      { id: 3, event: 'output', data: 'two', value: 'two' },
    ]);
  });

  it('reads frames whose blank line and UTF-8 characters are cut between chunks', async () => {
    const whole = Buffer.from(
      'event: accepted\ndata: {"status":"processing","started_at":null}\n\n' +
        'id: 1\nevent: logs\ndata: "héllo 🙂\\n"\n\n' +
        'event: prediction\ndata: {"id":"p1","status":"succeeded","output":"ünïcode 🙂"}\n\n',
    );
    // Cut inside the first frame's blank line, inside "é", and inside the emoji's four bytes.
    const cuts = [whole.indexOf('\n\n') + 1, whole.indexOf('é') + 1, whole.indexOf('🙂') + 2, whole.length];
    const srv = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(201, { 'content-type': 'text/event-stream' });
        let at = 0;
        const next = (i: number) => {
          if (i === cuts.length) return res.end();
          res.write(whole.subarray(at, cuts[i]));
          at = cuts[i]!;
          // Apart in time, so that they arrive as separate chunks.
          setTimeout(() => next(i + 1), 5);
        };
        next(0);
      });
    });
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(srv.address() as AddressInfo).port}`;
    const seen: InstanceEvent[] = [];
    const r = await new SidecarClient().create(base, 'p1', {}, { onEvent: (e) => seen.push(e) });
    if (r.kind !== 'accepted') throw new Error('not accepted');
    await expect(r.final).resolves.toEqual({
      kind: 'final',
      body: { id: 'p1', status: 'succeeded', output: 'ünïcode 🙂' },
    });
    expect(seen).toEqual([{ id: 1, event: 'logs', data: 'héllo 🙂\n' }]);
  });

  it('says the stream broke when it ends before the final record', async () => {
    const base = await creating(201, [
      'event: accepted\ndata: {"status":"processing","started_at":null}\n\n',
    ]);
    const r = await new SidecarClient().create(base, 'p1', {});
    if (r.kind !== 'accepted') throw new Error('not accepted');
    await expect(r.final).resolves.toMatchObject({ kind: 'broken' });
  });

  it('drops a stream silent past the idle limit', async () => {
    const base = await creating(
      201,
      ['event: accepted\ndata: {"status":"starting","started_at":null}\n\n'],
      false,
    );
    const r = await new SidecarClient({ streamIdleMs: 100 }).create(base, 'p1', {});
    if (r.kind !== 'accepted') throw new Error('not accepted');
    await expect(r.final).resolves.toEqual({
      kind: 'broken',
      error: "the create's stream was silent for 0.1 s",
    });
  });
});
