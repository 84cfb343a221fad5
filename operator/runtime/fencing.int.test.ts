/**
 * Fencing: a replica that lost the Lease, or whose Lease could have expired by its own clock,
 * writes nothing more. Writer processes (fixtures/writer.ts) apply ConfigMaps as the leader's
 * controllers and autoscaler do, under a field manager naming the replica; a watch records
 * every write the API server accepted, in order, with the replica that made it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { GiveUp, waitFor } from '../../harness/processes.ts';
import { KubeClient, type KubeObject, type WatchStream } from './client.ts';
import { ConfigMaps, type FixtureProcess, logged, startFixture } from './fixtures/processes.ts';
import { type Lease, Leases } from './leader-election.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'fencing');
const client = new KubeClient(cluster.kc);

/** fixtures/writer.ts's timing. */
const TIMING = { leaseDurationMs: 4_000, renewDeadlineMs: 3_000, retryPeriodMs: 500 };

type Writer = FixtureProcess;

const startWriter = (identity: string, env: Record<string, string> = {}): Writer =>
  startFixture('writer.ts', identity, { KUBECONFIG: cluster.kubeconfig, NAMESPACE: ns(), ...env });

/** A write the API server accepted, as a watch saw it. */
interface Write {
  kind: 'ConfigMap' | 'Lease';
  name: string;
  /** An etcd revision: writes to any object in the cluster are ordered by it. */
  rv: number;
  /** ConfigMaps: `data.writer`; Leases: the holder. */
  by: string | undefined;
  /** The field managers that own `data` (ConfigMaps). */
  dataManagers: string[];
}

const writes: Write[] = [];
const streams: WatchStream[] = [];

beforeAll(async () => {
  // Watch from "now" (the namespace is new and empty): every later write is seen, in order.
  const record = (kind: Write['kind']) => (e: { type: string; object: KubeObject }) => {
    if (e.type !== 'ADDED' && e.type !== 'MODIFIED') return;
    const obj = e.object as KubeObject & { data?: Record<string, string>; spec?: Lease['spec'] };
    writes.push({
      kind,
      name: obj.metadata?.name ?? '',
      rv: Number(obj.metadata?.resourceVersion),
      by: kind === 'Lease' ? obj.spec?.holderIdentity || undefined : obj.data?.writer,
      dataManagers: (obj.metadata?.managedFields ?? [])
        .filter((f) => JSON.stringify(f.fieldsV1 ?? {}).includes('"f:data"'))
        .map((f) => f.manager ?? ''),
    });
  };
  const start = async () => {
    const { resourceVersion: cmRv } = await client.list(ConfigMaps, { namespace: ns() });
    const { resourceVersion: leaseRv } = await client.list(Leases, { namespace: ns() });
    streams.push(client.watch(ConfigMaps, { namespace: ns(), resourceVersion: cmRv }, record('ConfigMap')));
    streams.push(client.watch(Leases, { namespace: ns(), resourceVersion: leaseRv }, record('Lease')));
  };
  await start();
});
afterAll(() => {
  for (const s of streams) s.stop();
});

const holder = async (lease: string) =>
  (await client.find(Leases, lease, ns()))?.spec?.holderIdentity || undefined;
const writesTo = (name: string) => writes.filter((w) => w.kind === 'ConfigMap' && w.name === name);

describe('fencing', () => {
  it('a paused leader, resumed after the standby took over, writes nothing more', async () => {
    const a = startWriter('a');
    await waitFor('a to hold the lease', async () => (await holder('writer')) === 'a', { timeoutMs: 30_000 });
    await client.create(ConfigMaps, {
      apiVersion: 'v1',
      kind: 'ConfigMap',
      metadata: { name: 'target', namespace: ns(), labels: { role: 'target' } },
    });
    await waitFor('a to write both objects', () =>
      ['writer-count', 'target'].every((n) => writesTo(n).some((w) => w.by === 'a')),
    );
    const b = startWriter('b');
    await waitFor('b to campaign', () => logged(b, 'waiting to acquire the lease'), { timeoutMs: 30_000 });

    a.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await waitFor('b to hold the lease', async () => (await holder('writer')) === 'b', {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    const took = Date.now() - stoppedAt;
    // a renewed at most a retry period before it stopped; b waits a lease duration from when
    // it saw that renewal (it polls every retry period, give or take a fifth).
    expect(took).toBeGreaterThan(TIMING.leaseDurationMs - 2 * TIMING.retryPeriodMs);
    expect(took).toBeLessThan(TIMING.leaseDurationMs + 3 * TIMING.retryPeriodMs);
    await waitFor('b to write both objects', () =>
      ['writer-count', 'target'].every((n) => writesTo(n).some((w) => w.by === 'b')),
    );

    a.child.kill('SIGCONT');
    await waitFor('a to see it lost the lease', () => logged(a, 'lost the lease; stopping leader work'), {
      timeoutMs: 10_000,
    });
    await waitFor(
      'a to campaign again',
      () => a.lines.filter((l) => l.msg === 'waiting to acquire the lease').length >= 2,
    );
    // b keeps writing; anything a sent after it resumed has reached the server by now.
    const seen = writesTo('writer-count').length;
    await waitFor('b to write ten more times', () => writesTo('writer-count').length >= seen + 10);
    expect(a.child.exitCode).toBeNull(); // a stays, as a standby

    for (const name of ['writer-count', 'target']) {
      const seq = writesTo(name);
      const takeover = seq.findIndex((w) => w.by === 'b');
      expect(takeover).toBeGreaterThan(0);
      const after = seq.slice(takeover);
      expect(after.filter((w) => w.by !== 'b')).toEqual([]);
      // The API server's record agrees: after the takeover only b's field manager owns data.
      for (const w of after) expect(w.dataManagers).toEqual(['writer-b']);
    }
  });

  it('a leader paused past its renew deadline writes nothing until it has renewed the Lease', async () => {
    // Stopping its work after the loss may take long on a loaded machine: this test is about
    // the fence and the new term, not about exiting (the last test is).
    const solo = startWriter('solo', { LEASE: 'solo', LOST_STOP_MS: '20000' });
    await waitFor('solo to hold the lease', async () => (await holder('solo')) === 'solo', {
      timeoutMs: 30_000,
    });
    await waitFor('solo to write', () => writesTo('solo-count').length >= 3);

    solo.child.kill('SIGSTOP');
    const stoppedAt = Date.now();
    // Paused past the renew deadline (and its last renewal was earlier still), but resumed
    // before the lease duration: nobody else holds the Lease, and solo has not seen anything.
    await waitFor(
      'the renew deadline to pass',
      () => Date.now() > stoppedAt + TIMING.renewDeadlineMs + TIMING.retryPeriodMs,
      { intervalMs: 20 },
    );
    const resumedRv = Math.max(0, ...writes.map((w) => w.rv));
    solo.child.kill('SIGCONT');
    const renewal = await waitFor(
      'solo to write its Lease again',
      () => writes.find((w) => w.kind === 'Lease' && w.name === 'solo' && w.rv > resumedRv),
      { timeoutMs: 40_000 },
    );
    expect(renewal.by).toBe('solo');
    expect(logged(solo, 'lost the lease; stopping leader work')).toBe(true);
    // Its leader work starts again in the new term: the counter is written after the renewal.
    const again = await waitFor(
      'solo to write its counter again',
      () => {
        if (solo.child.exitCode !== null) throw new GiveUp(`solo exited ${solo.child.exitCode}`);
        return writes.find((w) => w.kind === 'ConfigMap' && w.name === 'solo-count' && w.rv > renewal.rv);
      },
      { timeoutMs: 60_000, intervalMs: 50 },
    );
    expect(again.by).toBe('solo');
    // Nothing it wrote after resuming came before its Lease write.
    for (const w of writesTo('solo-count').filter((x) => x.rv > resumedRv))
      expect(w.rv).toBeGreaterThan(renewal.rv);
    solo.child.kill('SIGTERM');
    expect(await solo.exited).toBe(0);
  });

  it('exits when its leader work does not stop in time after losing the Lease', async () => {
    const stuck = startWriter('stuck', { LEASE: 'stuck', STUCK: '1' });
    await waitFor('stuck to hold the lease', async () => (await holder('stuck')) === 'stuck', {
      timeoutMs: 30_000,
    });
    await waitFor('stuck to write', () => writesTo('stuck-count').length >= 1);
    // Someone else takes the Lease over (as if this process had been partitioned away).
    const lease = await client.get(Leases, 'stuck', ns());
    await client.replace<Lease>(Leases, {
      ...lease,
      spec: { ...lease.spec, holderIdentity: 'intruder', leaseDurationSeconds: 3600 },
    });
    const takenAt = Date.now();
    expect(await stuck.exited).toBe(1);
    // It sees the loss at its next renewal, then waits lease duration minus renew deadline.
    expect(Date.now() - takenAt).toBeLessThan(
      2 * TIMING.retryPeriodMs + (TIMING.leaseDurationMs - TIMING.renewDeadlineMs) + 2_000,
    );
    expect(logged(stuck, 'the leader’s work did not stop after losing the Lease; exiting')).toBe(true);
  });
});
