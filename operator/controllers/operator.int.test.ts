/**
 * `modelplane operator` as its own process, under the ClusterRole of operator/rbac.yaml (a
 * ServiceAccount token from the TokenRequest API): killed in the middle of its work and
 * started again, and two replicas sharing one Lease.
 */
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { installCrds } from '../../crds/index.ts';
import { kubeconfigYaml } from '../../harness/cluster/local.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { freePort, GroupProcess, groupAlive, stopGroup, waitFor } from '../../harness/processes.ts';
import { Deployments, HardwareClasses, Workloads } from '../resources.ts';
import { type KubeObject, Leases, resourceType } from '../runtime/index.ts';
import { applyDefaultHardware, applyModel, clientFor, TEST_MANAGER, workloadsOf } from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-operator');
const admin = clientFor(cluster.kubeconfig);
const dir = mkdtempSync(join(tmpdir(), 'modelplane-operator-'));
const bin = new URL('../../bin/modelplane', import.meta.url).pathname;
// rbac.yaml: the ClusterRole first, the Secrets Role of the operator's namespace second, the
// Lease Role fifth (the webhook's two objects and the optional pod-deletion-cost one are not
// needed by the controllers).
const rbacDocs = parseAllDocuments(readFileSync(new URL('../rbac.yaml', import.meta.url), 'utf8')).map(
  (d) => d.toJS() as KubeObject & { rules: Array<Record<string, unknown>> },
);
const rbac = rbacDocs[0]!;
const secretsRole = rbacDocs[1]!;
const leaseRole = rbacDocs[4]!;
const LEASE = 'modelplane-operator-test';
const LEASE_SECONDS = 3;
const TINY = 'test-tiny';

const ServiceAccounts = resourceType({
  apiVersion: 'v1',
  kind: 'ServiceAccount',
  plural: 'serviceaccounts',
  namespaced: true,
});
const ClusterRoles = resourceType({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRole',
  plural: 'clusterroles',
  namespaced: false,
});
const Roles = resourceType({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'Role',
  plural: 'roles',
  namespaced: true,
});
const RoleBindings = resourceType({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'RoleBinding',
  plural: 'rolebindings',
  namespaced: true,
});
const ClusterRoleBindings = resourceType({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRoleBinding',
  plural: 'clusterrolebindings',
  namespaced: false,
});
const ReplicaSets = resourceType({
  apiVersion: 'apps/v1',
  kind: 'ReplicaSet',
  plural: 'replicasets',
  namespaced: true,
});

let kubeconfig = '';
const running: GroupProcess[] = [];

interface Operator {
  process: GroupProcess;
  identity: string;
  metrics(): Promise<string>;
}

async function startOperatorProcess(identity: string, workers = 4): Promise<Operator> {
  const port = await freePort();
  const process_ = new GroupProcess(
    identity,
    bin,
    [
      'operator',
      '--roles=controllers',
      `--kubeconfig=${kubeconfig}`,
      `--identity=${identity}`,
      `--lease-name=${LEASE}`,
      `--lease-namespace=${ns()}`,
      `--token-namespace=${ns()}`,
      `--lease-duration=${LEASE_SECONDS}`,
      '--renew-deadline=2',
      '--retry-period=0.5',
      `--http-address=127.0.0.1:${port}`,
      `--workers=${workers}`,
      '--sidecar-image=registry.example.com/modelplane:test',
      '--log-level=info',
    ],
    { logFile: join(dir, `${identity}.log`), env: { ...process.env, KUBECONFIG: '' } },
  );
  running.push(process_);
  const metrics = async () => (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  await waitFor(
    `${identity} to serve /healthz`,
    async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok,
    {
      timeoutMs: 30_000,
    },
  );
  return { process: process_, identity, metrics };
}

function kill(op: Operator): void {
  process.kill(-op.process.pid, 'SIGKILL');
}

async function holder(): Promise<string | undefined> {
  return (await admin.find(Leases, LEASE, ns()))?.spec?.holderIdentity;
}

/** Sum of a counter's samples whose labels contain every `label="value"` given. */
function sample(text: string, metric: string, ...labels: string[]): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${metric}{`) || l.startsWith(`${metric} `))
    .filter((l) => labels.every((x) => l.includes(x)))
    .reduce((s, l) => s + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(admin);
  await admin.apply(
    HardwareClasses,
    {
      apiVersion: HardwareClasses.apiVersion,
      kind: HardwareClasses.kind,
      metadata: { name: TINY },
      spec: {
        displayName: 'Tiny CPU',
        resources: { cpu: '10m', memory: '16Mi' },
        pricePerSecond: '0.000001',
      },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  // The operator's identity: a ServiceAccount bound to exactly the ClusterRole of rbac.yaml.
  const role = `modelplane-operator-${ns()}`;
  await admin.apply(ClusterRoles, { ...rbac, metadata: { name: role } }, { fieldManager: TEST_MANAGER });
  await admin.apply(
    ServiceAccounts,
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'modelplane-operator', namespace: ns() } },
    { fieldManager: TEST_MANAGER },
  );
  await admin.apply(
    ClusterRoleBindings,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: role },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects: [{ kind: 'ServiceAccount', name: 'modelplane-operator', namespace: ns() }],
    } as KubeObject,
    { fieldManager: TEST_MANAGER },
  );
  // The Roles of the operator's namespace (here the test's): Secrets, and the Lease by its name.
  for (const [doc, rules] of [
    [secretsRole, secretsRole.rules],
    [leaseRole, leaseRole.rules.map((r) => (r.resourceNames ? { ...r, resourceNames: [LEASE] } : r))],
  ] as const) {
    const name = doc.metadata?.name ?? '';
    await admin.apply(
      Roles,
      { apiVersion: doc.apiVersion, kind: 'Role', metadata: { name, namespace: ns() }, rules } as KubeObject,
      { fieldManager: TEST_MANAGER },
    );
    await admin.apply(
      RoleBindings,
      {
        apiVersion: 'rbac.authorization.k8s.io/v1',
        kind: 'RoleBinding',
        metadata: { name, namespace: ns() },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name },
        subjects: [{ kind: 'ServiceAccount', name: 'modelplane-operator', namespace: ns() }],
      } as KubeObject,
      { fieldManager: TEST_MANAGER },
    );
  }
  const token = await cluster.core.createNamespacedServiceAccountToken({
    name: 'modelplane-operator',
    namespace: ns(),
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const current = cluster.kc.getCurrentCluster()!;
  const ca = current.caData ? Buffer.from(current.caData, 'base64') : readFileSync(current.caFile ?? '');
  kubeconfig = join(dir, 'operator.kubeconfig');
  writeFileSync(
    kubeconfig,
    kubeconfigYaml(current.server, ca, 'modelplane-operator', token.status?.token ?? ''),
    {
      mode: 0o600,
    },
  );
});

afterAll(async () => {
  for (const p of running) if (groupAlive(p.pid)) await stopGroup(p.pid);
  for (const w of await workloadsOf(admin, ns())) {
    await admin.delete(Workloads, w.metadata?.name ?? '', ns(), { propagationPolicy: 'Background' });
  }
  const role = `modelplane-operator-${ns()}`;
  await admin.delete(ClusterRoleBindings, role).catch(() => {});
  await admin.delete(ClusterRoles, role).catch(() => {});
});

const MANY = 40;
const names = Array.from({ length: MANY }, (_, i) => `many-${String(i).padStart(2, '0')}`);
let survivor: Operator;

/** `kubectl auth can-i` as the operator's ServiceAccount: 'yes' or 'no'. */
async function canI(verb: string, resource: string, where: string[]): Promise<string> {
  const args = [
    'auth',
    'can-i',
    verb,
    resource,
    `--as=system:serviceaccount:${ns()}:modelplane-operator`,
    ...where,
  ];
  try {
    return (await cluster.kubectl(...args)).trim();
  } catch (err) {
    // kubectl exits 1 for "no".
    const out = String((err as { stdout?: string }).stdout ?? '').trim();
    if (out === 'no') return out;
    throw err;
  }
}

describe('the RBAC of operator/rbac.yaml', () => {
  it('lets the operator do what it needs and none of what an intruder would want', async () => {
    const other = ['--namespace', 'kube-system'];
    const own = ['--namespace', ns()];
    const all = ['--all-namespaces'];
    const mustNot: Array<[string, string, string[]]> = [
      ...['get', 'list', 'watch', 'create', 'update', 'patch', 'delete'].map(
        (v) => [v, 'secrets', other] as [string, string, string[]],
      ),
      ['list', 'secrets', all],
      ['patch', 'pods', other],
      ['update', 'pods', other],
      ['delete', 'pods', other],
      ['create', 'pods', other],
      ['create', 'pods/exec', other],
      ['create', 'pods/eviction', other],
      ['create', 'serviceaccounts/token', other],
      ['get', 'leases', other],
      ['update', 'leases', other],
      ['update', 'leases/some-other-lease', own],
      ['delete', 'leases', own],
      ['update', 'secrets', own],
      ['delete', 'secrets', own],
      ['create', 'rolebindings', other],
      ['create', 'clusterrolebindings', all],
      ['escalate', 'clusterroles', all],
      ['bind', 'clusterroles', all],
      ['patch', 'nodes', all],
      ['delete', 'deployments.apps', other],
      ['update', 'deployments.apps', other],
      ['create', 'configmaps', other],
    ];
    const must: Array<[string, string, string[]]> = [
      ['get', `leases/${LEASE}`, own],
      ['update', `leases/${LEASE}`, own],
      ['create', 'leases', own],
      ['get', 'secrets', own],
      ['create', 'secrets', own],
      ['list', 'pods', all],
      ['list', 'replicasets.apps', all],
      ['patch', 'deployments.apps', other],
      ['create', 'tokenreviews.authentication.k8s.io', all],
    ];
    const answers = async (list: Array<[string, string, string[]]>) =>
      Promise.all(list.map(async ([v, r, w]) => `${v} ${r} ${w.join(' ')}: ${await canI(v, r, w)}`));
    expect(await answers(mustNot)).toEqual(mustNot.map(([v, r, w]) => `${v} ${r} ${w.join(' ')}: no`));
    expect(await answers(must)).toEqual(must.map(([v, r, w]) => `${v} ${r} ${w.join(' ')}: yes`));
  });
});

describe('modelplane operator', () => {
  it('killed in the middle of reconciling many Deployments, converges after a restart with no duplicate children', async () => {
    for (const name of names) await applyModel(admin, ns(), name, { hardware: TINY });
    const first = await startOperatorProcess('first', 1);
    const atKill = await waitFor(
      'the first workloads',
      async () => {
        const n = (await workloadsOf(admin, ns())).length;
        return n > 0 ? n : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 10 },
    );
    kill(first);
    await first.process.exited;
    expect(atKill).toBeLessThan(MANY);

    survivor = await startOperatorProcess('second');
    await waitFor(
      `all ${MANY} Deployments to be Ready`,
      async () => {
        const { items } = await admin.list(Deployments, { namespace: ns() });
        const ready = items.filter((d) =>
          d.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
        );
        return ready.length === MANY;
      },
      { timeoutMs: 90_000, intervalMs: 250 },
    );
    expect(await holder()).toBe('second');
    const workloads = await workloadsOf(admin, ns());
    expect(workloads.map((w) => w.metadata?.name).sort()).toEqual(names);
    for (const w of workloads) {
      expect(w.metadata?.ownerReferences?.filter((r) => r.controller)).toHaveLength(1);
    }
    const sets = await admin.list(ReplicaSets, {
      namespace: ns(),
      labelSelector: 'modelplane.dev/deployment',
    });
    expect(sets.items).toHaveLength(MANY);
    const { items } = await admin.list(Deployments, { namespace: ns() });
    expect(items.every((d) => d.status?.release === 1)).toBe(true);
    // Everything went through the ServiceAccount's ClusterRole: no request was refused.
    const text = await survivor.metrics();
    expect(sample(text, 'rest_client_requests_total', 'code="403"')).toBe(0);
    expect(sample(text, 'rest_client_requests_total', 'method="PATCH"')).toBeGreaterThan(0);
  });

  it('with two replicas only the Lease holder writes; stopping it hands over within the lease duration', async () => {
    const standby = await startOperatorProcess('standby');
    await applyModel(admin, ns(), 'two-replicas', { hardware: TINY });
    await waitFor(
      'two-replicas to be reconciled',
      async () => (await admin.get(Deployments, 'two-replicas', ns())).status?.release === 1,
    );
    expect(await holder()).toBe('second');
    const idle = await standby.metrics();
    expect(sample(idle, 'leader_election_master_status')).toBe(0);
    for (const method of ['POST', 'PATCH', 'PUT', 'DELETE']) {
      expect(sample(idle, 'rest_client_requests_total', `method="${method}"`), method).toBe(0);
    }
    expect(sample(idle, 'controller_runtime_reconcile_total')).toBe(0);

    const stoppedAt = Date.now();
    await stopGroup(survivor.process.pid);
    const took = await waitFor(
      'the standby to hold the Lease',
      async () => ((await holder()) === 'standby' ? Date.now() - stoppedAt : undefined),
      {
        timeoutMs: 30_000,
        intervalMs: 50,
      },
    );
    expect(took).toBeLessThan(LEASE_SECONDS * 1000);
    await applyModel(admin, ns(), 'after-handover', { hardware: TINY });
    await waitFor(
      'after-handover to be reconciled by the new leader',
      async () => (await admin.get(Deployments, 'after-handover', ns())).status?.release === 1,
    );
    expect(
      sample(await standby.metrics(), 'controller_runtime_reconcile_total', 'controller="deployment"'),
    ).toBeGreaterThan(0);
  });
});
