/** What the autoscaler's tests and the benchmark drive it with. */
import type { DemandSource, DeploymentDemand } from '../predictions/demand.ts';
import { demandKey } from './sum.ts';

/**
 * A DemandSource whose numbers are set by hand: for tests and benchmarks that drive the
 * autoscaler without a gateway, and for embedding. `set` replaces a deployment's demand;
 * `poke` calls the listeners as the gateway does when a request is held with no ready pod.
 */
export class StaticDemandSource implements DemandSource {
  private readonly entries = new Map<string, DeploymentDemand>();
  private readonly listeners: ((namespace: string, name: string) => void)[] = [];

  set(d: DeploymentDemand): void {
    this.entries.set(demandKey(d), { ...d, perPod: { ...d.perPod } });
  }

  delete(namespace: string, name: string): void {
    this.entries.delete(`${namespace}/${name}`);
  }

  poke(namespace: string, name: string): void {
    for (const l of this.listeners) l(namespace, name);
  }

  demand(): DeploymentDemand[] {
    return [...this.entries.values()].map((d) => ({ ...d, perPod: { ...d.perPod } }));
  }

  onPoke(listener: (namespace: string, name: string) => void): void {
    this.listeners.push(listener);
  }
}
