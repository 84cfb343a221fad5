/**
 * The gateway side of bench/files.ts, as a process of its own (so that its RSS is its own):
 * the gateway's HTTP server with the file routes on a directory backend, records in a memory
 * store, URLs signed with the key in $FILES_KEY (hex). Every prediction id is taken as a
 * running prediction of namespace `bench`, stored as such (the bench sends predictions to the
 * sidecar directly). Prints `listening <url>` once it listens.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { DirectoryBackend, FileService, FileUrls } from '../operator/files/index.ts';
import { fileRoutes } from '../operator/gateway/files.ts';
import { GatewayServer } from '../operator/gateway/server.ts';
import { MemoryStore } from '../operator/predictions/store.ts';

const store = new MemoryStore();
const urls = new FileUrls();
urls.setKey(Buffer.from(process.env.FILES_KEY ?? '', 'hex'));
const files = new FileService({
  backend: new DirectoryBackend(mkdtempSync(join(tmpdir(), 'bench-files-'))),
  withStore: (fn) => fn(store),
  urls,
});
let base = '';
const server = new GatewayServer({
  routes: [
    fileRoutes({
      files,
      // A running prediction, kept in the store as the engine would (its files live while it does).
      prediction: async (id) => {
        if (!(await store.get(id)))
          await store.insert(
            {
              id,
              namespace: 'bench',
              deployment: 'upscale',
              viaDeployment: false,
              model: 'bench/upscale',
              version: 'bench',
              input: {},
              output: null,
              logs: '',
              error: null,
              status: 'processing',
              createdAt: Date.now(),
              webhookEvents: [],
              baseUrl: base,
            },
            'bench',
          );
        return { namespace: 'bench', baseUrl: base, status: 'processing' };
      },
    }),
  ],
  log: pino({ level: 'warn' }),
  authenticate: async () => {
    throw new Error('the bench calls only the signed URLs');
  },
});
await server.listen(0, '127.0.0.1');
base = `${server.url}/v1`;
process.stdout.write(`listening ${server.url}\n`);
