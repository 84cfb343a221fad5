import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = fileURLToPath(new URL('./cluster-bin.sh', import.meta.url));
const temps: string[] = [];
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

async function clusterBin(env: NodeJS.ProcessEnv): Promise<{ code: number; stderr: string }> {
  try {
    const { stderr } = await run('bash', [script], { env });
    return { code: 0, stderr };
  } catch (err) {
    const e = err as { code: number; stderr: string };
    return { code: e.code, stderr: e.stderr };
  }
}

function emptyCache(): string {
  const dir = mkdtempSync(join(tmpdir(), 'modelplane-cache-'));
  temps.push(dir);
  return dir;
}

describe('hack/cluster-bin.sh', () => {
  it('fails with a clear message when Go is missing', async () => {
    const r = await clusterBin({
      PATH: '/usr/bin:/bin',
      HOME: process.env.HOME,
      MODELPLANE_CACHE: emptyCache(),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Go is not installed\. .*install Go >= 1\.\d+/);
  });

  it('fails with a clear message when Go is too old', async () => {
    const fakeBin = emptyCache();
    // A `go` that reports an old version, to exercise the version check alone.
    writeFileSync(join(fakeBin, 'go'), '#!/bin/sh\necho go1.21.4\n');
    chmodSync(join(fakeBin, 'go'), 0o755);
    const r = await clusterBin({
      PATH: `${fakeBin}:/usr/bin:/bin`,
      HOME: process.env.HOME,
      MODELPLANE_CACHE: emptyCache(),
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Go 1\.21\.4 is too old: Kubernetes v1\.\d+\.\d+ needs Go >= 1\.\d+/);
  });
});
