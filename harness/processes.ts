/**
 * Process groups, ports and waiting: the kit the local cluster, the pod runner, `modelplane
 * dev`, the tests and the benchmarks share. Every process started here is tethered to this
 * one (see tether.ts): it does not outlive it.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { exponentialDelay } from '../lib/backoff.ts';
import { type Clock, realClock, type Timer } from '../lib/clock.ts';
import { spawnTethered } from './tether.ts';

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => {
        if (addr && typeof addr === 'object') resolvePort(addr.port);
        else reject(new Error('could not read a free port'));
      });
    });
  });
}

/** Thrown by a `waitFor` check: stop waiting at once and fail with this error. */
export class GiveUp extends Error {}

export interface WaitOptions {
  /** Default 60 s. */
  timeoutMs?: number;
  /** Pause between checks (default 100 ms). */
  intervalMs?: number;
}

/**
 * Polls `check` until it returns a value other than undefined/false, and returns it. An error
 * the check throws counts as "not yet" (the last one is quoted at the deadline), except
 * GiveUp, which ends the wait at once. Throws at the deadline.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  { timeoutMs = 60_000, intervalMs = 100 }: WaitOptions = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      if (err instanceof GiveUp) throw err;
      lastError = err;
    }
    if (Date.now() > deadline) {
      const cause = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      const limit = timeoutMs >= 1000 ? `${timeoutMs / 1000} s` : `${timeoutMs} ms`;
      throw new Error(`timed out after ${limit} waiting for ${what}${cause}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

export interface GroupProcessOptions {
  /** Standard output and error are appended to this file. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * A process that leads a process group of its own (so what it starts goes with it when the
 * group is signalled), with its output in a log file, tethered to this process.
 */
export class GroupProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** Its pid, which is also the id of its process group. */
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code, or the signal's name, once it has exited. */
  readonly exited: Promise<number | string>;
  private done = false;

  /** Starts it; throws when it cannot be started (the command is missing, say). */
  constructor(name: string, command: string, args: string[], opts: GroupProcessOptions) {
    this.name = name;
    this.logFile = opts.logFile;
    const fd = openSync(opts.logFile, 'a');
    try {
      this.child = spawnTethered(command, args, {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: opts.env ?? process.env,
        cwd: opts.cwd,
      });
    } finally {
      closeSync(fd);
    }
    if (this.child.pid === undefined) {
      this.child.once('error', () => {}); // reported by the throw below
      throw new Error(`could not start ${name} (${command})`);
    }
    this.pid = this.child.pid;
    this.exited = new Promise((resolveExit) => {
      this.child.once('exit', (code, signal) => {
        this.done = true;
        resolveExit(code ?? signal ?? 'unknown');
      });
      this.child.once('error', (err) => {
        this.done = true;
        resolveExit(err.message);
      });
    });
  }

  /** False once the main process has exited (the rest of its group may live on). */
  get running(): boolean {
    return !this.done;
  }

  /** Signals the main process only. */
  signal(sig: NodeJS.Signals): void {
    if (!this.done) process.kill(this.pid, sig);
  }

  /** Signals the whole group (the process and what it started). */
  signalGroup(sig: NodeJS.Signals): void {
    signalGroup(this.pid, sig);
  }

  /**
   * SIGTERM to the group, SIGKILL after `graceMs`; once the main process has exited, SIGKILL
   * to what is left of the group. Resolves when no process of the group is left.
   */
  async stop(graceMs = 5_000): Promise<void> {
    this.signalGroup('SIGTERM');
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    this.signalGroup('SIGKILL');
    await waitFor(`process group ${this.pid} (${this.name}) to exit`, () => !groupAlive(this.pid), {
      timeoutMs: 10_000,
      intervalMs: 20,
    });
  }

  /** The log file's content ('' when it cannot be read). */
  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }

  /** The last `lines` lines of the log file. */
  logTail(lines = 15): string {
    return this.log().split('\n').slice(-lines).join('\n');
  }
}

/** True while any process of the group `pgid` is alive. */
export function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function signalGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Stops a whole process group: SIGTERM, then SIGKILL after `graceMs`; resolves once no
 * process of the group is left.
 */
export async function stopGroup(pgid: number, graceMs = 5_000): Promise<void> {
  signalGroup(pgid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  if (groupAlive(pgid)) signalGroup(pgid, 'SIGKILL');
  await waitFor(`process group ${pgid} to exit`, () => !groupAlive(pgid), {
    timeoutMs: 10_000,
    intervalMs: 20,
  });
}

/** What `Restarting` needs of a process: when it exits, and how to stop it. */
export interface Stoppable {
  /** Resolves with the exit code, or the signal's name, once it has exited. */
  readonly exited: Promise<number | string>;
  stop(graceMs?: number): Promise<void>;
}

export interface RestartPolicy {
  /** Delay before the second restart of a crash loop (default 1 s); doubled each time after. */
  initialMs: number;
  /** The longest delay (default 30 s). */
  maxMs: number;
  /** A run this long ends a crash loop: the next exit restarts at once (default 60 s). */
  resetAfterMs: number;
}

export const DEFAULT_RESTART_POLICY: RestartPolicy = {
  initialMs: 1_000,
  maxMs: 30_000,
  resetAfterMs: 60_000,
};

/**
 * The delay before a restart, as the kubelet does it: at once after the first exit of a
 * crash loop, then `initialMs` doubled per exit, at most `maxMs`. `crashes` counts the exits
 * of the loop, this one included (runs shorter than `resetAfterMs` in a row).
 */
export function restartDelayMs(crashes: number, policy: RestartPolicy = DEFAULT_RESTART_POLICY): number {
  if (crashes <= 1) return 0;
  return exponentialDelay(crashes - 2, policy.initialMs, policy.maxMs);
}

/** "code 1", "signal SIGKILL": how a process ended, from `exited`. */
export function describeExit(how: number | string): string {
  if (typeof how === 'number') return `code ${how}`;
  return /^SIG[A-Z0-9]+$/.test(how) ? `signal ${how}` : how;
}

export interface RestartingOptions<P> {
  /** Starts the process (again); may throw (tried again after the next delay). */
  start: (restarts: number) => P;
  /** The process exited on its own; it starts again in `delayMs`. */
  onExit?: (how: string, delayMs: number, restarts: number) => void;
  /** A process was started (`restarts` 0: the first). */
  onStart?: (process: P, restarts: number) => void;
  /** `start` threw; tried again in `delayMs`. */
  onStartError?: (err: Error, delayMs: number) => void;
  /** Asked when the process exits on its own: false leaves it ended (default: always restart). */
  keepRunning?: () => boolean;
  policy?: Partial<RestartPolicy>;
  clock?: Clock;
}

/**
 * A process kept running as a kubelet keeps a container running: when it exits without being
 * asked to (a crash, SIGKILL, out of memory) it is started again, at once the first time and
 * with a growing delay while it keeps exiting soon after it starts. `stop` stops it for good.
 */
export class Restarting<P extends Stoppable> {
  private readonly opts: RestartingOptions<P>;
  private readonly policy: RestartPolicy;
  private readonly clock: Clock;
  private proc: P | undefined;
  private startedAt = 0;
  private crashes = 0;
  private count = 0;
  private stopped = false;
  private timer: Timer | undefined;

  /** Starts the process; throws when the first start throws. */
  constructor(opts: RestartingOptions<P>) {
    this.opts = opts;
    this.policy = { ...DEFAULT_RESTART_POLICY, ...opts.policy };
    this.clock = opts.clock ?? realClock;
    this.launch(this.opts.start(0));
  }

  /** The process now running, or the one that last exited while a restart is due. */
  get current(): P | undefined {
    return this.proc;
  }

  /** How many times it was started again. */
  get restarts(): number {
    return this.count;
  }

  /** Stops the process and starts no other. */
  async stop(graceMs?: number): Promise<void> {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = undefined;
    await this.proc?.stop(graceMs);
  }

  private launch(proc: P): void {
    this.proc = proc;
    this.startedAt = this.clock.mono();
    this.opts.onStart?.(proc, this.count);
    void proc.exited.then((how) => {
      if (this.stopped || this.proc !== proc) return;
      if (this.opts.keepRunning && !this.opts.keepRunning()) return;
      const ran = this.clock.mono() - this.startedAt;
      this.crashes = ran >= this.policy.resetAfterMs ? 1 : this.crashes + 1;
      const delay = restartDelayMs(this.crashes, this.policy);
      this.opts.onExit?.(describeExit(how), delay, this.count);
      this.schedule(delay);
    });
  }

  private schedule(delay: number): void {
    this.timer = this.clock.setTimer(() => {
      this.timer = undefined;
      if (this.stopped) return;
      this.count++;
      let proc: P;
      try {
        proc = this.opts.start(this.count);
      } catch (err) {
        this.crashes++;
        const next = restartDelayMs(this.crashes, this.policy);
        this.opts.onStartError?.(err as Error, next);
        this.schedule(next);
        return;
      }
      this.launch(proc);
    }, delay);
  }
}
