import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const script = fileURLToPath(new URL('./python.sh', import.meta.url));
const temps: string[] = [];
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'modelplane-python-'));
  temps.push(dir);
  return dir;
}

async function python(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run('bash', [script, ...args], {
      env: { HOME: process.env.HOME, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('hack/python.sh', () => {
  it('says to run `make python` when asked to check an empty cache, and installs nothing', async () => {
    const cache = tempDir();
    const r = await python(['--check'], { PATH: process.env.PATH, MODELPLANE_CACHE: cache });
    expect(r.code).toBe(3);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /not installed \(expected .*\/python\/cog-0\.\d+\.\d+-py3\.\d+-[0-9a-f]{12}\); run `make python`/,
    );
  });

  it('fails with a clear message when Python is missing', async () => {
    const r = await python([], {
      PATH: '/usr/bin:/bin',
      MODELPLANE_CACHE: tempDir(),
      PYTHON: 'no-such-python3',
    });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no-such-python3 is not installed\. The example models need Python >= 3\.\d+/);
  });

  it('fails with a clear message when Python is too old', async () => {
    const bin = tempDir();
    writeFileSync(join(bin, 'python3'), '#!/bin/sh\necho 3.8\n');
    chmodSync(join(bin, 'python3'), 0o755);
    const r = await python([], { PATH: `${bin}:/usr/bin:/bin`, MODELPLANE_CACHE: tempDir() });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Python 3\.8 is too old: the example models need Python >= 3\.\d+/);
  });

  it('rejects an unknown flag', async () => {
    const r = await python(['--frobnicate'], { PATH: process.env.PATH, MODELPLANE_CACHE: tempDir() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown flag --frobnicate');
  });
});
