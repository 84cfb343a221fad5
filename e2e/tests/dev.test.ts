/**
 * `modelplane dev` end to end, as a new user runs it: the real command in a child process on
 * a cluster of its own, the printed token and URL used by the official `replicate` client,
 * kubectl on the printed kubeconfig; `kill -9` of the operator with predictions under way (it
 * is restarted and every one finishes); then Ctrl-C (SIGINT), after which nothing it started
 * runs.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Replicate, { type Prediction } from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kubectl } from '../../dev/dev.ts';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { freePort, waitFor } from '../../harness/processes.ts';
import { spawnTethered } from '../../harness/tether.ts';

const NS = 'dev-e2e';
let child: ChildProcess;
let stdout = '';
let stderr = '';
let exited: Promise<number | null>;
let gateway = '';
let token = '';
let kubeconfig = '';
let replicate: Replicate;
let gatewayPort = 0;
/** The prediction store of this run's operator (the default one may be in use by a `make dev`). */
const storeDir = mkdtempSync(join(tmpdir(), 'dev-e2e-store-'));

/** Every process whose command line or environment mentions `needle` (but this test's own). */
function processesWith(needle: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    if (Number(pid) === process.pid) continue;
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
      if (cmd.includes(needle) || env.includes(needle)) found.push(`${pid}: ${cmd.slice(0, 200)}`);
    } catch {}
  }
  return found;
}

const k = (...args: string[]) => kubectl(kubeconfig, args);

function workloadReplicas(name: string): number {
  return Number(k('get', 'deployments.apps', name, '-n', NS, '-o', 'jsonpath={.spec.replicas}') || '0');
}

describe('modelplane dev', () => {
  beforeAll(async () => {
    const port = await freePort();
    gatewayPort = port;
    child = spawnTethered(
      process.execPath,
      [
        join(repoRoot, 'cli', 'modelplane.ts'),
        'dev',
        `--port=${port}`,
        `--namespace=${NS}`,
        `--store-dir=${storeDir}`,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, MODELPLANE_LOG_LEVEL: 'warn' },
      },
    );
    child.stdout?.on('data', (b: Buffer) => {
      stdout += b.toString();
    });
    child.stderr?.on('data', (b: Buffer) => {
      stderr += b.toString();
    });
    exited = new Promise((resolve) => child.on('exit', (code) => resolve(code)));
    await waitFor(
      'modelplane dev to print how to call the models',
      () => {
        if (child.exitCode !== null) throw new Error(`modelplane dev exited ${child.exitCode}:\n${stderr}`);
        return /API token\s+\S+/.test(stdout) && /kubeconfig\s+export KUBECONFIG=\S+/.test(stdout);
      },
      { timeoutMs: 540_000, intervalMs: 250 },
    ).catch((err) => {
      throw new Error(`${(err as Error).message}\n--- its stderr:\n${stderr}`);
    });
    gateway = /gateway\s+(http:\S+)\/v1/.exec(stdout)?.[1] ?? '';
    token = /API token\s+(\S+)/.exec(stdout)?.[1] ?? '';
    kubeconfig = /export KUBECONFIG=(\S+)/.exec(stdout)?.[1] ?? '';
    replicate = new Replicate({ auth: token, baseUrl: `${gateway}/v1` });
  }, 600_000);

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
    rmSync(storeDir, { recursive: true, force: true });
  });

  it('prints the gateway URL, a token, a curl example, a replicate snippet and kubectl commands', () => {
    expect(gateway).toBe(`http://127.0.0.1:${new URL(gateway).port}`);
    expect(token).toMatch(/^mp_/);
    expect(stdout).toContain(`curl -s -X POST ${gateway}/v1/models/${NS}/echo/predictions`);
    expect(stdout).toContain(`new Replicate({ auth: '${token}', baseUrl: '${gateway}/v1' })`);
    expect(stdout).toContain('kubectl get deployments.modelplane.dev');
  });

  it('answers the printed curl example', async () => {
    const res = await fetch(`${gateway}/v1/models/${NS}/echo/predictions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', prefer: 'wait' },
      body: JSON.stringify({ input: { text: 'hello' } }),
    });
    expect(res.status).toBe(201);
    const body = (await res.json()) as { status: string; output: unknown };
    expect(body.status).toBe('succeeded');
    expect(body.output).toBe('hello');
  });

  it('serves a 384-dimension embedding from embed and an echo from echo to the replicate client', async () => {
    const vector = (await replicate.run(`${NS}/embed`, {
      input: { text: 'a sentence to embed' },
    })) as number[];
    expect(Array.isArray(vector)).toBe(true);
    expect(vector).toHaveLength(384);
    const norm = Math.sqrt(vector.reduce((s, v) => s + v * v, 0));
    expect(norm).toBeCloseTo(1, 3);
    expect(await replicate.run(`${NS}/echo`, { input: { text: 'back again', repeat: 2 } })).toBe(
      'back againback again',
    );
  });

  it('serves upscale: a 3x2 PNG in (a data: URI), a 6x4 PNG out at a signed URL that needs no token', async () => {
    // A 3x2 8-bit greyscale PNG.
    const input =
      'iVBORw0KGgoAAAANSUhEUgAAAAMAAAACCAAAAAC4HznGAAAADklEQVR4nGPgSjnBAMQACDwCbX6/OEwAAAAASUVORK5CYII=';
    const res = await fetch(`${gateway}/v1/models/${NS}/upscale/predictions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', prefer: 'wait' },
      body: JSON.stringify({ input: { image: `data:image/png;base64,${input}`, scale: 2 } }),
    });
    const body = (await res.json()) as { status: string; output: string; error?: string };
    expect(res.status, JSON.stringify(body).slice(0, 500)).toBe(201);
    expect(body.status, body.error).toBe('succeeded');
    // The model server uploaded its output file through the sidecar into the files store.
    expect(body.output.startsWith(`${gateway}/v1/files/`), body.output).toBe(true);
    const file = await fetch(body.output);
    expect(file.status).toBe(200);
    expect(file.headers.get('content-type')).toBe('image/png');
    const png = Buffer.from(await file.arrayBuffer());
    expect(png.subarray(1, 4).toString('ascii')).toBe('PNG');
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([6, 4]);
  });

  it('takes a minInstances: 0 deployment from 0 to 1 for a prediction, and back to 0 when idle', async () => {
    const file = join(repoRoot, '.modelplane', 'dev', 'echo-zero.yaml');
    writeFileSync(
      file,
      `apiVersion: modelplane.dev/v1alpha1
kind: Deployment
metadata:
  name: echo-zero
spec:
  model: echo
  version: echo-v1
  hardware: gpu-t4
  minInstances: 0
  maxInstances: 1
  scaling:
    stableWindowSeconds: 6
    scaleDownDelaySeconds: 0
    scaleToZeroAfterSeconds: 3
`,
    );
    k('apply', '--server-side', '-n', NS, '-f', file);
    await waitFor('echo-zero to exist with 0 replicas', () => {
      try {
        return workloadReplicas('echo-zero') === 0;
      } catch {
        return false;
      }
    });
    expect(k('get', 'pods', '-n', NS, '-l', 'modelplane.dev/deployment=echo-zero', '-o', 'name').trim()).toBe(
      '',
    );

    const prediction = await replicate.deployments.predictions.create(NS, 'echo-zero', {
      input: { text: 'wake up' },
    });
    const done = await waitFor(
      'the prediction on echo-zero to finish',
      async () => {
        const p = await replicate.predictions.get(prediction.id);
        return ['succeeded', 'failed', 'canceled'].includes(p.status) ? p : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 200 },
    );
    expect(done.status).toBe('succeeded');
    expect(done.output).toBe('wake up');

    await waitFor(
      'echo-zero to go back to 0 replicas and no pods',
      () => {
        const pods = k(
          'get',
          'pods',
          '-n',
          NS,
          '-l',
          'modelplane.dev/deployment=echo-zero',
          '-o',
          'name',
        ).trim();
        return workloadReplicas('echo-zero') === 0 && pods === '';
      },
      { timeoutMs: 90_000, intervalMs: 500 },
    );
    const events = k(
      'get',
      'events',
      '-n',
      NS,
      '--field-selector',
      'involvedObject.name=echo-zero',
      '-o',
      'jsonpath={.items[*].reason}',
    );
    expect(events).toContain('ScaledFromZero');
    expect(events).toContain('ScaledToZero');
  });

  it('restarts the operator after kill -9; every prediction accepted before finishes and is readable', async () => {
    // `sleep` with two slots on one instance: of six predictions, two run and four wait.
    const file = join(repoRoot, '.modelplane', 'dev', 'sleep.yaml');
    writeFileSync(
      file,
      `apiVersion: modelplane.dev/v1alpha1
kind: Model
metadata:
  name: sleep
spec:
  defaultHardware: gpu-t4
  deployment: sleep
---
apiVersion: modelplane.dev/v1alpha1
kind: ModelVersion
metadata:
  name: sleep-v1
spec:
  model: sleep
  image: modelplane.local/sleep:dev
  maxConcurrency: 2
---
apiVersion: modelplane.dev/v1alpha1
kind: Deployment
metadata:
  name: sleep
spec:
  model: sleep
  version: sleep-v1
  hardware: gpu-t4
  minInstances: 1
  maxInstances: 1
`,
    );
    k('apply', '--server-side', '-n', NS, '-f', file);
    try {
      await waitFor(
        'deployment sleep to be Ready',
        () =>
          k(
            'get',
            'deployments.modelplane.dev',
            'sleep',
            '-n',
            NS,
            '-o',
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
          ) === 'True',
        { timeoutMs: 120_000, intervalMs: 500 },
      );
      const accepted: Prediction[] = [];
      for (let i = 0; i < 6; i++)
        accepted.push(await replicate.deployments.predictions.create(NS, 'sleep', { input: { seconds: 3 } }));
      // Killed with predictions on the instance and in the queue.
      await waitFor(
        'two predictions to run on the instance',
        async () => {
          const now = await Promise.all(accepted.map((p) => replicate.predictions.get(p.id)));
          return now.filter((p) => p.status === 'processing').length === 2;
        },
        { timeoutMs: 30_000, intervalMs: 100 },
      );

      const flag = `--gateway-address=127.0.0.1:${gatewayPort}`;
      const before = processesWith(flag);
      expect(before, 'one operator process').toHaveLength(1);
      const pid = Number(before[0]!.split(':')[0]);
      process.kill(pid, 'SIGKILL');
      await waitFor(
        'modelplane dev to say it restarts the operator, then that it is ready again',
        () =>
          stderr.includes('the operator exited (signal SIGKILL); restarting it') &&
          stderr.includes('the operator is ready again (restart 1)'),
        { timeoutMs: 90_000, intervalMs: 100 },
      );
      const after = processesWith(flag);
      expect(after).toHaveLength(1);
      expect(Number(after[0]!.split(':')[0])).not.toBe(pid);

      const done = await waitFor(
        'every prediction accepted before the kill to finish',
        async () => {
          const now = await Promise.all(accepted.map((p) => replicate.predictions.get(p.id)));
          return now.every((p) => ['succeeded', 'failed', 'canceled'].includes(p.status)) ? now : undefined;
        },
        { timeoutMs: 90_000, intervalMs: 250 },
      );
      for (const p of done) {
        expect(p.status, `${p.id}: ${p.error}`).toBe('succeeded');
        expect(p.output).toMatch(/^slept 3(\.0)? s$/);
        // Run once on the model server: one "sleeping" line in its logs.
        expect(p.logs?.match(/sleeping/g) ?? []).toHaveLength(1);
      }
      // Listed too, by the restarted operator.
      const listed = new Set<string>();
      for await (const page of replicate.paginate(() => replicate.predictions.list()))
        for (const p of page) listed.add(p.id);
      for (const p of accepted) expect(listed.has(p.id), p.id).toBe(true);
      // It serves new predictions as before.
      expect(await replicate.run(`${NS}/echo`, { input: { text: 'after the restart' } })).toBe(
        'after the restart',
      );
    } finally {
      k('delete', '-n', NS, '-f', file);
    }
  }, 300_000);

  it('removes every child when the Model and its Deployments are deleted', async () => {
    const selector = 'modelplane.dev/deployment in (echo,echo-zero)';
    const children = () =>
      k('get', 'deployments.apps,replicasets,pods,secrets', '-n', NS, '-l', selector, '-o', 'name')
        .trim()
        .split('\n')
        .filter(Boolean);
    expect(children().length).toBeGreaterThan(0);
    k('delete', 'models.modelplane.dev', 'echo', '-n', NS, '--wait=false');
    k('delete', 'deployments.modelplane.dev', 'echo', 'echo-zero', '-n', NS, '--wait=false');
    await waitFor('every child to be gone', () => children().length === 0, {
      timeoutMs: 120_000,
      intervalMs: 500,
    });
    expect(k('get', 'deployments.modelplane.dev', '-n', NS, '-o', 'name').trim().split('\n')).toEqual([
      'deployment.modelplane.dev/embed',
      'deployment.modelplane.dev/upscale',
    ]);
  });

  it('stops everything it started on Ctrl-C', async () => {
    const clusterDir = kubeconfig.slice(0, kubeconfig.lastIndexOf('/'));
    expect(processesWith(clusterDir).length).toBeGreaterThan(0);
    // embed still runs: its model server and sidecar are processes on its pod's address.
    const podIp = k(
      'get',
      'pods',
      '-n',
      NS,
      '-l',
      'modelplane.dev/deployment=embed',
      '-o',
      'jsonpath={.items[0].status.podIP}',
    ).trim();
    expect(podIp).toMatch(/^127\./);
    expect(processesWith(podIp).length).toBeGreaterThan(0);
    child.kill('SIGINT');
    const code = await Promise.race([
      exited,
      new Promise<string>((r) => setTimeout(() => r('still running after 30 s'), 30_000)),
    ]);
    expect(code, stderr).toBe(0);
    // How long each part took to stop, for whoever reads the test output.
    process.stderr.write(
      `${stderr
        .split('\n')
        .filter((l) => l.includes('stop'))
        .join('\n')}\n`,
    );
    expect(processesWith(clusterDir)).toEqual([]);
    expect(processesWith(podIp)).toEqual([]);
    expect(processesWith(`--gateway-address=127.0.0.1:${new URL(gateway).port}`)).toEqual([]);
    await expect(fetch(`${gateway}/v1/hardware`)).rejects.toThrow();
  }, 120_000);
});
