import { KubeConfig } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { silentLogger } from './log.ts';
import { Manager } from './manager.ts';

function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromOptions({
    clusters: [{ name: 'c', server: 'https://127.0.0.1:1' }],
    users: [{ name: 'u' }],
    contexts: [{ name: 'x', cluster: 'c', user: 'u' }],
    currentContext: 'x',
  });
  return kc;
}

describe('Manager', () => {
  it('runs leader loops while it leads and stops them with it; serves added HTTP paths', async () => {
    const manager = new Manager({
      name: 'm',
      kubeConfig: kubeConfig(),
      leaderElection: false,
      http: { port: 0, host: '127.0.0.1' },
      log: silentLogger,
    });
    const seen: string[] = [];
    manager.addLeaderRunnable({
      name: 'loop',
      run: (signal) =>
        new Promise<void>((resolve) => {
          seen.push('started');
          signal.addEventListener('abort', () => {
            seen.push('stopped');
            resolve();
          });
        }),
    });
    manager.addHttpHandler('/hello', (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('hi');
    });
    manager.addHttpHandler('/broken', () => {
      throw new Error('boom');
    });
    expect(() => manager.addHttpHandler('/metrics', () => {})).toThrow(/manager's own/);
    await manager.start();
    const base = `http://127.0.0.1:${manager.address?.port}`;
    expect(await (await fetch(`${base}/hello?x=1`)).text()).toBe('hi');
    expect((await fetch(`${base}/broken`)).status).toBe(500);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    expect(seen).toEqual(['started']);
    await manager.stop();
    expect(seen).toEqual(['started', 'stopped']);
  });
});
