import { describe, expect, it } from 'vitest';
import { cheapest, coldStartPlot, escapeHtml, hardwarePlot, latencyPlot, renderHtml, ticks } from './html.ts';
import type { HardwareRun, Report } from './report.ts';

const run = (hardware: string, cost: string, extra: Partial<HardwareRun> = {}): HardwareRun => ({
  hardware,
  temporary: hardware !== 'gpu-t4',
  predictTimes: [0.1, 0.2, 0.3],
  totalTimes: [0.15, 0.25, 0.35],
  costPerPrediction: cost,
  costPerAction: cost,
  idleCostPerHour: '0.81',
  ...extra,
});

const full: Report = {
  target: 'ns/echo',
  deployment: 'echo',
  version: 'echo-v1',
  startedAt: '2026-12-04T12:00:00.000Z',
  rows: [
    { check: 'consistency', verdict: 'pass', figure: '5/5 identical' },
    { check: 'runtime', verdict: 'fail', figure: 'predict p95 0.2s', detail: 'over --max-p95 0.1s' },
    { check: 'license', verdict: 'warn', figure: 'none', detail: "set the Model's spec.licenseUrl" },
    { check: 'cancel-after', verdict: 'skip', figure: 'not tried' },
  ],
  data: {
    latencies: {
      predictTimes: [0.002, 0.003, 0.002, 0.004, 0.002],
      totalTimes: [0.01, 0.012, 0.009, 0.011, 0.02],
    },
    coldStart: {
      on: 'temporary',
      deployment: 'echo-check-cold',
      total: 9.5,
      phases: [
        { name: 'scheduling', start: 0, end: 0.4 },
        { name: 'container start', start: 0.4, end: 2.1 },
        { name: 'model setup', start: 2.1, end: 9.4 },
        { name: 'first prediction', start: 9.4, end: 9.5 },
      ],
    },
    hardware: [
      run('gpu-t4', '0.000002'),
      run('cpu', '0.0000005'),
      run('gpu-a100', '0', { error: 'no node' }),
    ],
  },
};

const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;

describe('escapeHtml', () => {
  it('escapes the five characters that matter in content and quoted attributes', () => {
    expect(escapeHtml(`<a href="x" title='y'>&amp;</a>`)).toBe(
      '&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;',
    );
    expect(escapeHtml('plain text, ünïcode ✓')).toBe('plain text, ünïcode ✓');
    expect(escapeHtml(42)).toBe('42');
  });
});

describe('renderHtml', () => {
  it('has the header, every row with a verdict that reads without colour, and three plots', () => {
    const html = renderHtml(full);
    expect(html).toContain('<title>modelplane check: ns/echo</title>');
    expect(html).toContain('<dt>deployment</dt><dd>echo</dd><dt>version</dt><dd>echo-v1</dd>');
    expect(html).toContain('2026-12-04 12:00:00 UTC');
    expect(html).toMatch(/<td class="check">runtime<\/td><td><span class="verdict v-fail">✗ FAIL<\/span>/);
    expect(html).toContain('✓ PASS');
    expect(html).toContain('! WARN');
    expect(html).toContain('– SKIP');
    expect(html).toContain('over --max-p95 0.1s');
    expect(html).toContain('✓ 1 pass');
    expect(count(html, /<circle class="point"/g)).toBe(10);
    expect(count(html, /<rect class="phase"/g)).toBe(4);
    expect(count(html, /<rect class="bar/g)).toBe(2);
    expect(html).not.toContain('not measured<');
  });

  it('loads nothing: no script, no external URL, a policy that forbids requests', () => {
    const html = renderHtml(full);
    expect(html).not.toMatch(/<script|<link|<img|@import|url\(/i);
    expect(html).not.toMatch(/(src|href)=/i);
    expect(html).toContain(`content="default-src 'none';`);
    // The only URLs are the SVG namespace's.
    expect(html.match(/https?:\/\/[^"\s<]+/g)?.every((u) => u === 'http://www.w3.org/2000/svg')).toBe(true);
  });

  it('says "not measured" for every plot whose data is absent', () => {
    const html = renderHtml({ ...full, data: { latencies: { predictTimes: [], totalTimes: [] } } });
    for (const plot of ['latency', 'cold-start', 'hardware'])
      expect(html).toContain(`<div class="absent" data-plot-absent="${plot}">not measured</div>`);
    expect(html).not.toContain('<svg');
  });

  it('renders cluster strings as text: a <script> in a figure, a detail or a name is not markup', () => {
    const evil = '<script>alert(1)</script>';
    const html = renderHtml({
      ...full,
      target: `ns/${evil}`,
      deployment: `"><img src=x onerror=alert(1)>`,
      version: evil,
      rows: [{ check: evil, verdict: 'fail', figure: evil, detail: `</td>${evil}` }],
      data: {
        ...full.data,
        coldStart: { ...full.data.coldStart!, deployment: evil },
        hardware: [run(evil, '0.1'), run('cpu', '0.2', { error: evil })],
      },
    });
    expect(html).not.toContain('<script');
    expect(html).not.toContain('<img');
    expect(html).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
    expect(html).toContain('<td class="figure">&lt;script&gt;alert(1)&lt;/script&gt;</td>');
    expect(html).toContain('&quot;&gt;&lt;img src=x onerror=alert(1)&gt;');
  });

  it('takes a report with a verdict or numbers it does not know without breaking', () => {
    const html = renderHtml({
      ...full,
      rows: [{ check: 'x', verdict: 'odd' as 'pass', figure: 'f' }],
      data: { latencies: { predictTimes: [Number.NaN, -1, 0.5], totalTimes: [] } },
    });
    expect(html).toContain('? ODD');
    expect(count(html, /<circle class="point"/g)).toBe(1);
  });
});

describe('the plots', () => {
  it('latency: ms axis under a second, s above, a dot per run, the series with no runs marked', () => {
    const ms = latencyPlot({ predictTimes: [0.002, 0.004], totalTimes: [0.01] });
    expect(ms).toContain('milliseconds (ms)');
    expect(count(ms, /<circle class="point"/g)).toBe(3);
    const s = latencyPlot({ predictTimes: [1.5, 2.5], totalTimes: [] });
    expect(s).toContain('seconds (s)');
    expect(s).toContain('total time (n=0)');
    expect(s).toMatch(/total time \(n=0\)<\/text><text class="muted"[^>]*>not measured</);
  });

  it('cold start: a bar per phase with its length in seconds and the answer marked', () => {
    const svg = coldStartPlot(full.data.coldStart);
    expect(count(svg, /<rect class="phase"/g)).toBe(4);
    expect(svg).toContain('>7.3 s<');
    expect(svg).toContain('answer at 9.5 s');
    expect(coldStartPlot(undefined)).toContain('not measured');
    expect(coldStartPlot({ ...full.data.coldStart!, phases: [] })).toContain('not measured');
  });

  it('hardware: the cheapest measured run marked, an errored one said, none measured said', () => {
    const runs = full.data.hardware!;
    expect(cheapest(runs)).toBe(1);
    const svg = hardwarePlot(runs);
    expect(count(svg, /<rect class="bar cheapest"/g)).toBe(1);
    expect(svg).toMatch(/\$0\.0000005 · predict p50 200 ms · ★ cheapest/);
    expect(svg).toContain('not measured: no node');
    expect(hardwarePlot([run('x', '1', { error: 'boom' })])).toContain('not measured: x: boom');
    expect(hardwarePlot([])).toContain('not measured');
    expect(cheapest([run('a', '2'), run('b', '2')])).toBe(0);
  });

  it('ticks: round steps from 0 past the largest value', () => {
    expect(ticks(9.5)).toEqual([0, 2, 4, 6, 8, 10]);
    expect(ticks(4)).toEqual([0, 1, 2, 3, 4]);
    expect(ticks(0.0021)).toEqual(
      [0, 0.0005, 0.001, 0.0015, 0.002, 0.0025].map((x) => expect.closeTo(x, 12)),
    );
    expect(ticks(0)).toEqual([0, 0.2, 0.4, 0.6, 0.8, 1].map((x) => expect.closeTo(x, 12)));
  });
});
