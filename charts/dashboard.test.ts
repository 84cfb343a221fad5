/**
 * The Grafana dashboard in the chart: a ConfigMap for the Grafana sidecar when
 * grafanaDashboard.enabled; its JSON follows the dashboard model's structural rules (checked
 * with ajv), and every query names metrics — and labels — that the operator or the sidecar
 * registers (collected from their registries here, not from a list kept by hand).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Ajv } from 'ajv';
import { type Metric, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { engineMetrics } from '../operator/predictions/metrics.ts';
import { MemoryUsageStore } from '../operator/predictions/usage-store.ts';
import { createLogger, type KubeClient } from '../operator/runtime/index.ts';
import { UsageCollector } from '../operator/usage/collector.ts';
import { SidecarMetrics } from '../sidecar/metrics.ts';
import { chartPath, render } from './testing.ts';

const dashboardFile = join(chartPath, 'dashboards', 'modelplane.json');
const dashboard = JSON.parse(readFileSync(dashboardFile, 'utf8')) as Dashboard;

interface Dashboard {
  uid: string;
  title: string;
  templating: { list: { name: string }[] };
  panels: {
    id: number;
    title: string;
    gridPos: { x: number; y: number; w: number; h: number };
    targets: { expr: string }[];
  }[];
}

/** The structural rules of Grafana's dashboard model (schemaVersion 39) that a provisioned dashboard must keep. */
const DASHBOARD_SCHEMA = {
  type: 'object',
  required: ['title', 'uid', 'schemaVersion', 'panels', 'templating', 'time'],
  properties: {
    title: { type: 'string', minLength: 1 },
    uid: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,40}$' },
    schemaVersion: { type: 'integer', minimum: 36 },
    version: { type: 'integer' },
    editable: { type: 'boolean' },
    graphTooltip: { enum: [0, 1, 2] },
    refresh: { type: 'string' },
    tags: { type: 'array', items: { type: 'string' } },
    time: {
      type: 'object',
      required: ['from', 'to'],
      properties: { from: { type: 'string' }, to: { type: 'string' } },
    },
    templating: {
      type: 'object',
      required: ['list'],
      properties: {
        list: {
          type: 'array',
          items: {
            type: 'object',
            required: ['name', 'type'],
            properties: {
              name: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]*$' },
              type: { enum: ['query', 'datasource', 'custom', 'constant', 'interval', 'textbox', 'adhoc'] },
            },
          },
        },
      },
    },
    panels: {
      type: 'array',
      minItems: 1,
      items: {
        type: 'object',
        required: ['id', 'type', 'title', 'gridPos', 'datasource', 'targets'],
        properties: {
          id: { type: 'integer', minimum: 1 },
          type: { enum: ['timeseries', 'stat', 'gauge', 'bargauge', 'table', 'text', 'row'] },
          title: { type: 'string', minLength: 1 },
          gridPos: {
            type: 'object',
            required: ['h', 'w', 'x', 'y'],
            properties: {
              h: { type: 'integer', minimum: 1 },
              w: { type: 'integer', minimum: 1, maximum: 24 },
              x: { type: 'integer', minimum: 0, maximum: 23 },
              y: { type: 'integer', minimum: 0 },
            },
          },
          datasource: {
            type: 'object',
            required: ['type', 'uid'],
            properties: { type: { const: 'prometheus' }, uid: { type: 'string' } },
          },
          targets: {
            type: 'array',
            minItems: 1,
            items: {
              type: 'object',
              required: ['refId', 'expr'],
              properties: {
                refId: { type: 'string', pattern: '^[A-Z]$' },
                expr: { type: 'string', minLength: 1 },
              },
            },
          },
        },
      },
    },
  },
};

/** Every metric the operator and the sidecar register, by the names Prometheus shows (histogram series included). */
function exported(): Map<string, Metric> {
  const operator = new Registry();
  engineMetrics(operator);
  new UsageCollector({
    client: {} as KubeClient,
    caches: {} as never,
    usage: () => new MemoryUsageStore(),
    registry: operator,
    log: createLogger({ level: 'silent' }),
  });
  const sidecar = new SidecarMetrics(
    { deployment: 'd', version: 'v', hardware: 'h' },
    { instanceSeconds: () => ({}), inflight: () => 0, queued: () => 0, ready: () => true },
  );
  const out = new Map<string, Metric>();
  for (const registry of [operator, sidecar.registry])
    for (const m of registry.getMetricsAsArray()) {
      const name = (m as unknown as { name: string }).name;
      const type = (m as unknown as { type: string }).type;
      out.set(name, m);
      if (type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) out.set(`${name}${s}`, m);
    }
  return out;
}

describe('the Grafana dashboard', () => {
  it('is valid dashboard JSON: the structural rules, unique panel ids, panels that do not overlap', () => {
    const validate = new Ajv({ allErrors: true, strict: false }).compile(DASHBOARD_SCHEMA);
    expect(validate(dashboard), JSON.stringify(validate.errors)).toBe(true);
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++)
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
    }
    expect(dashboard.panels.map((p) => p.title)).toEqual(
      expect.arrayContaining([
        'Predictions per second',
        'Latency p50 / p99',
        'Queue depth',
        'Instances by state',
        'Utilization',
        'Cost per hour',
        'Idle cost per hour',
      ]),
    );
  });

  it('queries only metrics and labels that modelplane exports, per deployment', () => {
    const metrics = exported();
    const variables = new Set(dashboard.templating.list.map((v) => v.name));
    const queries = [
      ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
      ...dashboard.templating.list.flatMap((v) => {
        const q = (v as { query?: unknown }).query;
        return typeof q === 'object' && q ? [(q as { query: string }).query] : [];
      }),
    ];
    let named = 0;
    for (const expr of queries) {
      for (const m of expr.matchAll(/\b(modelplane_[a-z_]+)(\{([^}]*)\})?/g)) {
        named++;
        const metric = metrics.get(m[1]!);
        expect(metric, `${m[1]} in ${expr}`).toBeDefined();
        const labelNames = new Set((metric as unknown as { labelNames: string[] }).labelNames);
        for (const sel of (m[3] ?? '').matchAll(/([a-z_]+)\s*(=~|!=|!~|=)/g))
          expect(labelNames.has(sel[1]!), `label ${sel[1]} of ${m[1]}`).toBe(true);
      }
      for (const v of expr.matchAll(/\$([a-z_]+)/g))
        if (!v[1]!.startsWith('_')) expect(variables.has(v[1]!), `variable $${v[1]}`).toBe(true);
    }
    expect(named).toBeGreaterThanOrEqual(10);
    // Per deployment: every panel's queries filter by the deployment variable.
    for (const p of dashboard.panels)
      for (const t of p.targets) expect(t.expr, p.title).toContain('$deployment');
  });

  it('ships in a ConfigMap for the Grafana sidecar when grafanaDashboard.enabled', async () => {
    expect(
      (await render()).filter((o) => o.kind === 'ConfigMap' && o.metadata.name.endsWith('-dashboard')),
    ).toEqual([]);
    const objs = await render({
      'grafanaDashboard.enabled': true,
      'grafanaDashboard.namespace': 'monitoring',
    });
    const [cm] = objs.filter((o) => o.kind === 'ConfigMap' && o.metadata.name === 'modelplane-dashboard');
    expect(cm?.metadata).toMatchObject({ namespace: 'monitoring', labels: { grafana_dashboard: '1' } });
    expect(JSON.parse((cm as unknown as { data: Record<string, string> }).data['modelplane.json']!)).toEqual(
      dashboard,
    );
  });
});
