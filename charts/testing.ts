/** Renders the chart with the helm binary `make cluster-bin` builds, for the chart's tests. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseAllDocuments } from 'yaml';
import { binaries, repoRoot, versions } from '../harness/cluster/paths.ts';

const run = promisify(execFile);

export const chartPath = join(repoRoot, 'charts', 'modelplane');

// biome-ignore lint/suspicious/noExplicitAny: rendered YAML is read field by field
type Loose = any;

/** A rendered object (loosely typed: tests read the fields they check). */
export type Obj = {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; [k: string]: Loose };
  [k: string]: Loose;
};

/** The helm binary; throws with the command to run when it is missing. */
export function helm(): string {
  return binaries().helm;
}

/** The Kubernetes version to render for (helm is built without the ldflags that set its default). */
export function kubeVersion(): string {
  return versions().KUBERNETES_VERSION!;
}

export interface HelmResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs helm; never rejects: the exit status is in `code`. */
export async function runHelm(args: string[], env: NodeJS.ProcessEnv = {}): Promise<HelmResult> {
  try {
    const { stdout, stderr } = await run(helm(), args, {
      env: { ...process.env, ...env },
      maxBuffer: 64 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== 'number') throw err;
    return { code: e.code, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/** `helm template` arguments for a release, with the values given as `--set-json` pairs. */
export function templateArgs(
  release: string,
  namespace: string,
  values: Record<string, unknown> = {},
  extra: string[] = [],
): string[] {
  const args = ['template', release, chartPath, '--namespace', namespace, '--kube-version', kubeVersion()];
  for (const [key, value] of Object.entries(values))
    args.push('--set-json', `${key}=${JSON.stringify(value)}`);
  return [...args, ...extra];
}

export function parseManifests(text: string): Obj[] {
  return parseAllDocuments(text)
    .map((d) => {
      if (d.errors.length > 0) throw new Error(`rendered YAML does not parse: ${d.errors[0]!.message}`);
      return d.toJS() as Obj | null;
    })
    .filter((o): o is Obj => o !== null && typeof o === 'object');
}

/** Renders the chart; rejects with helm's stderr when it fails. */
export async function render(
  values: Record<string, unknown> = {},
  opts: { release?: string; namespace?: string } = {},
): Promise<Obj[]> {
  const r = await runHelm(
    templateArgs(opts.release ?? 'modelplane', opts.namespace ?? 'modelplane-system', values),
  );
  if (r.code !== 0) throw new Error(`helm template failed (${r.code}): ${r.stderr}`);
  return parseManifests(r.stdout);
}

/** The YAML documents of a file. */
export function readManifests(path: string): Obj[] {
  return parseManifests(readFileSync(path, 'utf8'));
}
