import { afterEach, describe, expect, it } from 'vitest';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { waitFor } from '../../harness/processes.ts';
import { KubeClient, type KubeObject, resourceType } from './client.ts';
import { Informer } from './informer.ts';
import { createLogger } from './log.ts';

interface ConfigMap extends KubeObject {
  data?: Record<string, string>;
}
const ConfigMaps = resourceType<ConfigMap>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});

const cluster = useCluster();
const ns = useNamespace(cluster, 'informer');
const client = new KubeClient(cluster.kc);
const log = createLogger({ level: 'warn' });

const informers: Informer[] = [];
afterEach(async () => {
  await Promise.all(informers.splice(0).map((i) => i.stop()));
});

function track<T extends KubeObject>(informer: Informer<T>) {
  informers.push(informer as unknown as Informer);
  const events: string[] = [];
  informer.addEventHandler({
    onAdd: (o) => events.push(`add ${o.metadata?.name}`),
    onUpdate: (_, o) =>
      events.push(`update ${o.metadata?.name} ${JSON.stringify((o as ConfigMap).data ?? {})}`),
    onDelete: (o) => events.push(`delete ${o.metadata?.name}`),
  });
  return events;
}

const cm = (name: string, data: Record<string, string> = {}, labels?: Record<string, string>): ConfigMap => ({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  metadata: { name, namespace: ns(), labels },
  data,
});

describe('Informer', () => {
  it('lists what exists, then sees adds, updates and deletes, and caches by namespace/name', async () => {
    await client.create(ConfigMaps, cm('before', { v: '0' }));
    const informer = new Informer(client, ConfigMaps, { namespace: ns(), log });
    const events = track(informer);
    informer.start();
    await informer.waitForSync({ timeoutMs: 30_000 });
    expect(informer.hasSynced()).toBe(true);
    expect(informer.get('before', ns())?.data).toEqual({ v: '0' });
    expect(events).toContain('add before');

    await client.create(ConfigMaps, cm('a', { v: '1' }));
    await waitFor('the add of a', () => events.includes('add a'));
    await client.replace(ConfigMaps, { ...informer.get('a', ns())!, data: { v: '2' } });
    await waitFor('the update of a', () => events.includes('update a {"v":"2"}'));
    expect(informer.getByKey(`${ns()}/a`)?.data).toEqual({ v: '2' });
    await client.delete(ConfigMaps, 'a', ns());
    await waitFor('the delete of a', () => events.includes('delete a'));
    expect(informer.get('a', ns())).toBeUndefined();
    expect(informer.list(ns()).map((o) => o.metadata?.name)).toContain('before');
    expect(informer.listCount).toBe(1); // no re-list was needed
  });

  it('filters by label selector', async () => {
    const informer = new Informer(client, ConfigMaps, { namespace: ns(), labelSelector: 'pick=yes', log });
    const events = track(informer);
    informer.start();
    await informer.waitForSync({ timeoutMs: 30_000 });
    await client.create(ConfigMaps, cm('skipped', {}, { pick: 'no' }));
    await client.create(ConfigMaps, cm('picked', {}, { pick: 'yes' }));
    await waitFor('the add of picked', () => events.includes('add picked'));
    expect(events).not.toContain('add skipped');
    expect(informer.keys()).toEqual([`${ns()}/picked`]);
  });

  it('keeps delivering when a handler throws', async () => {
    const informer = new Informer(client, ConfigMaps, {
      namespace: ns(),
      log: createLogger({ level: 'fatal' }),
    });
    informer.addEventHandler({
      onAdd: () => {
        throw new Error('handler bug');
      },
    });
    const events = track(informer);
    informer.start();
    await informer.waitForSync({ timeoutMs: 30_000 });
    await client.create(ConfigMaps, cm('after-throw'));
    await waitFor('the add of after-throw', () => events.includes('add after-throw'));
    await client.delete(ConfigMaps, 'after-throw', ns());
    await waitFor('the delete of after-throw', () => events.includes('delete after-throw'));
    expect(informer.listCount).toBe(1);
  });

  it('re-lists when the watch goes silent, and keeps delivering', async () => {
    const informer = new Informer(client, ConfigMaps, {
      namespace: ns(),
      labelSelector: 'quiet=yes', // nothing matches: the watch brings no events
      silenceTimeoutMs: 500,
      log: createLogger({ level: 'error' }),
    });
    const events = track(informer);
    informer.start();
    await informer.waitForSync({ timeoutMs: 30_000 });
    await waitFor('two re-lists by the watchdog', () => informer.listCount >= 3, { timeoutMs: 20_000 });
    await client.create(ConfigMaps, cm('heard', {}, { quiet: 'yes' }));
    await waitFor('the add of heard', () => events.includes('add heard'));
    expect(events.filter((e) => e === 'add heard')).toHaveLength(1);
  });

  it('resumes from the last resourceVersion after stop and start, missing nothing', async () => {
    const informer = new Informer(client, ConfigMaps, { namespace: ns(), labelSelector: 'resume=yes', log });
    const events = track(informer);
    informer.start();
    await informer.waitForSync({ timeoutMs: 30_000 });
    await informer.stop();
    await client.create(ConfigMaps, cm('while-stopped', {}, { resume: 'yes' }));
    informer.start();
    await waitFor('the add made while stopped', () => events.includes('add while-stopped'));
    expect(informer.listCount).toBe(1); // the watch cache still had it: no re-list
  });
});
