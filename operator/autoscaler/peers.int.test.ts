/**
 * Demand across operator replicas, against the real API server: a replica serves its demand
 * at /autoscaler/demand and checks the caller's token with a TokenReview; the leader finds it
 * by listing the operator's pods and reads it with its own ServiceAccount token. Both run with
 * the token of a ServiceAccount bound to exactly the ClusterRole of operator/rbac.yaml.
 */
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { kubeconfigYaml } from '../../harness/cluster/local.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { clientFor, TEST_MANAGER } from '../controllers/testing.ts';
import { MERGE_PATCH } from '../runtime/client.ts';
import { KubeClient, type KubeObject, Manager, resourceType } from '../runtime/index.ts';
import { silentLogger as log } from '../runtime/log.ts';
import {
  DEFAULT_PEER_SELECTOR,
  DEMAND_PATH,
  PeerScraper,
  POKE_PATH,
  PokeForwarder,
  serveDemand,
  TokenReviewAuthenticator,
  tokenSubject,
} from './index.ts';
import { pokeHandler } from './peers.ts';
import { StaticDemandSource } from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-peers');
const admin = clientFor(cluster.kubeconfig);
// The first document of rbac.yaml: the ClusterRole (the second is the gateway's Secrets Role).
const rbac = parseAllDocuments(
  readFileSync(new URL('../rbac.yaml', import.meta.url), 'utf8'),
)[0]!.toJS() as KubeObject;

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
const ClusterRoleBindings = resourceType({
  apiVersion: 'rbac.authorization.k8s.io/v1',
  kind: 'ClusterRoleBinding',
  plural: 'clusterrolebindings',
  namespaced: false,
});
const Pods = resourceType({ apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true });

let operatorToken = '';
let intruderToken = '';
let operatorKc: KubeConfig;
let peer: Manager;
const source = new StaticDemandSource();
const pokes: string[] = [];

async function tokenFor(name: string): Promise<string> {
  await admin.apply(
    ServiceAccounts,
    { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: ns() } },
    { fieldManager: TEST_MANAGER },
  );
  const t = await cluster.core.createNamespacedServiceAccountToken({
    name,
    namespace: ns(),
    body: { spec: { audiences: [], expirationSeconds: 3600 } },
  });
  return t.status?.token ?? '';
}

/** A pod that looks like an operator replica at 127.0.0.1, its metrics port named. */
async function operatorPod(name: string, port: number): Promise<void> {
  const labels = Object.fromEntries(DEFAULT_PEER_SELECTOR.split(',').map((kv) => kv.split('=')));
  await admin.create(Pods, {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: ns(), labels },
    spec: {
      // Bound to a node nothing runs: the pod stays as written, and its status is ours to set.
      nodeName: 'no-such-node',
      containers: [
        {
          name: 'operator',
          image: 'registry.example.com/modelplane:test',
          ports: [{ name: 'metrics', containerPort: port }],
        },
      ],
    },
  } as KubeObject);
  await admin.request('PATCH', `/api/v1/namespaces/${ns()}/pods/${name}/status`, {
    body: { status: { podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } },
    contentType: MERGE_PATCH,
  });
}

beforeAll(async () => {
  const role = `modelplane-operator-${ns()}`;
  await admin.apply(ClusterRoles, { ...rbac, metadata: { name: role } }, { fieldManager: TEST_MANAGER });
  operatorToken = await tokenFor('modelplane-operator');
  intruderToken = await tokenFor('intruder');
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
  const current = cluster.kc.getCurrentCluster();
  if (!current) throw new Error('no current cluster');
  const ca = current.caData ? Buffer.from(current.caData, 'base64') : readFileSync(current.caFile ?? '');
  operatorKc = new KubeConfig();
  operatorKc.loadFromString(kubeconfigYaml(current.server, ca, 'modelplane-operator', operatorToken));

  // The peer replica: serves its demand, checks callers with TokenReview under rbac.yaml.
  peer = new Manager({
    name: 'peer',
    kubeConfig: operatorKc,
    leaderElection: false,
    http: { port: 0, host: '127.0.0.1' },
    log,
  });
  const subject = tokenSubject(operatorToken);
  expect(subject).toBe(`system:serviceaccount:${ns()}:modelplane-operator`);
  const reviewer = new TokenReviewAuthenticator(peer.client, [subject as string]);
  serveDemand(peer, source, (t) => reviewer.check(t));
  // As the leader does: its autoscaler takes the pokes.
  peer.addHttpHandler(
    POKE_PATH,
    pokeHandler({
      poke: (namespace, name) => pokes.push(`${namespace}/${name}`) > 0,
      authenticate: (t) => reviewer.check(t),
    }),
  );
  await peer.start();
  source.set({
    namespace: 'team',
    name: 'llama',
    queued: 7,
    inflight: 3,
    perPod: { 'llama-abc': 3 },
    lastActivityMs: 1,
  });
  await operatorPod('operator-peer', peer.address?.port ?? 0);
  await operatorPod('operator-self', 1);
});

afterAll(async () => {
  await peer?.stop();
  await admin.delete(ClusterRoleBindings, `modelplane-operator-${ns()}`).catch(() => {});
  await admin.delete(ClusterRoles, `modelplane-operator-${ns()}`).catch(() => {});
});

function scraper(token: string): PeerScraper {
  return new PeerScraper({
    client: new KubeClient(operatorKc),
    namespace: ns(),
    labelSelector: DEFAULT_PEER_SELECTOR,
    selfPod: 'operator-self',
    port: 1,
    token: () => token,
    timeoutMs: 2_000,
    staleMs: 0,
    log,
  });
}

describe('demand across replicas', () => {
  it('the leader finds its peer by its pod and reads its demand with the ServiceAccount token', async () => {
    const lists = await scraper(operatorToken).scrape();
    // One peer: the pod named as this replica is skipped.
    expect(lists).toEqual([
      [
        {
          namespace: 'team',
          name: 'llama',
          queued: 7,
          inflight: 3,
          perPod: { 'llama-abc': 3 },
          lastActivityMs: 1,
        },
      ],
    ]);
  });

  it('refuses a caller without a token, and one with another ServiceAccount’s token', async () => {
    const url = `http://127.0.0.1:${peer.address?.port}${DEMAND_PATH}`;
    expect((await fetch(url)).status).toBe(401);
    const refused = await fetch(url, { headers: { authorization: `Bearer ${intruderToken}` } });
    expect(refused.status).toBe(403);
    expect(await refused.json()).toMatchObject({ title: 'Forbidden', status: 403 });
    expect((await fetch(url, { headers: { authorization: 'Bearer not-a-token' } })).status).toBe(403);
    // The scraper gets nothing from it, and does not fail.
    expect(await scraper(intruderToken).scrape()).toEqual([[]]);
  });

  it('a replica that does not lead passes its pokes to the leader’s pod', async () => {
    const forwarder = (token: string) =>
      new PokeForwarder({
        client: new KubeClient(operatorKc),
        namespace: ns(),
        leader: () => 'operator-peer',
        isLeader: () => false,
        port: 1,
        token: () => token,
        timeoutMs: 2_000,
        log,
      });
    await forwarder(operatorToken).forward('team', 'llama');
    expect(pokes).toEqual(['team/llama']);
    await forwarder(intruderToken).forward('team', 'other');
    expect(pokes).toEqual(['team/llama']);
  });
});
