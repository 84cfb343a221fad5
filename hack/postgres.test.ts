import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { postgresBinDir } from '../harness/postgres.ts';

const run = promisify(execFile);
const script = fileURLToPath(new URL('./postgres.sh', import.meta.url));
const temps: string[] = [];
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
  delete process.env.MODELPLANE_POSTGRES_BIN;
});

async function postgres(args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await run('bash', [script, ...args], {
      env: { PATH: process.env.PATH, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('hack/postgres.sh', () => {
  it('names the package when PostgreSQL is missing, and installs nothing with --check', async () => {
    const r = await postgres(['--check'], { MODELPLANE_POSTGRES_BIN: '/nonexistent/bin' });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('postgresql-15');
    expect(r.stderr).toContain('make postgres');
  });

  it('fails, naming what is wrong, when MODELPLANE_POSTGRES_BIN holds no server (never installs over it)', async () => {
    const r = await postgres([], { MODELPLANE_POSTGRES_BIN: '/nonexistent/bin' });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('MODELPLANE_POSTGRES_BIN=/nonexistent/bin holds no postgres and initdb');
  });

  it('prints the bin directory when the server is there', async () => {
    const bin = mkdtempSync(join(tmpdir(), 'modelplane-pgbin-'));
    temps.push(bin);
    for (const name of ['postgres', 'initdb']) {
      writeFileSync(join(bin, name), '#!/bin/sh\n');
      chmodSync(join(bin, name), 0o755);
    }
    const r = await postgres(['--print-dir'], { MODELPLANE_POSTGRES_BIN: bin });
    expect(r).toMatchObject({ code: 0, stdout: `${bin}\n` });
  });
});

describe('the harness without PostgreSQL', () => {
  it('fails with a message that names the package, never skips', () => {
    const empty = mkdtempSync(join(tmpdir(), 'modelplane-pgbin-'));
    temps.push(empty);
    mkdirSync(join(empty, 'bin'));
    process.env.MODELPLANE_POSTGRES_BIN = join(empty, 'bin');
    expect(() => postgresBinDir()).toThrow(/make postgres.*postgresql-15/s);
  });
});
