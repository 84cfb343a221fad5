/**
 * The files backend in a directory (a PersistentVolume in the chart): each file at
 * `<dir>/<key>`, written to `<dir>/.incoming/` first and renamed into place once complete, so
 * a reader never sees part of a file and a failed upload leaves nothing behind.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { checkKey, type FileBackend, Metered, type Stored } from './backend.ts';

const INCOMING = '.incoming';

export class DirectoryBackend implements FileBackend {
  readonly kind = 'directory';
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async put(
    key: string,
    body: NodeJS.ReadableStream,
    opts: { contentType: string; maxBytes: number },
  ): Promise<Stored> {
    const path = this.path(key);
    const tmp = join(this.dir, INCOMING, randomBytes(12).toString('hex'));
    await mkdir(dirname(tmp), { recursive: true });
    const meter = new Metered(opts.maxBytes);
    try {
      await pipeline(body, meter, createWriteStream(tmp, { flags: 'wx', mode: 0o600 }));
      await mkdir(dirname(path), { recursive: true });
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
    return meter.stored();
  }

  async get(key: string): Promise<{ body: NodeJS.ReadableStream; size: number } | undefined> {
    const path = this.path(key);
    let size: number;
    try {
      size = (await stat(path)).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return { body: createReadStream(path), size };
  }

  async delete(key: string): Promise<void> {
    await rm(this.path(key), { force: true });
  }

  async close(): Promise<void> {}

  private path(key: string): string {
    return join(this.dir, checkKey(key));
  }
}
