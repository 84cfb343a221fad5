import { execFile } from 'node:child_process';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { s3ServerBinary } from '../harness/s3.ts';

const run = promisify(execFile);
const script = fileURLToPath(new URL('./s3.sh', import.meta.url));
const version = /^VERSITYGW_VERSION=(\S+)$/m.exec(
  readFileSync(new URL('./versions.env', import.meta.url), 'utf8'),
)![1]!;
const temps: string[] = [];
const saved = { cache: process.env.MODELPLANE_CACHE, server: process.env.MODELPLANE_S3_SERVER };
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
  for (const [k, v] of [
    ['MODELPLANE_CACHE', saved.cache],
    ['MODELPLANE_S3_SERVER', saved.server],
  ] as const) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function temp(): string {
  const d = mkdtempSync(join(tmpdir(), 'modelplane-s3sh-'));
  temps.push(d);
  return d;
}

const onPath = (tool: string): string | undefined =>
  (process.env.PATH ?? '')
    .split(':')
    .map((p) => join(p, tool))
    .find((p) => existsSync(p));
const bash = onPath('bash') ?? '/bin/bash';

/** A PATH with what the script needs before it looks for Go, and no Go. */
function noGo(): string {
  const d = temp();
  for (const tool of ['dirname']) {
    const found = onPath(tool);
    if (found) symlinkSync(found, join(d, tool));
  }
  return d;
}

async function s3sh(args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await run(bash, [script, ...args], {
      env: { PATH: process.env.PATH, ...env },
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

describe('hack/s3.sh', () => {
  it('with --check, names `make s3` and the module when the server is not built, and builds nothing', async () => {
    const cache = temp();
    const r = await s3sh(['--check'], { MODELPLANE_CACHE: cache, HOME: cache });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('make s3');
    expect(r.stderr).toContain(`versitygw ${version}`);
    expect(r.stderr).toContain('github.com/versity/versitygw');
    expect(r.stdout).toBe('');
  });

  it('prints the cached binary of the pinned version, building nothing, once it is stamped complete', async () => {
    const cache = temp();
    const dir = join(cache, 'bin', `versitygw-${version}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'versitygw'), '#!/bin/sh\n');
    chmodSync(join(dir, 'versitygw'), 0o755);
    // Without the stamp, a half-finished build does not count.
    expect((await s3sh(['--check'], { MODELPLANE_CACHE: cache })).code).toBe(3);
    writeFileSync(join(dir, '.complete'), 'now\n');
    for (const args of [[], ['--check']]) {
      // PATH without Go: a build would fail, so this shows nothing is built.
      const r = await s3sh(args, { MODELPLANE_CACHE: cache, PATH: '/usr/bin:/bin' });
      expect(r).toMatchObject({ code: 0, stdout: `${join(dir, 'versitygw')}\n` });
    }
  });

  it('fails naming Go when it has to build and there is no Go', async () => {
    const cache = temp();
    const r = await s3sh([], { MODELPLANE_CACHE: cache, PATH: noGo() });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/Go is not installed.*Go >= /);
  });

  it('refuses an unknown flag', async () => {
    const r = await s3sh(['--print-dir'], {});
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown flag --print-dir');
  });

  it('uses MODELPLANE_S3_SERVER when set, and fails when it is not an executable', async () => {
    const d = temp();
    const bin = join(d, 'versitygw');
    expect((await s3sh([], { MODELPLANE_S3_SERVER: bin })).stderr).toContain(
      'is not an executable versitygw',
    );
    writeFileSync(bin, '#!/bin/sh\n');
    chmodSync(bin, 0o755);
    expect(await s3sh(['--check'], { MODELPLANE_S3_SERVER: bin })).toMatchObject({
      code: 0,
      stdout: `${bin}\n`,
    });
  });
});

describe('the harness without the S3 server', () => {
  it('fails with a message that names `make s3`, never skips', () => {
    delete process.env.MODELPLANE_S3_SERVER;
    process.env.MODELPLANE_CACHE = temp();
    expect(() => s3ServerBinary()).toThrow(/make s3.*versitygw/s);
    process.env.MODELPLANE_S3_SERVER = '/nonexistent/versitygw';
    expect(() => s3ServerBinary()).toThrow(/MODELPLANE_S3_SERVER=\/nonexistent\/versitygw.*make s3/);
  });
});
