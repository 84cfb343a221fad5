import type { TestProject } from 'vitest/node';
import { startCluster } from './cluster.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    /** Admin kubeconfig of the shared test cluster. */
    kubeconfig: string;
    /** Where the cluster and its component logs are, for failure messages. */
    clusterDescription: string;
    clusterLogs: Record<string, string>;
  }
}

/** Starts one cluster for the whole `cluster` project and stops it when the run ends. */
export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const started = Date.now();
  const cluster = await startCluster({ log: (l) => process.stderr.write(`cluster: ${l}\n`) });
  process.stderr.write(
    `cluster: ${cluster.provider} cluster up in ${((Date.now() - started) / 1000).toFixed(1)}s\n`,
  );
  project.provide('kubeconfig', cluster.kubeconfig);
  project.provide('clusterDescription', cluster.describe());
  project.provide('clusterLogs', cluster.logs);
  return async () => {
    await cluster.stop();
  };
}
