/**
 * `modelplane check --hardware` and the cold start, end to end on the local cluster: the
 * `embed` example (examples/dev/embed.yaml, on `cpu`) is compared with `gpu-t4`, both real
 * Cog servers on the pod runner's nodes; the cold start is measured on a temporary Deployment
 * at zero instances. Afterwards no temporary Deployment, and no pod of one, is left (read
 * through the Kubernetes API).
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { CoreV1Api, CustomObjectsApi, KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Report } from '../../cli/check/report.ts';
import { CHECK_LABEL } from '../../cli/check/temporary.ts';
import { GROUP, LABEL, PLURAL, VERSION } from '../../crds/constants.ts';
import { type Dev, startDev } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { runCheck } from './check-cli.ts';

const NS = `check-hw-${process.pid}`;

let dev: Dev;

const check = (...args: string[]) => runCheck(dev, args);

describe('modelplane check on embed: cold start, cpu against gpu-t4', () => {
  beforeAll(async () => {
    dev = await startDev({
      gatewayPort: 0,
      namespace: NS,
      examples: [join(repoRoot, 'examples', 'dev', 'embed.yaml')],
      logDir: join(repoRoot, '.modelplane', 'e2e', NS),
      log: (l) => process.stderr.write(`dev: ${l}\n`),
    });
  }, 600_000);
  afterAll(async () => {
    await dev?.stop();
  });

  it('measures both hardware classes and the cold start, and leaves no temporary Deployment', async () => {
    const { code, out } = await check(
      `${NS}/embed`,
      '--input',
      'text=hello world',
      '--runs',
      '3',
      '--hardware',
      'gpu-t4',
      '--latency-target',
      '120',
      '--json',
    );
    process.stderr.write(`modelplane check --json:\n${out}\n`);
    const report = JSON.parse(out) as Report;
    const by = Object.fromEntries(report.rows.map((r) => [r.check, r]));

    // Both hardware classes measured for real: predict times > 0, costs present.
    const hw = report.data.hardware!;
    expect(hw.map((h) => [h.hardware, h.temporary])).toEqual([
      ['cpu', false],
      ['gpu-t4', true],
    ]);
    for (const h of hw) {
      expect(h.error, h.hardware).toBeUndefined();
      expect(h.predictTimes).toHaveLength(3);
      for (const p of h.predictTimes) expect(p, h.hardware).toBeGreaterThan(0);
      expect(Number(h.costPerPrediction), h.hardware).toBeGreaterThan(0);
      expect(Number(h.costPerAction), h.hardware).toBeGreaterThan(0);
      expect(h.idleCostPerHour).toMatch(/^\d+(\.\d+)?$/);
      expect(h.meetsTarget, h.hardware).toBe(true);
    }
    // cpu costs $0.0001/s, gpu-t4 $0.000225/s: the row names the cheapest that meets the target.
    const cheaper = Number(hw[0]!.costPerPrediction) <= Number(hw[1]!.costPerPrediction) ? 'cpu' : 'gpu-t4';
    expect(by.hardware!.verdict).toBe(cheaper === 'cpu' ? 'pass' : 'warn');
    expect(by.hardware!.detail).toContain(cheaper);

    // The cold start: four phases in order, from the request (0) to the answer (total).
    const cs = report.data.coldStart!;
    expect(by['cold start']?.verdict).toBe('pass');
    expect(cs.on).toBe('temporary');
    expect(cs.phases.map((p) => p.name)).toEqual([
      'scheduling',
      'container start',
      'model setup',
      'first prediction',
    ]);
    expect(cs.phases[0]!.start).toBe(0);
    for (let i = 0; i < cs.phases.length; i++) {
      const p = cs.phases[i]!;
      expect(p.end).toBeGreaterThanOrEqual(p.start);
      if (i > 0) expect(p.start).toBe(cs.phases[i - 1]!.end);
    }
    const sum = cs.phases.reduce((a, p) => a + (p.end - p.start), 0);
    expect(Math.abs(sum - cs.total)).toBeLessThan(0.001);
    expect(cs.total).toBeGreaterThan(0);
    // Model setup (embed loads its model) takes time a cold start must include.
    expect(cs.phases[2]!.end - cs.phases[2]!.start + cs.phases[1]!.end - cs.phases[1]!.start).toBeGreaterThan(
      0,
    );

    // The report says which temporary Deployments it made and removed: the cold one, gpu-t4's.
    expect(report.data.temporaries?.removed).toHaveLength(2);
    expect(report.data.temporaries?.removed).toContain(cs.deployment);
    expect(report.data.temporaries?.removed).toContain(hw[1]!.deployment);
    expect(by.hardware!.detail).toContain(`temporary Deployments ${hw[1]!.deployment} removed`);

    // Nothing of them left in the cluster.
    const kc = new KubeConfig();
    kc.loadFromFile(dev.kubeconfig);
    const left = (await kc.makeApiClient(CustomObjectsApi).listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace: NS,
      plural: PLURAL.Deployment,
    })) as { items: Array<{ metadata: { name: string; labels?: Record<string, string> } }> };
    expect(left.items.map((d) => d.metadata.name)).toEqual(['embed']);
    expect(left.items.filter((d) => d.metadata.labels?.[CHECK_LABEL])).toEqual([]);
    const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({ namespace: NS });
    const owners = pods.items.map((p) => p.metadata?.labels?.[LABEL.deployment]);
    expect(owners.filter((o) => o !== 'embed')).toEqual([]);
    expect(code).toBe(0);
  }, 900_000);

  it('removes its temporary Deployment when interrupted with SIGINT', async () => {
    const kc = new KubeConfig();
    kc.loadFromFile(dev.kubeconfig);
    const custom = kc.makeApiClient(CustomObjectsApi);
    const temporaries = async () =>
      (
        (await custom.listNamespacedCustomObject({
          group: GROUP,
          version: VERSION,
          namespace: NS,
          plural: PLURAL.Deployment,
          labelSelector: CHECK_LABEL,
        })) as { items: Array<{ metadata: { name: string } }> }
      ).items.map((d) => d.metadata.name);
    const child = spawn(
      process.execPath,
      [
        join(repoRoot, 'cli', 'modelplane.ts'),
        'check',
        `${NS}/embed`,
        '--input',
        'text=hi',
        '--runs',
        '2',
        '--cold-start',
        'skip',
        '--hardware',
        'gpu-t4',
        '--kubeconfig',
        dev.kubeconfig,
      ],
      {
        env: { ...process.env, MODELPLANE_API_URL: `${dev.gatewayUrl}/v1`, MODELPLANE_API_TOKEN: dev.token },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.on('data', (b) => {
      stderr += String(b);
    });
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    // Interrupt once its temporary Deployment exists.
    const deadline = Date.now() + 300_000;
    let made = await temporaries();
    while (made.length === 0) {
      expect(Date.now(), `no temporary Deployment appeared; stderr:\n${stderr}`).toBeLessThan(deadline);
      expect(child.exitCode, stderr).toBeNull();
      await new Promise((r) => setTimeout(r, 200));
      made = await temporaries();
    }
    expect(made[0]).toMatch(/^embed-check-gpu-t4-[a-z0-9]{5}$/);
    child.kill('SIGINT');
    expect(await exited, stderr).toBe(130);
    expect(stderr).toContain('interrupted; removing temporary Deployments');
    expect(await temporaries()).toEqual([]);
    const pods = await kc.makeApiClient(CoreV1Api).listNamespacedPod({
      namespace: NS,
      labelSelector: `${LABEL.deployment}=${made[0]}`,
    });
    expect(pods.items).toEqual([]);
  }, 600_000);
});
