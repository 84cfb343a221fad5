/**
 * Children that die with the process that started them, however it ends: SIGKILL, a closed
 * terminal or a CI timeout included. Two mechanisms, on Linux:
 *
 * - The parent-death signal. A child is started through util-linux
 *   `setpriv --pdeathsig SIGKILL --`, which asks the kernel to SIGKILL it once its parent
 *   thread ends (Node starts children from its main thread, which lives as long as the
 *   process), then runs the command in its place (same pid, same exit status).
 * - A watchdog for what the children start themselves (a Cog server's worker, a build's
 *   compilers): the kernel clears the parent-death signal on fork, so these are marked instead.
 *   Every child gets `MODELPLANE_TETHER` in its environment, which its own children inherit,
 *   holding this process's token (after any tokens of the processes above it). The first
 *   child started also starts the watchdog: a shell in a session of its own that ignores
 *   terminal signals and waits for end-of-file on a pipe whose other end only this process
 *   holds. When this process is gone, however it went, the kernel closes that end; the
 *   watchdog then SIGKILLs every process whose environment carries the token (the children
 *   too, should one have outlived its parent-death signal), until none is left.
 *
 * Each works without the other: without `setpriv` there is no parent-death signal, without
 * /proc (not Linux) no watchdog.
 */
import { type ChildProcess, type SpawnOptions, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync } from 'node:fs';
import { delimiter, isAbsolute, join, resolve } from 'node:path';

/** The environment variable that marks a tethered process tree: `:`-separated tokens. */
export const TETHER_ENV = 'MODELPLANE_TETHER';

/** This process's token: what its tethered children (and theirs) carry in TETHER_ENV. */
export const tetherToken = `${process.pid}-${randomBytes(6).toString('hex')}`;

// Waits for end-of-file on stdin (its owner is gone), then SIGKILLs every process whose
// environment carries the token ($1), and looks again until none is found (for up to about
// 10 s): a process may fork while it is being killed, and its orphans keep the token.
const WATCHDOG = `trap '' HUP INT TERM QUIT PIPE
while read -r _; do :; done
pattern="^${TETHER_ENV}=\\(.*:\\)\\{0,1\\}$1\\(:.*\\)\\{0,1\\}$"
i=0
while [ "$i" -lt 100 ]; do
  pids=$(grep -lsz -e "$pattern" /proc/[0-9]*/environ | sed -n 's#^/proc/\\([0-9]*\\)/environ$#\\1#p')
  [ -n "$pids" ] || exit 0
  kill -KILL $pids 2>/dev/null
  [ "$i" -eq 0 ] || sleep 0.1
  i=$((i + 1))
done
exit 1`;

let setprivPath: string | null | undefined;
let watchdog: ChildProcess | undefined;

/** Absolute path of a `setpriv` that supports --pdeathsig, or null. */
function setpriv(): string | null {
  if (setprivPath !== undefined) return setprivPath;
  setprivPath = null;
  if (process.platform !== 'linux') return setprivPath;
  const found = which('setpriv', process.env.PATH);
  if (found) {
    const probe = spawnSync(found, ['--pdeathsig', 'SIGKILL', '--', 'true'], { stdio: 'ignore' });
    if (probe.status === 0) setprivPath = found;
  }
  return setprivPath;
}

/** The executable `command` resolves to (as execvp would, through `path`), or undefined. */
function which(command: string, path: string | undefined, cwd?: string): string | undefined {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (command.includes('/')) {
    const p = isAbsolute(command) ? command : resolve(cwd ?? process.cwd(), command);
    return executable(p) ? p : undefined;
  }
  for (const dir of (path ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(isAbsolute(dir) ? dir : resolve(cwd ?? process.cwd(), dir), command);
    if (executable(p)) return p;
  }
  return undefined;
}

/** Starts the watchdog of this process's tethered children, once. */
function ensureWatchdog(): void {
  if (watchdog || !existsSync('/proc/self/environ')) return;
  const child = spawn('/bin/sh', ['-c', WATCHDOG, 'modelplane-tether-watchdog', tetherToken], {
    detached: true,
    stdio: ['pipe', 'ignore', 'ignore'],
    // Nothing of the caller's environment: the watchdog must not carry the token itself.
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin' },
  });
  if (child.pid === undefined) return;
  // Neither the watchdog nor its pipe keeps this process running.
  child.unref();
  child.stdin?.on('error', () => {});
  (child.stdin as { unref?: () => void } | null)?.unref?.();
  child.on('error', () => {});
  // Should it end while this process lives (killed by someone), the next child starts another.
  child.once('exit', () => {
    if (watchdog === child) watchdog = undefined;
  });
  watchdog = child;
}

/** The pid of the watchdog, once a tethered child has been started (for tests). */
export function watchdogPid(): number | undefined {
  return watchdog?.pid;
}

/**
 * `child_process.spawn`, for a child that dies with this process (see the top of this file):
 * started through `setpriv --pdeathsig SIGKILL` and marked with this process's token. A
 * command that does not resolve to an executable is spawned as it is, so that it fails as
 * spawn fails ('error' event, ENOENT).
 */
export function spawnTethered(
  command: string,
  args: readonly string[],
  options: SpawnOptions = {},
): ChildProcess {
  // The tokens of this process's own tether (if it has one), then its token: the watchdogs
  // of every process above see the child too.
  const above = process.env[TETHER_ENV];
  const env: NodeJS.ProcessEnv = {
    ...(options.env ?? process.env),
    [TETHER_ENV]: above ? `${above}:${tetherToken}` : tetherToken,
  };
  ensureWatchdog();
  const wrapper = setpriv();
  const cwd = options.cwd === undefined ? undefined : String(options.cwd);
  if (wrapper && which(command, env.PATH, cwd)) {
    return spawn(wrapper, ['--pdeathsig', 'SIGKILL', '--', command, ...args], { ...options, env });
  }
  return spawn(command, [...args], { ...options, env });
}

/** What tethers children here: the parent-death signal (`setpriv`) and the watchdog (/proc). */
export function tetherMechanisms(): { parentDeathSignal: boolean; watchdog: boolean } {
  return { parentDeathSignal: setpriv() !== null, watchdog: existsSync('/proc/self/environ') };
}

/** Whether children started here go with this process whatever they start (the watchdog). */
export function tetherActive(): boolean {
  return tetherMechanisms().watchdog;
}
