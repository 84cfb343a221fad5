/**
 * `modelplane check <namespace>/<deployment-or-model>`: the production-readiness checklist.
 * Settings come from flags, or a YAML/JSON `--config` file with the same names (flags win);
 * the report is a table or `--json`; the exit status is 1 when any row fails.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { parse as parseYaml } from 'yaml';
import { exitStatus, type Row } from './checks.ts';
import { renderHtml } from './html.ts';
import type { Report } from './report.ts';
import { type CheckSettings, Cluster, check, Gateway } from './runner.ts';
import { Temporaries } from './temporary.ts';

export const CHECK_HELP = `Usage: modelplane check <namespace>/<deployment-or-model> [flags]

Runs the production-readiness checklist on a deployment (or a Model's deployment) through the
gateway's prediction API and the Kubernetes API: consistency, runtime, throughput, worst-case
inputs (one given, one generated from the version's schema) within the predict timeout, Cancel-After,
idempotent retries, a client timeout, cost per user action and idle cost, license, image digest,
schema compatibility with the previous version, official label, kept warm. Exits 1 when a
check fails.

Flags:
  --input K=V            an input of the prediction (repeatable; V is parsed as JSON when it
                         can be, else taken as a string)
  --input-file FILE      the input as a JSON object (--input entries are laid over it)
  --worst-input K=V      a worst-case input of yours (repeatable, as --input); it runs beside
                         the one generated from the version's schema, each within the
                         version's predictTimeoutSeconds
  --worst-input-file FILE  that input as a JSON object (--worst-input entries laid over it)
  --runs N               predictions of the same input (default 5)
  --units-per-action N   predictions one user action takes, for the cost per action (default 1)
  --max-p95 SECONDS      fail when the predict time's p95 is over this
  --min-cosine X         least cosine similarity of number-array outputs (default 0.999)
  --cold-start MODE      temporary (default: a temporary Deployment at 0 instances, removed
                         afterwards), deployment (the Deployment itself, which must have 0
                         instances) or skip
  --hardware A,B         HardwareClasses to run the same runs on, each on a temporary
                         Deployment removed afterwards
  --latency-target SECONDS
                         total-time p95 the cheapest hardware must meet
  --config FILE          YAML or JSON with the same settings: input, worstInput, runs,
                         unitsPerAction, maxP95, minCosine, coldStart, hardware,
                         latencyTarget, html, jsonFile (flags win over it)
  --json                 print the report as JSON
  --json-file FILE       also write the report as JSON to FILE
  --html FILE            also write the report as a self-contained HTML page with plots
  --api-url URL          the gateway's API base, /v1 included
                         (MODELPLANE_API_URL; default http://localhost:8000/v1)
  --token TOKEN          API token (MODELPLANE_API_TOKEN or REPLICATE_API_TOKEN)
  --kubeconfig PATH      kubeconfig to use (KUBECONFIG; default ~/.kube/config)
  -h, --help             show this help
`;

const CONFIG_KEYS = [
  'input',
  'worstInput',
  'runs',
  'unitsPerAction',
  'maxP95',
  'minCosine',
  'coldStart',
  'hardware',
  'latencyTarget',
  'html',
  'jsonFile',
] as const;

/** Where the report is written besides stdout. */
export interface ReportFiles {
  html?: string;
  jsonFile?: string;
}

const COLD_START_MODES = ['temporary', 'deployment', 'skip'] as const;

function coldStartMode(v: unknown, what: string): 'temporary' | 'deployment' | 'skip' {
  if (typeof v === 'string' && (COLD_START_MODES as readonly string[]).includes(v))
    return v as 'temporary' | 'deployment' | 'skip';
  throw new Error(`${what} must be one of ${COLD_START_MODES.join(', ')}, not ${JSON.stringify(v)}`);
}

/** HardwareClass names from `a,b` or a list; each a DNS subdomain. */
export function hardwareList(v: unknown, what: string): string[] {
  const list = typeof v === 'string' ? v.split(',').map((x) => x.trim()) : v;
  if (!Array.isArray(list) || list.length === 0) throw new Error(`${what} must name HardwareClasses`);
  for (const x of list)
    if (typeof x !== 'string' || !/^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$/.test(x) || x.length > 253)
      throw new Error(`${what}: ${JSON.stringify(x)} is not a HardwareClass name`);
  return [...new Set(list as string[])];
}

/** Reads a config file's settings; throws saying what is wrong. */
export function parseConfig(text: string, file: string): Partial<CheckSettings> & ReportFiles {
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (err) {
    throw new Error(`${file}: not YAML or JSON: ${(err as Error).message}`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new Error(`${file}: must be a mapping`);
  const out: Partial<CheckSettings> & ReportFiles = {};
  for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
    if (!(CONFIG_KEYS as readonly string[]).includes(k))
      throw new Error(`${file}: unknown setting "${k}" (known: ${CONFIG_KEYS.join(', ')})`);
    if (k === 'input' || k === 'worstInput') {
      if (v === null || typeof v !== 'object' || Array.isArray(v))
        throw new Error(`${file}: ${k} must be a mapping`);
      out[k] = v as Record<string, unknown>;
    } else if (k === 'html' || k === 'jsonFile') {
      if (typeof v !== 'string' || v === '') throw new Error(`${file}: ${k} must be a file name`);
      out[k] = v;
    } else if (k === 'coldStart') {
      out.coldStart = coldStartMode(v, `${file}: coldStart`);
    } else if (k === 'hardware') {
      out.hardware = hardwareList(v, `${file}: hardware`);
    } else {
      out[k as 'runs' | 'unitsPerAction' | 'maxP95' | 'minCosine' | 'latencyTarget'] = number(
        v,
        `${file}: ${k}`,
      );
    }
  }
  return out;
}

function number(v: unknown, what: string): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  if (!Number.isFinite(n) || n < 0) throw new Error(`${what} must be a number ≥ 0, not ${JSON.stringify(v)}`);
  return n;
}

/** An input from the config file's mapping, then a JSON file, then `K=V` flags laid over it. */
function inputFrom(
  base: Record<string, unknown> | undefined,
  file: unknown,
  flags: unknown,
  flag: string,
): Record<string, unknown> {
  let input: Record<string, unknown> = { ...(base ?? {}) };
  if (file) {
    const raw = JSON.parse(readFileSync(file as string, 'utf8')) as unknown;
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
      throw new Error(`${file}: must hold a JSON object`);
    input = { ...input, ...(raw as Record<string, unknown>) };
  }
  for (const kv of (flags as string[] | undefined) ?? []) {
    const [k, v] = parseInputFlag(kv, flag);
    input[k] = v;
  }
  return input;
}

/** `k=v`: v as JSON when it parses, else the string. */
export function parseInputFlag(kv: string, flag = 'input'): [string, unknown] {
  const i = kv.indexOf('=');
  if (i <= 0) throw new Error(`--${flag} must be KEY=VALUE, not "${kv}"`);
  const v = kv.slice(i + 1);
  try {
    return [kv.slice(0, i), JSON.parse(v)];
  } catch {
    return [kv.slice(0, i), v];
  }
}

/** The report as a table: CHECK, RESULT, FIGURE, then the details of rows that warn or fail. */
export function renderTable(r: Report): string {
  const rows = [
    ['CHECK', 'RESULT', 'FIGURE'],
    ...r.rows.map((x) => [x.check, x.verdict.toUpperCase(), x.figure]),
  ];
  const widths = [0, 1].map((i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map(
    (row) => `${row[0]!.padEnd(widths[0]!)}   ${row[1]!.padEnd(widths[1]!)}   ${row[2]}`,
  );
  const notes = r.rows.filter((x: Row) => x.detail).map((x) => `  ${x.check}: ${x.detail}`);
  const counts = ['pass', 'warn', 'fail', 'skip'].map(
    (v) => `${r.rows.filter((x) => x.verdict === v).length} ${v}`,
  );
  return `${r.target} (deployment ${r.deployment}, version ${r.version})\n\n${lines.join('\n')}\n${
    notes.length ? `\nNotes:\n${notes.join('\n')}\n` : ''
  }\n${counts.join(', ')}\n`;
}

export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const fail = (msg: string, code = 2): number => {
    process.stderr.write(`modelplane check: ${msg}\n${code === 2 ? `\n${CHECK_HELP}` : ''}`);
    return code;
  };
  let values: Record<string, string | string[] | boolean | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        input: { type: 'string', multiple: true },
        'input-file': { type: 'string' },
        'worst-input': { type: 'string', multiple: true },
        'worst-input-file': { type: 'string' },
        runs: { type: 'string' },
        'units-per-action': { type: 'string' },
        'max-p95': { type: 'string' },
        'min-cosine': { type: 'string' },
        config: { type: 'string' },
        'cold-start': { type: 'string' },
        hardware: { type: 'string' },
        'latency-target': { type: 'string' },
        json: { type: 'boolean' },
        'json-file': { type: 'string' },
        html: { type: 'string' },
        'api-url': { type: 'string' },
        token: { type: 'string' },
        kubeconfig: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: true,
    }));
  } catch (err) {
    return fail((err as Error).message);
  }
  if (values.help) {
    process.stdout.write(CHECK_HELP);
    return 0;
  }
  if (positionals.length !== 1) return fail('name one target: <namespace>/<deployment-or-model>');
  const m = /^([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/.exec(positionals[0]!);
  if (!m) return fail(`"${positionals[0]}" is not <namespace>/<name>`);
  let settings: CheckSettings;
  const files: ReportFiles = {};
  try {
    const fromFile = values.config
      ? parseConfig(readFileSync(values.config as string, 'utf8'), values.config as string)
      : {};
    const input = inputFrom(fromFile.input, values['input-file'], values.input, 'input');
    const worst =
      fromFile.worstInput || values['worst-input-file'] || values['worst-input']
        ? inputFrom(fromFile.worstInput, values['worst-input-file'], values['worst-input'], 'worst-input')
        : undefined;
    const flag = (name: string, key: keyof CheckSettings) =>
      values[name] !== undefined ? number(values[name], `--${name}`) : (fromFile[key] as number | undefined);
    const runs = flag('runs', 'runs') ?? 5;
    if (!Number.isInteger(runs) || runs < 2 || runs > 100)
      throw new Error('--runs must be a whole number from 2 to 100');
    const html = (values.html as string | undefined) ?? fromFile.html;
    if (html !== undefined) files.html = html;
    const jsonFile = (values['json-file'] as string | undefined) ?? fromFile.jsonFile;
    if (jsonFile !== undefined) files.jsonFile = jsonFile;
    settings = { input, runs, unitsPerAction: flag('units-per-action', 'unitsPerAction') ?? 1 };
    const maxP95 = flag('max-p95', 'maxP95');
    if (maxP95 !== undefined) settings.maxP95 = maxP95;
    const minCosine = flag('min-cosine', 'minCosine');
    if (minCosine !== undefined) settings.minCosine = minCosine;
    if (worst) settings.worstInput = worst;
    const cold = values['cold-start'] ?? fromFile.coldStart;
    if (cold !== undefined) settings.coldStart = coldStartMode(cold, '--cold-start');
    const hardware =
      values.hardware !== undefined ? hardwareList(values.hardware, '--hardware') : fromFile.hardware;
    if (hardware) settings.hardware = hardware;
    const latencyTarget = flag('latency-target', 'latencyTarget');
    if (latencyTarget !== undefined) settings.latencyTarget = latencyTarget;
  } catch (err) {
    return fail((err as Error).message);
  }
  const kc = new KubeConfig();
  if (values.kubeconfig) kc.loadFromFile(values.kubeconfig as string);
  else kc.loadFromDefault();
  const base = (
    (values['api-url'] as string | undefined) ??
    env.MODELPLANE_API_URL ??
    'http://localhost:8000/v1'
  ).replace(/\/+$/, '');
  const token = (values.token as string | undefined) ?? env.MODELPLANE_API_TOKEN ?? env.REPLICATE_API_TOKEN;
  let report: Report;
  // SIGINT: remove the temporary Deployments made so far, then exit 130.
  const kube = new Cluster(kc);
  const temps = new Temporaries(kc);
  const onSigint = () => {
    process.stderr.write('modelplane check: interrupted; removing temporary Deployments\n');
    void temps.removeAll().then((errors) => {
      for (const e of errors) process.stderr.write(`modelplane check: not removed: ${e}\n`);
      process.exit(130);
    });
  };
  process.once('SIGINT', onSigint);
  try {
    report = await check(
      { namespace: m[1]!, name: m[3]! },
      settings,
      new Gateway({ base, ...(token ? { token } : {}) }),
      kube,
      values.json ? undefined : (line) => process.stderr.write(`${line}\n`),
      temps,
    );
  } catch (err) {
    return fail((err as Error).message, 1);
  } finally {
    process.off('SIGINT', onSigint);
  }
  const json = `${JSON.stringify(report, null, 2)}\n`;
  try {
    if (files.jsonFile) writeFileSync(files.jsonFile, json);
    if (files.html) writeFileSync(files.html, renderHtml(report));
  } catch (err) {
    return fail(`writing the report: ${(err as Error).message}`, 1);
  }
  process.stdout.write(values.json ? json : renderTable(report));
  for (const [what, f] of [
    ['JSON', files.jsonFile],
    ['HTML', files.html],
  ] as const)
    if (f) process.stderr.write(`wrote the ${what} report to ${f}\n`);
  return exitStatus(report.rows);
}
