/** `Restarting` with stand-in processes and a fake clock: when it restarts, how long it waits, when it stops. */
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../lib/clock.ts';
import {
  DEFAULT_RESTART_POLICY,
  describeExit,
  Restarting,
  restartDelayMs,
  type Stoppable,
} from './processes.ts';

/** A stand-in process: `exit` ends it as a crash would; `stop` ends it as asked. */
class Fake implements Stoppable {
  readonly id: number;
  readonly exited: Promise<number | string>;
  stopped = false;
  private end!: (how: number | string) => void;

  constructor(id: number) {
    this.id = id;
    this.exited = new Promise((resolve) => {
      this.end = resolve;
    });
  }

  exit(how: number | string): Promise<void> {
    this.end(how);
    // Lets the exit handlers run.
    return this.exited.then(() => undefined);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.end('SIGTERM');
  }
}

function harness(opts: { failStarts?: number[] } = {}) {
  const clock = new FakeClock(1_000_000);
  const started: Fake[] = [];
  const lines: string[] = [];
  const r = new Restarting<Fake>({
    clock,
    start: (n) => {
      if (opts.failStarts?.includes(n)) throw new Error(`cannot start #${n}`);
      const p = new Fake(n);
      started.push(p);
      return p;
    },
    onExit: (how, delayMs) => lines.push(`exited (${how}); restarting in ${delayMs} ms`),
    onStartError: (err, delayMs) => lines.push(`${err.message}; again in ${delayMs} ms`),
  });
  return { clock, started, lines, r };
}

describe('restartDelayMs', () => {
  it('restarts at once after the first exit, then waits 1 s, 2 s, 4 s … up to 30 s', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8, 20].map((n) => restartDelayMs(n))).toEqual([
      0, 1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000,
    ]);
    expect(DEFAULT_RESTART_POLICY.resetAfterMs).toBe(60_000);
  });
});

describe('describeExit', () => {
  it('says whether a code or a signal ended the process', () => {
    expect(describeExit(1)).toBe('code 1');
    expect(describeExit('SIGKILL')).toBe('signal SIGKILL');
    expect(describeExit('spawn ENOENT')).toBe('spawn ENOENT');
  });
});

describe('Restarting', () => {
  it('starts the process again at once when it is killed', async () => {
    const { clock, started, lines, r } = harness();
    expect(started.map((p) => p.id)).toEqual([0]);
    await started[0]!.exit('SIGKILL');
    expect(lines).toEqual(['exited (signal SIGKILL); restarting in 0 ms']);
    clock.advance(0);
    expect(started.map((p) => p.id)).toEqual([0, 1]);
    expect(r.current).toBe(started[1]);
    expect(r.restarts).toBe(1);
  });

  it('backs off while it keeps crashing soon after it starts, and starts over after a long run', async () => {
    const { clock, started, lines } = harness();
    for (let i = 0; i < 4; i++) {
      await started.at(-1)!.exit(1);
      clock.advance(restartDelayMs(i + 1) - 1);
      expect(started.length).toBe(i + 1); // not yet
      clock.advance(1);
      expect(started.length).toBe(i + 2);
    }
    expect(lines).toEqual([
      'exited (code 1); restarting in 0 ms',
      'exited (code 1); restarting in 1000 ms',
      'exited (code 1); restarting in 2000 ms',
      'exited (code 1); restarting in 4000 ms',
    ]);
    // A run of a minute or more ends the loop: the next exit restarts at once.
    clock.advance(60_000);
    await started.at(-1)!.exit('SIGKILL');
    expect(lines.at(-1)).toBe('exited (signal SIGKILL); restarting in 0 ms');
  });

  it('tries a start that throws again later', async () => {
    const { clock, started, lines } = harness({ failStarts: [1] });
    await started[0]!.exit(1);
    clock.advance(0);
    expect(lines).toEqual(['exited (code 1); restarting in 0 ms', 'cannot start #1; again in 1000 ms']);
    clock.advance(1_000);
    expect(started.map((p) => p.id)).toEqual([0, 2]);
  });

  it('stops the process for good: no restart after stop, nor of one that exits meanwhile', async () => {
    const { clock, started, lines, r } = harness();
    await r.stop();
    expect(started[0]!.stopped).toBe(true);
    clock.advance(120_000);
    expect(started.length).toBe(1);
    expect(lines).toEqual([]);
  });

  it('leaves the process ended when keepRunning says no', async () => {
    const clock = new FakeClock();
    const started: Fake[] = [];
    const r = new Restarting<Fake>({
      clock,
      start: (n) => {
        const p = new Fake(n);
        started.push(p);
        return p;
      },
      keepRunning: () => false,
    });
    await started[0]!.exit(2);
    clock.advance(60_000);
    expect(started.length).toBe(1);
    expect(r.current).toBe(started[0]);
    expect(clock.pending).toBe(0);
  });

  it('cancels a restart that is due when stopped during the back-off', async () => {
    const { clock, started, r } = harness();
    await started[0]!.exit(1);
    clock.advance(0);
    await started[1]!.exit(1);
    expect(clock.pending).toBe(1);
    await r.stop();
    clock.advance(60_000);
    expect(started.length).toBe(2);
  });
});
