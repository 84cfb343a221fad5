/**
 * Debian's Chromium, headless, driven by puppeteer-core, for the tests that open the HTML
 * report of `modelplane check`: `make chromium` installs the package (hack/chromium.sh).
 * Chromium is started here, tethered like every process the harness starts, and puppeteer
 * connects to it.
 * `openPage` loads a local file with every request recorded — the report must need none
 * but its own document — and collects console errors and page errors.
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { spawnTethered } from './tether.ts';

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

/**
 * Headless Chromium, tethered to this process (harness/tether.ts: it and what it starts die
 * with it, however it ends), with a fresh profile in a temporary directory, and puppeteer
 * connected to it over its DevTools WebSocket on 127.0.0.1. Without a sandbox when this is
 * root (Chromium refuses to start then). `close()` ends it and removes the profile.
 */
export async function launchChromium(timeoutMs = 60_000): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'modelplane-chromium-'));
  const args = [
    '--headless',
    '--remote-debugging-port=0',
    '--remote-debugging-address=127.0.0.1',
    `--user-data-dir=${profile}`,
    '--disable-gpu',
    '--no-first-run',
    '--hide-scrollbars',
    '--no-default-browser-check',
    '--disable-dev-shm-usage',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--metrics-recording-only',
    'about:blank',
  ];
  if (process.getuid?.() === 0) args.push('--no-sandbox');
  const child = spawnTethered(chromiumPath(), args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const cleanup = () => rmSync(profile, { recursive: true, force: true });
  let endpoint: string;
  try {
    endpoint = await new Promise<string>((resolve, reject) => {
      let err = '';
      const timer = setTimeout(
        () =>
          reject(new Error(`Chromium printed no DevTools endpoint in ${timeoutMs} ms: ${err.slice(-2000)}`)),
        timeoutMs,
      );
      child.stderr!.setEncoding('utf8');
      child.stderr!.on('data', (chunk: string) => {
        err += chunk;
        const m = /DevTools listening on (ws:\/\/\S+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.once('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Chromium exited (${signal ?? code}) before it listened: ${err.slice(-2000)}`));
      });
    });
  } catch (e) {
    child.kill('SIGKILL');
    cleanup();
    throw e;
  }
  // Keep reading its log so a full pipe never stalls it.
  child.stderr!.resume();
  const browser = await puppeteer.connect({ browserWSEndpoint: endpoint, defaultViewport: null });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close().catch(() => child.kill('SIGKILL'));
    const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(t);
    cleanup();
  };
  return browser;
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
