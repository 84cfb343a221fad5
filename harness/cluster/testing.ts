import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { AppsV1Api, CoreV1Api, KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import { afterAll, afterEach, beforeAll, inject } from 'vitest';
import { waitFor } from '../processes.ts';
import { binaries } from './paths.ts';

const run = promisify(execFile);

export interface TestCluster {
  kubeconfig: string;
  kc: KubeConfig;
  objects: KubernetesObjectApi;
  core: CoreV1Api;
  apps: AppsV1Api;
  /** Runs the built kubectl against the test cluster; rejects with its stderr on failure. */
  kubectl(...args: string[]): Promise<string>;
}

/**
 * The shared test cluster (started by global-setup.ts). Call at the top of a test file: when
 * a test fails, the cluster's location and component log paths are printed.
 */
export function useCluster(): TestCluster {
  const kubeconfig = inject('kubeconfig');
  const description = inject('clusterDescription');
  afterEach((ctx) => {
    if (ctx.task.result?.state === 'fail') {
      process.stderr.write(`\n${ctx.task.name} failed; ${description}\n`);
    }
  });
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return {
    kubeconfig,
    kc,
    objects: kc.makeApiClient(KubernetesObjectApi),
    core: kc.makeApiClient(CoreV1Api),
    apps: kc.makeApiClient(AppsV1Api),
    kubectl: async (...args) => {
      const { stdout } = await run(binaries().kubectl, args, {
        env: { ...process.env, KUBECONFIG: kubeconfig },
        maxBuffer: 16 * 1024 * 1024,
      });
      return stdout;
    },
  };
}

/**
 * A fresh namespace for one test file, deleted (and waited on) after it, so resources such
 * as GPUs held by its pods are free again for the next file.
 */
export function useNamespace(cluster: TestCluster, prefix: string): () => string {
  let name = '';
  beforeAll(async () => {
    name = `${prefix}-${randomBytes(3).toString('hex')}`;
    await cluster.core.createNamespace({ body: { metadata: { name } } });
    await waitFor(`the default ServiceAccount in ${name}`, async () => {
      await cluster.core.readNamespacedServiceAccount({ name: 'default', namespace: name });
      return true;
    });
  });
  afterAll(async () => {
    if (!name) return;
    await cluster.core.deleteCollectionNamespacedPod({ namespace: name, gracePeriodSeconds: 0 });
    await waitFor(
      `pods of ${name} to be gone`,
      async () => (await cluster.core.listNamespacedPod({ namespace: name })).items.length === 0,
      { timeoutMs: 60_000 },
    );
    await cluster.core.deleteNamespace({ name });
  });
  return () => name;
}
