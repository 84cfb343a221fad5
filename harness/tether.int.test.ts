/**
 * Nothing the harness starts outlives the process that started it, even killed with SIGKILL:
 * a child Node process starts a tree the way the harness does (fixtures/tree.ts), the test
 * SIGKILLs it and polls /proc until no process of the tree is left. The same for a vitest
 * run: its global setup and a test file each start processes, vitest is SIGKILLed.
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterEach, describe, expect, it } from 'vitest';
import { repoRoot } from './cluster/paths.ts';
import { waitFor } from './processes.ts';
import { spawnTethered, TETHER_ENV, tetherMechanisms, tetherToken } from './tether.ts';

/** Pids of the live processes whose tether names `token` (zombies hold no environment). */
function carrying(token: string): number[] {
  const found: number[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let env: string;
    try {
      env = readFileSync(`/proc/${pid}/environ`, 'latin1');
    } catch {
      continue;
    }
    const entry = env.split('\0').find((e) => e.startsWith(`${TETHER_ENV}=`));
    if (
      entry
        ?.slice(TETHER_ENV.length + 1)
        .split(':')
        .includes(token)
    )
      found.push(Number(pid));
  }
  return found;
}

/** Whether `pid` is a process that has not ended (a zombie has ended). */
function live(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

const commandOf = (pid: number) => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ').trim();
  } catch {
    return '(gone)';
  }
};

const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

/** Waits until nothing carrying this process's token is alive (the trees of these tests). */
async function waitAllGone(also: number[] = []): Promise<void> {
  await waitFor(
    'every process of the tree to be gone',
    () => {
      const left = [...carrying(tetherToken), ...also.filter(live)];
      if (left.length === 0) return true;
      throw new Error(`still running: ${left.map((p) => `${p} ${commandOf(p).slice(0, 120)}`).join('; ')}`);
    },
    { timeoutMs: 20_000, intervalMs: 50 },
  );
}

interface Tree {
  child: ChildProcess;
  pid: number;
  token: string;
  watchdog: number;
  /** The fixture's log directory. */
  dir: string;
}

/** Runs fixtures/tree.ts with `kinds` and waits for its report. */
async function startTree(kinds: string[], timeoutMs: number): Promise<Tree> {
  const child = spawnTethered(
    process.execPath,
    [join(import.meta.dirname, 'fixtures', 'tree.ts'), ...kinds],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.push(child);
  let stderr = '';
  child.stderr?.on('data', (b: Buffer) => {
    stderr += b.toString();
  });
  const line = new Promise<string>((resolve) =>
    createInterface({ input: child.stdout! }).once('line', resolve),
  );
  let report: string | undefined;
  void line.then((l) => {
    report = l;
  });
  await waitFor(
    `the fixture to start ${kinds.join(', ')}`,
    () => {
      if (child.exitCode !== null) throw new Error(`the fixture exited ${child.exitCode}: ${stderr}`);
      return report !== undefined;
    },
    { timeoutMs, intervalMs: 100 },
  );
  const info = JSON.parse(report!) as Omit<Tree, 'child'>;
  return { child, ...info };
}

/** SIGKILLs the fixture and waits until nothing of it is left, its watchdog included. */
async function killAndWait(tree: Tree): Promise<void> {
  const exited = new Promise((r) => tree.child.once('exit', r));
  process.kill(tree.pid, 'SIGKILL');
  await exited;
  await waitAllGone([tree.watchdog]);
  rmSync(tree.dir, { recursive: true, force: true });
}

describe('tethered processes', () => {
  it('are tethered here: setpriv and /proc are there', () => {
    const { parentDeathSignal, watchdog } = tetherMechanisms();
    if (!parentDeathSignal)
      throw new Error(
        'setpriv with --pdeathsig is missing: install util-linux (>= 2.33; Debian: util-linux)',
      );
    if (!watchdog) throw new Error('/proc is missing: tethering needs Linux');
  });

  it('go with their SIGKILLed owner: a process group, its children, and one that left it', async () => {
    const tree = await startTree(['shell'], 10_000);
    // The fixture, its shell and the shell's two children, and the process with a session of
    // its own; each carries both tokens.
    const mine = carrying(tetherToken);
    expect(carrying(tree.token).every((p) => mine.includes(p))).toBe(true);
    expect(mine.length).toBeGreaterThanOrEqual(5);
    expect(live(tree.watchdog)).toBe(true);
    await killAndWait(tree);
  });

  it("go with their SIGKILLed owner: the local control plane, and the pod runner's pod processes", async () => {
    const tree = await startTree(['cluster'], 200_000);
    const commands = carrying(tree.token).map(commandOf);
    const programs = commands.map((c) => c.split(' ')[0]!.split('/').pop());
    expect(programs).toEqual(
      expect.arrayContaining(['etcd', 'kube-apiserver', 'kube-controller-manager', 'kube-scheduler', 'kwok']),
    );
    // The pod's Cog server, the worker it started, and its sidecar.
    expect(commands.filter((c) => c.includes('cog.server.http'))).toHaveLength(1);
    expect(commands.filter((c) => c.includes('coglet'))).toHaveLength(1);
    expect(commands.filter((c) => c.includes('modelplane.ts sidecar'))).toHaveLength(1);
    await killAndWait(tree);
  }, 240_000);

  it('go with their SIGKILLed owner: a Cog server and its worker', async () => {
    const tree = await startTree(['cog'], 120_000);
    // The Cog server and the Python worker it starts for the predictor.
    expect(carrying(tree.token).length).toBeGreaterThanOrEqual(2);
    await killAndWait(tree);
  }, 180_000);

  it("go with a SIGKILLed vitest: its global setup's and its test files' processes", async () => {
    const info = join(tmpdir(), `modelplane-tether-${process.pid}-${Date.now()}.jsonl`);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('VITEST')));
    const vitest = spawnTethered(
      process.execPath,
      [
        join(repoRoot, 'node_modules', 'vitest', 'vitest.mjs'),
        'run',
        '--config',
        join(import.meta.dirname, 'fixtures', 'vitest', 'vitest.config.ts'),
      ],
      { stdio: 'ignore', env: { ...env, TREE_INFO: info } },
    );
    children.push(vitest);
    try {
      const reports = await waitFor(
        'the global setup and the test file to start their processes',
        () => {
          if (vitest.exitCode !== null) throw new Error(`vitest exited ${vitest.exitCode}`);
          const lines = readFileSync(info, 'utf8').trim().split('\n');
          return lines.length >= 2
            ? lines.map((l) => JSON.parse(l) as { where: string; pid: number })
            : false;
        },
        { timeoutMs: 60_000, intervalMs: 100 },
      );
      expect(reports.map((r) => r.where).sort()).toEqual(['global-setup', 'test-file']);
      // vitest, its worker, and a shell with two children for each.
      expect(carrying(tetherToken).length).toBeGreaterThanOrEqual(8);
      const exited = new Promise((r) => vitest.once('exit', r));
      process.kill(vitest.pid!, 'SIGKILL');
      await exited;
      await waitAllGone();
    } finally {
      for (const f of [info, `${info}.global-setup.log`, `${info}.test-file.log`]) rmSync(f, { force: true });
    }
  }, 120_000);
});
