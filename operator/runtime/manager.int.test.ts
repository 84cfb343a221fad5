/**
 * A replica that does not hold the Lease runs no controller and no leader-only informer, but
 * does run the informers asked for with `everyReplica` and its runnables (the gateway).
 */
import { describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import { KubeClient, type KubeObject, resourceType } from './client.ts';
import { Leases, microTime } from './leader-election.ts';
import { Manager } from './manager.ts';

const ConfigMaps = resourceType<KubeObject>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});

const cluster = useCluster();
const ns = useNamespace(cluster, 'every-replica');
const client = new KubeClient(cluster.kc);

describe('a replica without the Lease', () => {
  it('runs every-replica informers and runnables, not leader-only informers, and stops them on stop', async () => {
    // Another replica holds the Lease for an hour.
    await client.create(Leases, {
      apiVersion: Leases.apiVersion,
      kind: Leases.kind,
      metadata: { name: 'held', namespace: ns() },
      spec: {
        holderIdentity: 'someone-else',
        leaseDurationSeconds: 3600,
        renewTime: microTime(Date.now()),
      },
    } as KubeObject);
    await client.create(ConfigMaps, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'seen', namespace: ns() },
    });
    const manager = new Manager({
      name: 'held',
      kubeConfig: cluster.kc,
      identity: 'standby',
      leaderElection: { namespace: ns(), leaseDurationMs: 3_000, renewDeadlineMs: 2_000, retryPeriodMs: 200 },
      http: false,
    });
    const leaderOnly = manager.informer(ConfigMaps, { namespace: ns(), labelSelector: 'leader-only' });
    const everywhere = manager.informer(ConfigMaps, { namespace: ns() }, { everyReplica: true });
    const states: string[] = [];
    manager.addRunnable({
      name: 'server',
      start: async () => {
        states.push('started');
      },
      stop: async (timeoutMs) => {
        states.push(`stopped within ${timeoutMs}`);
      },
    });
    await manager.start();
    expect(states).toEqual(['started']);
    await everywhere.waitForSync({ timeoutMs: 30_000 });
    expect(everywhere.get('seen', ns())).toBeDefined();
    // The standby keeps polling the Lease (a GET per retry period; the informer's watch is one
    // long GET) and stays a standby: its leader-only informer never runs.
    const gets = async () => {
      const { values } = await manager.metrics.restRequests.get();
      return values.filter((v) => v.labels.method === 'GET').reduce((s, v) => s + v.value, 0);
    };
    const before = await gets();
    await waitFor('three more polls of the Lease', async () => (await gets()) >= before + 3);
    expect(manager.isLeader).toBe(false);
    expect(leaderOnly.isRunning).toBe(false);
    expect(everywhere.isRunning).toBe(true);
    await manager.stop();
    expect(states).toEqual(['started', 'stopped within 30000']);
    expect(everywhere.isRunning).toBe(false);
  });
});
