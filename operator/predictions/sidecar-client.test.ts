/**
 * The gateway's calls to a sidecar, against a local HTTP server that answers as a sidecar
 * would: the kinds of answer each call maps to, and the connections it keeps open.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SidecarClient } from './sidecar-client.ts';

let server: Server;
let base = '';
let answer: (req: IncomingMessage, body: string, res: ServerResponse) => void = () => {};
const connections = new Set<unknown>();

beforeAll(async () => {
  server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => answer(req, Buffer.concat(chunks).toString('utf8'), res));
  });
  server.on('connection', (socket) => connections.add(socket));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

describe('SidecarClient', () => {
  it('creates with the id and input, and maps each answer', async () => {
    const client = new SidecarClient();
    const seen: string[] = [];
    answer = (req, body, res) => {
      seen.push(`${req.method} ${req.url} ${req.headers['content-type']} ${body}`);
      json(res, 201, { id: 'p1', status: 'starting' });
    };
    expect(await client.create(base, 'p1', { text: 'hi' })).toEqual({
      kind: 'accepted',
      body: { id: 'p1', status: 'starting' },
    });
    expect(seen).toEqual(['POST /predictions application/json {"id":"p1","input":{"text":"hi"}}']);

    answer = (_req, _body, res) => json(res, 429, { detail: 'queue full' }, { 'retry-after': '3' });
    expect(await client.create(base, 'p1', {})).toEqual({
      kind: 'refused',
      status: 429,
      detail: 'queue full',
      retryAfterMs: 3000,
    });
    answer = (_req, _body, res) => json(res, 503, { detail: 'draining' });
    expect(await client.create(base, 'p1', {})).toMatchObject({
      kind: 'refused',
      status: 503,
      retryAfterMs: 1000,
    });
    const fields = [{ type: 'required', field: 'input.text', description: 'text is required' }];
    answer = (_req, _body, res) => json(res, 422, { detail: 'invalid', invalid_fields: fields });
    expect(await client.create(base, 'p1', {})).toEqual({ kind: 'invalid', fields, detail: 'invalid' });
    answer = (_req, _body, res) => res.writeHead(500).end('boom');
    expect(await client.create(base, 'p1', {})).toEqual({ kind: 'error', status: 500, detail: 'boom' });
    // Five exchanges, one connection kept open.
    expect(connections.size).toBe(1);
  });

  it('reads and cancels', async () => {
    const client = new SidecarClient();
    answer = (req, _body, res) =>
      req.url === '/predictions/p%2F1'
        ? json(res, 200, { id: 'p/1', status: 'succeeded', output: 'x' })
        : req.url === '/predictions/p1/cancel' && req.method === 'POST'
          ? json(res, 200, { id: 'p1', status: 'canceled' })
          : json(res, 404, { detail: 'no such prediction' });
    expect(await client.get(base, 'p/1')).toEqual({
      kind: 'ok',
      body: { id: 'p/1', status: 'succeeded', output: 'x' },
    });
    expect(await client.get(base, 'p2')).toEqual({ kind: 'not-found' });
    expect(await client.cancel(base, 'p1')).toBe(true);
    expect(await client.cancel(base, 'p2')).toBe(false);
  });

  it('says why an instance is unreachable, and gives up on one that does not answer in time', async () => {
    const client = new SidecarClient({ timeoutMs: 200 });
    // A port nothing listens on: the server's, once closed.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const refused = await client.create(`http://127.0.0.1:${port}`, 'p1', {});
    expect(refused).toMatchObject({ kind: 'unreachable', error: expect.stringContaining('ECONNREFUSED') });

    answer = () => {}; // never answers
    const silent = await client.get(base, 'p1');
    expect(silent).toMatchObject({ kind: 'unreachable', error: expect.stringMatching(/abort|timeout/i) });
  });
});
