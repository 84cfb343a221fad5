/**
 * Debian's Chromium, headless, driven by puppeteer-core, for the tests that open the HTML
 * report of `modelplane check`: `make chromium` installs the package (hack/chromium.sh).
 * `openPage` loads a local file with every request recorded — the report must need none
 * but its own document — and collects console errors and page errors.
 */
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROMIUM_PACKAGE = 'chromium';
const DEFAULT_EXE = '/usr/bin/chromium';

/** The Chromium executable; throws, naming the package, when it is missing. */
export function chromiumPath(): string {
  const exe = process.env.MODELPLANE_CHROMIUM ?? DEFAULT_EXE;
  if (!existsSync(exe)) {
    throw new Error(
      `Chromium is not installed (no ${exe}): run \`make chromium\`, or install the Debian/Ubuntu package ` +
        `${CHROMIUM_PACKAGE} (apt-get install -y ${CHROMIUM_PACKAGE}), or set MODELPLANE_CHROMIUM to a Chromium executable`,
    );
  }
  return exe;
}

/** Headless Chromium, without a sandbox when this is root (Chromium refuses to start then). */
export async function launchChromium(): Promise<Browser> {
  const args = ['--disable-gpu', '--no-first-run', '--no-default-browser-check', '--disable-dev-shm-usage'];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    args,
    // Chromium's own processes die with the test (puppeteer kills the group on close).
    handleSIGINT: true,
    handleSIGTERM: true,
  });
}

export interface OpenedPage {
  page: Page;
  /** Every request the page made, its own document included. */
  requests: string[];
  /** Requests that failed (blocked, refused, not found). */
  failedRequests: string[];
  consoleErrors: string[];
  pageErrors: string[];
}

/** Opens a local file in a new page and waits until it has loaded. */
export async function openFile(browser: Browser, file: string, width = 1200): Promise<OpenedPage> {
  const page = await browser.newPage();
  await page.setViewport({ width, height: 900 });
  const out: OpenedPage = { page, requests: [], failedRequests: [], consoleErrors: [], pageErrors: [] };
  page.on('request', (r) => out.requests.push(r.url()));
  page.on('requestfailed', (r) =>
    out.failedRequests.push(`${r.url()}: ${r.failure()?.errorText ?? 'failed'}`),
  );
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warn') out.consoleErrors.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => out.pageErrors.push(String(e)));
  await page.goto(pathToFileURL(file).href, { waitUntil: 'load' });
  return out;
}

/** A full-page PNG of `page` at `file` (its folder made). */
export async function screenshot(page: Page, file: string): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await page.screenshot({ path: file as `${string}.png`, fullPage: true, type: 'png' });
}
