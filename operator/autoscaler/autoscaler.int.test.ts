/**
 * The autoscaler against the real control plane: the operator's controllers and autoscaler in
 * this process, demand from a DemandSource whose numbers the test sets (the gateway's place),
 * short windows and delays.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ANNOTATION, installCrds } from '../../crds/index.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import {
  applyDefaultHardware,
  applyVersion,
  clientFor,
  podsOf,
  startOperator,
  TEST_MANAGER,
} from '../controllers/testing.ts';
import type { Operator } from '../main.ts';
import { Deployments, Models, type Workload, Workloads } from '../resources.ts';
import { Events, ownsField } from '../runtime/index.ts';
import { decodeState } from './decide.ts';
import { FIELD_MANAGER, STATE_ANNOTATION } from './index.ts';
import { StaticDemandSource } from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-autoscale');
const client = clientFor(cluster.kubeconfig);
const NAME = 'scaler';
const DELAY_S = 8;
const CONTROLLER_MANAGER = 'modelplane-deployment-controller';
let operator: Operator | undefined;
const source = new StaticDemandSource();

function demand(queued: number, inflight = 0, perPod: Record<string, number> = {}) {
  source.set({ namespace: ns(), name: NAME, queued, inflight, perPod, lastActivityMs: Date.now() });
}

async function start(tickMs: number): Promise<Operator> {
  operator = await startOperator(
    cluster.kubeconfig,
    { autoscalerTickMs: tickMs, resyncPeriodMs: 600_000, podDeletionCost: true },
    { demandSources: [source], autoscaler: { statusIntervalMs: 1_000, stateIntervalMs: 2_000 } },
  );
  return operator;
}

async function stop(): Promise<void> {
  await operator?.stop();
  operator = undefined;
}

const workload = () => client.get(Workloads, NAME, ns());
const deployment = () => client.get(Deployments, NAME, ns());

async function replicasReach(n: number, timeoutMs = 30_000): Promise<Workload> {
  return waitFor(
    `${NAME} to have ${n} replicas`,
    async () => {
      const w = await workload();
      return w.spec?.replicas === n ? w : undefined;
    },
    { timeoutMs, intervalMs: 20 },
  );
}

async function events(reason: string) {
  const { items } = await client.list(Events, { namespace: ns() });
  return items.filter(
    (e) => e.reason === reason && e.regarding?.name === NAME && e.regarding.kind === 'Deployment',
  );
}

/** Decisions the autoscaler made for the deployment (one per tick). */
async function decisions(operator: Operator): Promise<number> {
  const { values } = await (await operator.manager.metrics.registry.getSingleMetric(
    'modelplane_autoscaler_decisions_total',
  ))!.get();
  return values.filter((v) => v.labels.deployment === NAME).reduce((s, v) => s + v.value, 0);
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(client);
  await client.apply(
    Models,
    {
      apiVersion: Models.apiVersion,
      kind: Models.kind,
      metadata: { name: NAME, namespace: ns() },
      spec: {},
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  await applyVersion(client, ns(), NAME, `${NAME}-v1`);
  await client.apply(
    Deployments,
    {
      apiVersion: Deployments.apiVersion,
      kind: Deployments.kind,
      metadata: { name: NAME, namespace: ns() },
      spec: {
        model: NAME,
        version: `${NAME}-v1`,
        hardware: 'cpu',
        minInstances: 0,
        maxInstances: 3,
        scaling: {
          targetPerInstance: 2,
          stableWindowSeconds: 6,
          panicWindowSeconds: 2,
          scaleDownDelaySeconds: DELAY_S,
          scaleToZeroAfterSeconds: 5,
        },
      },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
});

afterAll(async () => {
  await stop();
  await client.delete(Workloads, NAME, ns(), { propagationPolicy: 'Background' }).catch(() => {});
});

describe('the autoscaler', () => {
  it('creates the workload at zero, and a poke with demand starts one instance within a second', async () => {
    // Ticks a minute apart: only the poke can act in time.
    const op = await start(60_000);
    const w = await replicasReach(0);
    expect(w.metadata?.ownerReferences?.[0]?.name).toBe(NAME);
    await waitFor('the controller to settle', async () => (await deployment()).status?.release === 1);
    demand(1);
    const t0 = Date.now();
    source.poke(ns(), NAME);
    await replicasReach(1, 5_000);
    const took = Date.now() - t0;
    expect(took, `took ${took} ms`).toBeLessThan(1_000);
    const ev = await waitFor('a ScaledFromZero Event', async () => (await events('ScaledFromZero'))[0]);
    expect(ev?.note).toBe('0 → 1 instance: 1 prediction waiting with no instance');
    expect(ev?.reportingController).toBe('modelplane.dev/autoscaler');
    expect(await decisions(op)).toBeGreaterThan(0);
    await stop();
  });

  it('a burst raises the count to maxInstances and not above; the status follows', async () => {
    await start(500);
    demand(20);
    let highest = 0;
    await waitFor(
      '3 replicas',
      async () => {
        const n = (await workload()).spec?.replicas ?? 0;
        highest = Math.max(highest, n);
        return n === 3;
      },
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    // It stays there with the burst going on.
    const until = Date.now() + 3_000;
    while (Date.now() < until) {
      highest = Math.max(highest, (await workload()).spec?.replicas ?? 0);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(highest).toBe(3);
    const status = await waitFor(
      'the scaling status',
      async () => {
        const s = (await deployment()).status;
        return s?.desiredInstances === 3 && s.queued === 20 && s.running === 0 && s.lastScaleTime
          ? s
          : undefined;
      },
      { timeoutMs: 10_000 },
    );
    expect(Date.parse(status.lastScaleTime as string)).toBeGreaterThan(Date.now() - 60_000);
    const up = await waitFor('a ScaledUp Event', async () => (await events('ScaledUp'))[0]);
    expect(up.note).toMatch(
      /^1 → 3 instances: demand 20 over the 2 s panic window, target 2 per instance \(capped at maxInstances 3\)$/,
    );
    // The queue figures follow, rate-limited.
    demand(18, 2);
    await waitFor(
      'queued 18 and running 2',
      async () => {
        const s = (await deployment()).status;
        return s?.queued === 18 && s.running === 2;
      },
      { timeoutMs: 5_000 },
    );
  });

  it("never writes the user's spec, and owns replicas alone after the controller re-applies", async () => {
    const obj = await deployment();
    const managers = obj.metadata?.managedFields ?? [];
    const mine = managers.filter((f) => f.manager === FIELD_MANAGER);
    expect(mine.length).toBeGreaterThan(0);
    expect(mine.every((f) => f.subresource === 'status')).toBe(true);
    // A new release: the controller applies the workload again, without replicas.
    await client.mergePatch(
      Deployments,
      NAME,
      ns(),
      { spec: { rollout: { progressDeadlineSeconds: 900 } } },
      {
        fieldManager: TEST_MANAGER,
      },
    );
    const w = await waitFor('release 2 applied', async () => {
      const x = await workload();
      return x.metadata?.labels?.['modelplane.dev/release'] === '2' ? x : undefined;
    });
    expect(w.spec?.replicas).toBe(3);
    expect(w.spec?.progressDeadlineSeconds).toBe(900);
    expect(ownsField(w, FIELD_MANAGER, ['spec', 'replicas'])).toBe(true);
    expect(ownsField(w, CONTROLLER_MANAGER, ['spec', 'replicas'])).toBe(false);
    expect(ownsField(w, CONTROLLER_MANAGER, ['spec', 'template'])).toBe(true);
  });

  it('marks the busy pod, keeps the scale-down delay across a restart, and removes idle pods first', async () => {
    // Release 2 changed only the rollout settings: the pods of release 1 keep running.
    const pods = await waitFor(
      '3 ready pods, started by release 1',
      async () => {
        const p = await podsOf(client, ns(), NAME);
        return p.length === 3 &&
          p.every(
            (x) =>
              x.metadata?.labels?.['modelplane.dev/release'] === '1' &&
              x.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
          )
          ? p
          : undefined;
      },
      { timeoutMs: 60_000 },
    );
    const busy = pods[0]?.metadata?.name as string;
    demand(0, 2, { [busy]: 2 }); // one instance's worth, all of it on one pod
    const state = await waitFor(
      'the scale-down delay to start, in the annotation',
      async () => {
        const s = decodeState((await workload()).metadata?.annotations?.[STATE_ANNOTATION]);
        return s.lowerSinceMs !== undefined ? s : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 50 },
    );
    const lowerSince = state.lowerSinceMs as number;
    await waitFor(
      'the busy pod marked',
      async () => {
        const p = (await podsOf(client, ns(), NAME)).find((x) => x.metadata?.name === busy);
        return p?.metadata?.annotations?.[ANNOTATION.podDeletionCost] === '2';
      },
      { timeoutMs: 5_000 },
    );
    // Restart three seconds into the delay.
    await waitFor('3 s into the delay', () => Date.now() >= lowerSince + 3_000, { timeoutMs: 10_000 });
    await stop();
    const op = await start(500);
    const before = await decisions(op);
    await waitFor('the new autoscaler to tick', async () => (await decisions(op)) >= before + 2, {
      timeoutMs: 15_000,
    });
    const w = await workload();
    expect(w.spec?.replicas).toBe(3);
    expect(decodeState(w.metadata?.annotations?.[STATE_ANNOTATION]).lowerSinceMs).toBe(lowerSince);
    const down = await waitFor(
      'the first step down',
      async () => {
        const w = await workload();
        return (w.spec?.replicas ?? 3) < 3 ? Date.now() : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 20 },
    );
    // Counted from when the first process started the delay, not from the restart.
    expect(down).toBeGreaterThanOrEqual(lowerSince + DELAY_S * 1000);
    expect(down).toBeLessThan(lowerSince + (DELAY_S + 3) * 1000);
    const ev = await waitFor('a ScaledDown Event', async () => (await events('ScaledDown'))[0]);
    expect(ev.note).toMatch(new RegExp(`wanted for the ${DELAY_S} s scale-down delay`));
    // Down to one instance: the busy pod is the one left.
    await replicasReach(1, 40_000);
    const left = await waitFor(
      'one pod left',
      async () => {
        const p = await podsOf(client, ns(), NAME);
        return p.length === 1 ? p : undefined;
      },
      { timeoutMs: 30_000 },
    );
    expect(left[0]?.metadata?.name).toBe(busy);
  });

  it('goes to zero once idle, then a tick that changes nothing writes nothing', async () => {
    source.set({ namespace: ns(), name: NAME, queued: 0, inflight: 0, perPod: {} });
    await replicasReach(0, 40_000);
    await waitFor('a ScaledToZero Event', async () => (await events('ScaledToZero'))[0]);
    await waitFor(
      'status desiredInstances 0',
      async () => (await deployment()).status?.desiredInstances === 0,
      {
        timeoutMs: 5_000,
      },
    );
    await waitFor('no pods', async () => (await podsOf(client, ns(), NAME)).length === 0, {
      timeoutMs: 30_000,
    });
    // Let the last status and state writes land, then watch the resourceVersions.
    const settled = async () => {
      const [w, d] = await Promise.all([workload(), deployment()]);
      return `${w.metadata?.resourceVersion}/${d.metadata?.resourceVersion}`;
    };
    let rv = await settled();
    await waitFor(
      'the objects to settle',
      async () => {
        await new Promise((r) => setTimeout(r, 1_500));
        const now = await settled();
        const same = now === rv;
        rv = now;
        return same;
      },
      { timeoutMs: 20_000 },
    );
    const op = operator as Operator;
    const before = await decisions(op);
    await waitFor('five more ticks', async () => (await decisions(op)) >= before + 5, { timeoutMs: 10_000 });
    expect(await settled()).toBe(rv);
  });
});
