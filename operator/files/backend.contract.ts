/**
 * The contract of a `FileBackend`, as tests: the directory backend (directory.test.ts) and the
 * S3 backend against a real S3-compatible server run the same suite.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import { type FileBackend, FileTooLargeError } from './backend.ts';

/** `size` bytes of a repeating pattern, produced `chunk` bytes at a time. */
export function patterned(size: number, chunk = 64 * 1024): Readable {
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) {
        this.push(null);
        return;
      }
      const n = Math.min(chunk, size - sent);
      const b = Buffer.alloc(n);
      for (let i = 0; i < n; i++) b[i] = (sent + i) % 251;
      sent += n;
      this.push(b);
    },
  });
}

function digest(size: number, algo: string): string {
  const h = createHash(algo);
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = i % 251;
  return h.update(b).digest('hex');
}

async function bytesOf(s: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of s as AsyncIterable<Buffer>) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

export function backendContract(name: string, open: () => Promise<FileBackend>): void {
  describe(`${name}: the FileBackend contract`, () => {
    it('stores bytes as they stream in, reports their size and digests, and streams them back', async () => {
      const b = await open();
      const size = 6 * 1024 * 1024 + 123; // more than one multipart part
      const stored = await b.put('ns/big', patterned(size), {
        contentType: 'application/octet-stream',
        maxBytes: size,
      });
      expect(stored).toEqual({ size, sha256: digest(size, 'sha256'), md5: digest(size, 'md5') });
      const got = await b.get('ns/big');
      expect(got?.size).toBe(size);
      const back = await bytesOf(got!.body);
      expect(back.length).toBe(size);
      expect(createHash('sha256').update(back).digest('hex')).toBe(stored.sha256);
    });

    it('stores an empty file and a small one, and replaces what a key held', async () => {
      const b = await open();
      expect(
        (await b.put('ns/empty', Readable.from([]), { contentType: 'text/plain', maxBytes: 10 })).size,
      ).toBe(0);
      expect(await bytesOf((await b.get('ns/empty'))!.body)).toEqual(Buffer.alloc(0));
      await b.put('ns/small', Readable.from([Buffer.from('one')]), {
        contentType: 'text/plain',
        maxBytes: 10,
      });
      await b.put('ns/small', Readable.from([Buffer.from('two!')]), {
        contentType: 'text/plain',
        maxBytes: 10,
      });
      expect(await text((await b.get('ns/small'))!.body as Readable)).toBe('two!');
    });

    it('refuses a file over the limit and keeps nothing of it', async () => {
      const b = await open();
      await expect(
        b.put('ns/toolarge', patterned(300_000, 1000), { contentType: 'image/png', maxBytes: 100_000 }),
      ).rejects.toBeInstanceOf(FileTooLargeError);
      expect(await b.get('ns/toolarge')).toBeUndefined();
    });

    it('answers undefined for a key it does not hold, and deletes (twice without error)', async () => {
      const b = await open();
      expect(await b.get('ns/never')).toBeUndefined();
      await b.put('ns/gone', Readable.from([Buffer.from('x')]), { contentType: 'text/plain', maxBytes: 10 });
      await b.delete('ns/gone');
      await b.delete('ns/gone');
      expect(await b.get('ns/gone')).toBeUndefined();
    });

    it('refuses keys that could leave its space', async () => {
      const b = await open();
      for (const key of ['../x', 'ns/../../x', '/abs', 'ns//x', '']) {
        await expect(
          b.put(key, Readable.from([Buffer.from('x')]), { contentType: 'text/plain', maxBytes: 10 }),
        ).rejects.toThrow(/not a valid file key/);
      }
    });
  });
}
