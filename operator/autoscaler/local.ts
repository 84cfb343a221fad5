/**
 * The demand sources of this process (the gateway's, when it runs here), merged: what the
 * autoscaler reads locally and what `/autoscaler/demand` serves to the leader.
 */
import type { DemandSource, DeploymentDemand } from '../predictions/demand.ts';
import { sumDemand } from './sum.ts';

export type PokeListener = (namespace: string, name: string) => void;

export class LocalDemand implements DemandSource {
  private readonly sources: DemandSource[] = [];
  private readonly listeners: PokeListener[] = [];
  private readonly onError: (err: unknown) => void;

  constructor(opts: { onError?: (err: unknown) => void } = {}) {
    this.onError = opts.onError ?? (() => {});
  }

  /** Adds a source (the gateway registers its queues here); its pokes reach every listener. */
  add(source: DemandSource): void {
    this.sources.push(source);
    source.onPoke((namespace, name) => {
      for (const l of this.listeners) {
        try {
          l(namespace, name);
        } catch (err) {
          this.onError(err);
        }
      }
    });
  }

  get size(): number {
    return this.sources.length;
  }

  /** Every source's snapshot, summed per deployment; a source that throws counts as empty. */
  demand(): DeploymentDemand[] {
    const lists: DeploymentDemand[][] = [];
    for (const s of this.sources) {
      try {
        lists.push(s.demand());
      } catch (err) {
        this.onError(err);
      }
    }
    return [...sumDemand(lists).values()];
  }

  onPoke(listener: PokeListener): void {
    this.listeners.push(listener);
  }
}
