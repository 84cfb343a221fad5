/** The example Cog models of examples/models/: their committed schemas and their servers. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { crc32, deflateSync, inflateSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { pythonEnv } from '../harness/python.ts';
import { MODELS, type ModelServer, modelsDir, startModelServer } from './testing/model-server.ts';

/** A PNG of `width` x `height` 8-bit RGB pixels, from `pixel(x, y)`. */
function png(
  width: number,
  height: number,
  pixel: (x: number, y: number) => [number, number, number],
): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter, no interlace
  const rows: number[] = [];
  for (let y = 0; y < height; y++) {
    rows.push(0); // filter: none
    for (let x = 0; x < width; x++) rows.push(...pixel(x, y));
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The chunks of a PNG, checked: signature and every CRC. */
function pngChunks(b: Buffer): { type: string; data: Buffer }[] {
  expect(b.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
  const out: { type: string; data: Buffer }[] = [];
  for (let at = 8; at < b.length; ) {
    const len = b.readUInt32BE(at);
    const type = b.subarray(at + 4, at + 8).toString('ascii');
    const data = b.subarray(at + 8, at + 8 + len);
    expect(b.readUInt32BE(at + 8 + len)).toBe(crc32(b.subarray(at + 4, at + 8 + len)));
    out.push({ type, data });
    at += 12 + len;
  }
  return out;
}

const started: ModelServer[] = [];
afterAll(async () => {
  await Promise.all(started.map((s) => s.stop()));
});

describe('the example models', () => {
  it('commit the OpenAPI schema their predictors produce (.cog/openapi_schema.json)', () => {
    const out = execFileSync(
      join(pythonEnv(), 'bin', 'python'),
      [join(modelsDir, 'openapi_schema.py'), '--check'],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    expect(out).toBe('');
  });

  it('each start on a real Cog server: ready with its schema, or SETUP_FAILED for setup-fail', async () => {
    const servers = await Promise.all(MODELS.map((m) => startModelServer(m)));
    started.push(...servers);
    for (const s of servers) {
      const status = await s.waitFor(['READY', 'SETUP_FAILED'], 120_000);
      expect(status).toBe(s.model === 'setup-fail' ? 'SETUP_FAILED' : 'READY');
      if (status !== 'READY') continue;
      const schema = (await (await fetch(`${s.url}/openapi.json`)).json()) as {
        components: { schemas: { Input: { properties: Record<string, unknown> } } };
      };
      expect(Object.keys(schema.components.schemas.Input.properties).length).toBeGreaterThan(0);
    }
  });

  it('upscale turns a 7x5 PNG (a data: URI) into a 14x10 PNG at scale 2, and refuses scale 9', async () => {
    const server = await startModelServer('upscale');
    started.push(server);
    await server.waitFor(['READY'], 120_000);
    const input = png(7, 5, (x, y) => [x * 36, y * 60, 128]);
    const predict = (body: unknown) =>
      fetch(`${server.url}/predictions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const res = await predict({
      input: { image: `data:image/png;base64,${input.toString('base64')}`, scale: 2 },
    });
    const body = (await res.json()) as { status: string; output: string; error?: string; logs?: string };
    expect(res.status, JSON.stringify(body)).toBe(200);
    expect(body.status, body.error).toBe('succeeded');
    // Without an upload URL, Cog returns the file inline as a data: URL.
    const m = /^data:image\/png;base64,(.+)$/s.exec(body.output);
    expect(m, body.output.slice(0, 80)).not.toBeNull();
    const chunks = pngChunks(Buffer.from(m![1]!, 'base64'));
    const ihdr = chunks[0]!;
    expect(ihdr.type).toBe('IHDR');
    expect([ihdr.data.readUInt32BE(0), ihdr.data.readUInt32BE(4)]).toEqual([14, 10]);
    const [depth, colour] = [ihdr.data[8], ihdr.data[9]];
    expect([depth, colour]).toEqual([8, 2]); // 8-bit RGB, as the input
    // The pixel data is whole: one filter byte and 14 RGB pixels per row, 10 rows.
    const idat = Buffer.concat(chunks.filter((c) => c.type === 'IDAT').map((c) => c.data));
    expect(inflateSync(idat).length).toBe(10 * (1 + 14 * 3));
    expect(body.logs).toContain('upscale: 7x5 RGB -> 14x10');

    const tooBig = await predict({
      input: { image: `data:image/png;base64,${input.toString('base64')}`, scale: 9 },
    });
    expect(tooBig.status).toBe(422);
    await tooBig.arrayBuffer();
  });
});
