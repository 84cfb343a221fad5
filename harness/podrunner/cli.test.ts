import { describe, expect, it } from 'vitest';
import { main, USAGE } from './cli.ts';
import { runnerPools } from './runner.ts';

describe('podrunner CLI', () => {
  it('prints its usage', async () => {
    expect(USAGE).toContain('--models-dir DIR');
    expect(USAGE).toContain('modelplane.local/<name>');
  });

  it('refuses bad flags before touching a cluster', async () => {
    expect(await main(['--bogus'])).toBe(2);
    expect(await main(['--kubeconfig', '/nonexistent', '--t4', 'many'])).toBe(2);
    expect(await main(['--kubeconfig', '/nonexistent', '--restart-backoff', '0'])).toBe(2);
  });
});

describe('runnerPools', () => {
  it('makes one T4 node with 4 GPUs and one CPU node by default, named after the runner', () => {
    expect(runnerPools('dev').map((p) => [p.name, p.count, p.gpu?.product, p.gpu?.count])).toEqual([
      ['dev-gpu-t4', 1, 'Tesla-T4', 4],
      ['dev-cpu', 1, undefined, undefined],
    ]);
    expect(runnerPools('x', { h100: 2 }).map((p) => p.name)).toEqual(['x-gpu-h100']);
  });
});
