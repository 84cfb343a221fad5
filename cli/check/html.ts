/**
 * The report as one self-contained HTML page (`modelplane check --html FILE`): the header,
 * the rows, and three plots drawn here as inline SVG — the latency distribution, the
 * cold-start timeline and the cost per action by hardware. Nothing is loaded from anywhere:
 * no scripts at all, no fonts, images or stylesheets but the inline ones, and a
 * Content-Security-Policy that forbids any request. Every string that came from the cluster
 * or the model (names, figures, details, errors) goes through `escapeHtml`; numbers are
 * formatted here. A plot whose data is absent says "not measured".
 */
import { percentile, type Verdict } from './checks.ts';
import type { ColdStart, HardwareRun, Report } from './report.ts';

const ESCAPES: Record<string, string> = {
  '&': '&amp;',
  '<': '&lt;',
  '>': '&gt;',
  '"': '&quot;',
  "'": '&#39;',
};

/** Text safe in HTML element content and in quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

const VERDICTS: Record<Verdict, { mark: string; word: string }> = {
  pass: { mark: '✓', word: 'PASS' },
  warn: { mark: '!', word: 'WARN' },
  fail: { mark: '✗', word: 'FAIL' },
  skip: { mark: '–', word: 'SKIP' },
};

const CSS = `
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 24px auto; max-width: 1100px; padding: 0 16px; color: #1d232a; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 28px 0 8px; border-bottom: 1px solid #d8dde3; padding-bottom: 4px; }
.meta { color: #4a5561; margin: 0 0 12px; }
.meta dt { display: inline; font-weight: 600; }
.meta dd { display: inline; margin: 0 16px 0 4px; }
.counts span { display: inline-block; margin-right: 10px; padding: 2px 8px; border-radius: 10px; border: 1px solid currentColor; font-weight: 600; }
table.rows { border-collapse: collapse; width: 100%; }
table.rows th, table.rows td { text-align: left; padding: 6px 8px; border-bottom: 1px solid #e4e8ec; vertical-align: top; }
table.rows th { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: #4a5561; }
td.check { font-weight: 600; white-space: nowrap; }
td.figure { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 13px; word-break: break-word; }
td.detail { color: #4a5561; word-break: break-word; }
.verdict { display: inline-block; min-width: 64px; padding: 1px 6px; border-radius: 4px; font-weight: 700; font-size: 12px; white-space: nowrap; border: 1px solid; }
.v-pass { color: #1a6b2e; background: #e3f4e7; border-color: #1a6b2e; }
.v-warn { color: #7a4d00; background: #fff1d6; border-color: #7a4d00; border-style: dashed; }
.v-fail { color: #a11a1a; background: #fde4e4; border-color: #a11a1a; border-width: 2px; }
.v-skip { color: #56606b; background: #f0f2f4; border-color: #8a949e; border-style: dotted; }
tr.r-fail td { background: #fff6f6; }
.plots { display: grid; grid-template-columns: 1fr; gap: 8px; }
figure { margin: 0 0 12px; }
figcaption { color: #4a5561; font-size: 13px; margin-top: 4px; }
svg text { font: 12px system-ui, "DejaVu Sans", sans-serif; fill: #1d232a; }
svg .axis line, svg .axis path { stroke: #6b7580; }
svg .axis line.grid { stroke: #e4e8ec; }
svg .muted { fill: #4a5561; }
.absent { padding: 18px; border: 1px dashed #8a949e; color: #4a5561; background: #f7f8f9; }
footer { margin-top: 32px; color: #6b7580; font-size: 12px; }
`;

// ── Numbers ────────────────────────────────────────────────────────────────────────────

function finite(values: readonly unknown[]): number[] {
  return values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0);
}

/** Round tick values from 0 to at least `max`: steps of 1, 2 or 5 × 10^k, about five of them. */
export function ticks(max: number): number[] {
  const top = max > 0 ? max : 1;
  const raw = top / 5;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => top / s <= 6)!;
  const out: number[] = [];
  for (let i = 0; i * step < top + step * 1e-9; i++) out.push(i * step);
  if (out[out.length - 1]! < top) out.push(out.length * step);
  return out;
}

/** A time unit for an axis whose largest value is `maxSeconds`: ms under a second, else s. */
function timeUnit(maxSeconds: number): { unit: 'ms' | 's'; scale: number } {
  return maxSeconds < 1 ? { unit: 'ms', scale: 1000 } : { unit: 's', scale: 1 };
}

/** Three significant digits (whole numbers from 100 up), no trailing zeros, never exponent notation. */
export function fmt(n: number): string {
  if (n === 0 || !Number.isFinite(n)) return n === 0 ? '0' : String(n);
  const decimals = Math.min(20, Math.max(0, 2 - Math.floor(Math.log10(Math.abs(n)))));
  const s = n.toFixed(decimals);
  return s.includes('.') ? s.replace(/\.?0+$/, '') : s;
}

function seconds(s: number): string {
  return s < 1 ? `${fmt(s * 1000)} ms` : `${fmt(s)} s`;
}

// ── SVG pieces ─────────────────────────────────────────────────────────────────────────

const W = 900;
const LEFT = 130;
const RIGHT = 260;

function svgOpen(name: string, height: number, label: string): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" class="plot" data-plot="${name}" role="img" aria-label="${escapeHtml(label)}" viewBox="0 0 ${W} ${height}" width="100%" preserveAspectRatio="xMinYMin meet"><title>${escapeHtml(label)}</title>`;
}

/** An x axis at `y` from 0 to ticks' last value, with a unit label; returns the SVG and the scale. */
function xAxis(
  max: number,
  y: number,
  top: number,
  unit: string,
  plotWidth: number,
): { svg: string; x: (v: number) => number } {
  const t = ticks(max);
  const hi = t[t.length - 1]!;
  const x = (v: number) => LEFT + (v / hi) * plotWidth;
  const parts = t.map(
    (v) =>
      `<line class="grid" x1="${x(v)}" x2="${x(v)}" y1="${top}" y2="${y}"/>` +
      `<line x1="${x(v)}" x2="${x(v)}" y1="${y}" y2="${y + 5}"/>` +
      `<text x="${x(v)}" y="${y + 18}" text-anchor="middle">${fmt(v)}</text>`,
  );
  return {
    x,
    svg: `<g class="axis"><line x1="${LEFT}" x2="${LEFT + plotWidth}" y1="${y}" y2="${y}"/>${parts.join('')}<text class="muted" x="${LEFT + plotWidth / 2}" y="${y + 34}" text-anchor="middle">${escapeHtml(unit)}</text></g>`,
  };
}

function absent(what: string, why = 'not measured'): string {
  return `<div class="absent" data-plot-absent="${escapeHtml(what)}">${escapeHtml(why)}</div>`;
}

// ── The plots ──────────────────────────────────────────────────────────────────────────

/** A strip plot with a box (p25–p75, median, min–max whiskers) per series: predict and total. */
export function latencyPlot(
  latencies: { predictTimes?: unknown[]; totalTimes?: unknown[] } | undefined,
): string {
  const series = [
    { name: 'predict time', values: finite(latencies?.predictTimes ?? []) },
    { name: 'total time', values: finite(latencies?.totalTimes ?? []) },
  ];
  const all = series.flatMap((s) => s.values);
  if (all.length === 0) return absent('latency');
  const { unit, scale } = timeUnit(Math.max(...all));
  const plotWidth = W - LEFT - 40;
  const rowH = 70;
  const top = 10;
  const axisY = top + rowH * series.length;
  const axis = xAxis(
    Math.max(...all) * scale,
    axisY,
    top,
    `${unit === 'ms' ? 'milliseconds' : 'seconds'} (${unit})`,
    plotWidth,
  );
  const rows = series.map((s, i) => {
    const cy = top + rowH * i + rowH / 2;
    const label = `<text x="${LEFT - 10}" y="${cy + 4}" text-anchor="end">${s.name} (n=${s.values.length})</text>`;
    if (s.values.length === 0)
      return `${label}<text class="muted" x="${LEFT + 8}" y="${cy + 4}">not measured</text>`;
    const v = s.values.map((x) => x * scale);
    const [lo, q1, med, q3, hi] = [0, 25, 50, 75, 100].map((p) => percentile(v, p)) as [
      number,
      number,
      number,
      number,
      number,
    ];
    const box =
      `<line class="whisker" x1="${axis.x(lo)}" x2="${axis.x(hi)}" y1="${cy}" y2="${cy}" stroke="#6b7580"/>` +
      `<rect class="box" x="${axis.x(q1)}" y="${cy - 14}" width="${Math.max(1, axis.x(q3) - axis.x(q1))}" height="28" fill="#dbe8f6" stroke="#2f5f8f"/>` +
      `<line class="median" x1="${axis.x(med)}" x2="${axis.x(med)}" y1="${cy - 18}" y2="${cy + 18}" stroke="#1d232a" stroke-width="3"><title>median ${fmt(med)} ${unit}</title></line>`;
    const points = v
      .map(
        (x, j) =>
          `<circle class="point" cx="${axis.x(x)}" cy="${cy + ((j % 5) - 2) * 4}" r="4" fill="${i === 0 ? '#2f5f8f' : '#b5651d'}" fill-opacity="0.75"><title>run ${j + 1}: ${fmt(x)} ${unit}</title></circle>`,
      )
      .join('');
    return label + box + points;
  });
  return `${svgOpen('latency', axisY + 44, 'latency distribution: predict and total time per run')}${axis.svg}${rows.join('')}</svg>`;
}

const PHASE_FILL = ['#8fb3d9', '#5b8fc7', '#2f5f8f', '#b5651d'];

/** A Gantt chart: one bar per phase of the cold start, on a seconds axis from the first request. */
export function coldStartPlot(cold: ColdStart | undefined): string {
  const phases = (cold?.phases ?? []).filter(
    (p) => Number.isFinite(p.start) && Number.isFinite(p.end) && p.end >= p.start && p.start >= 0,
  );
  if (!cold || phases.length === 0) return absent('cold-start');
  const total = Number.isFinite(cold.total) ? cold.total : 0;
  const max = Math.max(total, ...phases.map((p) => p.end));
  const plotWidth = W - LEFT - 120;
  const rowH = 34;
  const top = 10;
  const axisY = top + rowH * phases.length + 6;
  const axis = xAxis(max, axisY, top, 'seconds from the first request (s)', plotWidth);
  const bars = phases.map((p, i) => {
    const y = top + rowH * i + 6;
    const w = Math.max(2, axis.x(p.end) - axis.x(p.start));
    return (
      `<text x="${LEFT - 10}" y="${y + 15}" text-anchor="end">${escapeHtml(p.name)}</text>` +
      `<rect class="phase" x="${axis.x(p.start)}" y="${y}" width="${w}" height="22" fill="${PHASE_FILL[i % PHASE_FILL.length]}"><title>${escapeHtml(p.name)}: ${fmt(p.start)}–${fmt(p.end)} s</title></rect>` +
      `<text x="${axis.x(p.start) + w + 6}" y="${y + 15}">${escapeHtml(seconds(p.end - p.start))}</text>`
    );
  });
  const totalLine = total
    ? `<line class="total" x1="${axis.x(total)}" x2="${axis.x(total)}" y1="${top}" y2="${axisY}" stroke="#a11a1a" stroke-dasharray="4 3"/><text x="${axis.x(total) + 4}" y="${top + 10}" fill="#a11a1a">answer at ${escapeHtml(seconds(total))}</text>`
    : '';
  return `${svgOpen('cold-start', axisY + 44, `cold start on ${cold.deployment}: phases in seconds`)}${axis.svg}${bars.join('')}${totalLine}</svg>`;
}

/** The measured runs' index of the cheapest cost per action (first on a tie); -1 when none. */
export function cheapest(runs: readonly HardwareRun[]): number {
  let best = -1;
  runs.forEach((r, i) => {
    const c = Number(r.costPerAction);
    if (r.error || !Number.isFinite(c)) return;
    if (best < 0 || c < Number(runs[best]!.costPerAction)) best = i;
  });
  return best;
}

/** Horizontal bars of the cost per action by HardwareClass, the cheapest marked. */
export function hardwarePlot(runs: readonly HardwareRun[] | undefined): string {
  if (!runs || runs.length === 0) return absent('hardware');
  const best = cheapest(runs);
  if (best < 0)
    return absent(
      'hardware',
      `not measured: ${runs.map((r) => `${r.hardware}: ${r.error ?? 'no cost'}`).join('; ')}`,
    );
  const costs = runs.map((r) => (r.error ? Number.NaN : Number(r.costPerAction)));
  const max = Math.max(...costs.filter(Number.isFinite));
  const plotWidth = W - LEFT - RIGHT;
  const rowH = 36;
  const top = 10;
  const axisY = top + rowH * runs.length + 6;
  const axis = xAxis(max, axisY, top, 'dollars per user action ($)', plotWidth);
  const bars = runs.map((r, i) => {
    const y = top + rowH * i + 6;
    const name = `<text x="${LEFT - 10}" y="${y + 16}" text-anchor="end">${escapeHtml(r.hardware)}${r.temporary ? ' (temp.)' : ''}</text>`;
    if (r.error)
      return `${name}<text class="muted" x="${LEFT + 8}" y="${y + 16}">not measured: ${escapeHtml(r.error)}</text>`;
    const w = Math.max(2, axis.x(costs[i]!) - LEFT);
    const p50 = finite(r.predictTimes ?? []);
    const notes = [
      `$${r.costPerAction}`,
      p50.length ? `predict p50 ${seconds(percentile(p50, 50))}` : '',
      i === best ? '★ cheapest' : '',
      r.meetsTarget === false ? 'misses the latency target' : '',
    ].filter(Boolean);
    return (
      name +
      `<rect class="bar${i === best ? ' cheapest' : ''}" x="${LEFT}" y="${y}" width="${w}" height="24" fill="${i === best ? '#1a6b2e' : '#5b8fc7'}"${i === best ? ' stroke="#0b3d17" stroke-width="2"' : ''}><title>${escapeHtml(r.hardware)}: $${escapeHtml(r.costPerAction)} per action</title></rect>` +
      `<text x="${LEFT + w + 6}" y="${y + 16}"${i === best ? ' font-weight="700"' : ''}>${escapeHtml(notes.join(' · '))}</text>`
    );
  });
  return `${svgOpen('hardware', axisY + 44, 'cost per user action by hardware')}${axis.svg}${bars.join('')}</svg>`;
}

// ── The page ───────────────────────────────────────────────────────────────────────────

function rowsTable(report: Report): string {
  const body = (report.rows ?? []).map((r) => {
    const v = VERDICTS[r.verdict] ?? { mark: '?', word: String(r.verdict).toUpperCase() };
    return `<tr class="r-${escapeHtml(r.verdict)}"><td class="check">${escapeHtml(r.check)}</td><td><span class="verdict v-${escapeHtml(r.verdict)}">${v.mark} ${escapeHtml(v.word)}</span></td><td class="figure">${escapeHtml(r.figure)}</td><td class="detail">${r.detail ? escapeHtml(r.detail) : ''}</td></tr>`;
  });
  return `<table class="rows"><thead><tr><th>Check</th><th>Result</th><th>Figure</th><th>Detail</th></tr></thead><tbody>${body.join('')}</tbody></table>`;
}

function when(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : `${d.toISOString().replace('T', ' ').slice(0, 19)} UTC`;
}

/** The whole page. */
export function renderHtml(report: Report): string {
  const counts = (['pass', 'warn', 'fail', 'skip'] as const).map(
    (v) =>
      `<span class="v-${v}">${VERDICTS[v].mark} ${(report.rows ?? []).filter((r) => r.verdict === v).length} ${v}</span>`,
  );
  const lat = report.data?.latencies;
  const cold = report.data?.coldStart;
  const runs = report.data?.hardware;
  const figure = (title: string, plot: string, caption: string) =>
    `<figure><h3 style="font-size:15px;margin:16px 0 6px">${title}</h3>${plot}<figcaption>${caption}</figcaption></figure>`;
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>modelplane check: ${escapeHtml(report.target)}</title>
<style>${CSS}</style>
</head>
<body>
<header>
<h1>modelplane check: ${escapeHtml(report.target)}</h1>
<dl class="meta"><dt>deployment</dt><dd>${escapeHtml(report.deployment)}</dd><dt>version</dt><dd>${escapeHtml(report.version)}</dd><dt>when</dt><dd><time datetime="${escapeHtml(report.startedAt)}">${escapeHtml(when(report.startedAt))}</time></dd></dl>
<p class="counts">${counts.join('')}</p>
</header>
<main>
<h2>Checks</h2>
${rowsTable(report)}
<h2>Plots</h2>
<div class="plots">
${figure('Latency distribution', latencyPlot(lat), 'Each dot is one run of the same input; the box spans p25–p75, the thick line is the median, the whisker min–max. Predict time is the model server’s own; total time is what the client waited, create to end.')}
${figure('Cold-start timeline', coldStartPlot(cold), cold ? `From zero instances to the first answer, measured on ${cold.on === 'temporary' ? 'a temporary deployment' : 'the deployment'} ${escapeHtml(cold.deployment)}.` : 'From zero instances to the first answer.')}
${figure('Cost per user action by hardware', hardwarePlot(runs), 'The same runs on each HardwareClass; the cheapest measured one is marked ★ and drawn in green with a dark outline.')}
</div>
</main>
<footer>Generated by modelplane check. This page loads nothing: every part of it is in this file.</footer>
</body>
</html>
`;
}
