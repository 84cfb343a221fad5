/**
 * `make cluster-up | cluster-down | cluster-status`: a long-lived local cluster for people.
 *
 *   node harness/cluster/cli.ts up [--t4 N --a100 N --h100 N --cpu N]
 *   node harness/cluster/cli.ts down
 *   node harness/cluster/cli.ts status
 *
 * `up` starts a supervisor in the background (`run`), which owns the cluster and tears it
 * down on SIGTERM/SIGINT; its state (pid, kubeconfig, logs) is kept in the state directory.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { Nodes } from '../../operator/resources.ts';
import { KubeClient } from '../../operator/runtime/index.ts';
import { groupAlive, stopGroup, waitFor } from '../processes.ts';
import { TETHER_ENV } from '../tether.ts';
import { type Cluster, startCluster } from './cluster.ts';
import { GPU_PRODUCT_LABEL, GPU_RESOURCE, POOL_LABEL, type PoolSizes } from './node-pools.ts';
import { repoRoot } from './paths.ts';

const stateDir = process.env.MODELPLANE_STATE ?? join(repoRoot, '.modelplane', 'cluster');
const stateFile = join(stateDir, 'state.json');
const supervisorLog = join(stateDir, 'supervisor.log');

interface State {
  pid: number;
  phase: 'starting' | 'ready' | 'failed';
  kubeconfig?: string;
  description?: string;
  error?: string;
}

function readState(): State | undefined {
  try {
    return JSON.parse(readFileSync(stateFile, 'utf8')) as State;
  } catch {
    return undefined;
  }
}

function writeState(s: State): void {
  mkdirSync(stateDir, { recursive: true });
  writeFileSync(stateFile, JSON.stringify(s, null, 2));
}

function alive(s: State | undefined): s is State {
  return s !== undefined && groupAlive(s.pid);
}

function poolArgs(argv: string[]): { sizes: Partial<PoolSizes>; rest: string[] } {
  const { values } = parseArgs({
    args: argv,
    options: {
      t4: { type: 'string' },
      a100: { type: 'string' },
      h100: { type: 'string' },
      cpu: { type: 'string' },
    },
    allowPositionals: false,
  });
  const sizes: Partial<PoolSizes> = {};
  for (const k of ['t4', 'a100', 'h100', 'cpu'] as const) {
    const v = values[k];
    if (v !== undefined) {
      if (!/^\d+$/.test(v)) throw new Error(`--${k}=${v}: want a whole number of nodes`);
      sizes[k] = Number(v);
    }
  }
  return { sizes, rest: [] };
}

async function up(argv: string[]): Promise<number> {
  poolArgs(argv); // validate before going to the background
  const current = readState();
  if (alive(current)) {
    if (current.phase === 'ready') {
      console.log(`a cluster is already running (pid ${current.pid})`);
      console.log(`export KUBECONFIG=${current.kubeconfig}`);
      return 0;
    }
  } else {
    rmSync(stateFile, { force: true });
  }
  mkdirSync(stateDir, { recursive: true });
  if (!alive(current)) {
    const fd = openSync(supervisorLog, 'w');
    // The supervisor outlives this command, so it is not tethered to it (nor to anything
    // above it); the cluster's processes are tethered to the supervisor.
    const { [TETHER_ENV]: _tether, ...env } = process.env;
    const child = spawn(process.execPath, [join(repoRoot, 'harness', 'cluster', 'cli.ts'), 'run', ...argv], {
      detached: true,
      stdio: ['ignore', fd, fd],
      env,
    });
    closeSync(fd);
    child.unref();
    console.error(`starting the local control plane (log: ${supervisorLog})`);
  }
  const state = await waitFor(
    'the cluster to start',
    () => {
      const s = readState();
      if (s?.phase === 'failed') throw new Error(s.error ?? 'cluster start-up failed');
      if (s && !alive(s)) throw new Error(`the cluster supervisor exited; see ${supervisorLog}`);
      return s?.phase === 'ready' ? s : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 250 },
  ).catch((err: Error) => {
    console.error(`cluster-up failed: ${err.message}\n--- ${supervisorLog}\n${tail(supervisorLog)}`);
    return undefined;
  });
  if (!state) return 1;
  console.error(state.description);
  console.log(`export KUBECONFIG=${state.kubeconfig}`);
  return 0;
}

/** The supervisor: owns the cluster until SIGTERM/SIGINT. */
async function runSupervisor(argv: string[]): Promise<number> {
  const { sizes } = poolArgs(argv);
  writeState({ pid: process.pid, phase: 'starting' });
  let cluster: Cluster | undefined;
  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.error(`${signal}: stopping the cluster`);
    await cluster?.stop();
    rmSync(stateFile, { force: true });
    process.exit(0);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  try {
    cluster = await startCluster({ pools: sizes, log: (l) => console.error(l) });
  } catch (err) {
    writeState({ pid: process.pid, phase: 'failed', error: (err as Error).message });
    console.error((err as Error).message);
    return 1;
  }
  // A stable kubeconfig path across restarts of the cluster.
  const kubeconfig = join(stateDir, 'kubeconfig');
  writeFileSync(kubeconfig, readFileSync(cluster.kubeconfig), { mode: 0o600 });
  writeState({ pid: process.pid, phase: 'ready', kubeconfig, description: cluster.describe() });
  console.error(cluster.describe());
  // Keep the event loop alive until a signal arrives.
  await new Promise(() => {});
  return 0;
}

async function down(): Promise<number> {
  const s = readState();
  if (!alive(s)) {
    console.log('no local cluster is running');
    rmSync(stateFile, { force: true });
    return 0;
  }
  // The supervisor leads its own process group; SIGTERM lets it tear the cluster down.
  await stopGroup(s.pid, 30_000);
  rmSync(stateFile, { force: true });
  console.log('local cluster stopped');
  return 0;
}

async function status(): Promise<number> {
  const s = readState();
  if (!alive(s)) {
    console.log('no local cluster is running (start one with `make cluster-up`)');
    return 1;
  }
  console.log(`supervisor pid ${s.pid}, phase ${s.phase}`);
  if (s.phase !== 'ready' || !s.kubeconfig) return 1;
  console.log(`export KUBECONFIG=${s.kubeconfig}`);
  const kc = new KubeConfig();
  kc.loadFromFile(s.kubeconfig);
  const nodes = (await new KubeClient(kc).list(Nodes)).items;
  const pools = new Map<string, { nodes: number; ready: number; gpus: number; product: string }>();
  for (const n of nodes) {
    const pool = n.metadata?.labels?.[POOL_LABEL] ?? '(other)';
    const p = pools.get(pool) ?? {
      nodes: 0,
      ready: 0,
      gpus: 0,
      product: n.metadata?.labels?.[GPU_PRODUCT_LABEL] ?? '-',
    };
    p.nodes++;
    if (n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) p.ready++;
    p.gpus += Number(n.status?.allocatable?.[GPU_RESOURCE] ?? 0);
    pools.set(pool, p);
  }
  console.log(`${'POOL'.padEnd(16)}${'NODES'.padEnd(8)}${'READY'.padEnd(8)}${'GPUS'.padEnd(8)}PRODUCT`);
  for (const [name, p] of pools) {
    console.log(
      `${name.padEnd(16)}${String(p.nodes).padEnd(8)}${String(p.ready).padEnd(8)}${String(p.gpus).padEnd(8)}${p.product}`,
    );
  }
  console.log(s.description ?? '');
  return 0;
}

function tail(file: string, lines = 30): string {
  if (!existsSync(file)) return '(no log)';
  return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
}

const [cmd, ...rest] = process.argv.slice(2);
const commands: Record<string, (argv: string[]) => Promise<number>> = {
  up,
  run: runSupervisor,
  down,
  status,
};
const fn = cmd ? commands[cmd] : undefined;
if (!fn) {
  console.error('usage: cli.ts up|down|status [--t4 N --a100 N --h100 N --cpu N]');
  process.exit(2);
}
fn(rest).then(
  (code) => process.exit(code),
  (err: Error) => {
    console.error(err.message);
    process.exit(1);
  },
);
