/**
 * Reading a modelplane Deployment's model pods from the API server, for benches that call
 * the pods' Cog servers and sidecars directly (at the loopback pod IPs the pod runner gives).
 */
import { KubeConfig } from '@kubernetes/client-node';
import { LABEL } from '../crds/index.ts';
import { waitFor } from '../harness/processes.ts';
import { type PodLike, PodResource, podEndpoint } from '../operator/predictions/endpoints.ts';
import { KubeClient } from '../operator/runtime/index.ts';

export interface BenchPod {
  name: string;
  ip: string;
  /** The Cog server's base URL (the model container's port). */
  model: string;
  /** The sidecar's API base URL. */
  sidecar: string;
}

export function clientOf(kubeconfig: string): KubeClient {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return new KubeClient(kc);
}

/**
 * The Cog server's URL: it binds the pod's loopback address (the pod runner gives each pod
 * its own 127.x address) on the port the model container's PORT says; it declares no port.
 */
function modelUrl(pod: PodLike): string | undefined {
  const port = pod.spec?.containers
    ?.find((c) => c.name === 'model')
    ?.env?.find((e) => e.name === 'PORT')?.value;
  return port && pod.status?.podIP ? `http://${pod.status.podIP}:${port}` : undefined;
}

/** Waits until deployment `namespace/name` has `count` ready pods; returns them. */
export async function readPods(kubeconfig: string, namespace: string, name: string, count: number) {
  const client = clientOf(kubeconfig);
  return waitFor(
    `${count} ready pods of deployment ${namespace}/${name}`,
    async () => {
      const { items } = await client.list(PodResource, {
        namespace,
        labelSelector: `${LABEL.deployment}=${name}`,
      });
      const pods: BenchPod[] = [];
      for (const pod of items) {
        const ep = podEndpoint(pod);
        const model = modelUrl(pod);
        if (ep && model) pods.push({ name: ep.id, ip: pod.status?.podIP ?? '', model, sidecar: ep.url });
      }
      return pods.length === count ? pods.sort((a, b) => (a.name < b.name ? -1 : 1)) : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 250 },
  );
}
