/**
 * Demand: what the prediction engine tells the autoscaler. Every gateway replica implements
 * `DemandSource` over its own queues; the autoscaler (on the Lease holder) sums them.
 */

/** Demand of one modelplane Deployment as one gateway replica sees it. */
export interface DeploymentDemand {
  namespace: string;
  name: string;
  /** Predictions waiting for an instance (held, including while scaling from zero). */
  queued: number;
  /** Predictions dispatched to instances and not finished. */
  inflight: number;
  /** Outstanding predictions per pod name (for busy-pod marking). */
  perPod: Record<string, number>;
  /** Epoch ms of the last prediction accepted or finished for this deployment, if any. */
  lastActivityMs?: number;
}

export interface DemandSource {
  /** A snapshot of every deployment with demand or recent activity. */
  demand(): DeploymentDemand[];
  /** Called by the source when demand changes sharply (a request held with no ready pod): the autoscaler should decide at once, not at the next tick. */
  onPoke(listener: (namespace: string, name: string) => void): void;
}
