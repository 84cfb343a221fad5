/**
 * bench/autoscaler: how long a burst takes to reach the API server. A local control plane
 * runs; the operator's controllers and autoscaler run in this process with a DemandSource
 * whose numbers this bench sets (where the gateway's queues plug in). Each burst sets demand
 * on a scaled-to-zero Deployment and pokes the autoscaler, as the gateway does when it holds
 * a request with no ready instance; the time measured runs from the poke to the watch event
 * that shows the child apps/v1 Deployment's spec.replicas raised. Bursts go round-robin over
 * several Deployments, so each has scaled back to zero before its next burst.
 *
 * The other half of scaling from zero — pod Ready → first held request dispatched — belongs
 * to the gateway and is measured by bench/activation.ts (`make bench-activation`).
 *
 * Usage: node bench/autoscaler.ts [--bursts N] [--deployments N]   (or `make bench`)
 */
import { parseArgs } from 'node:util';
import { installCrds } from '../crds/index.ts';
import { startCluster } from '../harness/cluster/cluster.ts';
import { waitFor } from '../harness/processes.ts';
import { StaticDemandSource } from '../operator/autoscaler/testing.ts';
import {
  applyDefaultHardware,
  applyVersion,
  clientFor,
  startOperator,
  TEST_MANAGER,
} from '../operator/controllers/testing.ts';
import { Deployments, Models, type Workload, Workloads } from '../operator/resources.ts';
import type { KubeObject } from '../operator/runtime/index.ts';

const { values } = parseArgs({
  options: { bursts: { type: 'string', default: '40' }, deployments: { type: 'string', default: '8' } },
});
const BURSTS = Number(values.bursts);
const DEPLOYMENTS = Number(values.deployments);
const NS = 'bench-autoscaler';

const cluster = await startCluster({ log: (l) => process.stderr.write(`cluster: ${l}\n`) });
const client = clientFor(cluster.kubeconfig);
const source = new StaticDemandSource();
let operator: Awaited<ReturnType<typeof startOperator>> | undefined;
try {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(client);
  await client.request('POST', '/api/v1/namespaces', { body: { metadata: { name: NS } } });
  const names = Array.from({ length: DEPLOYMENTS }, (_, i) => `burst-${i}`);
  for (const name of names) {
    await client.apply(
      Models,
      {
        apiVersion: Models.apiVersion,
        kind: Models.kind,
        metadata: { name, namespace: NS },
        spec: {},
      } as never,
      { fieldManager: TEST_MANAGER },
    );
    await applyVersion(client, NS, name, `${name}-v1`);
    await client.apply(
      Deployments,
      {
        apiVersion: Deployments.apiVersion,
        kind: Deployments.kind,
        metadata: { name, namespace: NS },
        spec: {
          model: name,
          version: `${name}-v1`,
          hardware: 'cpu',
          minInstances: 0,
          maxInstances: 2,
          // Back to zero fast, so the next burst on it starts from zero again.
          scaling: {
            stableWindowSeconds: 6,
            panicWindowSeconds: 1,
            scaleDownDelaySeconds: 0,
            scaleToZeroAfterSeconds: 0,
          },
        },
      } as never,
      { fieldManager: TEST_MANAGER },
    );
  }
  // The default tick (1 s): the poke, not the tick, has to be fast.
  operator = await startOperator(cluster.kubeconfig, { logLevel: 'warn' }, { demandSources: [source] });

  // Replicas as the API server reports them, by watch.
  const seen = new Map<string, { replicas: number; at: number }>();
  const waiters: { name: string; done: (at: number) => void }[] = [];
  const watch = client.watch(Workloads, { namespace: NS }, (ev) => {
    const w = ev.object as Workload & KubeObject;
    const name = w.metadata?.name ?? '';
    const replicas = w.spec?.replicas ?? 0;
    const at = performance.now();
    seen.set(name, { replicas, at });
    if (replicas > 0) {
      for (const x of waiters.filter((x) => x.name === name)) x.done(at);
      waiters.splice(0, waiters.length, ...waiters.filter((x) => x.name !== name));
    }
  });
  const replicas = (name: string) => seen.get(name)?.replicas;
  await waitFor('every workload at zero', () => names.every((n) => replicas(n) === 0), { timeoutMs: 60_000 });

  const times: number[] = [];
  for (let i = 0; i < BURSTS; i++) {
    const name = names[i % names.length] as string;
    source.set({ namespace: NS, name, queued: 0, inflight: 0, perPod: {} });
    await waitFor(`${name} back at zero`, () => replicas(name) === 0, { timeoutMs: 60_000, intervalMs: 5 });
    const raised = new Promise<number>((done) => waiters.push({ name, done }));
    const t0 = performance.now();
    source.set({ namespace: NS, name, queued: 1, inflight: 0, perPod: {}, lastActivityMs: Date.now() });
    source.poke(NS, name);
    const t1 = await raised;
    times.push(t1 - t0);
    source.set({ namespace: NS, name, queued: 0, inflight: 0, perPod: {} });
  }
  watch.stop();

  const sorted = [...times].sort((a, b) => a - b);
  const q = (p: number) =>
    sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? Number.NaN;
  const ms = (x: number) => `${x.toFixed(1)} ms`;
  process.stdout.write(
    `\nburst (demand set + poke) → child replicas raised, seen by watch; ${times.length} bursts over ${DEPLOYMENTS} deployments\n`,
  );
  process.stdout.write(
    `  p50 ${ms(q(50))}   p99 ${ms(q(99))}   min ${ms(sorted[0] ?? 0)}   max ${ms(sorted.at(-1) ?? 0)}\n`,
  );
  process.stdout.write(
    `  target: ≤ 1000 ms — ${(sorted.at(-1) ?? 0) <= 1000 ? 'met by every burst' : 'NOT met'}\n`,
  );
  process.stdout.write(
    '\npod Ready → first held request dispatched: the gateway half of scaling from zero, measured by `make bench-activation` (not part of this run)\n',
  );
} finally {
  await operator?.stop();
  await cluster.stop();
}
