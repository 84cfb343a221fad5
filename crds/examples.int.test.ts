/**
 * Every YAML file in examples/ and examples/dev/ against a real API server: it passes a server-side dry-run
 * apply, and applying it twice changes nothing the second time.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ApiException, type KubernetesObject } from '@kubernetes/client-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { useCluster, useNamespace } from '../harness/cluster/testing.ts';
import { KIND } from './constants.ts';
import { installCrds } from './install.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'examples');
const examplesDir = fileURLToPath(new URL('../examples', import.meta.url));
/** The top level (what a user applies to a cluster) and dev/ (what `make dev` applies). */
const files = ['', 'dev/'].flatMap((dir) =>
  readdirSync(join(examplesDir, dir))
    .filter((f) => f.endsWith('.yaml'))
    .map((f) => `${dir}${f}`),
);
// A discovery cache of this file's own, so kubectl sees the CRDs installed below.
const cacheDir = mkdtempSync(join(tmpdir(), 'examples-kubectl-'));
const kubectl = (...args: string[]) => cluster.kubectl(`--cache-dir=${cacheDir}`, ...args);

type Named = KubernetesObject & { metadata: { name: string; namespace?: string } };

function objectsIn(file: string): Named[] {
  return parseAllDocuments(readFileSync(join(examplesDir, file), 'utf8'))
    .map((d) => d.toJS() as Named | null)
    .filter((o): o is Named => o !== null)
    .map((o) => (o.kind === KIND.HardwareClass ? o : { ...o, metadata: { ...o.metadata, namespace: ns() } }));
}

async function exists(o: Named): Promise<boolean> {
  try {
    await cluster.objects.read(o);
    return true;
  } catch (err) {
    if (err instanceof ApiException && err.code === 404) return false;
    throw err;
  }
}

async function resourceVersions(objects: Named[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const o of objects) {
    const got = await cluster.objects.read(o);
    out[`${o.kind}/${o.metadata.name}`] = got.metadata?.resourceVersion ?? '';
  }
  return out;
}

/** Cluster-scoped objects this file created, removed afterwards so later files start clean. */
const created: Named[] = [];

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
});

afterAll(async () => {
  for (const o of created) await cluster.objects.delete(o).catch(() => undefined);
  rmSync(cacheDir, { recursive: true, force: true });
});

describe('examples/', () => {
  it('has YAML files to apply', () => {
    expect(files).toContain('hardware-classes.yaml');
    expect(files.length).toBeGreaterThanOrEqual(4);
  });

  it.each(files)('%s passes a server-side dry-run apply and creates nothing', async (file) => {
    const objects = objectsIn(file);
    const before = await Promise.all(objects.map(exists));
    const out = await kubectl(
      'apply',
      '--server-side',
      '--dry-run=server',
      '-n',
      ns(),
      '-f',
      join(examplesDir, file),
    );
    const lines = out.trim().split('\n');
    expect(lines).toHaveLength(objects.length);
    for (const line of lines) expect(line).toMatch(/ serverside-applied \(server dry run\)$/);
    expect(await Promise.all(objects.map(exists))).toEqual(before);
  });

  it.each(files)('%s applies, and applying it again changes nothing', async (file) => {
    const objects = objectsIn(file);
    for (const o of objects) {
      if (o.kind === KIND.HardwareClass && !(await exists(o))) created.push(o);
    }
    const path = join(examplesDir, file);
    await kubectl('apply', '--server-side', '-n', ns(), '-f', path);
    const first = await resourceVersions(objects);
    expect(Object.keys(first)).toHaveLength(objects.length);
    await kubectl('apply', '--server-side', '-n', ns(), '-f', path);
    expect(await resourceVersions(objects)).toEqual(first);
  });
});
