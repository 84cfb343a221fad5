import { existsSync, readFileSync } from 'node:fs';
import { KubeConfig, VersionApi } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { groupAlive } from '../processes.ts';
import { LocalCluster } from './local.ts';
import { standardPools } from './node-pools.ts';

// A cluster of its own (beside the shared one), so its whole life can be watched.
describe('the local cluster harness', () => {
  it('starts every component, serves the API, and leaves no process or temp dir after teardown', async () => {
    const cluster = await LocalCluster.start({ pools: standardPools({ t4: 1, a100: 0, h100: 1, cpu: 0 }) });
    let stopped = false;
    try {
      expect(Object.keys(cluster.logs).sort()).toEqual([
        'etcd',
        'kube-apiserver',
        'kube-controller-manager',
        'kube-scheduler',
        'kwok',
      ]);
      expect(cluster.pgids).toHaveLength(5);
      for (const pgid of cluster.pgids) expect(groupAlive(pgid)).toBe(true);
      expect(cluster.server).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);

      const kc = new KubeConfig();
      kc.loadFromFile(cluster.kubeconfig);
      const version = await kc.makeApiClient(VersionApi).getCode();
      expect(version.major).toBe('1');

      const pgids = cluster.pgids;
      const dir = cluster.dir;
      await cluster.stop();
      stopped = true;
      for (const pgid of pgids) expect(groupAlive(pgid), `process group ${pgid} still alive`).toBe(false);
      expect(existsSync(dir)).toBe(false);
      // The logs outlive the cluster, for the failure message of the test that used it.
      expect(readFileSync(cluster.logs['kube-apiserver']!, 'utf8').length).toBeGreaterThan(0);
    } finally {
      if (!stopped) await cluster.stop();
    }
  });
});
