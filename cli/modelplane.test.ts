import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { version } from './modelplane.ts';

const run = promisify(execFile);
const bin = fileURLToPath(new URL('../bin/modelplane', import.meta.url));

async function modelplane(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(bin, args);
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('the modelplane CLI', () => {
  it('prints the package version with --version', async () => {
    const r = await modelplane('--version');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`modelplane ${version()}\n`);
    expect(version()).toMatch(/^\d+\.\d+\.\d+/);
  });

  it('prints usage with --help', async () => {
    const r = await modelplane('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage:\n  modelplane <command> [flags]');
  });

  it('rejects an unknown command or flag with usage on stderr and exit code 2', async () => {
    const cmd = await modelplane('frobnicate');
    expect(cmd.code).toBe(2);
    expect(cmd.stderr).toContain('unknown command "frobnicate"');
    const flag = await modelplane('--frobnicate');
    expect(flag.code).toBe(2);
    expect(flag.stderr).toContain("Unknown option '--frobnicate'");
  });
});
