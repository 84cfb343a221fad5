import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig, VersionApi } from '@kubernetes/client-node';
import { freePort, GroupProcess, waitFor } from '../processes.ts';
import { createNodePools, LocalCluster } from './local.ts';
import {
  KWOK_NODE_ANNOTATION,
  KWOK_NODE_ANNOTATION_VALUE,
  type PoolSizes,
  standardPools,
} from './node-pools.ts';
import { binaries } from './paths.ts';

/** A Kubernetes cluster the tests and `make cluster-up` run against. */
export interface Cluster {
  provider: ClusterProvider;
  /** Path of an admin kubeconfig. */
  kubeconfig: string;
  /** Component name → log file path (empty for clusters the harness did not start). */
  logs: Record<string, string>;
  /** Where the cluster is and where its logs are: printed by a failing test. */
  describe(): string;
  stop(): Promise<void>;
}

export const clusterProviders = ['local', 'kubeconfig', 'k3s'] as const;
export type ClusterProvider = (typeof clusterProviders)[number];

export interface StartOptions {
  provider?: ClusterProvider;
  pools?: Partial<PoolSizes>;
  log?: (line: string) => void;
}

/** The provider named by MODELPLANE_CLUSTER (default `local`); an unknown name is an error. */
export function providerFromEnv(env: NodeJS.ProcessEnv = process.env): ClusterProvider {
  const value = env.MODELPLANE_CLUSTER ?? 'local';
  if (!(clusterProviders as readonly string[]).includes(value)) {
    throw new Error(
      `MODELPLANE_CLUSTER=${value} is not a cluster provider; use one of: ${clusterProviders.join(', ')}`,
    );
  }
  return value as ClusterProvider;
}

/**
 * Starts (or connects to) the chosen cluster. The chosen provider being unavailable is an
 * error that says what to install or set; it never falls back to another provider.
 */
export async function startCluster(opts: StartOptions = {}): Promise<Cluster> {
  const provider = opts.provider ?? providerFromEnv();
  const pools = standardPools(opts.pools);
  switch (provider) {
    case 'local':
      return LocalCluster.start({ pools, log: opts.log });
    case 'kubeconfig':
      return connectKubeconfig();
    case 'k3s':
      return startK3s(opts);
  }
}

/** The cluster of $KUBECONFIG (or ~/.kube/config), used as it is: the harness adds no nodes. */
async function connectKubeconfig(): Promise<Cluster> {
  const path = process.env.KUBECONFIG ?? join(homedir(), '.kube', 'config');
  if (!existsSync(path)) {
    throw new Error(
      `MODELPLANE_CLUSTER=kubeconfig: no kubeconfig at ${path}; set KUBECONFIG to your cluster's kubeconfig`,
    );
  }
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  try {
    await kc.makeApiClient(VersionApi).getCode();
  } catch (err) {
    throw new Error(
      `MODELPLANE_CLUSTER=kubeconfig: the cluster of ${path} (context ${kc.getCurrentContext()}) does not answer: ${(err as Error).message}`,
    );
  }
  return {
    provider: 'kubeconfig',
    kubeconfig: path,
    logs: {},
    describe: () => `cluster from kubeconfig ${path} (context ${kc.getCurrentContext()})`,
    stop: async () => {},
  };
}

/** k3s in a container (needs a Docker engine and @testcontainers/k3s), with kwok GPU pools. */
async function startK3s(opts: StartOptions): Promise<Cluster> {
  let mod: { K3sContainer: new (image: string) => { start(): Promise<K3sStarted> } };
  try {
    mod = (await import(/* @vite-ignore */ '@testcontainers/k3s' as string)) as typeof mod;
  } catch {
    throw new Error(
      'MODELPLANE_CLUSTER=k3s needs the @testcontainers/k3s package (npm install --no-save @testcontainers/k3s) and a running Docker engine',
    );
  }
  const image = process.env.MODELPLANE_K3S_IMAGE ?? 'rancher/k3s:v1.34.1-k3s1';
  let container: K3sStarted;
  try {
    container = await new mod.K3sContainer(image).start();
  } catch (err) {
    throw new Error(
      `MODELPLANE_CLUSTER=k3s: could not start ${image} (is a Docker engine running?): ${(err as Error).message}`,
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'modelplane-k3s-'));
  const kubeconfig = join(dir, 'admin.kubeconfig');
  writeFileSync(kubeconfig, container.getKubeConfig(), { mode: 0o600 });
  const logFile = join(dir, 'kwok.log');
  const port = await freePort();
  const kwok = new GroupProcess(
    'kwok',
    binaries().kwok,
    [
      `--kubeconfig=${kubeconfig}`,
      '--manage-all-nodes=false',
      `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=${KWOK_NODE_ANNOTATION_VALUE}`,
      '--node-ip=127.0.0.1',
      `--server-address=127.0.0.1:${port}`,
      '--node-lease-duration-seconds=40',
    ],
    { logFile },
  );
  const stop = async () => {
    await kwok.stop();
    await container.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor('kwok /healthz', async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok);
    await createNodePools(kubeconfig, standardPools(opts.pools));
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    provider: 'k3s',
    kubeconfig,
    logs: { kwok: logFile },
    describe: () => `k3s (${image}) in a container; kubeconfig ${kubeconfig}; kwok log ${logFile}`,
    stop,
  };
}

interface K3sStarted {
  getKubeConfig(): string;
  stop(): Promise<unknown>;
}
