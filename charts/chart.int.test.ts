/**
 * The chart against a real API server: `helm install` into a namespace that enforces the
 * restricted Pod Security Standard (the operator pods are admitted; kwok nodes play them, as
 * there is no image to run), the default values pass a server-side dry run (CRDs, RBAC, the
 * default HardwareClasses), `helm upgrade` keeps the stream key the install made and moves
 * the release from the embedded store to PostgreSQL, and `helm uninstall` removes the
 * release but keeps the CRDs and the embedded store's claim.
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

let streamKey = '';

/** The key in the stream key Secret the chart made. */
async function readStreamKey(): Promise<string> {
  const secret = await cluster.core.readNamespacedSecret({
    name: `${release}-modelplane-stream-key`,
    namespace: ns(),
  });
  return Buffer.from(secret.data?.key ?? '', 'base64').toString();
}

/** This release's operator pods on store `store`, once there are `n` and no others. */
function operatorPods(n: number, store = 'embedded') {
  return waitFor(
    `${n} operator pod(s) on the ${store} store`,
    async () => {
      const list = await cluster.core.listNamespacedPod({
        namespace: ns(),
        labelSelector: `${DEFAULT_PEER_SELECTOR},app.kubernetes.io/instance=${release}`,
      });
      const on = list.items.filter(
        (p) => p.spec?.containers[0]?.env?.find((e) => e.name === 'MODELPLANE_STORE')?.value === store,
      );
      return on.length === n && list.items.length === n ? on : undefined;
    },
    { timeoutMs: 60_000 },
  );
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
    expect(out).toContain(
      `Predictions are kept in the embedded store, on the PersistentVolumeClaim\n${release}-modelplane-store`,
    );

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
    // The Pod Security admission of the API server admits the replica (one, on the embedded
    // store), and the peer selector of the autoscaler finds it.
    const pods = await operatorPods(1);
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
    expect(svc.spec?.sessionAffinity).toBe('None');
    // The embedded store's claim, and the stream key made on install.
    const claim = await cluster.core.readNamespacedPersistentVolumeClaim({
      name: `${release}-modelplane-store`,
      namespace: ns(),
    });
    expect(claim.spec?.accessModes).toEqual(['ReadWriteOnce']);
    expect(pods[0]!.spec?.volumes?.find((v) => v.name === 'store')?.persistentVolumeClaim?.claimName).toBe(
      claim.metadata?.name,
    );
    streamKey = await readStreamKey();
    expect(streamKey).toMatch(/^[A-Za-z0-9]{64}$/);
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

  it('helm upgrade re-creates the HardwareClasses from the values, and keeps the stream key', async () => {
    const values = join(home, 'values.json');
    const changed = [{ ...classes[0]!, spec: { ...classes[0]!.spec, pricePerSecond: '0.000120' } }];
    writeFileSync(values, JSON.stringify({ hardwareClasses: { items: changed } }));
    const out = await helm('upgrade', release, chartPath, '--namespace', ns(), '--values', values);
    expect(out).toContain('STATUS: deployed');
    const hc = JSON.parse(await kubectl('get', 'hardwareclass', classes[0]!.name, '-o', 'json'));
    expect(hc.spec.pricePerSecond).toBe('0.000120');
    expect(await readStreamKey()).toBe(streamKey);
  });

  it('helm upgrade to PostgreSQL from a Secret runs two replicas, on the same stream key', async () => {
    await kubectl(
      'create',
      'secret',
      'generic',
      'db-app',
      '-n',
      ns(),
      '--from-literal=uri=postgresql://app:secret@db-rw:5432/app',
    );
    const values = join(home, 'values.json');
    writeFileSync(
      values,
      JSON.stringify({
        hardwareClasses: { items: classes },
        replicaCount: 2,
        store: { kind: 'postgres', postgres: { existingSecret: 'db-app' } },
        // Several replicas share their files in a bucket (a ReadWriteOnce claim holds one node).
        files: { kind: 's3', s3: { endpoint: 'http://s3.invalid:9000', bucket: 'files' } },
      }),
    );
    const out = await helm('upgrade', release, chartPath, '--namespace', ns(), '--values', values);
    expect(out).toContain('STATUS: deployed');
    expect(out).toContain(
      'Predictions are kept in PostgreSQL (the URL in the Secret db-app,\nkey uri); 2 replica(s)',
    );
    const deployment = await cluster.apps.readNamespacedDeployment({
      name: `${release}-modelplane-operator`,
      namespace: ns(),
    });
    expect(deployment.spec?.strategy?.type).toBe('RollingUpdate');
    const env = deployment.spec?.template.spec?.containers[0]?.env ?? [];
    expect(env.find((e) => e.name === 'MODELPLANE_DATABASE_URL')?.valueFrom?.secretKeyRef).toEqual({
      name: 'db-app',
      key: 'uri',
    });
    await operatorPods(2, 'postgres');
    expect(await readStreamKey()).toBe(streamKey);
  });

  it('helm uninstall removes the release and keeps the CRDs, HardwareClasses and the store claim', async () => {
    await helm('uninstall', release, '--namespace', ns(), '--wait');
    // The claim outlives the release (helm.sh/resource-policy: keep), with its predictions.
    const claim = await cluster.core.readNamespacedPersistentVolumeClaim({
      name: `${release}-modelplane-store`,
      namespace: ns(),
    });
    expect(claim.metadata?.deletionTimestamp).toBeUndefined();
    expect(
      await exists(() =>
        cluster.core.readNamespacedSecret({ name: `${release}-modelplane-stream-key`, namespace: ns() }),
      ),
    ).toBe(false);
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
