import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { UploadListener } from './uploads.ts';

const log = pino({ level: 'silent' });
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

/** A stand-in for the gateway's upload route: stores what arrives, answers as the gateway does. */
async function gateway(
  answer: (got: { url: string; type: string; bytes: Buffer }) => [number, Record<string, string>, string],
) {
  const got: { url: string; type: string; bytes: Buffer }[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const g = {
        url: req.url ?? '',
        type: String(req.headers['content-type']),
        bytes: Buffer.concat(chunks),
      };
      got.push(g);
      const [status, headers, body] = answer(g);
      res.writeHead(status, headers);
      res.end(body);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(() => r())));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, got };
}

async function listener(target: (id: string) => string | undefined): Promise<string> {
  const l = new UploadListener({ host: '127.0.0.1', port: 0, log, target });
  const url = await l.open();
  closers.push(() => l.close());
  return url;
}

describe('the upload listener of output files', () => {
  it("streams a file to the prediction's upload URL and answers with the stored file's URL", async () => {
    const gw = await gateway(() => [201, { location: 'http://gw/v1/files/f1/download/1.sig' }, '{}']);
    const url = await listener((id) => (id === 'p1' ? `${gw.url}/v1/files/outputs/p1/tok` : undefined));
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/upload\/$/);
    const body = Buffer.alloc(3 * 1024 * 1024 + 7, 7);
    const res = await fetch(`${url}out.png`, {
      method: 'PUT',
      headers: { 'content-type': 'image/png', 'x-prediction-id': 'p1' },
      body,
    });
    expect(res.status).toBe(201);
    expect(res.headers.get('location')).toBe('http://gw/v1/files/f1/download/1.sig');
    expect(gw.got).toHaveLength(1);
    expect(gw.got[0]!.url).toBe('/v1/files/outputs/p1/tok/out.png');
    expect(gw.got[0]!.type).toBe('image/png');
    expect(createHash('sha256').update(gw.got[0]!.bytes).digest('hex')).toBe(
      createHash('sha256').update(body).digest('hex'),
    );
  });

  it("refuses a file of no known prediction, or without X-Prediction-ID, and passes on the gateway's refusal", async () => {
    const gw = await gateway(() => [
      413,
      { 'content-type': 'application/problem+json' },
      '{"detail":"over 10 bytes"}',
    ]);
    const url = await listener((id) => (id === 'p1' ? `${gw.url}/up` : undefined));
    const put = (headers: Record<string, string>) =>
      fetch(`${url}x.bin`, { method: 'PUT', headers, body: 'hello world!' });
    const unknown = await put({ 'x-prediction-id': 'nope' });
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { detail: string }).detail).toContain('no upload URL');
    expect((await put({})).status).toBe(400);
    const refused = await put({ 'x-prediction-id': 'p1' });
    expect(refused.status).toBe(413);
    expect(((await refused.json()) as { detail: string }).detail).toContain('over 10 bytes');
    expect(gw.got).toHaveLength(1);
  });
});
