/**
 * `modelplane usage`: cost and usage over a period, from the gateway's `GET /v1/usage` —
 * by namespace, model, deployment, hardware, day or instance, with idle cost and utilization,
 * as a table, CSV or JSON; `--units-per-action N` adds the cost of one user action.
 */
import { parseArgs } from 'node:util';
import type { UsageSummary } from '../operator/predictions/usage-store.ts';

export const USAGE_HELP = `Usage: modelplane usage [flags]

Cost and usage of model deployments over a period, from the gateway (GET /v1/usage).

Flags:
  --by GROUP              namespace | model | deployment | hardware | day | instance (default deployment)
  --since TIME            RFC 3339 time, or a duration before now: 30m, 24h, 7d (default 24h)
  --until TIME            end of the period, same forms (default now)
  --namespace NS          only this namespace (repeatable)
  --units-per-action N    units (predictions) one user action takes: adds the cost per action
  -o, --output FORMAT     table (default), csv or json
  --api-url URL           the gateway's API base, /v1 included
                          (MODELPLANE_API_URL; default http://localhost:8000/v1)
  --token TOKEN           API token (MODELPLANE_API_TOKEN or REPLICATE_API_TOKEN)
  -h, --help              show this help
`;

/** One row of `GET /v1/usage`: the gateway's summary of a group. */
export type UsageRow = UsageSummary;

export interface UsageAnswer {
  by: string;
  since: string;
  until: string;
  units_per_action?: string;
  results: UsageRow[];
}

const COLUMNS: Array<[keyof UsageRow, string]> = [
  ['key', 'KEY'],
  ['instances', 'INSTANCES'],
  ['setup_seconds', 'SETUP S'],
  ['idle_seconds', 'IDLE S'],
  ['busy_seconds', 'BUSY S'],
  ['down_seconds', 'DOWN S'],
  ['utilization', 'UTILIZATION'],
  ['predictions', 'PREDICTIONS'],
  ['instance_cost', 'INSTANCE COST'],
  ['idle_cost', 'IDLE COST'],
  ['prediction_cost', 'PREDICTION COST'],
  ['cost_per_prediction', 'COST/PREDICTION'],
  ['cost_per_action', 'COST/ACTION'],
];

function columns(a: UsageAnswer): Array<[keyof UsageRow, string]> {
  return a.units_per_action === undefined ? COLUMNS.filter(([k]) => k !== 'cost_per_action') : COLUMNS;
}

function cell(row: UsageRow, k: keyof UsageRow): string {
  const v = row[k];
  if (v === null || v === undefined) return '-';
  if (k === 'utilization') return `${(Number(v) * 100).toFixed(1)}%`;
  return String(v);
}

/** A table like kubectl's: a header, columns padded to their widest cell. */
export function renderTable(a: UsageAnswer): string {
  const cols = columns(a);
  const rows = [
    cols.map(([, h]) => (h === 'KEY' ? a.by.toUpperCase() : h)),
    ...a.results.map((r) => cols.map(([k]) => cell(r, k))),
  ];
  const widths = cols.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('   '));
  return `${lines.join('\n')}\n`;
}

function csvCell(v: unknown): string {
  const s = v === null || v === undefined ? '' : String(v);
  return /[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
}

/** CSV with the JSON field names as its header; numbers and exact decimals as they are. */
export function renderCsv(a: UsageAnswer): string {
  const keys = columns(a).map(([k]) => k);
  const header = keys.map((k) => (k === 'key' ? a.by : k));
  return `${[header, ...a.results.map((r) => keys.map((k) => r[k]))].map((r) => r.map(csvCell).join(',')).join('\n')}\n`;
}

export async function run(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        by: { type: 'string' },
        since: { type: 'string' },
        until: { type: 'string' },
        namespace: { type: 'string', multiple: true },
        'units-per-action': { type: 'string' },
        output: { type: 'string', short: 'o' },
        'api-url': { type: 'string' },
        token: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(`modelplane usage: ${(err as Error).message}\n\n${USAGE_HELP}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE_HELP);
    return 0;
  }
  const output = (values.output as string | undefined) ?? 'table';
  if (!['table', 'csv', 'json'].includes(output)) {
    process.stderr.write(`modelplane usage: --output must be table, csv or json, not "${output}"\n`);
    return 2;
  }
  const base = (
    (values['api-url'] as string | undefined) ??
    env.MODELPLANE_API_URL ??
    'http://localhost:8000/v1'
  ).replace(/\/+$/, '');
  const token = (values.token as string | undefined) ?? env.MODELPLANE_API_TOKEN ?? env.REPLICATE_API_TOKEN;
  const url = new URL(`${base}/usage`);
  for (const [flag, param] of [
    ['by', 'by'],
    ['since', 'since'],
    ['until', 'until'],
    ['units-per-action', 'units_per_action'],
  ] as const) {
    const v = values[flag] as string | undefined;
    if (v !== undefined) url.searchParams.set(param, v);
  }
  for (const ns of (values.namespace as string[] | undefined) ?? []) url.searchParams.append('namespace', ns);
  let res: Response;
  try {
    res = await fetch(url, { headers: token ? { authorization: `Bearer ${token}` } : {} });
  } catch (err) {
    process.stderr.write(`modelplane usage: cannot reach ${base}: ${(err as Error).message}\n`);
    return 1;
  }
  const body = (await res.json().catch(() => ({}))) as UsageAnswer & { title?: string; detail?: string };
  if (!res.ok) {
    process.stderr.write(
      `modelplane usage: ${res.status} ${body.title ?? res.statusText}: ${body.detail ?? ''}\n`,
    );
    return 1;
  }
  process.stdout.write(
    output === 'json'
      ? `${JSON.stringify(body, null, 2)}\n`
      : output === 'csv'
        ? renderCsv(body)
        : renderTable(body),
  );
  return 0;
}
