/**
 * The HTML report in Debian's headless Chromium (harness/chromium.ts, `make chromium`). The
 * report is testdata/echo-report.json, the `--json-file` of a real `modelplane check` on
 * `echo` on the local cluster (10 runs); its cold start and hardware comparison were not
 * measured in that run, so a second page adds them, shaped as the runner writes them, to see
 * those plots drawn. Screenshots go to .modelplane/browser/check-report/.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Browser } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { launchChromium } from '../../harness/chromium.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { renderHtml } from './html.ts';
import type { Report } from './report.ts';
import { inspectReport } from './testing.ts';

const artifacts = join(repoRoot, '.modelplane', 'browser', 'check-report');
const measured = JSON.parse(
  readFileSync(join(import.meta.dirname, 'testdata', 'echo-report.json'), 'utf8'),
) as Report;

let browser: Browser;

async function page(name: string, report: Report) {
  const file = join(artifacts, `${name}.html`);
  writeFileSync(file, renderHtml(report));
  const png = join(artifacts, `${name}.png`);
  const seen = await inspectReport(browser, file, png);
  process.stderr.write(`${name}: ${file}, screenshot ${png}\n`);
  // Its own document and nothing else: no request to anywhere, no error of any kind.
  expect(seen.requests).toEqual([`file://${file}`]);
  expect(seen.failedRequests).toEqual([]);
  expect(seen.consoleErrors).toEqual([]);
  expect(seen.pageErrors).toEqual([]);
  return seen;
}

describe('the HTML report in headless Chromium', () => {
  beforeAll(async () => {
    await mkdir(artifacts, { recursive: true });
    browser = await launchChromium();
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
  });

  it('shows a real run: every row, the latency plot drawn, the plots it did not measure said', async () => {
    const seen = await page('echo', measured);
    expect(seen.title).toBe(`modelplane check: ${measured.target}`);
    expect(seen.rows.map((r) => r[0])).toEqual(measured.rows.map((r) => r.check));
    for (const [i, r] of measured.rows.entries()) {
      expect(seen.rows[i]![1]).toContain(r.verdict.toUpperCase());
      expect(seen.rows[i]![2]).toBe(r.figure);
    }
    const runs = measured.data.latencies.predictTimes.length + measured.data.latencies.totalTimes.length;
    expect(runs).toBeGreaterThan(0);
    expect(seen.marks.latency).toBe(runs);
    expect(seen.marks['cold-start']).toBe(-1);
    expect(seen.marks.hardware).toBe(-1);
    expect(seen.absent).toEqual({ 'cold-start': 'not measured', hardware: 'not measured' });
  }, 60_000);

  it('draws the cold-start timeline and the hardware bars when the report has them', async () => {
    const seen = await page('echo-with-cold-start-and-hardware', {
      ...measured,
      data: {
        ...measured.data,
        coldStart: {
          on: 'temporary',
          deployment: 'echo-check-cold',
          total: 6.2,
          phases: [
            { name: 'scheduling', start: 0, end: 0.3 },
            { name: 'container start', start: 0.3, end: 1.4 },
            { name: 'model setup', start: 1.4, end: 6.1 },
            { name: 'first prediction', start: 6.1, end: 6.2 },
          ],
        },
        hardware: [
          {
            hardware: 'gpu-t4',
            temporary: false,
            predictTimes: measured.data.latencies.predictTimes,
            totalTimes: measured.data.latencies.totalTimes,
            costPerPrediction: '0.000003937',
            costPerAction: '0.000011811',
            idleCostPerHour: '0.81',
          },
          {
            hardware: 'cpu',
            temporary: true,
            predictTimes: measured.data.latencies.predictTimes.map((t) => t * 3),
            totalTimes: measured.data.latencies.totalTimes.map((t) => t * 2),
            costPerPrediction: '0.000000512',
            costPerAction: '0.000001536',
            idleCostPerHour: '0.07',
          },
        ],
      },
    });
    expect(seen.marks['cold-start']).toBe(4);
    expect(seen.marks.hardware).toBe(2);
    expect(seen.absent).toEqual({});
  }, 60_000);

  it('catches a page that asks the network for anything (the check above can fail)', async () => {
    const file = join(artifacts, 'loads-something.html');
    writeFileSync(file, '<!doctype html><title>t</title><img src="http://127.0.0.1:9/x.png"><p>x</p>');
    const seen = await inspectReport(browser, file, join(artifacts, 'loads-something.png'));
    expect(seen.requests).toContain('http://127.0.0.1:9/x.png');
    expect(seen.failedRequests).toHaveLength(1);
  }, 60_000);

  it('shows markup from the cluster as text, running none of it', async () => {
    const evil = '<script>document.title="pwned"</script><img src=x onerror="document.title=1">';
    const seen = await page('escaping', {
      ...measured,
      rows: [{ check: 'consistency', verdict: 'fail', figure: evil, detail: evil }],
    });
    expect(seen.title).toBe(`modelplane check: ${measured.target}`);
    expect(seen.rows).toEqual([['consistency', '✗ FAIL', evil, evil]]);
  }, 60_000);
});
