/**
 * `modelplane check`'s report files end to end: one real run on `echo` (check.yaml, on the
 * local cluster's pod runner) prints the table on stdout and writes `--json-file` and
 * `--html`, with a cold start and echo's gpu-t4 against cpu measured on temporary
 * Deployments; the page opens in Debian's headless Chromium with no request but its own
 * file, no console or page error, the run's rows and all three plots drawn. The screenshot, the
 * page and the JSON stay in .modelplane/e2e/<namespace>/.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Report } from '../../cli/check/report.ts';
import { inspectReport } from '../../cli/check/testing.ts';
import { type Dev, startDev } from '../../dev/dev.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { runCheck } from './check-cli.ts';

const NS = `check-report-${process.pid}`;
const dir = join(repoRoot, '.modelplane', 'e2e', NS);

let dev: Dev;
let browser: Browser;

describe('modelplane check --html and --json-file on echo', () => {
  beforeAll(async () => {
    browser = await launchChromium();
    dev = await startDev({
      gatewayPort: 0,
      namespace: NS,
      examples: [join(repoRoot, 'e2e', 'tests', 'check.yaml')],
      logDir: dir,
      log: (l) => process.stderr.write(`dev: ${l}\n`),
    });
  }, 600_000);
  afterAll(async () => {
    await browser?.close();
    await dev?.stop();
  });

  it('writes the table, the JSON and a page that opens in Chromium with its plots', async () => {
    const html = join(dir, 'report.html');
    const json = join(dir, 'report.json');
    const { code, out } = await runCheck(dev, [
      `${NS}/echo`,
      '--input',
      'text=hello',
      '--runs',
      '10',
      '--units-per-action',
      '3',
      // Every plot drawn from this run: the cold start (a temporary Deployment, the default)
      // and echo's own gpu-t4 against cpu (another temporary Deployment).
      '--hardware',
      'cpu',
      '--latency-target',
      '5',
      '--html',
      html,
      '--json-file',
      json,
    ]);
    process.stderr.write(`modelplane check:\n${out}\n`);
    expect(code).toBe(0);
    expect(out).toMatch(/consistency\s+PASS\s+10\/10 identical/);
    const report = JSON.parse(readFileSync(json, 'utf8')) as Report;
    expect(report.data.latencies.predictTimes).toHaveLength(10);

    const png = join(dir, 'report.png');
    const page = await inspectReport(browser, html, png);
    process.stderr.write(`report: ${html}\nscreenshot: ${png}\n`);
    expect(page.requests).toEqual([`file://${html}`]);
    expect(page.failedRequests).toEqual([]);
    expect(page.consoleErrors).toEqual([]);
    expect(page.pageErrors).toEqual([]);
    expect(page.rows.map((r) => r[0])).toEqual(report.rows.map((r) => r.check));
    expect(page.rows.find((r) => r[0] === 'consistency')?.[1]).toContain('PASS');
    // Ten predict times and ten total times, each a dot.
    expect(page.marks.latency).toBe(20);
    // The cold-start timeline (four phases) and the cost per action of both hardware classes.
    expect(report.data.coldStart?.phases).toHaveLength(4);
    expect(page.marks['cold-start']).toBeGreaterThan(0);
    expect(report.data.hardware?.map((h) => h.hardware)).toEqual(['gpu-t4', 'cpu']);
    expect(page.marks.hardware).toBe(2);
  }, 300_000);
});
