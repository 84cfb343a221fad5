/**
 * The sidecar's memory holds under its byte budgets: `modelplane sidecar` as its own process
 * in front of a real Cog server (the echo example model) runs predictions whose outputs add up
 * to many times the retention budget. The baseline is the peak measured over a warm-up long
 * enough to fill the retention (and let V8's heap settle); past it, the resident set must grow by
 * less than the budgets (retained finished predictions plus what one in flight may hold):
 * a sidecar that kept every finished output would grow by the whole ~380 MiB. Needs the venv
 * of `make python`.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { call } from './testing/client.ts';
import { type ModelServer, startModelServer } from './testing/model-server.ts';
import { type SidecarProcess, spawnSidecar } from './testing/sidecar.ts';

const MiB = 1 << 20;
const RETAIN_BYTES = 32 * MiB;
const MAX_OUTPUT_BYTES = 16 * MiB;
/** Each prediction's output: 100 KB × 100 = ~9.5 MiB. */
const TEXT = 'm'.repeat(100_000);
const REPEAT = 100;
const RUNS = 40;

let model: ModelServer;
let sc: SidecarProcess;

beforeAll(async () => {
  model = await startModelServer('echo', { throttleSeconds: 0, concurrency: 1 });
  sc = await spawnSidecar([
    '--model-url',
    model.url,
    '--concurrency',
    '1',
    '--health-interval',
    '0.1',
    '--retain-bytes',
    String(RETAIN_BYTES),
    '--max-output-bytes',
    String(MAX_OUTPUT_BYTES),
  ]);
  const deadline = Date.now() + 60_000;
  while (!(await fetch(`${sc.api}/ready`).catch(() => undefined))?.ok) {
    if (Date.now() > deadline) throw new Error(`the sidecar was not ready within 60 s:\n${sc.process.log()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}, 90_000);

afterAll(async () => {
  await sc?.process.stop();
  await model?.stop();
});

/** The sidecar process's resident set, in bytes. */
function rss(): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${sc.process.pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS in /proc/${sc.process.pid}/status`);
  return Number(m[1]) * 1024;
}

async function run(id: string): Promise<void> {
  const r = await call<{ status: string; output: string }>(
    'POST',
    `${sc.api}/predictions`,
    { id, input: { text: TEXT, repeat: REPEAT } },
    { prefer: 'wait=60' },
  );
  expect(r.body.status, JSON.stringify(r.body).slice(0, 300)).toBe('succeeded');
  expect(r.body.output.length).toBe(TEXT.length * REPEAT);
}

describe('the sidecar under large outputs', () => {
  it('keeps its resident set within the retention and output budgets', async () => {
    const cold = rss();
    // The resident set saws up and down with V8's collections: the baseline is its peak over
    // a warm-up that fills the retention.
    let baseline = cold;
    for (let i = 0; i < 10; i++) {
      await run(`warm-${i}`);
      baseline = Math.max(baseline, rss());
    }
    let peak = baseline;
    for (let i = 0; i < RUNS; i++) {
      await run(`load-${i}`);
      peak = Math.max(peak, rss());
      if (process.env.MEMORY_SERIES) console.log(`run ${i}: ${(rss() / MiB).toFixed(1)} MiB`);
    }
    const passed = RUNS * TEXT.length * REPEAT;
    // What may be held: the retained ones, and one in flight (the model server's payload as
    // read and as parsed, and the answer as written).
    const budget = RETAIN_BYTES + 3 * MAX_OUTPUT_BYTES;
    console.log(
      `sidecar RSS: cold ${(cold / MiB).toFixed(1)} MiB, warm peak ${(baseline / MiB).toFixed(1)} MiB, peak ${(peak / MiB).toFixed(1)} MiB, growth ${((peak - baseline) / MiB).toFixed(1)} MiB; budget ${budget / MiB} MiB; output through it ${(passed / MiB).toFixed(0)} MiB`,
    );
    expect(passed).toBeGreaterThan(4 * budget);
    expect(peak - baseline).toBeLessThan(budget);
    // The oldest were forgotten past the byte cap; the last one is still readable.
    expect((await call('GET', `${sc.api}/predictions/load-0`)).status).toBe(404);
    expect(
      (await call<{ status: string }>('GET', `${sc.api}/predictions/load-${RUNS - 1}`)).body.status,
    ).toBe('succeeded');
  }, 300_000);
});
