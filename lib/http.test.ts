import { createServer, get, type IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { nestedDeeperThan, preferWait, readJson, readSse, sendEventStream, sseFrame } from './http.ts';
import type { StreamEvent } from './prediction.ts';

function body(chunks: string[], headers: Record<string, string> = {}): IncomingMessage {
  return Object.assign(Readable.from(chunks.map((c) => Buffer.from(c))), {
    headers,
  }) as unknown as IncomingMessage;
}

describe('readJson', () => {
  it('refuses a body nested deeper than maxDepth (400), without recursing', async () => {
    const deep = `${'{"a":'.repeat(200_000)}1${'}'.repeat(200_000)}`;
    await expect(readJson(body([deep]), 10_000_000, 64)).rejects.toMatchObject({
      status: 400,
      title: 'JSON nested too deeply',
    });
    expect(await readJson(body(['[[[1]]]']), 100, 3)).toEqual([[[1]]]);
    await expect(readJson(body(['[[[[1]]]]']), 100, 3)).rejects.toMatchObject({ status: 400 });
    // Without maxDepth, any depth is read.
    expect(await readJson(body(['[[[[1]]]]']), 100)).toEqual([[[[1]]]]);
  });

  it('reads JSON in chunks, an empty body as {}', async () => {
    expect(await readJson(body(['{"a":', '[1, 2]}']), 100)).toEqual({ a: [1, 2] });
    expect(await readJson(body([]), 100)).toEqual({});
    expect(await readJson(body([' \n']), 100)).toEqual({});
  });

  it('refuses a body over the limit (413) and one that is not JSON (400)', async () => {
    await expect(readJson(body(['{"a":', '"0123456789"}']), 10)).rejects.toMatchObject({
      status: 413,
      title: 'Request body too large',
      message: 'the body is over 10 bytes',
    });
    // Declared over the limit: refused before a byte is read.
    await expect(readJson(body([], { 'content-length': '11' }), 10)).rejects.toMatchObject({ status: 413 });
    await expect(readJson(body(['{"a":']), 100)).rejects.toMatchObject({
      status: 400,
      title: 'Malformed JSON',
    });
  });
});

describe('Prefer: wait', () => {
  it('reads bare wait as the maximum and wait=N clamped', () => {
    expect(preferWait(undefined, 60)).toBeUndefined();
    expect(preferWait('respond-async', 60)).toBeUndefined();
    expect(preferWait('wait', 60)).toBe(60);
    expect(preferWait('wait=5', 60)).toBe(5);
    expect(preferWait('wait=500', 60)).toBe(60);
    expect(preferWait('respond-async, wait=2', 60)).toBe(2);
    expect(preferWait('Wait = 3', 60)).toBe(3);
  });
});

describe('SSE frames', () => {
  it('carry an id line and one data line per line of text', () => {
    expect(sseFrame({ id: 3, event: 'logs', data: 'one\ntwo\n' })).toBe(
      'id: 3\nevent: logs\ndata: one\ndata: two\ndata: \n\n',
    );
    expect(sseFrame({ id: 4, event: 'done', data: '{}' })).toBe('id: 4\nevent: done\ndata: {}\n\n');
  });
});

describe('SSE reading', () => {
  it('reads blocks split across chunks, with their comments', async () => {
    const text = `: keep-alive\n\n${sseFrame({ id: 1, event: 'logs', data: 'a\nb' })}event: x\n\n`;
    const bytes = new TextEncoder().encode(text);
    async function* chunks() {
      for (let i = 0; i < bytes.length; i += 5) yield bytes.slice(i, i + 5);
    }
    let seen = 0;
    const blocks = [];
    for await (const b of readSse(chunks(), () => seen++)) blocks.push(b);
    expect(blocks).toEqual([
      { id: undefined, event: 'message', data: undefined, comments: [': keep-alive'] },
      { id: '1', event: 'logs', data: 'a\nb', comments: [] },
      { id: undefined, event: 'x', data: undefined, comments: [] },
    ]);
    expect(seen).toBe(Math.ceil(bytes.length / 5));
  });
});

describe('nestedDeeperThan', () => {
  it('counts arrays and objects, not scalars', () => {
    expect(nestedDeeperThan(1, 0)).toBe(false);
    expect(nestedDeeperThan({}, 0)).toBe(true);
    expect(nestedDeeperThan({ a: 'x', b: [1] }, 2)).toBe(false);
    expect(nestedDeeperThan({ a: 'x', b: [1, { c: {} }] }, 2)).toBe(true);
  });
});

describe('an event stream to a client that does not read', () => {
  it('is cut once what waits unsent passes the cap, rather than buffered without end', async () => {
    const cap = 256 * 1024;
    let push: ((e: StreamEvent) => void) | undefined;
    let buffered = 0;
    const closed = new Promise<void>((resolve) => {
      const server = createServer((req, res) => {
        res.on('close', () => {
          server.close();
          resolve();
        });
        sendEventStream(req, res, {
          keepAliveMs: 60_000,
          maxBufferedBytes: cap,
          events: (_after, send) => {
            push = (e) => {
              send(e);
              buffered = Math.max(buffered, res.writableLength);
            };
            return { past: [], unsubscribe: () => {} };
          },
        });
      });
      server.listen(0, '127.0.0.1', () => {
        const { port } = server.address() as { port: number };
        // Reads the head, then nothing more.
        get({ host: '127.0.0.1', port, path: '/' }, (res) => res.pause()).on('error', () => {});
      });
    });
    const data = 'x'.repeat(64 * 1024);
    let sent = 0;
    let done = false;
    void closed.then(() => {
      done = true;
    });
    const deadline = Date.now() + 20_000;
    while (!done && Date.now() < deadline) {
      if (push) push({ id: ++sent, event: 'output', data });
      await new Promise((r) => setImmediate(r));
    }
    expect(done).toBe(true);
    // The kernel's socket buffers took some; what waited in the process stayed near the cap.
    expect(buffered).toBeLessThanOrEqual(cap + data.length + 1024);
    expect(sent * data.length).toBeGreaterThan(cap);
  });
});
