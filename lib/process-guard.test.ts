import { EventEmitter } from 'node:events';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { guardProcess } from './process-guard.ts';

function setup() {
  const logged: { level: string; obj: object; msg: string }[] = [];
  const exits: number[] = [];
  const proc = new EventEmitter();
  const registry = new Registry();
  const remove = guardProcess({
    log: {
      error: (obj, msg) => logged.push({ level: 'error', obj, msg }),
      fatal: (obj, msg) => logged.push({ level: 'fatal', obj, msg }),
    },
    registry,
    prefix: 'test',
    exit: (code) => exits.push(code),
    proc: proc as unknown as NodeJS.Process,
  });
  return { logged, exits, proc, registry, remove };
}

describe('process guard', () => {
  it('logs and counts an unhandled rejection, and does not exit', async () => {
    const { logged, exits, proc, registry } = setup();
    const err = new RangeError('Maximum call stack size exceeded');
    proc.emit('unhandledRejection', err, Promise.resolve());
    proc.emit('unhandledRejection', 'a string', Promise.resolve());
    expect(exits).toEqual([]);
    expect(logged).toEqual([
      { level: 'error', obj: { err }, msg: 'unhandled promise rejection (a bug); serving on' },
      { level: 'error', obj: { err: 'a string' }, msg: 'unhandled promise rejection (a bug); serving on' },
    ]);
    expect(await registry.metrics()).toMatch(/^test_unhandled_rejections_total 2$/m);
  });

  it('logs an uncaught exception and exits with status 1', () => {
    const { logged, exits, proc } = setup();
    const err = new TypeError('x is undefined');
    proc.emit('uncaughtException', err);
    expect(logged).toEqual([
      { level: 'fatal', obj: { err }, msg: expect.stringMatching(/^uncaught exception: exiting/) },
    ]);
    expect(exits).toEqual([1]);
  });

  it('removes its handlers', () => {
    const { proc, remove } = setup();
    expect(proc.listenerCount('unhandledRejection')).toBe(1);
    remove();
    expect(proc.listenerCount('unhandledRejection')).toBe(0);
    expect(proc.listenerCount('uncaughtException')).toBe(0);
  });
});
