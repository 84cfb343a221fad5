/**
 * What earlier runs of the local cluster leave behind: each cluster's directory (its state
 * file lists the process groups it started) and the component logs, which outlive the
 * cluster so a failing test can point at them.
 */
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { groupAlive } from '../processes.ts';
import { tetherActive } from '../tether.ts';

/** A local cluster's directory is `<tmpdir>/modelplane-cluster-XXXXXX`. */
export const CLUSTER_DIR_PREFIX = 'modelplane-cluster-';
/** Component logs, a directory per cluster; the newest few are kept. */
export const LOG_ROOT = join(tmpdir(), 'modelplane-logs');
const KEEP_LOG_DIRS = 20;

interface StateFile {
  owner: number;
  pgids: number[];
  /** The processes were tethered to their owner (harness/tether.ts): they went with it. */
  tethered?: boolean;
}

/** Records the owner (this process) and the process groups of the cluster in `dir`. */
export function writeClusterState(dir: string, pgids: number[]): void {
  const state: StateFile = { owner: process.pid, pgids, tethered: tetherActive() };
  writeFileSync(join(dir, 'state.json'), JSON.stringify(state));
}

/**
 * Clears what earlier runs left behind: the directory of a cluster whose owner process is gone
 * (a test run killed with SIGKILL, say), after killing the process groups it lists, unless
 * they were tethered to the owner and so went with it (their ids may belong to other
 * processes by now). Returns how many clusters were cleared.
 */
export function reapStaleClusters(): number {
  let reaped = 0;
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(CLUSTER_DIR_PREFIX)) continue;
    const dir = join(tmpdir(), name);
    let state: StateFile;
    try {
      state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as StateFile;
    } catch {
      // No state yet: leave a directory younger than a minute to the run still starting it.
      try {
        if (Date.now() - statSync(dir).mtimeMs > 60_000) rmSync(dir, { recursive: true, force: true });
      } catch {}
      continue;
    }
    if (processAlive(state.owner)) continue;
    for (const pgid of state.tethered ? [] : state.pgids) {
      if (!groupAlive(pgid)) continue;
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true });
    reaped++;
  }
  return reaped;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes all but the newest component log directories. */
export function pruneLogDirs(): void {
  if (!existsSync(LOG_ROOT)) return;
  const dirs = readdirSync(LOG_ROOT)
    .map((n) => ({ path: join(LOG_ROOT, n), mtime: statSync(join(LOG_ROOT, n)).mtimeMs }))
    .sort((a, b) => b.mtime - a.mtime);
  for (const d of dirs.slice(KEEP_LOG_DIRS)) rmSync(d.path, { recursive: true, force: true });
}
