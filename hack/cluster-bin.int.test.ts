import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { binaries } from '../harness/cluster/paths.ts';

const run = promisify(execFile);
const script = fileURLToPath(new URL('./cluster-bin.sh', import.meta.url));

// The cluster project runs after `make cluster-bin`, so every binary is already cached.
describe('hack/cluster-bin.sh on a warm cache', () => {
  it('builds nothing the second time and reports where the binaries are', async () => {
    const before = binaries();
    const { stdout, stderr } = await run('bash', [script, '--print-dir']);
    expect(stderr).not.toMatch(/building|go build/);
    const dir = stdout.trim();
    expect(dir).toMatch(/\/bin\/current$/);
    const { stdout: v } = await run(`${dir}/kube-apiserver`, ['--version']);
    expect(v.trim()).toMatch(/^Kubernetes v1\.\d+\.\d+$/);
    expect(binaries()).toEqual(before);
  });
});
