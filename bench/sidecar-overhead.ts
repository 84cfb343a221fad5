/**
 * bench/sidecar-overhead: what the sidecar adds to a prediction. The `echo` model runs on a
 * real Cog server; the same run sends predictions straight to it (`POST /predictions`,
 * synchronous) and through `modelplane sidecar` (separate processes, `POST /predictions`
 * with `Prefer: wait`), once per progress mode (`auto`, the default: held once measured
 * fast; `webhook`: async create plus Cog's webhooks; `final`: one held request), and once
 * more with `auto` answered by the create's event stream (`Accept: text/event-stream`, what
 * the gateway uses), in alternating rounds, at concurrency 1 and 8. Prints p50/p99 of each
 * path, the latency the sidecar adds, the throughput ratio, the CPU time the sidecar process
 * spends per prediction (its threads' run time from /proc, which a busy machine does not
 * inflate as it does latencies), and each sidecar's resident memory at idle (before the
 * first prediction) and its peak (VmHWM) at the end.
 *
 * `--baseline DIR` adds the sidecar of another checkout (its `cli/modelplane.ts`, its
 * dependencies installed) as more paths in the same alternating rounds: a before/after
 * comparison under the same load.
 *
 * `--cli FILE` measures another entry of this checkout, e.g. the compiled `dist/cli/modelplane.js`
 * (`make build`); `--baseline` also takes such a file instead of a checkout.
 *
 * `--node-options STR` runs the measured sidecar (not the baseline) with `NODE_OPTIONS=STR`:
 * V8 flags against the same entry without them.
 *
 * `--modes auto,final` measures only those progress modes (default all three).
 *
 * Usage: node bench/sidecar-overhead.ts [--requests N] [--rounds N] [--modes LIST] [--cli FILE] [--baseline DIR|FILE] [--node-options STR]   (or `make bench`)
 */
import { readdirSync, readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { waitFor } from '../harness/processes.ts';
import { startModelServer } from '../sidecar/testing/model-server.ts';
import { spawnSidecar } from '../sidecar/testing/sidecar.ts';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '300' },
    rounds: { type: 'string', default: '6' },
    baseline: { type: 'string' },
    cli: { type: 'string' },
    'node-options': { type: 'string' },
    modes: { type: 'string', default: 'auto,webhook,final' },
  },
});
/** A sidecar entry: a `.ts`/`.js` file as it is, a directory as the checkout's `cli/modelplane.ts`. */
const entry = (p: string) => (/\.[cm]?[jt]s$/.test(p) ? resolve(p) : resolve(p, 'cli/modelplane.ts'));
const baselineCli = values.baseline ? entry(values.baseline) : undefined;
const sidecarCli = values.cli ? entry(values.cli) : undefined;
const sidecarEnv: Record<string, string> = values['node-options']
  ? { NODE_OPTIONS: values['node-options'] }
  : {};
const perRound = Number(values.requests);
const rounds = Number(values.rounds);
// More slots than the highest concurrency, so the direct path never meets a busy (409) server.
const SLOTS = 16;

const agent = new Agent({ keepAlive: true, maxSockets: 64 });
/** 409s from the bare Cog server (its slots are released a moment after it answers); retried at once. */
let directBusy = 0;
const body = Buffer.from(JSON.stringify({ input: { text: 'hello, model' } }));

/** A field of /proc/PID/status in kB (VmRSS: resident now; VmHWM: the most it was). */
function memoryKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : Number.NaN;
}

async function post(url: URL, headers: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  while ((await once(url, headers)) === 'busy') directBusy++;
  return performance.now() - t0;
}

function once(url: URL, headers: Record<string, string>): Promise<'ok' | 'busy'> {
  return new Promise((resolvePost, reject) => {
    const req = request(
      {
        hostname: url.hostname,
        port: url.port,
        path: url.pathname,
        method: 'POST',
        agent,
        headers: { 'content-type': 'application/json', 'content-length': String(body.length), ...headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          if (res.statusCode === 409) {
            resolvePost('busy');
            return;
          }
          // A create's event stream ends with the final record (its `prediction` event).
          const json = text.startsWith('event: ')
            ? (/^data: (.*)$/m.exec(text.slice(text.lastIndexOf('event: prediction')))?.[1] ?? '{}')
            : text;
          const status = (JSON.parse(json) as { status?: string }).status;
          if ((res.statusCode !== 200 && res.statusCode !== 201) || status !== 'succeeded') {
            reject(new Error(`${url} answered ${res.statusCode}: ${text.slice(0, 300)}`));
            return;
          }
          resolvePost('ok');
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `n` requests from `concurrency` workers; latencies in ms and the wall time. */
async function block(url: URL, headers: Record<string, string>, n: number, concurrency: number) {
  const latencies: number[] = [];
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        latencies.push(await post(url, headers));
      }
    }),
  );
  return { latencies, seconds: (performance.now() - t0) / 1000 };
}

/** CPU time of every thread of process `pid` so far, in ns (Linux: /proc/<pid>/task/<tid>/schedstat). */
function cpuNs(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // the thread ended
    }
  }
  return total;
}

function quantile(sorted: number[], q: number): number {
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[i]!;
}

const ms = await startModelServer('echo', { concurrency: SLOTS });
const sidecars: Array<Awaited<ReturnType<typeof spawnSidecar>>> = [];
try {
  await ms.waitFor(['READY'], 120_000);
  const modes = values.modes.split(',');
  for (const m of modes)
    if (!['auto', 'webhook', 'final'].includes(m)) throw new Error(`--modes: unknown mode ${m}`);
  const variants = baselineCli
    ? [
        { label: 'sidecar', cli: sidecarCli, env: sidecarEnv },
        { label: 'baseline', cli: baselineCli, env: {} },
      ]
    : [{ label: 'sidecar', cli: sidecarCli, env: sidecarEnv }];
  const direct = new URL(`${ms.url}/predictions`);
  const wait = { prefer: 'wait=60' };
  const paths: Array<{ name: string; url: URL; headers: Record<string, string>; pid?: number }> = [
    { name: 'direct', url: direct, headers: {} },
  ];
  /** Each sidecar's RSS at idle, by pid. */
  const idleRss = new Map<number, number>();
  for (const mode of modes) {
    for (const v of variants) {
      const args = ['--model-url', ms.url, '--concurrency', String(SLOTS), '--queue-size', '64'];
      args.push('--progress', mode, '--shutdown-model', 'false');
      const sc = await spawnSidecar(args, v.env, { cli: v.cli });
      sidecars.push(sc);
      await waitFor('the sidecar to be ready', async () => (await fetch(`${sc.api}/ready`)).ok, {
        timeoutMs: 60_000,
      });
      const url = new URL(`${sc.api}/predictions`);
      idleRss.set(sc.process.pid, memoryKb(sc.process.pid, 'VmRSS'));
      paths.push({ name: `${v.label} --progress ${mode}`, url, headers: wait, pid: sc.process.pid });
      if (mode === 'auto') {
        const streamed = { accept: 'text/event-stream' };
        paths.push({ name: `${v.label} auto, create stream`, url, headers: streamed, pid: sc.process.pid });
      }
    }
  }

  process.stdout.write(
    `sidecar overhead: echo on a Cog server (${SLOTS} slots); each path gets ${rounds} rounds x ${perRound} requests per concurrency, rounds alternating\n` +
      (sidecarCli ? `sidecar: ${sidecarCli}\n` : '') +
      (values['node-options'] ? `sidecar NODE_OPTIONS: ${values['node-options']}\n` : '') +
      (baselineCli ? `baseline: ${baselineCli}\n\n` : '\n'),
  );
  const f = (x: number) => x.toFixed(2).padStart(6);
  for (const concurrency of [1, 8]) {
    for (const p of paths) await block(p.url, p.headers, 100, concurrency); // warm up
    const lat = paths.map(() => [] as number[]);
    const secs = paths.map(() => 0);
    const cpu = paths.map(() => 0);
    for (let r = 0; r < rounds; r++) {
      // Every other round runs the paths in reverse order, so that none always goes first.
      const order = r % 2 ? [...paths.entries()].reverse() : [...paths.entries()];
      for (const [i, p] of order) {
        const cpu0 = p.pid ? cpuNs(p.pid) : 0;
        const b = await block(p.url, p.headers, perRound, concurrency);
        if (p.pid) cpu[i]! += cpuNs(p.pid) - cpu0;
        lat[i]!.push(...b.latencies);
        secs[i]! += b.seconds;
      }
    }
    for (const l of lat) l.sort((x, y) => x - y);
    const d = lat[0]!;
    const dRate = d.length / secs[0]!;
    process.stdout.write(
      `concurrency ${concurrency}: direct p50 ${f(quantile(d, 0.5))} ms, p99 ${f(quantile(d, 0.99))} ms, ${dRate.toFixed(0)} predictions/s\n`,
    );
    for (const [i, p] of paths.entries()) {
      if (i === 0) continue;
      const s = lat[i]!;
      const rate = s.length / secs[i]!;
      process.stdout.write(
        `  ${p.name.padEnd(27)} p50 ${f(quantile(s, 0.5))} ms, p99 ${f(quantile(s, 0.99))} ms; ` +
          `added p50 ${f(quantile(s, 0.5) - quantile(d, 0.5))} ms, p99 ${f(quantile(s, 0.99) - quantile(d, 0.99))} ms; ` +
          `throughput ratio ${(rate / dRate).toFixed(3)}; sidecar CPU ${(cpu[i]! / 1000 / s.length).toFixed(0)} µs/prediction\n`,
      );
    }
  }
  process.stdout.write(
    '\nsidecar resident memory (idle before the first prediction; peak VmHWM at the end):\n',
  );
  for (const [pid, idle] of idleRss) {
    const names = paths.filter((p) => p.pid === pid).map((p) => p.name);
    process.stdout.write(
      `  ${names[0]!.padEnd(27)} idle ${(idle / 1024).toFixed(1)} MB, peak ${(memoryKb(pid, 'VmHWM') / 1024).toFixed(1)} MB\n`,
    );
  }
  process.stdout.write('\ntarget: added p50 <= 1 ms and p99 <= 5 ms; RSS <= 80 MB\n');
  process.stdout.write(
    `direct path: ${directBusy} answers of 409 (busy) retried at once, counted in its latency\n`,
  );
} finally {
  agent.destroy();
  for (const sc of sidecars) await sc.process.stop();
  await ms.stop();
}
