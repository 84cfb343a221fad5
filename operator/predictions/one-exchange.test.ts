/**
 * The engine with the real SidecarClient against a local server that answers as a sidecar
 * does: a prediction costs one HTTP exchange with its instance (the create, answered by its
 * event stream that ends with the final record), and a stream that breaks first falls back
 * to the instance's `/stream` and a read.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { SidecarClient } from './sidecar-client.ts';
import { engineOnFakeClock, NS } from './testing.ts';

const servers: Server[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

const FINAL = {
  id: '',
  status: 'succeeded',
  output: ['a', 'b'],
  logs: 'step\n',
  error: null,
  started_at: '2026-01-01T00:00:00.000Z',
  metrics: { predict_time: 0.002, total_time: 0.003 },
  cost: '0.000001',
};

/** A sidecar stand-in: `create` answers the create; every request is listed in `requests`. */
async function sidecar(
  create: (res: ServerResponse, id: string, body: Record<string, unknown>) => void,
  other: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => res.writeHead(404).end(),
): Promise<{ base: string; requests: string[]; headers: IncomingMessage['headers'][] }> {
  const requests: string[] = [];
  const headers: IncomingMessage['headers'][] = [];
  const srv = createServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    headers.push(req.headers);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method === 'POST' && req.url === '/predictions') {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
        create(res, body.id as string, body);
      } else other(req, res);
    });
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  return { base: `http://127.0.0.1:${(srv.address() as AddressInfo).port}`, requests, headers };
}

function streamHead(res: ServerResponse): void {
  res.writeHead(201, { 'content-type': 'text/event-stream' });
  res.write('event: accepted\ndata: {"status":"processing","started_at":"2026-01-01T00:00:00.000Z"}\n\n');
}

const READY = [{ type: 'Ready', status: 'True', reason: 'Ready', message: '' }];
const SCHEMA = { components: { schemas: { Input: { type: 'object', properties: {} } } } };

describe('one exchange per prediction with the instance', () => {
  it('creates, follows and ends a prediction with the create alone', async () => {
    const sc = await sidecar((res, id) => {
      streamHead(res);
      res.write('id: 1\nevent: logs\ndata: "step\\n"\n\n');
      res.write('id: 2\nevent: output\ndata: "a"\n\nid: 3\nevent: output\ndata: "b"\n\n');
      res.end(`event: prediction\ndata: ${JSON.stringify({ ...FINAL, id })}\n\n`);
    });
    const f = engineOnFakeClock({
      engine: { sidecar: new SidecarClient() },
      deployment: { conditions: READY, openapi: SCHEMA },
    });
    f.endpoints.set(NS, 'd', [{ id: 'pod-a', url: sc.base }]);
    const { record } = await f.create({ text: 'x' });
    expect(await f.engine.waitDone(record.id, 60_000)).toBe(true);
    expect(sc.requests).toEqual(['POST /predictions']);
    // Asked for the event stream, told the input was checked, not asked to follow it live.
    expect(sc.headers[0]).toMatchObject({ accept: 'text/event-stream', 'x-modelplane-input-checked': '1' });
    const rec = await f.engine.get(record.id);
    expect(rec).toMatchObject({ status: 'succeeded', output: ['a', 'b'], logs: 'step\n', cost: '0.000001' });
    expect((await f.events(record.id)).map((e) => [e.event, e.data])).toEqual([
      ['logs', 'step\n'],
      ['output', 'a'],
      ['output', 'b'],
      ['done', '{}'],
    ]);
  });

  it('asks the instance to follow it live when the caller wants live events', async () => {
    const bodies: Record<string, unknown>[] = [];
    const sc = await sidecar((res, id, body) => {
      bodies.push(body);
      streamHead(res);
      res.end(`event: prediction\ndata: ${JSON.stringify({ ...FINAL, id })}\n\n`);
    });
    const f = engineOnFakeClock({
      engine: { sidecar: new SidecarClient() },
      deployment: { conditions: READY },
    });
    f.endpoints.set(NS, 'd', [{ id: 'pod-a', url: sc.base }]);
    const a = await f.create({}, { stream: true });
    await f.engine.waitDone(a.record.id, 60_000);
    const b = await f.create({}, { webhook: 'https://example.com/hook', webhookEvents: ['completed'] });
    await f.engine.waitDone(b.record.id, 60_000);
    expect(bodies.map((x) => x.stream)).toEqual([true, undefined]);
    // No schema: nothing was checked here, so the instance checks.
    expect(sc.headers[0]!['x-modelplane-input-checked']).toBeUndefined();
  });

  it('follows the instance stream from the last event when the create stream breaks, then reads the end', async () => {
    let record: Record<string, unknown> = {};
    const sc = await sidecar(
      (res, id) => {
        record = { ...FINAL, id };
        streamHead(res);
        res.write('id: 1\nevent: logs\ndata: "step\\n"\n\n');
        // The connection breaks before the record.
        setImmediate(() => res.socket?.destroy());
      },
      (req, res) => {
        if (req.url?.endsWith('/stream')) {
          expect(req.headers['last-event-id']).toBe('1');
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.end(
            'id: 2\nevent: output\ndata: a\n\nid: 3\nevent: output\ndata: b\n\nid: 4\nevent: done\ndata: {}\n\n',
          );
          return;
        }
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(record));
      },
    );
    const f = engineOnFakeClock({
      engine: { sidecar: new SidecarClient() },
      deployment: { conditions: READY },
    });
    f.endpoints.set(NS, 'd', [{ id: 'pod-a', url: sc.base }]);
    const { record: rec } = await f.create({});
    expect(await f.engine.waitDone(rec.id, 60_000)).toBe(true);
    expect(sc.requests).toEqual([
      'POST /predictions',
      `GET /predictions/${rec.id}/stream`,
      `GET /predictions/${rec.id}`,
    ]);
    expect(await f.engine.get(rec.id)).toMatchObject({ status: 'succeeded', output: ['a', 'b'] });
    expect((await f.events(rec.id)).map((e) => e.event)).toEqual(['logs', 'output', 'output', 'done']);
  });
});
