import type { V1Deployment } from '@kubernetes/client-node';
import { describe, expect, it } from 'vitest';
import { waitFor } from '../processes.ts';
import { useCluster, useNamespace } from './testing.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'controllers');

function deployment(name: string, replicas: number): V1Deployment {
  return {
    metadata: { name },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          containers: [{ name: 'web', image: 'nginx:1.27', resources: { requests: { cpu: '100m' } } }],
        },
      },
    },
  };
}

async function pods(selector: string) {
  return (await cluster.core.listNamespacedPod({ namespace: ns(), labelSelector: selector })).items;
}

async function readyReplicas(name: string, want: number): Promise<void> {
  await waitFor(`deployment ${name} to have ${want} ready replicas and ${want} pods`, async () => {
    const d = await cluster.apps.readNamespacedDeployment({ name, namespace: ns() });
    const ready = d.status?.readyReplicas ?? 0;
    const live = (await pods(`app=${name}`)).filter((p) => !p.metadata?.deletionTimestamp).length;
    return (
      ready === want && live === want && (d.status?.observedGeneration ?? 0) >= (d.metadata?.generation ?? 1)
    );
  });
}

describe('the controller manager', () => {
  it('scales an apps/v1 Deployment 1 → 3 → 0', async () => {
    await cluster.apps.createNamespacedDeployment({ namespace: ns(), body: deployment('web', 1) });
    await readyReplicas('web', 1);
    const [pod] = await pods('app=web');
    expect(pod?.status?.phase).toBe('Running');
    expect(pod?.spec?.nodeName).toMatch(/^cpu-/); // untolerated pods stay off the tainted GPU nodes

    await cluster.apps.patchNamespacedDeploymentScale({
      name: 'web',
      namespace: ns(),
      body: [{ op: 'replace', path: '/spec/replicas', value: 3 }],
    });
    await readyReplicas('web', 3);

    await cluster.apps.patchNamespacedDeploymentScale({
      name: 'web',
      namespace: ns(),
      body: [{ op: 'replace', path: '/spec/replicas', value: 0 }],
    });
    await waitFor('web to have no pods', async () => (await pods('app=web')).length === 0);
  });

  it('garbage-collects the ReplicaSets and Pods owned by a deleted Deployment', async () => {
    await cluster.apps.createNamespacedDeployment({ namespace: ns(), body: deployment('owned', 2) });
    await readyReplicas('owned', 2);
    const sets = await cluster.apps.listNamespacedReplicaSet({ namespace: ns(), labelSelector: 'app=owned' });
    expect(sets.items).toHaveLength(1);
    expect(sets.items[0]?.metadata?.ownerReferences?.[0]?.kind).toBe('Deployment');

    await cluster.apps.deleteNamespacedDeployment({
      name: 'owned',
      namespace: ns(),
      propagationPolicy: 'Background',
    });
    await waitFor('the owned ReplicaSet and its pods to be collected', async () => {
      const rs = await cluster.apps.listNamespacedReplicaSet({ namespace: ns(), labelSelector: 'app=owned' });
      return rs.items.length === 0 && (await pods('app=owned')).length === 0;
    });
  });

  it('garbage-collects a ConfigMap whose owner ConfigMap is deleted', async () => {
    const owner = await cluster.core.createNamespacedConfigMap({
      namespace: ns(),
      body: { metadata: { name: 'owner' } },
    });
    await cluster.core.createNamespacedConfigMap({
      namespace: ns(),
      body: {
        metadata: {
          name: 'child',
          ownerReferences: [
            {
              apiVersion: 'v1',
              kind: 'ConfigMap',
              name: 'owner',
              uid: owner.metadata!.uid!,
              controller: true,
            },
          ],
        },
      },
    });
    await cluster.core.deleteNamespacedConfigMap({ name: 'owner', namespace: ns() });
    await waitFor('the child ConfigMap to be collected', async () => {
      const list = await cluster.core.listNamespacedConfigMap({
        namespace: ns(),
        fieldSelector: 'metadata.name=child',
      });
      return list.items.length === 0;
    });
  });
});
