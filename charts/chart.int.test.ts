/**
 * The chart against a real API server: `helm install` into a namespace that enforces the
 * restricted Pod Security Standard (the operator pods are admitted; kwok nodes play them, as
 * there is no image to run), the default values pass a server-side dry run (CRDs, RBAC, the
 * default HardwareClasses), and `helm uninstall` removes the release but keeps the CRDs.
 *
 * The CRDs are shared by every test file of a run: when another file installed them first
 * they are adopted by the release (Helm's ownership annotations), and never deleted here.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ApiException, ApiextensionsV1Api, RbacAuthorizationV1Api } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GROUP } from '../crds/constants.ts';
import { crds } from '../crds/crd.ts';
import { useCluster, useNamespace } from '../harness/cluster/testing.ts';
import { waitFor } from '../harness/processes.ts';
import { DEFAULT_PEER_SELECTOR } from '../operator/autoscaler/peers.ts';
import { chartPath, parseManifests, runHelm, templateArgs } from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'chart');
const ext = cluster.kc.makeApiClient(ApiextensionsV1Api);
const rbac = cluster.kc.makeApiClient(RbacAuthorizationV1Api);
const home = mkdtempSync(join(tmpdir(), 'chart-helm-'));
const kubectl = (...args: string[]) => cluster.kubectl(`--cache-dir=${join(home, 'kube-cache')}`, ...args);
const helmEnv = {
  KUBECONFIG: cluster.kubeconfig,
  HELM_CACHE_HOME: join(home, 'cache'),
  HELM_CONFIG_HOME: join(home, 'config'),
  HELM_DATA_HOME: join(home, 'data'),
};
const suffix = randomBytes(3).toString('hex');
const release = `mp-${suffix}`;
/** HardwareClasses of this file's own (cluster-scoped names no other file uses). */
const classes = [
  {
    name: `chart-${suffix}-cpu`,
    spec: { displayName: 'CPU', resources: { cpu: '1', memory: '2Gi' }, pricePerSecond: '0.000100' },
  },
  {
    name: `chart-${suffix}-t4`,
    spec: {
      displayName: 'Nvidia T4 GPU',
      gpu: { resourceName: 'nvidia.com/gpu', count: 1, products: ['Tesla-T4'] },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      resources: { cpu: '3', memory: '14Gi' },
      pricePerSecond: '0.000225',
    },
  },
];
const crdNames = crds().map((c) => c.metadata.name);

async function helm(...args: string[]): Promise<string> {
  const r = await runHelm(args, helmEnv);
  if (r.code !== 0) throw new Error(`helm ${args.join(' ')} failed (${r.code}):\n${r.stderr}`);
  return r.stdout;
}

async function exists(read: () => Promise<unknown>): Promise<boolean> {
  try {
    await read();
    return true;
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return false;
    throw err;
  }
}

beforeAll(async () => {
  await kubectl('label', 'namespace', ns(), 'pod-security.kubernetes.io/enforce=restricted');
  // CRDs another file installed: let this release adopt them (Helm refuses objects it does not own).
  for (const name of crdNames) {
    if (!(await exists(() => ext.readCustomResourceDefinition({ name })))) continue;
    await kubectl('label', '--overwrite', 'crd', name, 'app.kubernetes.io/managed-by=Helm');
    await kubectl(
      'annotate',
      '--overwrite',
      'crd',
      name,
      `meta.helm.sh/release-name=${release}`,
      `meta.helm.sh/release-namespace=${ns()}`,
    );
  }
});

afterAll(async () => {
  await runHelm(['uninstall', release, '--namespace', ns(), '--ignore-not-found'], helmEnv);
  for (const c of classes) await kubectl('delete', 'hardwareclass', c.name, '--ignore-not-found');
  rmSync(home, { recursive: true, force: true });
});

describe('helm install', () => {
  it('installs the release: CRDs served, RBAC, the operator admitted under restricted Pod Security', async () => {
    const values = join(home, 'values.json');
    // Without the webhook role: its configuration would send the shared cluster's admissions to
    // a Service no process answers (the server-side dry run below checks its objects).
    writeFileSync(
      values,
      JSON.stringify({
        hardwareClasses: { items: classes },
        operator: { roles: ['controllers', 'gateway'] },
      }),
    );
    const out = await helm('install', release, chartPath, '--namespace', ns(), '--values', values);
    expect(out).toContain('STATUS: deployed');
    // NOTES: how to reach the API and make a token.
    expect(out).toContain(`http://${release}-modelplane-gateway.${ns()}.svc/v1`);
    expect(out).toContain(`modelplane token create ci --namespaces default --token-namespace ${ns()}`);

    for (const name of crdNames) {
      const crd = await ext.readCustomResourceDefinition({ name });
      expect(crd.metadata?.annotations?.['helm.sh/resource-policy']).toBe('keep');
      expect(crd.status?.conditions?.find((c) => c.type === 'Established')?.status).toBe('True');
    }
    const hc = JSON.parse(await kubectl('get', 'hardwareclass', classes[1]!.name, '-o', 'json'));
    expect(hc.spec.pricePerSecond).toBe('0.000225');
    expect(hc.spec.gpu.products).toEqual(['Tesla-T4']);

    const role = await rbac.readClusterRole({ name: `${release}-modelplane-operator` });
    expect(role.rules?.length).toBeGreaterThan(5);
    const binding = await rbac.readClusterRoleBinding({ name: `${release}-modelplane-operator` });
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: `${release}-modelplane-operator`, namespace: ns() },
    ]);
    // The Pod Security admission of the API server admits both replicas, and the peer
    // selector of the autoscaler finds them.
    const pods = await waitFor(
      'the two operator pods',
      async () => {
        const list = await cluster.core.listNamespacedPod({
          namespace: ns(),
          labelSelector: `${DEFAULT_PEER_SELECTOR},app.kubernetes.io/instance=${release}`,
        });
        return list.items.length === 2 ? list.items : undefined;
      },
      { timeoutMs: 60_000 },
    );
    for (const pod of pods) {
      expect(pod.spec?.containers[0]?.ports?.map((p) => p.name)).toEqual(['http-api', 'metrics']);
      expect(pod.spec?.securityContext?.runAsUser).toBe(65532);
    }
    const events = await cluster.core.listNamespacedEvent({ namespace: ns() });
    expect(
      events.items.filter((e) => /violates PodSecurity/.test(e.message ?? '')).map((e) => e.message),
    ).toEqual([]);
    const svc = await cluster.core.readNamespacedService({
      name: `${release}-modelplane-gateway`,
      namespace: ns(),
    });
    expect(svc.spec?.ports?.[0]?.targetPort).toBe('http-api');
  });

  it('passes a server-side dry run with the default values: the default HardwareClasses are valid', async () => {
    const rendered = await runHelm(templateArgs(`dry-${suffix}`, ns()), helmEnv);
    expect(rendered.code).toBe(0);
    const objs = parseManifests(rendered.stdout);
    expect(objs.filter((o) => o.kind === 'HardwareClass').length).toBeGreaterThanOrEqual(10);
    const file = join(home, 'default.yaml');
    writeFileSync(file, rendered.stdout);
    const out = await kubectl(
      'apply',
      '--server-side',
      '--dry-run=server',
      '--force-conflicts',
      '--field-manager=chart-test',
      '-f',
      file,
    );
    for (const o of objs) expect(out).toContain(`${o.metadata.name} serverside-applied (server dry run)`);
    // A dry run creates nothing.
    expect(await exists(() => rbac.readClusterRole({ name: `dry-${suffix}-modelplane-operator` }))).toBe(
      false,
    );
  });

  it('helm upgrade re-creates the HardwareClasses from the values', async () => {
    const values = join(home, 'values.json');
    const changed = [{ ...classes[0]!, spec: { ...classes[0]!.spec, pricePerSecond: '0.000120' } }];
    writeFileSync(values, JSON.stringify({ hardwareClasses: { items: changed } }));
    const out = await helm('upgrade', release, chartPath, '--namespace', ns(), '--values', values);
    expect(out).toContain('STATUS: deployed');
    const hc = JSON.parse(await kubectl('get', 'hardwareclass', classes[0]!.name, '-o', 'json'));
    expect(hc.spec.pricePerSecond).toBe('0.000120');
  });

  it('helm uninstall removes the release and keeps the CRDs and HardwareClasses', async () => {
    await helm('uninstall', release, '--namespace', ns(), '--wait');
    expect(await exists(() => rbac.readClusterRole({ name: `${release}-modelplane-operator` }))).toBe(false);
    expect(
      await exists(() =>
        cluster.apps.readNamespacedDeployment({ name: `${release}-modelplane-operator`, namespace: ns() }),
      ),
    ).toBe(false);
    for (const name of crdNames)
      expect(await exists(() => ext.readCustomResourceDefinition({ name }))).toBe(true);
    // The API still serves the kinds, and the HardwareClasses are still there.
    const left = await kubectl('get', `hardwareclasses.${GROUP}`, '-o', 'name');
    expect(left).toContain(`hardwareclass.${GROUP}/${classes[0]!.name}`);
  });
});
