import { describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import { KubeClient } from './client.ts';
import { ConfigMaps, type FixtureProcess, logged, startFixture } from './fixtures/processes.ts';
import { type Lease, Leases } from './leader-election.ts';
import { createLogger } from './log.ts';
import { Manager } from './manager.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'leader');
const client = new KubeClient(cluster.kc);

const TIMING = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };

/** A `stamper` manager process (fixtures/stamper.ts), with its log lines. */
type Candidate = FixtureProcess;

const candidates: Candidate[] = [];

function startCandidate(identity: string): Candidate {
  const c = startFixture('stamper.ts', identity, { KUBECONFIG: cluster.kubeconfig, NAMESPACE: ns() });
  candidates.push(c);
  return c;
}

async function holder(): Promise<string | undefined> {
  const lease = await client.find(Leases, 'stamper', ns());
  return lease?.spec?.holderIdentity || undefined;
}

async function stampedBy(name: string): Promise<string | undefined> {
  return (await client.get(ConfigMaps, name, ns())).metadata?.annotations?.['stamped-by'];
}

async function createStamp(name: string, annotations?: Record<string, string>) {
  await client.create(ConfigMaps, {
    apiVersion: 'v1',
    kind: 'ConfigMap',
    metadata: { name, namespace: ns(), labels: { role: 'stamp' }, annotations },
  });
}

describe('leader election between manager processes', () => {
  it('runs the controller on the Lease holder only; SIGTERM finishes in-flight work, releases, hands over', async () => {
    const a = startCandidate('a');
    await waitFor('a to hold the lease', async () => (await holder()) === 'a', { timeoutMs: 30_000 });
    const b = startCandidate('b');
    await waitFor('b to campaign', () => logged(b, 'waiting to acquire the lease'), { timeoutMs: 30_000 });

    await createStamp('one');
    await waitFor('one to be stamped', async () => (await stampedBy('one')) !== undefined);
    expect(await stampedBy('one')).toBe('a');

    await createStamp('slow', { 'slow-ms': '1500' });
    await waitFor('a to be reconciling slow', () => logged(a, 'slow reconcile started'));
    const signalled = Date.now();
    a.child.kill('SIGTERM');
    expect(await a.exited).toBe(0);
    const exitedAt = Date.now();
    expect(await stampedBy('slow')).toBe('a'); // the reconcile in flight finished first
    expect(logged(a, 'released the lease')).toBe(true);
    expect(exitedAt - signalled).toBeGreaterThanOrEqual(1_000);

    await waitFor('b to hold the lease', async () => (await holder()) === 'b', { timeoutMs: 10_000 });
    // Released, so b did not wait for the lease to expire: it took it at its next retry.
    expect(Date.now() - exitedAt).toBeLessThan(TIMING.leaseDurationMs);
    await createStamp('two');
    await waitFor('two to be stamped', async () => (await stampedBy('two')) !== undefined);
    expect(await stampedBy('two')).toBe('b');
    // Its log line comes through a pipe, possibly after the object was written.
    await waitFor('b to log its stamp', () => b.lines.some((l) => l.msg === 'stamped'));
    expect(b.lines.filter((l) => l.msg === 'stamped')).toHaveLength(1);
    const lease = await client.get(Leases, 'stamper', ns());
    expect(lease.spec?.leaseTransitions).toBe(1);
    expect(lease.spec?.leaseDurationSeconds).toBe(4);
  });

  it('replaces a holder killed without releasing once its lease expires, and not before', async () => {
    const b = candidates.find((c) => c.identity === 'b')!;
    expect(await holder()).toBe('b');
    const c = startCandidate('c');
    await waitFor('c to campaign', () => logged(c, 'waiting to acquire the lease'), { timeoutMs: 30_000 });
    b.child.kill('SIGKILL');
    const killed = Date.now();
    await b.exited;
    await waitFor('c to hold the lease', async () => (await holder()) === 'c', {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    const took = Date.now() - killed;
    // b renewed at most a retry period before it died; c waits a full lease duration from
    // when it saw that renewal.
    expect(took).toBeGreaterThan(TIMING.leaseDurationMs - 2 * TIMING.retryPeriodMs);
    expect(took).toBeLessThan(TIMING.leaseDurationMs + 3_000);
    await createStamp('three');
    await waitFor('three to be stamped', async () => (await stampedBy('three')) !== undefined);
    expect(await stampedBy('three')).toBe('c');

    c.child.kill('SIGTERM');
    expect(await c.exited).toBe(0);
    expect(await holder()).toBeUndefined();
  });
});

describe('a manager that loses its Lease', () => {
  it('stops its controllers, and starts them again when it wins the Lease back', async () => {
    let reconciles = 0;
    const manager = new Manager({
      name: 'loser',
      kubeConfig: cluster.kc,
      identity: 'loser',
      leaderElection: { namespace: ns(), ...TIMING },
      log: createLogger({ level: 'silent' }),
    });
    const informer = manager.informer(ConfigMaps, { namespace: ns(), labelSelector: 'role=lose' });
    const controller = manager.addController({
      name: 'loser',
      for: informer,
      reconcile: async () => {
        reconciles++;
      },
    });
    const leaderStatus = async () =>
      (await manager.metrics.leaderStatus.get()).values.find((v) => v.labels.name === 'loser')?.value;
    await manager.start();
    try {
      await waitFor('the manager to lead', () => manager.isLeader && controller.isRunning, {
        timeoutMs: 30_000,
      });
      expect(await leaderStatus()).toBe(1);

      // Someone else takes the Lease over (as if this process had been partitioned away).
      const lease = await client.get(Leases, 'loser', ns());
      await client.replace<Lease>(Leases, {
        ...lease,
        spec: { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 3600 },
      });
      await waitFor('the controller to stop', () => !manager.isLeader && !controller.isRunning, {
        timeoutMs: TIMING.renewDeadlineMs + 5_000,
      });
      expect(await leaderStatus()).toBe(0);
      const before = reconciles;
      await client.create(ConfigMaps, {
        apiVersion: 'v1',
        kind: 'ConfigMap',
        metadata: { name: 'while-follower', namespace: ns(), labels: { role: 'lose' } },
      });

      // The intruder releases it: the manager wins it back and catches up.
      const taken = await client.get(Leases, 'loser', ns());
      await client.replace<Lease>(Leases, { ...taken, spec: { leaseDurationSeconds: 1 } });
      await waitFor('the controller to run again', () => manager.isLeader && controller.isRunning, {
        timeoutMs: 10_000,
      });
      await waitFor('the object made meanwhile to be reconciled', () => reconciles > before);
      expect(reconciles).toBeGreaterThan(before);
    } finally {
      await manager.stop();
    }
    expect(await holder()).toBeUndefined(); // 'stamper' lease: nobody holds it any more
    expect((await client.get(Leases, 'loser', ns())).spec?.holderIdentity).toBeUndefined();
  });
});
