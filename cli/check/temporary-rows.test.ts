import { describe, expect, it } from 'vitest';
import type { HardwareRun } from './report.ts';
import {
  cheapest,
  coldStartPhases,
  coldStartRow,
  hardwareRow,
  hardwareRun,
  MAX_TEMP_NAME,
  podStates,
  refine,
  temporaryName,
} from './temporary-rows.ts';

const T0 = Date.parse('2026-12-04T10:00:00.250Z');
const at = (s: number) => T0 + s * 1000;

describe('coldStartPhases', () => {
  it('splits request → scheduled → started → ready → answered', () => {
    const r = coldStartPhases(
      T0,
      { created: at(0.75), scheduled: at(1.75), started: at(3.75), ready: at(10.75) },
      at(11.5),
    );
    expect(r.total).toBeCloseTo(11.5, 9);
    expect(r.podCreated).toBeCloseTo(0.75, 9);
    expect(r.phases.map((p) => [p.name, p.start, p.end])).toEqual([
      ['scheduling', 0, 1.75],
      ['container start', 1.75, 3.75],
      ['model setup', 3.75, 10.75],
      ['first prediction', 10.75, 11.5],
    ]);
  });

  it('clamps whole-second timestamps so the phases stay in order and add up to the total', () => {
    // The API server rounds down: "scheduled" before the request, "ready" after the answer.
    const r = coldStartPhases(
      T0,
      { created: at(-0.25), scheduled: at(-0.25), started: at(2.75), ready: at(6.75) },
      at(6.5),
    );
    expect(r.phases.map((p) => [p.start, p.end])).toEqual([
      [0, 0],
      [0, 2.75],
      [2.75, 6.5],
      [6.5, 6.5],
    ]);
    expect(r.podCreated).toBe(0);
    const sum = r.phases.reduce((a, p) => a + p.end - p.start, 0);
    expect(sum).toBeCloseTo(r.total, 9);
  });

  it('gives the cold start row its total and phases', () => {
    const c = coldStartPhases(T0, { created: at(1), scheduled: at(1), started: at(2), ready: at(5) }, at(6));
    const row = coldStartRow({ on: 'temporary', deployment: 'embed-check-cold-ab12c', ...c });
    expect(row).toMatchObject({
      check: 'cold start',
      verdict: 'pass',
      figure:
        '6.000s (scheduling 1.000s, container start 1.000s, model setup 3.000s, first prediction 1.000s)',
    });
    expect(row.detail).toContain('removed afterwards');
    expect(coldStartRow({ error: 'boom' })).toMatchObject({ verdict: 'fail', detail: 'boom' });
    expect(coldStartRow({ skipped: 'no' }).verdict).toBe('skip');
  });
});

describe('temporaryName', () => {
  const dns = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
  it('is <name>-check-<hw>-<suffix>', () => {
    expect(temporaryName('embed', 'gpu-t4', 'ab12c')).toBe('embed-check-gpu-t4-ab12c');
  });
  it('cuts long names to a DNS label of at most MAX_TEMP_NAME characters', () => {
    const n = temporaryName('a'.repeat(60), 'gpu-a100-80gb-8x.large', 'zz9yx');
    expect(n.length).toBeLessThanOrEqual(MAX_TEMP_NAME);
    expect(n).toMatch(dns);
    expect(n).toContain('-check-gpu-a100');
    expect(n.endsWith('-zz9yx')).toBe(true);
  });
  it('never ends a cut part with a dash, and makes other characters dashes', () => {
    const n = temporaryName(`${'b'.repeat(19)}-${'c'.repeat(40)}`, 'GPU.T4', 'q1w2e');
    expect(n).toMatch(dns);
    expect(n).not.toContain('--');
    expect(n).toContain('gpu-t4');
  });
  it('differs by suffix', () => {
    expect(temporaryName('m', 'cpu', 'aaaaa')).not.toBe(temporaryName('m', 'cpu', 'bbbbb'));
  });
});

const run = (hardware: string, pricePerSecond: string, predict: number[], total: number[], target?: number) =>
  hardwareRun({
    hardware,
    temporary: hardware !== 'cpu',
    pricing: undefined,
    pricePerSecond,
    predictions: predict.map((p, i) => ({ predictTime: p, totalTime: total[i]! })),
    unitsPerAction: 3,
    minInstances: 1,
    ...(target !== undefined ? { latencyTarget: target } : {}),
  });

describe('hardwareRun', () => {
  it('costs as the sidecar meters: predict seconds × price, mean, × units per action; idle per hour', () => {
    const r = run('gpu-t4', '0.000225', [1, 3], [1.5, 3.5], 3);
    expect(r.costPerPrediction).toBe('0.00045');
    expect(r.costPerAction).toBe('0.00135');
    expect(r.idleCostPerHour).toBe('0.81');
    expect(r.meetsTarget).toBe(false);
    expect(r.error).toBeUndefined();
  });
  it('says when nothing succeeded', () => {
    expect(run('cpu', '0.0001', [], []).error).toBe('no prediction succeeded');
  });
});

describe('cheapest and the hardware row', () => {
  const cpu = run('cpu', '0.000100', [2, 2], [2.2, 2.4], 3);
  const t4 = run('gpu-t4', '0.000225', [1, 1], [1.1, 1.2], 3);
  const slowT4 = run('gpu-t4', '0.000225', [0.5, 0.5], [0.6, 0.7], 0.5);
  const slowCpu = run('cpu', '0.000100', [2, 2], [2.2, 2.4], 1);

  it('picks the cheapest meeting the target', () => {
    expect(cheapest([cpu, t4], 3)?.hardware).toBe('cpu');
    expect(cheapest([slowCpu, run('gpu-t4', '0.000225', [0.5, 0.5], [0.6, 0.7], 1)], 1)?.hardware).toBe(
      'gpu-t4',
    );
    expect(cheapest([slowCpu, slowT4], 0.5)).toBeUndefined();
    expect(cheapest([t4, cpu])?.hardware).toBe('cpu');
  });
  it('keeps the earlier on a tie', () => {
    const a = run('cpu', '0.0001', [1], [1]);
    const b = run('other', '0.0001', [1], [1]);
    expect(cheapest([a, b])).toBe(a);
  });
  it('passes when the current hardware is the cheapest meeting the target', () => {
    const row = hardwareRow([cpu, t4], 3);
    expect(row.verdict).toBe('pass');
    expect(row.figure).toContain('cpu $0.0002/prediction');
    expect(row.detail).toContain('cpu is the cheapest');
  });
  it('warns naming the cheaper hardware that meets it', () => {
    const row = hardwareRow([t4, cpu], 3);
    expect(row.verdict).toBe('warn');
    expect(row.detail).toContain('cpu is cheaper');
  });
  it('warns naming a dearer one when the current misses the target', () => {
    const fastT4 = run('gpu-t4', '0.000225', [0.5, 0.5], [0.6, 0.7], 1);
    const row = hardwareRow([slowCpu, fastT4], 1);
    expect(row.verdict).toBe('warn');
    expect(row.detail).toContain('gpu-t4');
    expect(row.detail).toContain('cpu does not meet the target');
  });
  it('warns when none meets it, or one could not be measured', () => {
    expect(hardwareRow([slowCpu, slowT4], 0.5).verdict).toBe('warn');
    const broken: HardwareRun = { ...run('gpu-t4', '0.000225', [], []), error: 'timed out' };
    const row = hardwareRow([cpu, broken], 3);
    expect(row.verdict).toBe('warn');
    expect(row.detail).toContain('gpu-t4: timed out');
  });
});

describe('refine and podStates', () => {
  it('puts a watch sighting inside the whole second the API stamped', () => {
    const api = { created: at(1), scheduled: at(1), started: at(2), ready: at(5) };
    // Seen within the second: kept. Seen late (after the second): the second's end.
    const r = refine(api, { created: at(1.2), scheduled: at(1.3), started: at(3.5), ready: at(5.4) });
    expect(r.created).toBe(at(1.2));
    expect(r.scheduled).toBe(at(1.3));
    expect(r.started).toBe(at(2) + 999);
    expect(r.ready).toBe(at(5.4));
    // Not seen: the API's time.
    expect(refine(api, {})).toEqual(api);
  });
  it('names the states a pod has reached', () => {
    expect(podStates({})).toEqual(['created']);
    expect(
      podStates({
        status: {
          conditions: [
            { type: 'PodScheduled', status: 'True' },
            { type: 'Ready', status: 'False' },
          ],
          containerStatuses: [{ state: { running: {} } }, { state: {} }],
        },
      }),
    ).toEqual(['created', 'scheduled']);
    expect(
      podStates({
        status: {
          conditions: [
            { type: 'PodScheduled', status: 'True' },
            { type: 'Ready', status: 'True' },
          ],
          containerStatuses: [{ state: { running: {} } }, { state: { running: {} } }],
        },
      }),
    ).toEqual(['created', 'scheduled', 'started', 'ready']);
  });
});
