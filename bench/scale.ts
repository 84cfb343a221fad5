/**
 * bench/scale: the operator at a thousand Deployments, and Prediction objects in bulk.
 *
 * Deployments (`--parts deployments`): a local control plane with a pool of kwok nodes (kwok
 * marks their pods Running and Ready; no model server runs) and `modelplane operator
 * --roles=controllers` as a process of its own (the default store, embedded, in a temporary
 * directory). One Model and one ModelVersion, then `--deployments` Deployments (default 1000,
 * `--min-instances` each, default 1: one pod per Deployment) applied at once, 64 requests in
 * flight. Reported: the time to apply, the time from the end of the apply until every
 * Deployment is Ready with its instances (by watch), the operator's peak RSS and CPU seconds
 * (from /proc), the requests per second kube-apiserver served (`apiserver_request_total`)
 * and the operator sent (`rest_client_requests_total`) during convergence; then `--idle`
 * seconds with nothing changed while the operator resyncs every object each
 * `--resync-period` seconds, and the writes (every request but GET, LIST and WATCH) it made.
 *
 * Prediction objects (`--parts predictions`): `modelplane dev`'s setup (the local control
 * plane, the pod runner, the operator with every role) with `echo` on `--instances` real Cog
 * servers; `--predictions` Prediction objects (default 5000) created at once, 64 in flight;
 * reported: predictions/s from the first create to the last `succeeded` seen by watch, the
 * operator's CPU per prediction, and kube-apiserver's requests per prediction.
 *
 * Usage: node bench/scale.ts [--parts deployments,predictions] [--deployments N]
 *   [--min-instances N] [--idle S] [--resync-period S] [--workers N] [--predictions N]
 *   [--instances N] [--store memory|embedded] [--profile DIR]   (or `make bench-scale`)
 * `--profile DIR` writes a V8 CPU profile of the operator there when it exits (both parts);
 * `--store` is the operator's prediction store (both parts; default embedded);
 * `--operator-node-options` adds Node.js options to the operator's process.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { installCrds } from '../crds/index.ts';
import { startDev } from '../dev/dev.ts';
import { LocalCluster } from '../harness/cluster/local.ts';
import { POOL_LABEL } from '../harness/cluster/node-pools.ts';
import { binaries } from '../harness/cluster/paths.ts';
import { freePort, GiveUp, GroupProcess, waitFor } from '../harness/processes.ts';
import { clientFor, TEST_MANAGER } from '../operator/controllers/testing.ts';
import {
  Deployments,
  HardwareClasses,
  Models,
  ModelVersions,
  Pods,
  Workloads,
} from '../operator/resources.ts';
import { Informer, type KubeClient, type KubeObject, resourceType } from '../operator/runtime/index.ts';

const { values } = parseArgs({
  options: {
    parts: { type: 'string', default: 'deployments,predictions' },
    deployments: { type: 'string', default: '1000' },
    'min-instances': { type: 'string', default: '1' },
    idle: { type: 'string', default: '600' },
    'resync-period': { type: 'string', default: '60' },
    workers: { type: 'string' },
    predictions: { type: 'string', default: '5000' },
    instances: { type: 'string', default: '2' },
    'in-flight': { type: 'string', default: '64' },
    /** Give up waiting for convergence after this many seconds, and report how far it came. */
    timeout: { type: 'string', default: '900' },
    profile: { type: 'string' },
    /** NODE_OPTIONS for the operator's process (`--heapsnapshot-signal=SIGUSR2`, say). */
    'operator-node-options': { type: 'string' },
    store: { type: 'string', default: 'embedded' },
    /**
     * QPS of kube-controller-manager's and kube-scheduler's clients (Kubernetes' defaults: 20
     * and 50). The Deployment and ReplicaSet controllers make every workload's ReplicaSet,
     * pods and statuses, so at 20 requests/s a thousand workloads take minutes whatever the
     * operator does; large clusters raise it.
     */
    'control-plane-qps': { type: 'string', default: '200' },
    /**
     * kube-controller-manager's Deployment and ReplicaSet workers (Kubernetes' default: 5
     * each). Each sync waits on the API server, as the operator's reconciles do.
     */
    'control-plane-syncs': { type: 'string', default: '50' },
  },
});
const parts = values.parts.split(',');
const DEPLOYMENTS = Number(values.deployments);
const MIN = Number(values['min-instances']);
const IDLE_S = Number(values.idle);
const RESYNC_S = Number(values['resync-period']);
const PREDICTIONS = Number(values.predictions);
const INSTANCES = Number(values.instances);
const IN_FLIGHT = Number(values['in-flight']);
const NS = 'bench-scale';
const repoRoot = new URL('..', import.meta.url).pathname;
const out = (line: string) => process.stdout.write(`${line}\n`);
const log = (line: string) => process.stderr.write(`${line}\n`);

/** Runs `fn` over `items`, `limit` at a time. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) await fn(items[next++] as T);
    }),
  );
}

/** A process's resident set (bytes) and CPU seconds (user + system), from /proc. */
function procStats(pid: number): { rss: number; cpu: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const rss = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime
  return { rss, cpu: ticks / 100 };
}

/** Samples a process every 250 ms: peak RSS. */
function sampler(pid: number) {
  let peak = 0;
  const tick = () => {
    try {
      peak = Math.max(peak, procStats(pid).rss);
    } catch {
      // exited
    }
  };
  tick();
  const timer = setInterval(tick, 250);
  return {
    get peak() {
      return peak;
    },
    reset() {
      peak = 0;
      tick();
    },
    stop: () => clearInterval(timer),
  };
}

/** Sums of a Prometheus counter's series in `text`, by the value of `label` ('' sums all). */
function counter(text: string, name: string, label = '', filter: (line: string) => boolean = () => true) {
  const sums = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (!filter(line)) continue;
    const value = Number(line.slice(line.lastIndexOf(' ') + 1));
    const key = label ? (new RegExp(`${label}="([^"]*)"`).exec(line)?.[1] ?? '') : '';
    sums.set(key, (sums.get(key) ?? 0) + value);
  }
  return sums;
}
const total = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
const READS = new Set(['GET', 'LIST', 'WATCH', 'get', 'list', 'watch']);
const writes = (byVerb: Map<string, number>) =>
  [...byVerb].filter(([v]) => !READS.has(v)).reduce((a, [, n]) => a + n, 0);
const diff = (after: Map<string, number>, before: Map<string, number>) =>
  new Map([...after].map(([k, v]) => [k, v - (before.get(k) ?? 0)] as const));

function apiServerMetrics(kubeconfig: string): string {
  const r = spawnSync(binaries().kubectl, ['--kubeconfig', kubeconfig, 'get', '--raw', '/metrics'], {
    encoding: 'utf8',
    maxBuffer: 256 * 1024 * 1024,
  });
  if (r.status !== 0) throw new Error(`kubectl get --raw /metrics: ${r.stderr}`);
  return r.stdout;
}

/** kube-apiserver's requests by verb (WATCH and CONNECT left out: they are long-lived). */
function apiRequests(kubeconfig: string) {
  return counter(apiServerMetrics(kubeconfig), 'apiserver_request_total', 'verb');
}

/** kube-apiserver's writes by verb and resource (`PATCH deployments.modelplane.dev/status`). */
function apiWrites(kubeconfig: string) {
  const sums = new Map<string, number>();
  for (const line of apiServerMetrics(kubeconfig).split('\n')) {
    if (!line.startsWith('apiserver_request_total{')) continue;
    const label = (name: string) => new RegExp(`[{,]${name}="([^"]*)"`).exec(line)?.[1] ?? '';
    const verb = label('verb');
    if (READS.has(verb) || verb === 'CONNECT') continue;
    const group = label('group');
    const sub = label('subresource');
    const key = `${verb} ${label('resource')}${group ? `.${group}` : ''}${sub ? `/${sub}` : ''}`;
    sums.set(key, (sums.get(key) ?? 0) + Number(line.slice(line.lastIndexOf(' ') + 1)));
  }
  return sums;
}

const Predictions = resourceType<KubeObject & { status?: { status?: string } }>({
  apiVersion: 'modelplane.dev/v1alpha1',
  kind: 'Prediction',
  plural: 'predictions',
  namespaced: true,
});

async function applyModel(client: KubeClient, namespace: string) {
  await client.apply(
    Models,
    {
      apiVersion: Models.apiVersion,
      kind: Models.kind,
      metadata: { name: 'bench', namespace },
      spec: {},
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  await client.apply(
    ModelVersions,
    {
      apiVersion: ModelVersions.apiVersion,
      kind: ModelVersions.kind,
      metadata: { name: 'bench-v1', namespace },
      spec: { model: 'bench', image: 'registry.example.com/models/echo:1.0', predictTimeoutSeconds: 30 },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
}

function isReady(d: KubeObject & { status?: Record<string, unknown> }): boolean {
  const s = d.status as
    | {
        observedGeneration?: number;
        readyInstances?: number;
        conditions?: { type: string; status: string }[];
      }
    | undefined;
  return (
    s?.observedGeneration === d.metadata?.generation &&
    (s?.readyInstances ?? 0) >= MIN &&
    s?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') === true
  );
}

async function benchDeployments(): Promise<void> {
  // 110 pods per node: enough nodes for every pod, and a few to spare.
  const nodes = Math.max(2, Math.ceil((DEPLOYMENTS * Math.max(MIN, 1)) / 100));
  const qps = Number(values['control-plane-qps']);
  const clientFlags = [`--kube-api-qps=${qps}`, `--kube-api-burst=${qps * 2}`];
  const syncs = Number(values['control-plane-syncs']);
  const syncFlags = [`--concurrent-deployment-syncs=${syncs}`, `--concurrent-replicaset-syncs=${syncs}`];
  out(
    `kube-controller-manager: ${[...clientFlags, ...syncFlags].join(' ')}; kube-scheduler: ${clientFlags.join(' ')}`,
  );
  const cluster = await LocalCluster.start({
    controllerManagerFlags: [...clientFlags, ...syncFlags],
    schedulerFlags: clientFlags,
    pools: [{ name: 'bench', count: nodes, cpu: '512', memory: '4096Gi' }],
    log: (l) => log(`cluster: ${l}`),
  });
  const client = clientFor(cluster.kubeconfig);
  const storeDir = mkdtempSync(join(tmpdir(), 'modelplane-bench-scale-'));
  let operator: GroupProcess | undefined;
  try {
    await installCrds(cluster.kubeconfig);
    await client.apply(
      HardwareClasses,
      {
        apiVersion: HardwareClasses.apiVersion,
        kind: HardwareClasses.kind,
        metadata: { name: 'bench' },
        spec: {
          displayName: 'bench',
          resources: { cpu: '100m', memory: '128Mi' },
          nodeSelector: { [POOL_LABEL]: 'bench' },
          pricePerSecond: '0.000100',
        },
      } as never,
      { fieldManager: TEST_MANAGER },
    );
    await client.request('POST', '/api/v1/namespaces', { body: { metadata: { name: NS } } });
    await applyModel(client, NS);

    const httpPort = await freePort();
    const logFile = join(cluster.logDir, 'operator.log');
    operator = new GroupProcess(
      'operator',
      process.execPath,
      [
        join(repoRoot, 'cli', 'modelplane.ts'),
        'operator',
        `--kubeconfig=${cluster.kubeconfig}`,
        '--roles=controllers',
        '--leader-elect=false',
        `--http-address=127.0.0.1:${httpPort}`,
        `--resync-period=${RESYNC_S}`,
        `--store=${values.store}`,
        `--store-dir=${storeDir}`,
        '--log-level=warn',
        ...(values.workers ? [`--workers=${values.workers}`] : []),
      ],
      {
        logFile,
        env: {
          ...process.env,
          NODE_OPTIONS: [
            process.env.NODE_OPTIONS ?? '',
            values.profile ? `--cpu-prof --cpu-prof-dir=${values.profile}` : '',
            values['operator-node-options'] ?? '',
          ]
            .join(' ')
            .trim(),
        },
      },
    );
    const metricsUrl = `http://127.0.0.1:${httpPort}/metrics`;
    const proc = operator;
    await waitFor(
      'the operator to be ready',
      async () => {
        if (!proc.running) throw new GiveUp(`the operator exited; see ${logFile}`);
        return (await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined))?.ok === true;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const operatorMetrics = async () => (await fetch(metricsUrl)).text();
    const opRequests = async () => counter(await operatorMetrics(), 'rest_client_requests_total', 'method');
    const reconcileCount = async () =>
      total(counter(await operatorMetrics(), 'controller_runtime_reconcile_total'));
    const idleStats = procStats(proc.pid);
    out(`operator at rest before the apply: RSS ${(idleStats.rss / 2 ** 20).toFixed(0)} MB`);

    // Ready Deployments, workloads and Ready pods, by informers (a watch that drops is
    // resumed, as the operator's own are): how far the operator and Kubernetes have come.
    const deployments = new Informer(client, Deployments, { namespace: NS });
    const workloadInformer = new Informer(client, Workloads, { namespace: NS });
    const podInformer = new Informer(client, Pods, { namespace: NS });
    for (const i of [deployments, workloadInformer, podInformer]) i.start();
    await Promise.all([deployments, workloadInformer, podInformer].map((i) => i.waitForSync()));
    const counts = () => ({
      ready: deployments.list().filter((d) => isReady(d as never)).length,
      workloads: workloadInformer.list().length,
      pods: podInformer
        .list()
        .filter(
          (p) =>
            !p.metadata?.deletionTimestamp &&
            p.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        ).length,
    });
    let allReadyAt = 0;
    let workloadsAt = 0;
    let podsReadyAt = 0;
    const watcher = setInterval(() => {
      const c = counts();
      const now = performance.now();
      if (!workloadsAt && c.workloads === DEPLOYMENTS) workloadsAt = now;
      if (!podsReadyAt && c.pods === DEPLOYMENTS * MIN) podsReadyAt = now;
      if (!allReadyAt && c.ready === DEPLOYMENTS) allReadyAt = now;
    }, 250);
    const stopWatching = async () => {
      clearInterval(watcher);
      await Promise.all([deployments, workloadInformer, podInformer].map((i) => i.stop()));
    };
    const mem = sampler(proc.pid);
    const cpu0 = procStats(proc.pid).cpu;
    const api0 = apiRequests(cluster.kubeconfig);
    const writes0 = apiWrites(cluster.kubeconfig);
    const op0 = await opRequests();
    const t0 = performance.now();
    const names = Array.from({ length: DEPLOYMENTS }, (_, i) => `d-${String(i).padStart(4, '0')}`);
    await pool(names, IN_FLIGHT, async (name) => {
      await client.apply(
        Deployments,
        {
          apiVersion: Deployments.apiVersion,
          kind: Deployments.kind,
          metadata: { name, namespace: NS },
          spec: {
            model: 'bench',
            version: 'bench-v1',
            hardware: 'bench',
            minInstances: MIN,
            maxInstances: Math.max(MIN, 1),
          },
        } as never,
        { fieldManager: TEST_MANAGER },
      );
    });
    const applied = performance.now();
    out(
      `applied ${DEPLOYMENTS} Deployments (minInstances ${MIN}) in ${((applied - t0) / 1000).toFixed(1)} s`,
    );
    const progress = setInterval(() => {
      const c = counts();
      out(
        `  ${((performance.now() - applied) / 1000).toFixed(0)} s: ${c.workloads} apps/v1 Deployments, ${c.pods} pods Ready, ${c.ready} Deployments Ready`,
      );
    }, 30_000);
    const timeoutMs = Number(values.timeout) * 1000;
    await waitFor('every Deployment Ready', () => allReadyAt > 0, {
      timeoutMs: Math.max(1_000, timeoutMs - (applied - t0)),
      intervalMs: 250,
    }).catch(() => undefined);
    clearInterval(progress);
    if (!allReadyAt) {
      const c = counts();
      out(
        `NOT converged within ${values.timeout} s of the apply's start: ${c.ready} of ${DEPLOYMENTS} Ready, ${c.workloads} apps/v1 Deployments, ${c.pods} pods Ready`,
      );
    }
    const converged = allReadyAt || performance.now();
    const cpu1 = procStats(proc.pid).cpu;
    const api1 = apiRequests(cluster.kubeconfig);
    const writes1 = apiWrites(cluster.kubeconfig);
    const op1 = await opRequests();
    const seconds = (converged - t0) / 1000;
    const apiDelta = diff(api1, api0);
    const opDelta = diff(op1, op0);
    out(
      `${allReadyAt ? 'all' : 'NOT all'} ${DEPLOYMENTS} Ready ${((converged - applied) / 1000).toFixed(1)} s after the apply ended (${seconds.toFixed(1)} s after it began); target ≤ 60 s`,
    );
    out(
      `  every apps/v1 Deployment created ${workloadsAt ? `${((workloadsAt - applied) / 1000).toFixed(1)} s` : 'NOT yet'} after the apply ended; every pod Ready ${MIN ? (podsReadyAt ? `${((podsReadyAt - applied) / 1000).toFixed(1)} s` : 'NOT yet') : '(none)'}`,
    );
    out(
      `operator: peak RSS ${(mem.peak / 2 ** 20).toFixed(0)} MB (target ≤ 300 MB), CPU ${(cpu1 - cpu0).toFixed(1)} s over ${seconds.toFixed(1)} s (${(((cpu1 - cpu0) / seconds) * 100).toFixed(0)}% of a core)`,
    );
    out(
      `kube-apiserver: ${(total(apiDelta) / seconds).toFixed(0)} requests/s from the apply's start to convergence (${total(apiDelta)} in all, ${writes(apiDelta)} writes; every client: the apply, the operator, the controller manager, the scheduler, kwok)`,
    );
    out(
      `operator's own: ${(total(opDelta) / seconds).toFixed(0)} requests/s (${total(opDelta)}: ${[...opDelta]
        .filter(([, n]) => n > 0)
        .map(([m, n]) => `${m} ${n}`)
        .join(', ')})`,
    );
    out(
      `kube-apiserver's writes per Deployment, by resource (every client): ${[...diff(writes1, writes0)]
        .filter(([, n]) => n > 0)
        .sort((a, b) => b[1] - a[1])
        .map(([k, n]) => `${k} ${(n / DEPLOYMENTS).toFixed(2)}`)
        .join(', ')}`,
    );

    // Nothing changes: resyncs only.
    if (IDLE_S > 0 && allReadyAt) {
      // Let the last status writes and Kubernetes' own controllers settle first.
      await new Promise((r) => setTimeout(r, 5_000));
      mem.reset();
      const cpuIdle0 = procStats(proc.pid).cpu;
      const opIdle0 = await opRequests();
      const rec0 = await reconcileCount();
      await new Promise((r) => setTimeout(r, IDLE_S * 1000));
      const opIdle = diff(await opRequests(), opIdle0);
      const rec = (await reconcileCount()) - rec0;
      const cpuIdle = procStats(proc.pid).cpu - cpuIdle0;
      const resyncs = Math.floor(IDLE_S / RESYNC_S);
      out(
        `idle ${IDLE_S} s (resync every ${RESYNC_S} s: ${resyncs} resyncs, ${rec} reconciles): the operator wrote ${writes(opIdle)} times (${[
          ...opIdle,
        ]
          .filter(([, n]) => n > 0)
          .map(([m, n]) => `${m} ${n}`)
          .join(
            ', ',
          )}); ${(writes(opIdle) / Math.max(1, resyncs)).toFixed(2)} writes per resync (target 0); CPU ${cpuIdle.toFixed(1)} s, peak RSS ${(mem.peak / 2 ** 20).toFixed(0)} MB`,
      );
    }
    mem.stop();
    await stopWatching();
  } finally {
    if (operator) {
      operator.child.kill('SIGTERM');
      await Promise.race([operator.exited, new Promise((r) => setTimeout(r, 10_000))]);
      await operator.stop(1_000);
    }
    await cluster.stop();
    rmSync(storeDir, { recursive: true, force: true });
  }
}

async function benchPredictions(): Promise<void> {
  const logDir = mkdtempSync(join(tmpdir(), 'modelplane-bench-predictions-'));
  const storeDir = join(logDir, 'store');
  const manifest = join(logDir, 'echo.yaml');
  writeFileSync(
    manifest,
    `apiVersion: modelplane.dev/v1alpha1
kind: Model
metadata: {name: echo}
spec: {visibility: private, defaultHardware: gpu-t4, deployment: echo}
---
apiVersion: modelplane.dev/v1alpha1
kind: ModelVersion
metadata: {name: echo-v1}
spec: {model: echo, image: 'modelplane.local/echo:bench', maxConcurrency: 8, setupTimeoutSeconds: 120, predictTimeoutSeconds: 60}
---
apiVersion: modelplane.dev/v1alpha1
kind: Deployment
metadata: {name: echo}
spec: {model: echo, version: echo-v1, hardware: gpu-t4, minInstances: ${INSTANCES}, maxInstances: ${INSTANCES}}
`,
  );
  const dev = await startDev({
    namespace: NS,
    examples: [manifest],
    gatewayPort: 0,
    logDir,
    storeDir,
    log: (l) => log(`dev: ${l}`),
    operatorFlags: [`--store=${values.store}`],
    operatorEnv: values.profile ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${values.profile}` } : undefined,
  });
  try {
    const client = clientFor(dev.kubeconfig);
    const pid = dev.operator.current?.pid;
    if (!pid) throw new Error('the operator of modelplane dev is not running');
    const done = new Set<string>();
    let lastAt = 0;
    let failed = 0;
    const predictions = new Informer(client, Predictions, { namespace: NS });
    predictions.addEventHandler({
      onUpdate: (_old, p) => {
        const s = p.status?.status;
        const name = p.metadata?.name ?? '';
        if ((s === 'succeeded' || s === 'failed' || s === 'canceled') && !done.has(name)) {
          done.add(name);
          if (s !== 'succeeded') failed++;
          lastAt = performance.now();
        }
      },
    });
    predictions.start();
    await predictions.waitForSync();
    const names = Array.from({ length: PREDICTIONS }, (_, i) => `p-${i}`);
    const cpu0 = procStats(pid).cpu;
    const api0 = apiRequests(dev.kubeconfig);
    const t0 = performance.now();
    await pool(names, IN_FLIGHT, async (name) => {
      await client.request('POST', `/apis/modelplane.dev/v1alpha1/namespaces/${NS}/predictions`, {
        body: {
          apiVersion: 'modelplane.dev/v1alpha1',
          kind: 'Prediction',
          metadata: { name },
          spec: { deployment: 'echo', input: { text: name } },
        },
      });
    });
    const created = performance.now();
    await waitFor(`${PREDICTIONS} predictions finished`, () => done.size === PREDICTIONS, {
      timeoutMs: 1_800_000,
      intervalMs: 500,
    });
    const seconds = (lastAt - t0) / 1000;
    const cpu = procStats(pid).cpu - cpu0;
    const api = diff(apiRequests(dev.kubeconfig), api0);
    await predictions.stop();
    out(
      `${PREDICTIONS} Prediction objects (${failed} not succeeded) on ${INSTANCES} echo instances: created in ${((created - t0) / 1000).toFixed(1)} s; ${(PREDICTIONS / seconds).toFixed(0)} predictions/s from the first create to the last finished (${seconds.toFixed(1)} s); target ≥ 100/s`,
    );
    out(
      `operator CPU ${((cpu / PREDICTIONS) * 1000).toFixed(2)} ms per prediction; kube-apiserver ${(total(api) / PREDICTIONS).toFixed(2)} requests per prediction (${(writes(api) / PREDICTIONS).toFixed(2)} writes), ${(total(api) / seconds).toFixed(0)} requests/s`,
    );
  } finally {
    const pid = dev.operator.current?.pid;
    if (values.profile && pid) {
      // The profile is written when the operator exits by itself: a second signal exits at once.
      process.kill(pid, 'SIGTERM');
      await new Promise((r) => setTimeout(r, 5_000));
      try {
        process.kill(pid, 'SIGTERM');
      } catch {}
      await new Promise((r) => setTimeout(r, 3_000));
    }
    await dev.stop();
    rmSync(logDir, { recursive: true, force: true });
  }
}

out(
  `bench-scale: ${new Date().toISOString()}, load average ${loadavg()
    .map((x) => x.toFixed(1))
    .join(' ')}`,
);
if (parts.includes('deployments')) await benchDeployments();
if (parts.includes('predictions')) await benchPredictions();
