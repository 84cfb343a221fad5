import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { expect, it } from 'vitest';
import { backendContract, patterned } from './backend.contract.ts';
import { DirectoryBackend } from './directory.ts';

backendContract('directory', async () => new DirectoryBackend(mkdtempSync(join(tmpdir(), 'mp-files-'))));

it('leaves no partial file behind when an upload fails', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'mp-files-'));
  const b = new DirectoryBackend(dir);
  await expect(
    b.put('ns/x', patterned(50_000, 1000), { contentType: 'x/y', maxBytes: 10_000 }),
  ).rejects.toThrow();
  const broken = new Readable({
    read() {
      this.destroy(new Error('the client went away'));
    },
  });
  await expect(b.put('ns/y', broken, { contentType: 'x/y', maxBytes: 10_000 })).rejects.toThrow(/went away/);
  expect(readdirSync(join(dir, '.incoming'))).toEqual([]);
  expect(await b.get('ns/x')).toBeUndefined();
});
