/**
 * bench/files: memory of the gateway and the sidecar while predictions return large files.
 * The `upscale` model runs on a real Cog server with `--upload-url` at a real sidecar
 * (`modelplane sidecar`, its own process); the sidecar streams each output file to the
 * gateway's upload route (bench/files-gateway.ts, its own process, directory backend), and
 * the bench then downloads each output through the gateway's signed URL. The input is a noise
 * image (served by the bench at a URL) whose 2x PNG is about 5 MB. Prints the idle and peak RSS of both processes (sampled
 * from /proc every 20 ms) and the size of the files.
 *
 * Usage: node bench/files.ts [--predictions N] [--concurrency N]   (or `make bench-files`)
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, GroupProcess, waitFor } from '../harness/processes.ts';
import { pythonEnv } from '../harness/python.ts';
import { FileUrls } from '../operator/files/index.ts';
import { startModelServer } from '../sidecar/testing/model-server.ts';
import { spawnSidecar } from '../sidecar/testing/sidecar.ts';

const { values } = parseArgs({
  options: {
    predictions: { type: 'string', default: '50' },
    concurrency: { type: 'string', default: '2' },
  },
});
const N = Number(values.predictions);
const CONCURRENCY = Number(values.concurrency);

function rssKiB(pid: number, name: string, log: () => string): number {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    throw new Error(`the ${name} process ${pid} exited:\n${log().slice(-3000)}`);
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) : 0;
}

const key = randomBytes(32);
const urls = new FileUrls();
urls.setKey(key);

const gateway = new GroupProcess(
  'bench files gateway',
  process.execPath,
  [join(import.meta.dirname, 'files-gateway.ts')],
  {
    env: { ...process.env, FILES_KEY: key.toString('hex') },
    logFile: join(mkdtempSync(join(tmpdir(), 'bench-files-')), 'gateway.log'),
  },
);
const gatewayUrl = await waitFor('the gateway to listen', () => /listening (\S+)/.exec(gateway.log())?.[1], {
  timeoutMs: 30_000,
});
const uploadPort = await freePort();
const model = await startModelServer('upscale', {
  uploadUrl: `http://127.0.0.1:${uploadPort}/upload/`,
  concurrency: 1,
});
const sc = await spawnSidecar(['--model-url', model.url], { MODELPLANE_UPLOAD_PORT: String(uploadPort) });
try {
  await model.waitFor(['READY'], 180_000);
  await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).ok, {
    timeoutMs: 60_000,
  });
  // A 700x700 noise image: its 2x Lanczos PNG is about 5 MB and compresses little.
  const input = execFileSync(
    join(pythonEnv(), 'bin', 'python'),
    [
      '-c',
      'import base64, io, os, sys\nfrom PIL import Image\nb = io.BytesIO()\nImage.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3)).save(b, format="PNG")\nsys.stdout.write(base64.b64encode(b.getvalue()).decode())',
    ],
    { maxBuffer: 64 * 1024 * 1024 },
  ).toString();
  // Served here, so that each prediction carries a short URL, not a 2 MB data URI: what is
  // measured is the output files' path.
  const png = Buffer.from(input, 'base64');
  const inputServer = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'image/png', 'content-length': String(png.length) });
    res.end(png);
  });
  await new Promise<void>((r) => inputServer.listen(0, '127.0.0.1', r));
  const inputUrl = `http://127.0.0.1:${(inputServer.address() as AddressInfo).port}/in.png`;
  const procs = { gateway, sidecar: sc.process };
  const rss = (k: 'gateway' | 'sidecar') => rssKiB(procs[k].pid, k, () => procs[k].log());
  const idle = { gateway: rss('gateway'), sidecar: rss('sidecar') };
  const peak = { ...idle };
  let died: Error | undefined;
  const sampler = setInterval(() => {
    try {
      for (const k of ['gateway', 'sidecar'] as const) peak[k] = Math.max(peak[k], rss(k));
    } catch (err) {
      died = err as Error;
      clearInterval(sampler);
    }
  }, 20);
  const sizes: number[] = [];
  let next = 0;
  const started = Date.now();
  const worker = async () => {
    while (next < N) {
      const i = next++;
      const id = `bench${i}${randomBytes(4).toString('hex')}`;
      const res = await fetch(`${sc.api}/predictions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', prefer: 'wait=60' },
        body: JSON.stringify({
          id,
          input: { image: inputUrl, scale: 2 },
          output_upload_url: urls.upload(`${gatewayUrl}/v1`, id, Date.now() + 3600_000),
        }),
      });
      const p = (await res.json()) as { status: string; output: string; error?: string };
      if (p.status !== 'succeeded') throw new Error(`prediction ${i}: ${p.status} ${p.error ?? ''}`);
      const file = await fetch(p.output);
      let size = 0;
      for await (const chunk of file.body as unknown as AsyncIterable<Uint8Array>) size += chunk.length;
      if (file.status !== 200) throw new Error(`download ${i}: ${file.status}`);
      sizes.push(size);
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker)).catch((err: Error) => {
    throw died ?? err;
  });
  clearInterval(sampler);
  if (died) throw died;
  inputServer.close();
  const seconds = (Date.now() - started) / 1000;
  const mb = (kib: number) => (kib / 1024).toFixed(1);
  const avg = sizes.reduce((a, b) => a + b, 0) / sizes.length;
  console.log(
    `bench/files: ${N} predictions (concurrency ${CONCURRENCY}), each returning a ${(avg / 1e6).toFixed(2)} MB PNG (min ${(Math.min(...sizes) / 1e6).toFixed(2)}, max ${(Math.max(...sizes) / 1e6).toFixed(2)}), uploaded through the sidecar into the gateway and downloaded back, in ${seconds.toFixed(1)} s`,
  );
  console.log('process   idle RSS   peak RSS   peak - idle');
  for (const k of ['gateway', 'sidecar'] as const)
    console.log(
      `${k.padEnd(9)} ${mb(idle[k]).padStart(6)} MB  ${mb(peak[k]).padStart(6)} MB  ${mb(peak[k] - idle[k]).padStart(8)} MB`,
    );
} finally {
  await sc.process.stop();
  await model.stop();
  await gateway.stop();
}
