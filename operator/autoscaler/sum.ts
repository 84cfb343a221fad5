/** Demand from several gateway replicas, summed per deployment; a peer's answer, checked. */
import type { DeploymentDemand } from '../predictions/demand.ts';

/** `namespace/name`, the key demand is summed under. */
export function demandKey(d: { namespace: string; name: string }): string {
  return `${d.namespace}/${d.name}`;
}

/** Sums the demand several gateway replicas report, per deployment. */
export function sumDemand(lists: readonly (readonly DeploymentDemand[])[]): Map<string, DeploymentDemand> {
  const out = new Map<string, DeploymentDemand>();
  for (const list of lists) {
    for (const d of list) {
      const key = demandKey(d);
      let sum = out.get(key);
      if (!sum) {
        sum = { namespace: d.namespace, name: d.name, queued: 0, inflight: 0, perPod: {} };
        out.set(key, sum);
      }
      sum.queued += nonNegative(d.queued);
      sum.inflight += nonNegative(d.inflight);
      for (const [pod, n] of Object.entries(d.perPod ?? {}))
        sum.perPod[pod] = (sum.perPod[pod] ?? 0) + nonNegative(n);
      if (d.lastActivityMs !== undefined && Number.isFinite(d.lastActivityMs))
        sum.lastActivityMs = Math.max(sum.lastActivityMs ?? 0, d.lastActivityMs);
    }
  }
  return out;
}

function nonNegative(n: unknown): number {
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? n : 0;
}

/** Checks a peer's answer; throws with what is wrong. */
export function parseDemandList(body: unknown): DeploymentDemand[] {
  const list = (body as { demand?: unknown })?.demand;
  if (!Array.isArray(list)) throw new Error('the answer has no "demand" array');
  return list.map((d, i) => {
    const x = d as Partial<DeploymentDemand>;
    if (typeof x?.namespace !== 'string' || typeof x.name !== 'string')
      throw new Error(`demand[${i}]: namespace and name must be strings`);
    return {
      namespace: x.namespace,
      name: x.name,
      queued: nonNegative(x.queued),
      inflight: nonNegative(x.inflight),
      perPod:
        x.perPod && typeof x.perPod === 'object'
          ? Object.fromEntries(Object.entries(x.perPod).map(([k, v]) => [k, nonNegative(v)]))
          : {},
      ...(typeof x.lastActivityMs === 'number' ? { lastActivityMs: x.lastActivityMs } : {}),
    };
  });
}
