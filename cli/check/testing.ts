/**
 * Test helper: opens an HTML report of `modelplane check` in headless Chromium
 * (harness/chromium.ts), saves a screenshot, and says what the page showed — every request it
 * made, its errors, and how many marks each plot drew — for the tests to assert on.
 */
import type { Browser } from 'puppeteer-core';
import { openFile, screenshot } from '../../harness/chromium.ts';

export interface ReportPage {
  requests: string[];
  failedRequests: string[];
  consoleErrors: string[];
  pageErrors: string[];
  /** Per plot (`latency`, `cold-start`, `hardware`): its SVG's marks, or -1 when it has no SVG. */
  marks: Record<string, number>;
  /** The "not measured" placeholders by plot name. */
  absent: Record<string, string>;
  /** Rows of the checks table as rendered text: [check, result, figure, detail]. */
  rows: string[][];
  title: string;
}

const MARKS: Record<string, string> = {
  latency: 'circle.point',
  'cold-start': 'rect.phase',
  hardware: 'rect.bar',
};

export async function inspectReport(browser: Browser, file: string, png: string): Promise<ReportPage> {
  const opened = await openFile(browser, file);
  try {
    await screenshot(opened.page, png);
    // Run in the page (the DOM's types are not this program's, so it is sent as source).
    const seen = (await opened.page.evaluate(`(() => {
      const marks = ${JSON.stringify(MARKS)};
      const count = {};
      for (const [plot, sel] of Object.entries(marks)) {
        const svg = document.querySelector('svg[data-plot="' + plot + '"]');
        // A mark counts only when it has an area on the page.
        count[plot] = svg
          ? [...svg.querySelectorAll(sel)].filter((e) => {
              const b = e.getBoundingClientRect();
              return b.width > 0 && b.height > 0;
            }).length
          : -1;
      }
      const absent = {};
      for (const e of document.querySelectorAll('[data-plot-absent]'))
        absent[e.getAttribute('data-plot-absent')] = e.textContent;
      const rows = [...document.querySelectorAll('table.rows tbody tr')].map((tr) =>
        [...tr.querySelectorAll('td')].map((td) => td.textContent),
      );
      return { count, absent, rows, title: document.title };
    })()`)) as {
      count: Record<string, number>;
      absent: Record<string, string>;
      rows: string[][];
      title: string;
    };
    return {
      requests: opened.requests,
      failedRequests: opened.failedRequests,
      consoleErrors: opened.consoleErrors,
      pageErrors: opened.pageErrors,
      marks: seen.count,
      absent: seen.absent,
      rows: seen.rows,
      title: seen.title,
    };
  } finally {
    await opened.page.close();
  }
}
