/**
 * One process at most opens an embedded database directory (PGlite does not guard against a
 * second process, and two would corrupt it). The lock is a file, `modelplane.lock`, made with
 * link(2) so that exactly one of several starters makes it, holding who made it: host name,
 * pid, the process's start time (from /proc) and a random token. Its holder renews it (its
 * modification time) every few seconds.
 *
 * A lock left by a process that is gone does not block a restart:
 * - on the same host it is stale at once when its pid is not running, or runs a process that
 *   started at another time (a pid reused, a container restarted with the same pid);
 * - from another host (another pod on a shared volume) it is stale once it has not been
 *   renewed for three renewal periods.
 * A stale lock is renamed away (atomically; only one starter wins) and taken.
 */
import { randomBytes } from 'node:crypto';
import {
  linkSync,
  mkdirSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { StoreLog } from './log.ts';

export const LOCK_FILE = 'modelplane.lock';

interface Holder {
  token: string;
  host: string;
  pid: number;
  /** Start time of the process (clock ticks since boot, /proc/PID/stat field 22), when known. */
  start?: string;
}

export interface DirLock {
  readonly path: string;
  /** Why the lock is no longer ours (another process took it), else undefined. */
  readonly lost: string | undefined;
  release(): Promise<void>;
}

/** The start time of process `pid` (field 22 of /proc/PID/stat), undefined when unknown. */
export function processStart(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(path: string): Holder | undefined {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Holder;
  } catch {
    return undefined;
  }
}

/**
 * Why `holder` (read from a lock renewed `ageMs` ago) still holds the lock, or undefined when
 * the lock is stale.
 */
function liveHolder(holder: Holder | undefined, ageMs: number, staleMs: number): string | undefined {
  if (!holder || typeof holder.pid !== 'number') {
    return ageMs < staleMs ? 'an unreadable lock, renewed recently' : undefined;
  }
  const who = `process ${holder.pid} on ${holder.host}`;
  if (holder.host === hostname()) {
    if (holder.pid === process.pid && holder.start === processStart(process.pid))
      return `this process (${who})`;
    if (!running(holder.pid)) return undefined;
    const start = processStart(holder.pid);
    if (start !== undefined && holder.start !== undefined && start !== holder.start) return undefined;
    if (start === undefined && holder.start !== undefined && ageMs >= staleMs) return undefined;
    return who;
  }
  return ageMs < staleMs ? `${who}, renewed ${Math.round(ageMs / 1000)} s ago` : undefined;
}

export interface LockOptions {
  /** How often the holder renews the lock (default 5 s); a lock from another host is stale after 3×. */
  renewMs?: number | undefined;
  log?: StoreLog;
}

/** Takes the lock of `dir` (created when missing); rejects, saying who holds it, when another live process does. */
export async function lockDirectory(dir: string, opts: LockOptions = {}): Promise<DirLock> {
  const renewMs = opts.renewMs ?? 5_000;
  const staleMs = 3 * renewMs;
  mkdirSync(dir, { recursive: true });
  const path = join(dir, LOCK_FILE);
  const me: Holder = {
    token: randomBytes(12).toString('hex'),
    host: hostname(),
    pid: process.pid,
    ...(processStart(process.pid) === undefined ? {} : { start: processStart(process.pid)! }),
  };
  const tmp = join(dir, `.${LOCK_FILE}.${me.token}`);
  writeFileSync(tmp, `${JSON.stringify(me)}\n`);
  try {
    for (let attempt = 0; ; attempt++) {
      try {
        linkSync(tmp, path);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let ageMs: number;
      try {
        ageMs = Date.now() - statSync(path).mtimeMs;
      } catch {
        continue; // gone meanwhile: try again
      }
      const holder = readHolder(path);
      const live = liveHolder(holder, ageMs, staleMs);
      if (live !== undefined || attempt >= 5) {
        throw new Error(
          `the embedded store in ${dir} is in use by ${live ?? 'another process'} (lock ${path}): ` +
            'only one process may open it; stop the other one, or give this one another directory',
        );
      }
      // Stale: rename it away (one starter wins), and make sure what was renamed is what was judged.
      const aside = join(dir, `.${LOCK_FILE}.stale.${me.token}`);
      try {
        renameSync(path, aside);
      } catch {
        continue;
      }
      const moved = readHolder(aside);
      if (holder && moved?.token !== holder.token) {
        // Another starter took the lock between our read and the rename: give it back.
        try {
          linkSync(aside, path);
        } catch {}
      } else {
        opts.log?.warn(
          { lock: path, holder: holder && `${holder.pid}@${holder.host}` },
          'store: took over the lock of the embedded store, left by a process that is gone',
        );
      }
      unlinkSync(aside);
    }
  } finally {
    unlinkSync(tmp);
  }

  let lost: string | undefined;
  const renew = () => {
    const now = readHolder(path);
    if (now?.token !== me.token) {
      lost = `the lock of the embedded store (${path}) was taken by another process`;
      opts.log?.error({ lock: path }, `store: ${lost}`);
      clearInterval(timer);
      return;
    }
    const t = new Date();
    try {
      utimesSync(path, t, t);
    } catch {}
  };
  const timer = setInterval(renew, renewMs);
  timer.unref();
  return {
    path,
    get lost() {
      return lost;
    },
    async release() {
      clearInterval(timer);
      if (readHolder(path)?.token === me.token) {
        try {
          unlinkSync(path);
        } catch {}
      }
    },
  };
}
