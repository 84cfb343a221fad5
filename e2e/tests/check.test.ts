/**
 * `modelplane check` end to end, on the local cluster whose T4 node is the pod runner's: the
 * `echo` model (check.yaml) is a real Cog server beside a real sidecar, predictions go through
 * the gateway, the cluster is read through the Kubernetes API. Every row it runs passes, but
 * two: the image is a local tag (`image digest` warns) and echo answers in far less than the
 * shortest Cancel-After (`cancel-after` is skipped); consistency is exact. The version has no
 * spec.openapiSchema: the worst-case input comes from the schema the operator read from the
 * running container.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Report } from '../../cli/check/report.ts';
import { type Dev, kubectl, startDev } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { waitFor } from '../../harness/processes.ts';
import { runCheck } from './check-cli.ts';

const NS = `check-${process.pid}`;

let dev: Dev;

const check = (...args: string[]) => runCheck(dev, args);

describe('modelplane check on echo', () => {
  beforeAll(async () => {
    dev = await startDev({
      gatewayPort: 0,
      namespace: NS,
      examples: [join(repoRoot, 'e2e', 'tests', 'check.yaml')],
      logDir: join(repoRoot, '.modelplane', 'e2e', NS),
      log: (l) => process.stderr.write(`dev: ${l}\n`),
    });
    // The version's schema, read from its running container once the deployment is Ready.
    await waitFor(
      'status.openapiSchema of echo-v1',
      () =>
        kubectl(dev.kubeconfig, [
          'get',
          'modelversions',
          'echo-v1',
          '-n',
          NS,
          '-o',
          'jsonpath={.status.openapiSchema.components.schemas.Input.type}',
        ]) === 'object',
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  }, 600_000);
  afterAll(async () => {
    await dev?.stop();
  });

  it('passes every row it runs, with exact consistency', async () => {
    const { code, out } = await check(
      `${NS}/echo`,
      '--input',
      'text=hello',
      '--runs',
      '5',
      '--units-per-action',
      '3',
      '--json',
    );
    process.stderr.write(`modelplane check --json:\n${out}\n`);
    const report = JSON.parse(out) as Report;
    const by = Object.fromEntries(report.rows.map((r) => [r.check, r]));
    expect(by.consistency).toMatchObject({ verdict: 'pass', figure: '5/5 identical' });
    expect(by['image digest']?.verdict).toBe('warn');
    expect(by['cancel-after']?.verdict).toBe('skip');
    // check.yaml's version has no spec.openapiSchema: the worst-case input is generated from
    // the one the operator read from its running container (status.openapiSchema).
    expect(by['worst case']?.figure).toMatch(/^generated: succeeded in [0-9.]+s/);
    for (const r of report.rows.filter((x) => !['image digest', 'cancel-after'].includes(x.check)))
      expect(r.verdict, `${r.check}: ${r.figure} ${r.detail ?? ''}`).toBe('pass');
    expect(report.rows.map((r) => r.check)).toEqual([
      'consistency',
      'cold start',
      'runtime',
      'throughput',
      'worst case',
      'cancel-after',
      'idempotency',
      'client timeout',
      'cost per action',
      'idle cost',
      'license',
      'image digest',
      'schema vs previous',
      'official',
      'kept warm',
    ]);
    expect(code).toBe(0);
  }, 300_000);

  it('fails, exiting 1, when the runtime is over --max-p95', async () => {
    const { code, out } = await check(`${NS}/echo`, '--input', 'text=hello', '--runs', '2', '--max-p95', '0');
    process.stderr.write(`modelplane check:\n${out}\n`);
    expect(out).toMatch(/runtime\s+FAIL/);
    expect(code).toBe(1);
  }, 300_000);
});
