/**
 * `GET /v1/usage`: cost and usage over a period, grouped by namespace, model, deployment,
 * hardware, day or instance — what `modelplane usage` prints and dashboards read. Callers see
 * the namespaces whose deployments they may list.
 *
 *   ?by=deployment&since=7d&until=2026-01-08T00:00:00Z&namespace=search&units_per_action=3
 *
 * `since` and `until` are RFC 3339 times or durations before now (`30m`, `24h`, `7d`);
 * `since` defaults to 24h, `until` to now.
 */
import { isDecimal } from '../../lib/decimal.ts';
import { methodNotAllowed } from '../../lib/express.ts';
import { HttpError, invalid, sendJson } from '../../lib/http.ts';
import type { InvalidField } from '../../lib/openapi-input.ts';
import { summarize, USAGE_GROUPS, type UsageGroup, type UsageStore } from '../predictions/usage-store.ts';
import { context } from './server.ts';
import type { Routes } from './types.ts';

const DURATION = /^(\d+)(s|m|h|d|w)$/;
const UNIT_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** A time given as RFC 3339 or as a duration before `now` (`7d`); undefined when neither. */
export function parseTime(text: string, now: number): number | undefined {
  const d = DURATION.exec(text.trim());
  if (d) return now - Number(d[1]) * UNIT_MS[d[2]!]!;
  if (!/^\d{4}-\d{2}-\d{2}/.test(text)) return undefined;
  const t = Date.parse(text);
  return Number.isNaN(t) ? undefined : t;
}

export interface UsageQueryParams {
  by: UsageGroup;
  since: number;
  until: number;
  namespaces?: string[];
  unitsPerAction?: string;
}

/** Reads and checks the query; throws a 422 naming every bad field. */
export function usageParams(url: URL, now: number): UsageQueryParams {
  const q = url.searchParams;
  const bad: InvalidField[] = [];
  const by = (q.get('by') ?? 'deployment') as UsageGroup;
  if (!USAGE_GROUPS.includes(by))
    bad.push({ type: 'enum', field: 'by', description: `by must be one of ${USAGE_GROUPS.join(', ')}` });
  const time = (name: string, fallback: number) => {
    const raw = q.get(name);
    if (raw === null || raw === '') return fallback;
    const t = parseTime(raw, now);
    if (t === undefined)
      bad.push({
        type: 'format',
        field: name,
        description: `${name} must be an RFC 3339 time or a duration before now such as 30m, 24h or 7d`,
      });
    return t ?? fallback;
  };
  const since = time('since', now - 86_400_000);
  const until = time('until', now);
  if (since >= until)
    bad.push({ type: 'range', field: 'since', description: 'since must come before until' });
  const units = q.get('units_per_action') ?? undefined;
  if (units !== undefined && (!isDecimal(units) || units.trim().startsWith('-')))
    bad.push({
      type: 'format',
      field: 'units_per_action',
      description: 'units_per_action must be a non-negative decimal number such as 3 or 1.5',
    });
  if (bad.length) throw invalid(bad, { title: 'Invalid usage query' });
  const namespaces = q.getAll('namespace').filter(Boolean);
  return {
    by,
    since,
    until,
    ...(namespaces.length ? { namespaces } : {}),
    ...(units === undefined ? {} : { unitsPerAction: units.trim() }),
  };
}

export function usageRoutes(deps: { usage: () => UsageStore | undefined; now?: () => number }): Routes {
  const now = deps.now ?? Date.now;
  return (api, { authenticated }) => {
    api
      .route('/usage')
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const p = usageParams(ctx.url, now());
        const allowed = await ctx.namespacesFor('list', 'deployments');
        let namespaces: 'all' | string[] = allowed;
        if (p.namespaces) {
          const refused = allowed === 'all' ? [] : p.namespaces.filter((n) => !allowed.includes(n));
          if (refused.length)
            throw new HttpError(
              403,
              'Forbidden',
              `this caller may not read usage in namespace ${refused.join(', ')}`,
            );
          namespaces = p.namespaces;
        }
        const store = deps.usage();
        if (!store)
          throw new HttpError(
            503,
            'Store not open',
            'the usage store is not open yet',
            {},
            { 'retry-after': '1' },
          );
        const q = { since: p.since, until: p.until, namespaces };
        const [buckets, instances] = await Promise.all([store.buckets(q), store.instances(q)]);
        sendJson(res, 200, {
          by: p.by,
          since: new Date(p.since).toISOString(),
          until: new Date(p.until).toISOString(),
          ...(p.unitsPerAction ? { units_per_action: p.unitsPerAction } : {}),
          results: summarize(p.by, buckets, instances, { unitsPerAction: p.unitsPerAction }),
        });
      })
      .all(methodNotAllowed);
  };
}

/**
 * Predictions per model (`namespace/name`) over all the usage records, for `run_count`: read
 * at most every `maxAgeMs` (default 30 s), in the background; until the first read, none.
 */
export class RunCounts {
  private counts: Record<string, number> = {};
  private readAt = Number.NEGATIVE_INFINITY;
  private reading: Promise<void> | undefined;
  private readonly usage: () => UsageStore | undefined;
  private readonly maxAgeMs: number;

  constructor(usage: () => UsageStore | undefined, maxAgeMs = 30_000) {
    this.usage = usage;
    this.maxAgeMs = maxAgeMs;
  }

  /** The count of `model`, as last read; starts a read when the last one is old. */
  get(model: string): number {
    this.refresh();
    return this.counts[model] ?? 0;
  }

  /** Reads the counts again (when old, or `force`); resolves when read. */
  refresh(force = false): Promise<void> {
    const store = this.usage();
    if (!store) return Promise.resolve();
    if (this.reading) return this.reading;
    if (!force && Date.now() - this.readAt < this.maxAgeMs) return Promise.resolve();
    this.reading = store
      .runCounts()
      .then((c) => {
        this.counts = c;
        this.readAt = Date.now();
      })
      .catch(() => {})
      .finally(() => {
        this.reading = undefined;
      });
    return this.reading;
  }
}
