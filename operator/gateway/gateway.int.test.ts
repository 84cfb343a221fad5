/**
 * The gateway against a real control plane, called with the official `replicate` npm client.
 * The operator (controllers and gateway) runs in this process under the permissions of
 * operator/rbac.yaml (a ServiceAccount bound to exactly its ClusterRole and Role).
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import Replicate from 'replicate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { installCrds } from '../../crds/index.ts';
import { kubeconfigYaml } from '../../harness/cluster/local.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { freePort, GroupProcess, groupAlive, stopGroup, waitFor } from '../../harness/processes.ts';
import { addControllers } from '../controllers/index.ts';
import { applyDefaultHardware, clientFor, TEST_MANAGER } from '../controllers/testing.ts';
import { Deployments, Models, ModelVersions, Secrets, Workloads } from '../resources.ts';
import { createLogger, type KubeObject, Leases, Manager, resourceType } from '../runtime/index.ts';
import { addGateway, type Gateway } from './index.ts';
import { createApiToken, revokeApiToken } from './tokens.ts';
import { webhookSecret, webhookSecretName } from './webhook-secret.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-gw');
const other = useNamespace(cluster, 'mp-gw-other');
const tokenNs = useNamespace(cluster, 'mp-gw-system');
const admin = clientFor(cluster.kubeconfig);

const rbac = parseAllDocuments(readFileSync(new URL('../rbac.yaml', import.meta.url), 'utf8')).map(
  (d) => d.toJS() as KubeObject & { rules: unknown[] },
);
const rbacType = (kind: string, plural: string, namespaced: boolean) =>
  resourceType({ apiVersion: 'rbac.authorization.k8s.io/v1', kind, plural, namespaced });
const ClusterRoles = rbacType('ClusterRole', 'clusterroles', false);
const ClusterRoleBindings = rbacType('ClusterRoleBinding', 'clusterrolebindings', false);
const Roles = rbacType('Role', 'roles', true);
const RoleBindings = rbacType('RoleBinding', 'rolebindings', true);
const ServiceAccounts = resourceType({
  apiVersion: 'v1',
  kind: 'ServiceAccount',
  plural: 'serviceaccounts',
  namespaced: true,
});

class Lines extends Writable {
  text = '';
  override _write(chunk: Buffer, _enc: string, done: () => void) {
    this.text += chunk.toString('utf8');
    done();
  }
}

const logs = new Lines();
const dir = mkdtempSync(join(tmpdir(), 'modelplane-gateway-'));
/** The operator's kubeconfig (its ServiceAccount under rbac.yaml), as a file. */
let operatorKubeconfig = '';
let manager: Manager;
let gateway: Gateway;
/** A second gateway on the same manager that lets callers without a token act in `ns`, one item a page. */
let anonymous: Gateway;
let flooded: Gateway;
let versionId = '';
let token = ''; // API token for ns
let otherToken = ''; // API token for other
let readOnlyToken = '';
const secrets: string[] = [];

function client(auth: string): Replicate {
  return new Replicate({ auth, baseUrl: `${gateway.url}/v1` });
}

/** The error a client call rejects with, with the HTTP status of its response. */
async function failure(p: Promise<unknown>): Promise<{ status: number; message: string; body: unknown }> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { response?: Response };
    const m = /failed with status \d+ [^:]*: (\{.*\})\.$/s.exec(e.message);
    return { status: e.response?.status ?? 0, message: e.message, body: m ? JSON.parse(m[1]!) : undefined };
  }
  throw new Error('the call succeeded');
}

async function serviceAccountToken(namespace: string, name: string): Promise<string> {
  await admin.apply(
    ServiceAccounts,
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace } },
    { fieldManager: TEST_MANAGER },
  );
  const t = await cluster.core.createNamespacedServiceAccountToken({
    name,
    namespace,
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  const value = t.status?.token ?? '';
  secrets.push(value);
  return value;
}

/** examples/rbac/prediction-caller.yaml, applied in `namespace` as a user would. */
async function applyCallerExample(namespace: string): Promise<void> {
  const text = readFileSync(new URL('../../examples/rbac/prediction-caller.yaml', import.meta.url), 'utf8');
  const types: Record<string, typeof Roles> = {
    ServiceAccount: ServiceAccounts,
    Role: Roles,
    RoleBinding: RoleBindings,
  };
  for (const doc of parseAllDocuments(text)) {
    const obj = doc.toJS() as KubeObject & { subjects?: { namespace?: string }[] };
    const type = types[obj.kind ?? ''];
    if (!type) throw new Error(`unexpected ${obj.kind} in the example`);
    for (const subject of obj.subjects ?? []) subject.namespace = namespace;
    await admin.apply(
      type,
      { ...obj, metadata: { ...obj.metadata, namespace } },
      { fieldManager: TEST_MANAGER },
    );
  }
}

/** A kubeconfig for a ServiceAccount bound to exactly operator/rbac.yaml. */
async function operatorKubeConfig(): Promise<KubeConfig> {
  const role = `modelplane-gateway-${ns()}`;
  const [clusterRole, secretsRole] = rbac;
  await admin.apply(
    ClusterRoles,
    { ...clusterRole!, metadata: { name: role } },
    { fieldManager: TEST_MANAGER },
  );
  await admin.apply(
    Roles,
    { ...secretsRole!, metadata: { name: 'modelplane-operator-secrets', namespace: tokenNs() } },
    { fieldManager: TEST_MANAGER },
  );
  const sa = 'modelplane-operator';
  await admin.apply(
    ServiceAccounts,
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: sa, namespace: tokenNs() } },
    { fieldManager: TEST_MANAGER },
  );
  const subjects = [{ kind: 'ServiceAccount', name: sa, namespace: tokenNs() }];
  await admin.apply(
    ClusterRoleBindings,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'ClusterRoleBinding',
      metadata: { name: role },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
      subjects,
    } as KubeObject,
    { fieldManager: TEST_MANAGER },
  );
  await admin.apply(
    RoleBindings,
    {
      apiVersion: 'rbac.authorization.k8s.io/v1',
      kind: 'RoleBinding',
      metadata: { name: 'modelplane-operator-secrets', namespace: tokenNs() },
      roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'modelplane-operator-secrets' },
      subjects,
    } as KubeObject,
    { fieldManager: TEST_MANAGER },
  );
  const saToken = await serviceAccountToken(tokenNs(), sa);
  const current = cluster.kc.getCurrentCluster()!;
  const ca = current.caData ? Buffer.from(current.caData, 'base64') : readFileSync(current.caFile ?? '');
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml(current.server, ca, sa, saToken));
  return kc;
}

async function applyModel(namespace: string, name: string, visibility: 'public' | 'private') {
  await admin.apply(
    Models,
    {
      apiVersion: Models.apiVersion,
      kind: Models.kind,
      metadata: { name, namespace },
      spec: { visibility, description: `the ${name} model` },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  await admin.apply(
    ModelVersions,
    {
      apiVersion: ModelVersions.apiVersion,
      kind: ModelVersions.kind,
      metadata: { name: `${name}-v1`, namespace },
      spec: {
        model: name,
        image: `registry.example.com/models/${name}:1.0`,
        cogVersion: '0.16.8',
        openapiSchema: { openapi: '3.0.2', components: { schemas: { Input: { type: 'object' } } } },
      },
    } as never,
    { fieldManager: TEST_MANAGER },
  );
  return waitFor(`the id of ${namespace}/${name}-v1`, async () => {
    const v = await admin.get(ModelVersions, `${name}-v1`, namespace);
    return v.status?.id;
  });
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(admin);
  const kc = await operatorKubeConfig();
  operatorKubeconfig = join(dir, 'operator.kubeconfig');
  writeFileSync(operatorKubeconfig, kc.exportConfig(), { mode: 0o600 });
  manager = new Manager({
    name: 'modelplane-gateway-test',
    kubeConfig: kc,
    leaderElection: false,
    http: false,
    shutdownTimeoutMs: 5_000,
    log: createLogger({ level: 'debug', destination: logs }),
  });
  addControllers(manager, { sidecarImage: 'registry.example.com/modelplane:test' });
  gateway = addGateway(manager, { address: { host: '127.0.0.1', port: 0 }, tokenNamespace: tokenNs() });
  anonymous = addGateway(manager, {
    address: { host: '127.0.0.1', port: 0 },
    tokenNamespace: tokenNs(),
    allowAnonymous: [ns()],
    pageSize: 1,
  });
  flooded = addGateway(manager, {
    address: { host: '127.0.0.1', port: 0 },
    tokenNamespace: tokenNs(),
    authReviewLimit: { perAddress: { perSecond: 0.1, burst: 5 }, total: { perSecond: 1, burst: 100 } },
  });
  await manager.start();
  versionId = await applyModel(ns(), 'echo', 'private');
  await applyModel(other(), 'secret-model', 'private');
  ({ token } = await createApiToken(admin, { name: 'ci', namespaces: [ns()], tokenNamespace: tokenNs() }));
  ({ token: otherToken } = await createApiToken(admin, {
    name: 'other',
    namespaces: [other()],
    tokenNamespace: tokenNs(),
  }));
  ({ token: readOnlyToken } = await createApiToken(admin, {
    name: 'reader',
    namespaces: [ns()],
    readOnly: true,
    tokenNamespace: tokenNs(),
  }));
  secrets.push(token, otherToken, readOnlyToken);
  // The token Secrets reach the gateway's cache through its watch.
  await waitFor('the gateway to accept the API token', async () => {
    const res = await fetch(`${gateway.url}/v1/hardware`, { headers: { authorization: `Bearer ${token}` } });
    return res.ok;
  });
});

afterAll(async () => {
  await manager?.stop();
  // Pods of Deployments a failed test left behind must not outlive the namespace's cleanup.
  for (const d of (await admin.list(Deployments, { namespace: ns() })).items) {
    await admin.delete(Deployments, d.metadata.name ?? '', ns(), { propagationPolicy: 'Background' });
  }
  for (const w of (await admin.list(Workloads, { namespace: ns() })).items) {
    await admin.delete(Workloads, w.metadata?.name ?? '', ns(), { propagationPolicy: 'Background' });
  }
  const role = `modelplane-gateway-${ns()}`;
  await admin.delete(ClusterRoleBindings, role).catch(() => {});
  await admin.delete(ClusterRoles, role).catch(() => {});
});

describe('models', () => {
  it('gets a model, its versions and one version, with the fields the clients validate', async () => {
    const replicate = client(token);
    const model = await replicate.models.get(ns(), 'echo');
    expect(model).toMatchObject({
      owner: ns(),
      name: 'echo',
      visibility: 'private',
      run_count: 0,
      description: 'the echo model',
      default_example: null,
      url: `${gateway.url}/v1/models/${ns()}/echo`,
    });
    expect(model.latest_version?.id).toBe(versionId);
    const versions = await replicate.models.versions.list(ns(), 'echo');
    expect(versions.results).toHaveLength(1);
    expect(versions.next).toBeNull();
    const v = versions.results[0]!;
    expect(v).toEqual({
      id: versionId,
      created_at: expect.stringMatching(/^\d{4}-\d\d-\d\dT/),
      cog_version: '0.16.8',
      openapi_schema: { openapi: '3.0.2', components: { schemas: { Input: { type: 'object' } } } },
    });
    expect(await replicate.models.versions.get(ns(), 'echo', versionId)).toEqual(v);
  });

  it('lists only the models the caller may list, and creates one kubectl sees', async () => {
    const replicate = client(token);
    const created = await replicate.models.create(ns(), 'made-by-api', {
      visibility: 'public',
      hardware: 'cpu',
      description: 'made over HTTP',
    });
    expect(created).toMatchObject({
      owner: ns(),
      name: 'made-by-api',
      visibility: 'public',
      latest_version: null,
    });
    const stored = await admin.get(Models, 'made-by-api', ns());
    expect(stored.spec).toMatchObject({
      visibility: 'public',
      defaultHardware: 'cpu',
      description: 'made over HTTP',
    });
    const names = (await replicate.models.list()).results.map((m) => `${m.owner}/${m.name}`);
    expect(names).toContain(`${ns()}/echo`);
    expect(names).toContain(`${ns()}/made-by-api`);
    expect(names).not.toContain(`${other()}/secret-model`);
    // A public model is readable by callers of other namespaces.
    expect((await client(otherToken).models.get(ns(), 'made-by-api')).name).toBe('made-by-api');
  });

  it('answers 404 for an unknown model and 403 for a private one in another namespace', async () => {
    const missing = await failure(client(token).models.get(ns(), 'nope'));
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ status: 404, detail: `the model ${ns()}/nope does not exist` });
    const denied = await failure(client(token).models.get(other(), 'secret-model'));
    expect(denied.status).toBe(403);
    expect(denied.body).toMatchObject({ status: 403, verb: 'get', resource: 'models', namespace: other() });
    expect((denied.body as { detail: string }).detail).toContain(
      `may not get models in namespace "${other()}"`,
    );
  });
});

describe('deployments', () => {
  it('creates, gets, updates, lists and deletes a Deployment that the API server holds', async () => {
    const replicate = client(token);
    const created = await replicate.deployments.create({
      name: 'echo-api',
      model: `${ns()}/echo`,
      version: versionId,
      hardware: 'cpu',
      min_instances: 0,
      max_instances: 2,
    });
    expect(created).toMatchObject({
      owner: ns(),
      name: 'echo-api',
      current_release: {
        number: 1,
        model: `${ns()}/echo`,
        version: versionId,
        configuration: { hardware: 'cpu', min_instances: 0, max_instances: 2 },
      },
    });
    const stored = await admin.get(Deployments, 'echo-api', ns());
    expect(stored.spec).toMatchObject({
      model: 'echo',
      version: 'echo-v1',
      hardware: 'cpu',
      minInstances: 0,
      maxInstances: 2,
    });
    expect(await cluster.kubectl('get', 'mpdeploy', 'echo-api', '-n', ns(), '-o', 'name')).toContain(
      'echo-api',
    );
    await waitFor(
      'release 1',
      async () => (await admin.get(Deployments, 'echo-api', ns())).status?.release === 1,
    );
    const got = await replicate.deployments.get(ns(), 'echo-api');
    expect(got.current_release.number).toBe(1);

    const updated = await replicate.deployments.update(ns(), 'echo-api', {
      max_instances: 3,
      hardware: 'gpu-t4',
    });
    expect(updated.current_release.number).toBe(2);
    expect(updated.current_release.configuration).toEqual({
      hardware: 'gpu-t4',
      min_instances: 0,
      max_instances: 3,
    });
    const after = await admin.get(Deployments, 'echo-api', ns());
    expect(after.spec).toMatchObject({ hardware: 'gpu-t4', maxInstances: 3 });
    expect(after.metadata.managedFields?.some((f) => f.manager === 'modelplane-gateway')).toBe(true);
    await waitFor(
      'release 2',
      async () => (await admin.get(Deployments, 'echo-api', ns())).status?.release === 2,
    );
    // The same values again change nothing: the spec's generation stays, no new release.
    const generation = (await admin.get(Deployments, 'echo-api', ns())).metadata.generation;
    const same = await replicate.deployments.update(ns(), 'echo-api', { max_instances: 3 });
    expect(same.current_release.number).toBe(2);
    expect((await admin.get(Deployments, 'echo-api', ns())).metadata.generation).toBe(generation);

    const listed = await replicate.deployments.list();
    expect(listed.results.map((d) => `${d.owner}/${d.name}`)).toEqual([`${ns()}/echo-api`]);

    expect(await replicate.deployments.delete(ns(), 'echo-api')).toBe(true);
    expect(await admin.find(Deployments, 'echo-api', ns())).toBeUndefined();
    expect((await failure(replicate.deployments.get(ns(), 'echo-api'))).status).toBe(404);
  });

  it('refuses an unknown version or hardware with 422 and invalid_fields, and other namespaces with 403', async () => {
    const bad = await failure(
      client(token).deployments.create({
        name: 'bad',
        model: `${ns()}/echo`,
        version: 'f'.repeat(64),
        hardware: 'gpu-nope',
        min_instances: 0,
        max_instances: 1,
      }),
    );
    expect(bad.status).toBe(422);
    const fields = (bad.body as { invalid_fields: { field: string }[] }).invalid_fields.map((f) => f.field);
    expect(fields).toEqual(['version', 'hardware']);
    const denied = await failure(
      client(token).deployments.create({
        name: 'x',
        model: `${other()}/secret-model`,
        version: versionId,
        hardware: 'cpu',
        min_instances: 0,
        max_instances: 1,
      }),
    );
    expect(denied.status).toBe(403);
    expect((denied.body as { detail: string }).detail).toContain(
      `may not create deployments in namespace "${other()}"`,
    );
  });
});

describe('account endpoints', () => {
  it('lists hardware as a bare array of {sku, name}', async () => {
    const hardware = await client(token).hardware.list();
    expect(Array.isArray(hardware)).toBe(true);
    expect(hardware).toContainEqual({ sku: 'gpu-t4', name: 'Nvidia T4 GPU' });
    expect(hardware).toContainEqual({ sku: 'cpu', name: 'CPU' });
  });

  it("names the caller's account after its namespace", async () => {
    expect(await client(token).accounts.current()).toEqual({
      type: 'organization',
      username: ns(),
      name: ns(),
    });
  });

  it('gives one stable whsec_ webhook key per namespace, kept in a Secret of the token namespace', async () => {
    const { key } = await client(token).webhooks.default.secret.get();
    expect(key).toMatch(/^whsec_[A-Za-z0-9+/]{32}$/);
    expect((await client(token).webhooks.default.secret.get()).key).toBe(key);
    expect(await webhookSecret(ns())).toBe(key);
    const stored = await admin.get(Secrets, webhookSecretName(ns()), tokenNs());
    expect(Buffer.from(stored.data?.key ?? '', 'base64').toString()).toBe(key);
    const otherKey = (await client(otherToken).webhooks.default.secret.get()).key;
    expect(otherKey).not.toBe(key);
    secrets.push(key, otherKey);
  });

  it('asks a caller of several namespaces which one with 400 Owner required, and takes ?owner=', async () => {
    const { token: both } = await createApiToken(admin, {
      name: 'both',
      namespaces: [ns(), other()],
      tokenNamespace: tokenNs(),
    });
    secrets.push(both);
    const ask = (query: string) =>
      fetch(`${gateway.url}/v1/webhooks/default/secret${query}`, {
        headers: { authorization: `Bearer ${both}` },
      });
    const res = await waitFor('the gateway to know the new token', async () => {
      const r = await ask('');
      return r.status === 401 ? undefined : r;
    });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    const problem = (await res.json()) as { title: string; detail: string };
    expect(problem.title).toBe('Owner required');
    expect(problem.detail).toContain('?owner=<namespace>');
    const chosen = await ask(`?owner=${ns()}`);
    expect(chosen.status).toBe(200);
    expect(((await chosen.json()) as { key: string }).key).toBe(await webhookSecret(ns()));
  });
});

describe('authentication', () => {
  it('refuses a bad token with 401 and a detail the client error carries', async () => {
    const err = await failure(
      client('mp_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA').models.get(ns(), 'echo'),
    );
    expect(err.status).toBe(401);
    expect(err.message).toContain('the API token is not valid');
    const garbage = await failure(client('not-a-kubernetes-token').models.get(ns(), 'echo'));
    expect(garbage.status).toBe(401);
    expect(garbage.message).toContain('the token was not accepted');
    const none = await fetch(`${gateway.url}/v1/models/${ns()}/echo`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
  });

  it('answers a flood of unknown tokens from one address with 429 and Retry-After, remembering refused ones', async () => {
    const ask = (t: string) =>
      fetch(`${flooded.url}/v1/models/${ns()}/echo`, { headers: { authorization: `Bearer ${t}` } });
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await ask(`made-up-token-${i}`);
      statuses.push(res.status);
      if (res.status === 429) {
        expect(res.headers.get('content-type')).toContain('application/problem+json');
        expect(Number(res.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
        expect(((await res.json()) as { detail: string }).detail).toContain('too many requests');
      } else await res.body?.cancel();
    }
    // The burst of five reached the API server (refused: 401); the rest did not.
    expect(statuses).toEqual([...Array(5).fill(401), ...Array(7).fill(429)]);
    // A refused token is remembered: 401 again at once, even past the limit.
    const again = await ask('made-up-token-0');
    expect(again.status).toBe(401);
    // A known token needs no TokenReview and is not limited.
    const ok = await fetch(`${flooded.url}/v1/models/${ns()}/echo`, {
      headers: { authorization: `Bearer ${token}` },
    });
    expect(ok.status).toBe(200);
  });

  it('accepts "Token <t>" as well as "Bearer <t>"', async () => {
    const res = await fetch(`${gateway.url}/v1/models/${ns()}/echo`, {
      headers: { authorization: `Token ${token}` },
    });
    expect(res.status).toBe(200);
  });

  it('keeps a read-only token to reads', async () => {
    expect((await client(readOnlyToken).models.get(ns(), 'echo')).name).toBe('echo');
    const err = await failure(client(readOnlyToken).webhooks.default.secret.get());
    expect(err.status).toBe(403);
    expect((err.body as { detail: string }).detail).toContain('it is read-only');
  });

  it('checks a ServiceAccount token with SubjectAccessReviews: create predictions only with the example RoleBinding', async () => {
    const plain = await serviceAccountToken(ns(), 'caller-plain');
    await applyCallerExample(ns());
    const bound = await serviceAccountToken(ns(), 'prediction-caller');
    const denied = await failure(client(plain).webhooks.default.secret.get());
    expect(denied.status).toBe(403);
    expect((denied.body as { detail: string }).detail).toBe(
      `system:serviceaccount:${ns()}:caller-plain may not create predictions in namespace "${ns()}"`,
    );
    expect((await failure(client(plain).models.get(ns(), 'echo'))).status).toBe(403);
    expect((await client(bound).webhooks.default.secret.get()).key).toMatch(/^whsec_/);
    expect((await client(bound).models.get(ns(), 'echo')).name).toBe('echo');
    expect(await client(bound).accounts.current()).toEqual({
      type: 'organization',
      username: ns(),
      name: ns(),
    });
    const list = (await client(bound).models.list()).results.map((m) => `${m.owner}/${m.name}`);
    expect(list).toContain(`${ns()}/echo`);
    expect(list).not.toContain(`${other()}/secret-model`);
  });

  it('stops accepting a revoked token within seconds', async () => {
    const { token: doomed } = await createApiToken(admin, {
      name: 'doomed',
      namespaces: [ns()],
      tokenNamespace: tokenNs(),
    });
    secrets.push(doomed);
    const call = () => fetch(`${gateway.url}/v1/account`, { headers: { authorization: `Bearer ${doomed}` } });
    await waitFor('the new token to work', async () => (await call()).status === 200);
    expect(await revokeApiToken(admin, 'doomed', tokenNs())).toBe(true);
    const started = Date.now();
    await waitFor('the revoked token to be refused', async () => (await call()).status === 401, {
      timeoutMs: 10_000,
    });
    expect(Date.now() - started).toBeLessThan(10_000);
  });

  it('pages lists with absolute next URLs that the npm client follows', async () => {
    const replicate = new Replicate({ baseUrl: `${anonymous.url}/v1` });
    const first = await replicate.models.list();
    expect(first.results).toHaveLength(1);
    expect(first.previous).toBeNull();
    expect(first.next).toMatch(new RegExp(`^${anonymous.url}/v1/models\\?cursor=`));
    const pages: string[][] = [];
    for await (const page of replicate.paginate(() => replicate.models.list())) {
      pages.push(page.map((m) => `${m.owner}/${m.name}`));
    }
    expect(pages.every((p) => p.length === 1)).toBe(true);
    // Newest first: made-by-api was created after echo; other()'s private model is not listed.
    const ours = pages.flat().filter((n) => n.startsWith(`${ns()}/`) || n.startsWith(`${other()}/`));
    expect(ours).toEqual([`${ns()}/made-by-api`, `${ns()}/echo`]);
  });

  it('lets callers without a token act only in the --allow-anonymous namespaces', async () => {
    const get = (path: string) => fetch(`${anonymous.url}/v1${path}`);
    expect((await get(`/models/${ns()}/echo`)).status).toBe(200);
    const denied = await get(`/models/${other()}/secret-model`);
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { detail: string }).detail).toContain(
      'an anonymous caller may not get models',
    );
    expect(await (await get('/account')).json()).toEqual({
      type: 'organization',
      username: ns(),
      name: ns(),
    });
    // A token that is sent is still checked.
    const bad = await fetch(`${anonymous.url}/v1/account`, { headers: { authorization: 'Bearer nope' } });
    expect(bad.status).toBe(401);
  });

  it('mints, lists and revokes tokens with modelplane token', async () => {
    const bin = new URL('../../bin/modelplane', import.meta.url).pathname;
    const run = (...args: string[]) =>
      promisify(execFile)(bin, [
        'token',
        ...args,
        `--token-namespace=${tokenNs()}`,
        `--kubeconfig=${cluster.kubeconfig}`,
      ]);
    const created = await run('create', 'from-cli', `--namespaces=${ns()}`, '--read-only');
    const minted = created.stdout.trim();
    secrets.push(minted);
    expect(minted).toMatch(/^mp_[0-9a-f]{12}_/);
    expect(created.stderr).toContain('shown only this once');
    const listed = (await run('list')).stdout;
    expect(listed).toMatch(new RegExp(`from-cli\\s+[0-9a-f]{12}\\s+${ns()}\\s+read-only`));
    expect(listed).not.toContain(minted);
    const call = () =>
      fetch(`${gateway.url}/v1/models/${ns()}/echo`, { headers: { authorization: `Bearer ${minted}` } });
    await waitFor('the minted token to work', async () => (await call()).status === 200);
    expect((await run('revoke', 'from-cli')).stdout).toContain('revoked');
    await waitFor('the revoked token to be refused', async () => (await call()).status === 401, {
      timeoutMs: 10_000,
    });
  });

  it('never writes a token or webhook key to the logs', async () => {
    expect(logs.text).toContain('"route":"/models/:owner/:name"');
    for (const s of secrets) {
      expect(s.length).toBeGreaterThan(20);
      expect(logs.text).not.toContain(s);
    }
  });
});

describe('modelplane operator --roles=gateway', () => {
  it('serves the API as its own process under rbac.yaml, and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const health = await freePort();
    const logFile = join(dir, 'gateway.log');
    const bin = new URL('../../bin/modelplane', import.meta.url).pathname;
    const proc = new GroupProcess(
      'gateway',
      bin,
      [
        'operator',
        '--roles=gateway',
        `--kubeconfig=${operatorKubeconfig}`,
        `--gateway-address=127.0.0.1:${port}`,
        `--http-address=127.0.0.1:${health}`,
        `--token-namespace=${tokenNs()}`,
        `--lease-namespace=${tokenNs()}`,
        '--public-url=https://models.example.com',
        '--log-level=debug',
      ],
      { logFile, env: { ...process.env, KUBECONFIG: '' } },
    );
    try {
      await waitFor(
        'the gateway process to be ready',
        async () => (await fetch(`http://127.0.0.1:${health}/readyz`)).ok,
        {
          timeoutMs: 30_000,
        },
      );
      const replicate = new Replicate({ auth: token, baseUrl: `http://127.0.0.1:${port}/v1` });
      const model = await replicate.models.get(ns(), 'echo');
      expect(model.url).toBe(`https://models.example.com/v1/models/${ns()}/echo`);
      expect(model.latest_version?.id).toBe(versionId);
      const metrics = await (await fetch(`http://127.0.0.1:${health}/metrics`)).text();
      expect(metrics).toContain(
        'modelplane_gateway_requests_total{route="GET /models/:owner/:name",code="200"} 1',
      );
      process.kill(-proc.pid, 'SIGTERM');
      expect(await proc.exited).toBe(0);
      const log = readFileSync(logFile, 'utf8');
      expect(log).toContain('"route":"/models/:owner/:name"');
      expect(log).not.toContain(token);
      // Without the controllers it never campaigns for the Lease (it would keep it from a replica that runs them).
      expect(log).toContain('"msg":"manager started"');
      expect(log).not.toContain('waiting to acquire the lease');
      expect(await admin.find(Leases, 'modelplane-operator', tokenNs())).toBeUndefined();
    } finally {
      if (groupAlive(proc.pid)) await stopGroup(proc.pid);
    }
  });
});
