/** Ports, deadlines and child processes for the tests and benchmarks of the sidecar. */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

import { freePort, waitFor as waitForCondition } from '../../harness/processes.ts';

export { freePort };

/** Polls `check` until it returns something other than undefined/false; throws at the deadline. */
export function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined | false> | T | undefined | false,
  opts: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<T> {
  return waitForCondition(what, check, { timeoutMs: 30_000, intervalMs: 25, ...opts });
}

/** A process in its own process group (so its children go with it), output in a file. */
export class GroupProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logFile: string;
  /** Resolves with the exit code, or the signal's name, once it has exited. */
  readonly exited: Promise<number | string>;
  private done = false;

  constructor(
    name: string,
    command: string,
    args: string[],
    opts: { logFile: string; env: NodeJS.ProcessEnv; cwd?: string },
  ) {
    this.name = name;
    this.logFile = opts.logFile;
    const fd = openSync(opts.logFile, 'a');
    try {
      this.child = spawn(command, args, {
        detached: true,
        stdio: ['ignore', fd, fd],
        env: opts.env,
        cwd: opts.cwd,
      });
    } finally {
      closeSync(fd);
    }
    if (this.child.pid === undefined) throw new Error(`could not start ${name} (${command})`);
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

  get running(): boolean {
    return !this.done;
  }

  /** Signals the main process only. */
  signal(sig: NodeJS.Signals): void {
    if (!this.done) process.kill(this.pid, sig);
  }

  /** Signals the whole group (the process and what it started). */
  signalGroup(sig: NodeJS.Signals): void {
    try {
      process.kill(-this.pid, sig);
    } catch {
      // the group is gone
    }
  }

  /** SIGTERM to the group, SIGKILL after `graceMs`; resolves when the main process is gone. */
  async stop(graceMs = 5000): Promise<void> {
    this.signalGroup('SIGTERM');
    const timer = setTimeout(() => this.signalGroup('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
    this.signalGroup('SIGKILL');
  }

  log(): string {
    try {
      return readFileSync(this.logFile, 'utf8');
    } catch {
      return '';
    }
  }
}
