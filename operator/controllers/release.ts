/**
 * The release a Deployment's spec is cut as, and the instance count its workload gets: pure
 * functions of the spec, the workload and the last status.
 */
import { createHash } from 'node:crypto';
import { ANNOTATION, type DeploymentSpec, LABEL } from '../../crds/index.ts';
import type { Workload } from '../resources.ts';
import { canonicalJson } from './version-id.ts';

/** The hash a release is cut from: the Deployment spec, defaults applied. */
export function releaseHash(spec: DeploymentSpec): string {
  return createHash('sha256').update(canonicalJson(spec)).digest('hex').slice(0, 32);
}

/**
 * The release number of `spec`: the workload's own when it was cut from the same spec, else
 * one more than the last one known. A workload that is gone while the status is current for
 * this generation keeps the status's release.
 */
export function releaseFor(
  hash: string,
  workload: Workload | undefined,
  status: { release?: number; observedGeneration?: number } | undefined,
  generation: number | undefined,
): { release: number; cut: boolean } {
  const childRelease = Number(workload?.metadata?.labels?.[LABEL.release] ?? 0) || 0;
  if (workload && workload.metadata?.annotations?.[ANNOTATION.releaseHash] === hash && childRelease > 0)
    return { release: childRelease, cut: false };
  if (!workload && status?.release && status.observedGeneration === generation)
    return { release: status.release, cut: false };
  return { release: Math.max(status?.release ?? 0, childRelease) + 1, cut: true };
}

/**
 * The release the pods of `release` carry: the workload's pod release when its pod template
 * is the same (`templateHash` unchanged: only instances, scaling, queue or rollout settings
 * changed, and the running pods stay), else `release` itself (the template changed, and the
 * pods are replaced).
 */
export function podReleaseFor(templateHash: string, workload: Workload | undefined, release: number): number {
  if (workload?.metadata?.annotations?.[ANNOTATION.podTemplateHash] !== templateHash) return release;
  const running = Number(workload.spec?.template?.metadata?.labels?.[LABEL.release] ?? 0) || 0;
  return running > 0 && running <= release ? running : release;
}

/** Instances a new workload starts with: `minInstances` (0 for a deployment that scales to zero). */
export function initialReplicas(spec: DeploymentSpec): number {
  return spec.minInstances;
}

/**
 * What the Deployment controller applies as the workload's `spec.replicas`. The autoscaler
 * owns that field (server-side apply, its own field manager), so the controller leaves it
 * out once the autoscaler has applied it; before that the controller keeps it at the value
 * it has (`minInstances` when it creates the workload). It must never leave out a field it
 * alone owns: the API server would remove it and the count would fall back to 1.
 */
export function replicasToApply(
  spec: DeploymentSpec,
  workload: Workload | undefined,
  autoscalerOwns: boolean,
): number | undefined {
  if (!workload) return initialReplicas(spec);
  if (autoscalerOwns) return undefined;
  return workload.spec?.replicas ?? initialReplicas(spec);
}

/** Instances the workload is told to run: its `spec.replicas` (set by the autoscaler). */
export function workloadReplicas(workload: Workload | undefined, spec: DeploymentSpec): number {
  return workload?.spec?.replicas ?? initialReplicas(spec);
}
