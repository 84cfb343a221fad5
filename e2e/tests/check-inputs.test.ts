/**
 * `modelplane check`'s inputs end to end, on the local cluster (real Cog servers and sidecars
 * through the pod runner, predictions through the gateway):
 * - `echo`, whose version before it (`echo-upper`, a real predictor in check-inputs-models/)
 *   had one more input: `schema vs previous` fails naming the dropped input, and the worst-case
 *   input generated from echo's schema (4096 characters × 100) passes;
 * - `sleep` with a predict timeout of 3 s, shorter than its worst case (3600 s): the generated
 *   worst-case row fails as timed out, while a given worst-case input of 0.5 s passes;
 * - `noise`, whose output varies with no seed: consistency fails as varying, by cosine.
 * Each version carries the OpenAPI document its Cog server serves (the predictor's
 * .cog/openapi_schema.json) in spec.openapiSchema, as `cog build`'s image has it.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import type { Report } from '../../cli/check/report.ts';
import { UNBOUNDED_STRING_LENGTH } from '../../cli/check/worst-case.ts';
import { type Dev, startDev } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { runCheck } from './check-cli.ts';

const NS = `check-inputs-${process.pid}`;
const FIXTURES = join(repoRoot, 'e2e', 'tests', 'check-inputs-models');
const SLEEP_TIMEOUT_S = 3;

let dev: Dev;

const schema = (dir: string) => JSON.parse(readFileSync(join(dir, '.cog', 'openapi_schema.json'), 'utf8'));
const example = (name: string) => join(repoRoot, 'examples', 'models', name);

function manifests(): string {
  const model = (name: string, extra: Record<string, unknown> = {}) => ({
    apiVersion: 'modelplane.dev/v1alpha1',
    kind: 'Model',
    metadata: { name, labels: { 'modelplane.dev/official': 'true' } },
    spec: {
      visibility: 'private',
      defaultHardware: 'gpu-t4',
      deployment: name,
      licenseUrl: 'https://www.apache.org/licenses/LICENSE-2.0',
      ...extra,
    },
  });
  const version = (name: string, modelName: string, image: string, openapi: unknown, extra = {}) => ({
    apiVersion: 'modelplane.dev/v1alpha1',
    kind: 'ModelVersion',
    metadata: { name },
    spec: { model: modelName, image, openapiSchema: openapi, setupTimeoutSeconds: 120, ...extra },
  });
  const deployment = (name: string, v: string) => ({
    apiVersion: 'modelplane.dev/v1alpha1',
    kind: 'Deployment',
    metadata: { name },
    spec: { model: name, version: v, hardware: 'gpu-t4', minInstances: 1, maxInstances: 1 },
  });
  const docs = [
    model('echo'),
    version('echo-v1', 'echo', 'modelplane.local/echo-upper:dev', schema(join(FIXTURES, 'echo-upper'))),
    version('echo-v2', 'echo', 'modelplane.local/echo:dev', schema(example('echo')), { maxConcurrency: 4 }),
    deployment('echo', 'echo-v2'),
    model('sleep'),
    version('sleep-v1', 'sleep', 'modelplane.local/sleep:dev', schema(example('sleep')), {
      predictTimeoutSeconds: SLEEP_TIMEOUT_S,
    }),
    deployment('sleep', 'sleep-v1'),
    model('noise'),
    version('noise-v1', 'noise', 'modelplane.local/noise:dev', schema(example('noise'))),
    deployment('noise', 'noise-v1'),
  ];
  const file = join(mkdtempSync(join(tmpdir(), 'check-inputs-')), 'check-inputs.yaml');
  writeFileSync(file, docs.map((d) => stringify(d)).join('---\n'));
  return file;
}

async function check(...args: string[]): Promise<{ code: number; report: Report }> {
  const { code, out } = await runCheck(dev, [...args, '--json']);
  process.stderr.write(`modelplane check ${args.join(' ')} --json:\n${out}\n`);
  return { code, report: JSON.parse(out) as Report };
}

const rowsOf = (r: Report, name: string) => r.rows.filter((x) => x.check === name);

describe('modelplane check: worst-case inputs, varying outputs, a breaking version', () => {
  beforeAll(async () => {
    dev = await startDev({
      gatewayPort: 0,
      namespace: NS,
      examples: [manifests()],
      modelsDirs: [FIXTURES],
      logDir: join(repoRoot, '.modelplane', 'e2e', NS),
      log: (l) => process.stderr.write(`dev: ${l}\n`),
    });
  }, 600_000);
  afterAll(async () => {
    await dev?.stop();
  });

  it('echo: the generated worst case passes; the version that dropped an input is breaking', async () => {
    const { code, report } = await check(`${NS}/echo`, '--input', 'text=hello', '--runs', '2');
    expect(rowsOf(report, 'consistency')[0]).toMatchObject({ verdict: 'pass', figure: '2/2 identical' });
    const worst = rowsOf(report, 'worst case');
    expect(worst).toHaveLength(1);
    expect(worst[0]).toMatchObject({ verdict: 'pass' });
    expect(worst[0]!.figure).toMatch(/^generated: succeeded in [0-9.]+s \(timeout 1800s\)$/);
    expect(worst[0]!.detail).toContain(`text: no maxLength, ${UNBOUNDED_STRING_LENGTH} characters`);
    expect(report.data.worstCase).toEqual([
      expect.objectContaining({ source: 'generated', status: 'succeeded' }),
    ]);
    expect(rowsOf(report, 'schema vs previous')[0]).toMatchObject({
      verdict: 'fail',
      figure: '1 breaking vs echo-v1',
      detail: 'input "upper" removed',
    });
    expect(code).toBe(1);
  }, 300_000);

  it('sleep with a predict timeout shorter than its worst case: the generated row fails as timed out', async () => {
    const { code, report } = await check(
      `${NS}/sleep`,
      '--input',
      'seconds=0',
      '--runs',
      '2',
      '--worst-input',
      'seconds=0.5',
    );
    const [given, generated] = rowsOf(report, 'worst case');
    expect(given).toMatchObject({ verdict: 'pass' });
    expect(given!.figure).toMatch(/^given: succeeded in [0-9.]+s \(timeout 3s\)$/);
    expect(generated).toMatchObject({ verdict: 'fail' });
    expect(generated!.figure).toMatch(/^generated: timed out after [0-9.]+s \(timeout 3s\)$/);
    expect(generated!.detail).toContain(`predict timeout of ${SLEEP_TIMEOUT_S} s`);
    const runs = report.data.worstCase!;
    expect(runs.map((r) => [r.source, r.status])).toEqual([
      ['given', 'succeeded'],
      ['generated', 'failed'],
    ]);
    // It cannot have timed out before its timeout.
    expect(runs[1]!.totalTime).toBeGreaterThanOrEqual(SLEEP_TIMEOUT_S);
    // Every other row but the image's tag passes: the worst case alone makes it exit 1.
    for (const r of report.rows.filter(
      (x) => !['worst case', 'image digest', 'cancel-after'].includes(x.check),
    ))
      expect(r.verdict, `${r.check}: ${r.figure} ${r.detail ?? ''}`).toBe('pass');
    expect(code).toBe(1);
  }, 300_000);

  it('noise, whose output varies with no seed: consistency reports it varying, by cosine', async () => {
    const { code, report } = await check(`${NS}/noise`, '--runs', '3');
    const row = rowsOf(report, 'consistency')[0]!;
    expect(row.verdict).toBe('fail');
    expect(row.figure).toMatch(/^varies: min cosine -?[0-9.]+ to the first$/);
    expect(row.detail).toContain('cosine similarity below 0.999');
    expect(rowsOf(report, 'worst case')[0]).toMatchObject({ verdict: 'pass' });
    expect(code).toBe(1);
  }, 300_000);
});
