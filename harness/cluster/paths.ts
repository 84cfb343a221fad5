import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The root of the modelplane checkout. */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

/** Where builds and downloads are cached, outside the clone (same rule as hack/*.sh). */
export function cacheDir(): string {
  const env = process.env;
  return env.MODELPLANE_CACHE ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'modelplane');
}

/** Pinned versions, read from hack/versions.env. */
export function versions(): Record<string, string> {
  const text = readFileSync(join(repoRoot, 'hack', 'versions.env'), 'utf8');
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(\S*)\s*$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}

export const controlPlaneBinaries = [
  'etcd',
  'kube-apiserver',
  'kube-controller-manager',
  'kube-scheduler',
  'kubectl',
  'kwok',
  'helm',
] as const;
export type ControlPlaneBinary = (typeof controlPlaneBinaries)[number];

/**
 * Absolute paths of the control-plane binaries for the pinned versions. Throws with the
 * command to run when any is missing: a cluster test never skips for want of them.
 */
export function binaries(): Record<ControlPlaneBinary, string> {
  const v = versions();
  const bin = join(cacheDir(), 'bin');
  const dirs: Record<ControlPlaneBinary, string> = {
    etcd: `etcd-${v.ETCD_VERSION}`,
    'kube-apiserver': `kubernetes-${v.KUBERNETES_VERSION}`,
    'kube-controller-manager': `kubernetes-${v.KUBERNETES_VERSION}`,
    'kube-scheduler': `kubernetes-${v.KUBERNETES_VERSION}`,
    kubectl: `kubernetes-${v.KUBERNETES_VERSION}`,
    kwok: `kwok-${v.KWOK_VERSION}`,
    helm: `helm-${v.HELM_VERSION}`,
  };
  const out = {} as Record<ControlPlaneBinary, string>;
  const missing: string[] = [];
  for (const name of controlPlaneBinaries) {
    const path = join(bin, dirs[name], name);
    if (!existsSync(join(bin, dirs[name], '.complete')) || !existsSync(path)) missing.push(path);
    out[name] = path;
  }
  if (missing.length > 0) {
    throw new Error(
      `control-plane binaries are missing:\n  ${missing.join('\n  ')}\n` +
        'Build them with `make cluster-bin` (needs Go; see README "Prerequisites").',
    );
  }
  return out;
}
