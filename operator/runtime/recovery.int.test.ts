// Private control planes (beside the shared one): these tests compact etcd and restart
// kube-apiserver, which would disturb every other test file.
import { KubeConfig } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalCluster } from '../../harness/cluster/local.ts';
import { waitFor } from '../../harness/processes.ts';
import { apply } from './apply.ts';
import { KubeClient, type KubeObject, resourceType } from './client.ts';
import { Informer, splitKey } from './informer.ts';
import { createLogger } from './log.ts';
import { Manager } from './manager.ts';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}
const ConfigMaps = resourceType<ConfigMap>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});

const cm = (name: string, data: Record<string, string> = {}, labels?: Record<string, string>): ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: 'default', labels },
  data,
});

function kubeConfig(cluster: LocalCluster): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfig);
  return kc;
}

/** A logger whose lines the test can read. */
function capturedLogger() {
  const lines: { msg?: string }[] = [];
  const log = createLogger({
    level: 'info',
    destination: { write: (s: string) => lines.push(JSON.parse(s) as { msg?: string }) },
  });
  return { lines, log };
}

describe('an informer whose resourceVersion was compacted away', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    // Without the watch cache every watch is served by etcd, so compaction shows at once.
    cluster = await LocalCluster.start({ pools: [], apiServerFlags: ['--watch-cache=false'] });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('gets 410 Gone on resuming, re-lists, and reports what changed meanwhile', async () => {
    const client = new KubeClient(kubeConfig(cluster));
    const { lines, log } = capturedLogger();
    await client.create(ConfigMaps, cm('kept', { v: '0' }, { set: 'gone' }));
    await client.create(ConfigMaps, cm('removed', {}, { set: 'gone' }));
    const informer = new Informer(client, ConfigMaps, {
      namespace: 'default',
      labelSelector: 'set=gone',
      log,
    });
    const events: string[] = [];
    informer.addEventHandler({
      onAdd: (o) => events.push(`add ${o.metadata?.name}`),
      onUpdate: (_, o) => events.push(`update ${o.metadata?.name} ${o.data?.v}`),
      onDelete: (o) => events.push(`delete ${o.metadata?.name}`),
    });
    informer.start();
    try {
      await informer.waitForSync({ timeoutMs: 30_000 });
      expect(events.sort()).toEqual(['add kept', 'add removed']);
      events.length = 0;

      await informer.stop();
      const stoppedAt = Number(informer.lastResourceVersion);
      await client.create(ConfigMaps, cm('added', {}, { set: 'gone' }));
      await client.replace(ConfigMaps, {
        ...(await client.get(ConfigMaps, 'kept', 'default')),
        data: { v: '1' },
      });
      await client.delete(ConfigMaps, 'removed', 'default');
      expect(await cluster.compactEtcd()).toBeGreaterThan(stoppedAt);

      informer.start();
      await waitFor('the re-list', () => informer.listCount === 2, { timeoutMs: 30_000 });
      expect(lines.some((l) => l.msg?.includes('410 Gone'))).toBe(true);
      expect(events.sort()).toEqual(['add added', 'delete removed', 'update kept 1']);
      expect(informer.keys().sort()).toEqual(['default/added', 'default/kept']);

      // And it watches again from the new list.
      await client.create(ConfigMaps, cm('later', {}, { set: 'gone' }));
      await waitFor('the add of later', () => events.includes('add later'));
      expect(informer.listCount).toBe(2);
    } finally {
      await informer.stop();
    }
  });
});

describe('a manager across a kube-apiserver restart', () => {
  let cluster: LocalCluster;
  beforeAll(async () => {
    cluster = await LocalCluster.start({ pools: [] });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('keeps its informers and controller working once the API server is back', async () => {
    const manager = new Manager({
      name: 'restart-test',
      kubeConfig: kubeConfig(cluster),
      leaderElection: { namespace: 'default' },
      log: createLogger({ level: 'silent' }),
    });
    const sources = manager.informer(ConfigMaps, { namespace: 'default', labelSelector: 'role=source' });
    const copies = manager.informer(ConfigMaps, { namespace: 'default', labelSelector: 'role=copy' });
    const events: string[] = [];
    sources.addEventHandler({ onAdd: (o) => events.push(`add ${o.metadata?.name}`) });
    manager.addController({
      name: 'copier',
      for: sources,
      owns: [copies],
      reconcile: async (key) => {
        const source = sources.getByKey(key);
        if (!source) return;
        const { namespace, name } = splitKey(key);
        const copy: ConfigMap = {
          ...cm(`${name}-copy`, source.data, { role: 'copy' }),
          metadata: {
            name: `${name}-copy`,
            namespace,
            labels: { role: 'copy' },
            ownerReferences: [
              { apiVersion: 'v1', kind: 'ConfigMap', name, uid: source.metadata!.uid!, controller: true },
            ],
          },
        };
        await apply(manager.client, ConfigMaps, copy, {
          fieldManager: 'copier',
          current: copies.get(`${name}-copy`, namespace),
        });
      },
    });
    const client = new KubeClient(kubeConfig(cluster));
    await manager.start();
    try {
      await client.create(ConfigMaps, cm('before', { v: '1' }, { role: 'source' }));
      await waitFor('the copy of before', () => copies.get('before-copy', 'default'), { timeoutMs: 30_000 });

      await cluster.restartApiServer();

      await client.create(ConfigMaps, cm('after', { v: '2' }, { role: 'source' }));
      await waitFor('the informer to see after', () => events.includes('add after'), { timeoutMs: 60_000 });
      await waitFor('the copy of after', () => copies.get('after-copy', 'default'), { timeoutMs: 60_000 });
      expect(copies.get('after-copy', 'default')?.data).toEqual({ v: '2' });
      expect((await client.get(ConfigMaps, 'after-copy', 'default')).data).toEqual({ v: '2' });
      expect(manager.isLeader).toBe(true);
    } finally {
      await manager.stop();
    }
  });
});
