import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { checkImports, formatViolation } from './check-imports.ts';

const temps: string[] = [];
afterEach(() => {
  for (const t of temps.splice(0)) rmSync(t, { recursive: true, force: true });
});

/** A fixture tree in a temp dir: path → file text. */
function tree(files: Record<string, string>): string {
  const root = mkdtempSync(join(tmpdir(), 'modelplane-imports-'));
  temps.push(root);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const check = (files: Record<string, string>): string[] => checkImports(tree(files)).map(formatViolation);

/** A layout that follows every rule, and uses each exception the rules make. */
const CLEAN: Record<string, string> = {
  'lib/http.ts': `export const ok = 200;\n`,
  'lib/prediction.ts': `import { ok } from './http.ts';\nexport const done = ok;\n`,
  'crds/index.ts': `import { done } from '../lib/prediction.ts';\nexport const kinds = [done];\n`,
  'webhook/server.ts': `import { kinds } from '../crds/index.ts';\nexport const serve = () => kinds;\n`,
  'sidecar/main.ts': `import { ok } from '../lib/http.ts';\nimport { kinds } from '../crds/index.ts';\nexport const run = () => [ok, kinds];\n`,
  'operator/predictions/queue.ts': `import type { ok } from '../../lib/http.ts';\nexport type Q = typeof ok;\n`,
  'operator/gateway/routes.ts': `import type { Q } from '../predictions/queue.ts';\nexport type R = Q;\n`,
  'operator/controllers/prediction.ts': `export type P = import('../predictions/queue.ts').Q;\n`,
  'operator/main.ts': [
    `import { serve } from '../webhook/server.ts';`,
    `import type { R } from './gateway/routes.ts';`,
    `import type { P } from './controllers/prediction.ts';`,
    `export const run = (): [R?, P?] => (serve(), []);`,
    ``,
  ].join('\n'),
  'operator/controllers/testing.ts': `export { run } from '../main.ts';\nexport * from '../../harness/cluster.ts';\n`,
  'operator/main.test.ts': `import '../e2e/kit.ts';\nimport '../sidecar/main.ts';\nimport './controllers/testing.ts';\n`,
  'harness/cluster.ts': `import { run } from '../operator/main.ts';\nexport const start = () => run();\n`,
  'harness/testing.ts': `import { start } from './cluster.ts';\nexport const withCluster = start;\n`,
  'dev/main.ts': `import { start } from '../harness/cluster.ts';\nimport '../sidecar/main.ts';\nexport const dev = start;\n`,
  'cli/modelplane.ts': `import { run } from '../operator/main.ts';\nexport const commands = { operator: run, dev: () => import('../dev/main.ts') };\n`,
  'e2e/kit.ts': `import '../harness/testing.ts';\nimport '../operator/controllers/testing.ts';\n`,
  'bench/gateway.ts': `import '../e2e/kit.ts';\n`,
  'lib/http.test.ts': `import '../operator/main.ts';\nimport '../harness/testing.ts';\n`,
  'vitest.config.ts': `import 'vitest/config';\nimport './harness/cluster.ts';\n`,
  'node_modules/x/index.ts': `import '../../operator/main.ts';\nimport '../../e2e/kit.ts';\n`,
};

describe('checkImports', () => {
  it('passes a clean tree, with its allowed exceptions', () => {
    expect(check(CLEAN)).toEqual([]);
  });

  it('fails when lib/ imports the operator (once: not again as the cycle it makes)', () => {
    expect(
      check({
        ...CLEAN,
        'lib/http.ts': `\nimport { run } from '../operator/main.ts';\nexport const ok = run;\n`,
      }),
    ).toEqual(['lib/http.ts:2: imports operator/main.ts — lib/ imports only lib/']);
  });

  it('fails when crds/ imports anything above crds/ and lib/', () => {
    expect(check({ ...CLEAN, 'crds/x.ts': `export * from '../webhook/server.ts';\n` })).toEqual([
      'crds/x.ts:1: imports webhook/server.ts — crds/ imports only crds/, lib/',
    ]);
  });

  it('fails when the operator, the sidecar and the webhook reach into each other', () => {
    expect(
      check({
        ...CLEAN,
        'operator/x.ts': `import '../sidecar/main.ts';\n`,
        'sidecar/x.ts': `import '../operator/gateway/routes.ts';\n`,
        'webhook/x.ts': `import '../operator/main.ts';\nimport '../sidecar/main.ts';\n`,
      }),
    ).toEqual([
      'operator/x.ts:1: imports sidecar/main.ts — operator/ imports only operator/, crds/, lib/, webhook/',
      'sidecar/x.ts:1: imports operator/gateway/routes.ts — sidecar/ imports only sidecar/, crds/, lib/',
      'webhook/x.ts:1: imports operator/main.ts — webhook/ imports only webhook/, crds/, lib/',
      'webhook/x.ts:2: imports sidecar/main.ts — webhook/ imports only webhook/, crds/, lib/',
    ]);
  });

  it('lets operator/store/ import only lib/ and the store contracts of operator/predictions/', () => {
    const tree = {
      ...CLEAN,
      'operator/predictions/store.ts': `export type S = 1;\n`,
      'operator/predictions/record.ts': `export type R = 1;\n`,
      'operator/predictions/store.contract.ts': `import type { S } from './store.ts';\nexport type C = S;\n`,
      'operator/store/index.ts': [
        `import type { S } from '../predictions/store.ts';`,
        `import type { R } from '../predictions/record.ts';`,
        `import type { ok } from '../../lib/http.ts';`,
        `export type X = [S, R, typeof ok];`,
        ``,
      ].join('\n'),
      'operator/store/index.test.ts': `import '../predictions/store.contract.ts';\nimport '../gateway/routes.ts';\n`,
    };
    expect(check(tree)).toEqual([]);
    expect(
      check({
        ...tree,
        'operator/store/bad.ts': [
          `import type { Q } from '../predictions/queue.ts';`,
          `import type { R } from '../gateway/routes.ts';`,
          `import { kinds } from '../../crds/index.ts';`,
          `import type { C } from '../predictions/store.contract.ts';`,
          `export type B = [Q, R, typeof kinds, C];`,
          ``,
        ].join('\n'),
      }),
    ).toEqual([
      'operator/store/bad.ts:1: imports operator/predictions/queue.ts — operator/store/ imports only operator/store/, lib/, operator/predictions/store.ts, operator/predictions/record.ts, operator/predictions/usage-store.ts',
      'operator/store/bad.ts:2: imports operator/gateway/routes.ts — operator/store/ imports only operator/store/, lib/, operator/predictions/store.ts, operator/predictions/record.ts, operator/predictions/usage-store.ts',
      'operator/store/bad.ts:3: imports crds/index.ts — operator/store/ imports only operator/store/, lib/, operator/predictions/store.ts, operator/predictions/record.ts, operator/predictions/usage-store.ts',
      'operator/store/bad.ts:4: imports operator/predictions/store.contract.ts — product code imports test or harness code',
    ]);
  });

  it('fails when product code imports a test helper', () => {
    expect(
      check({
        ...CLEAN,
        'sidecar/slots.ts': `import { x } from './testing/fake-model.ts';\nexport const y = x;\n`,
        'sidecar/testing/fake-model.ts': `export const x = 1;\n`,
        'operator/gateway/auth.ts': `import type { run } from '../controllers/testing.ts';\nexport type A = typeof run;\n`,
        'cli/x.ts': `import '../sidecar/slots.test.ts';\n`,
      }),
    ).toEqual([
      'cli/x.ts:1: imports sidecar/slots.test.ts — product code imports test or harness code',
      'operator/gateway/auth.ts:1: imports operator/controllers/testing.ts — product code imports test or harness code',
      'sidecar/slots.ts:1: imports sidecar/testing/fake-model.ts — product code imports test or harness code',
    ]);
  });

  it('fails when product code imports harness/, e2e/ or bench/ (dev/ only the harness proper)', () => {
    expect(
      check({
        ...CLEAN,
        'cli/x.ts': `import '../harness/cluster.ts';\n`,
        'operator/x.ts': `export * from '../e2e/kit.ts';\n`,
        'lib/x.ts': `import '../bench/gateway.ts';\n`,
        'dev/x.ts': `import '../harness/testing.ts';\nimport '../e2e/kit.ts';\n`,
      }),
    ).toEqual([
      'cli/x.ts:1: imports harness/cluster.ts — product code imports test or harness code',
      'dev/x.ts:1: imports harness/testing.ts — product code imports test or harness code',
      'dev/x.ts:2: imports e2e/kit.ts — product code imports test or harness code',
      'lib/x.ts:1: imports bench/gateway.ts — product code imports test or harness code',
      'operator/x.ts:1: imports e2e/kit.ts — product code imports test or harness code',
    ]);
  });

  it('sees dynamic imports and import types', () => {
    expect(
      check({
        ...CLEAN,
        'cli/modelplane.ts': `export const dev = async () =>\n  (await import('../e2e/dev/main.ts')).run();\n`,
        'e2e/dev/main.ts': `export const run = () => 0;\n`,
        'lib/x.ts': `export type T = import('../operator/main.ts').R;\n`,
      }),
    ).toEqual([
      'cli/modelplane.ts:2: imports e2e/dev/main.ts — product code imports test or harness code',
      'lib/x.ts:1: imports operator/main.ts — lib/ imports only lib/',
    ]);
  });

  it('fails on a two-file cycle, naming the files in order', () => {
    expect(
      check({
        ...CLEAN,
        'harness/local.ts': `import { start } from './cluster.ts';\nexport const local = start;\n`,
        'harness/cluster.ts': `import { run } from '../operator/main.ts';\nimport './local.ts';\nexport const start = () => run();\n`,
      }),
    ).toEqual([
      'harness/cluster.ts:2: imports harness/local.ts — import cycle: harness/cluster.ts → harness/local.ts → harness/cluster.ts',
      'harness/local.ts:1: imports harness/cluster.ts — import cycle: harness/cluster.ts → harness/local.ts → harness/cluster.ts',
    ]);
  });

  it('fails when two folders import each other, though no file cycle does', () => {
    expect(
      check({
        ...CLEAN,
        'operator/controllers/resources.ts': `export const pods = 1;\n`,
        'operator/gateway/resources.ts': `export { pods } from '../controllers/resources.ts';\n`,
        'operator/controllers/prediction.ts': `import '../gateway/routes.ts';\n`,
      }),
    ).toEqual([
      'operator/controllers/prediction.ts:1: imports operator/gateway/routes.ts — folder cycle: operator/controllers/ → operator/gateway/ → operator/controllers/',
      'operator/gateway/resources.ts:1: imports operator/controllers/resources.ts — folder cycle: operator/controllers/ → operator/gateway/ → operator/controllers/',
    ]);
  });

  it('reports each shortest cycle of a longer tangle', () => {
    const violations = check({
      ...CLEAN,
      'lib/a.ts': `import './b.ts';\n`,
      'lib/b.ts': `import './c.ts';\nimport './a.ts';\n`,
      'lib/c.ts': `import './b.ts';\n`,
    });
    expect(violations).toEqual([
      'lib/a.ts:1: imports lib/b.ts — import cycle: lib/a.ts → lib/b.ts → lib/a.ts',
      'lib/b.ts:2: imports lib/a.ts — import cycle: lib/a.ts → lib/b.ts → lib/a.ts',
      'lib/b.ts:1: imports lib/c.ts — import cycle: lib/b.ts → lib/c.ts → lib/b.ts',
      'lib/c.ts:1: imports lib/b.ts — import cycle: lib/b.ts → lib/c.ts → lib/b.ts',
    ]);
  });
});

describe('node hack/check-imports.ts', () => {
  const script = fileURLToPath(new URL('./check-imports.ts', import.meta.url));
  const run = (root: string) =>
    promisify(execFile)(process.execPath, [script, root]).then(
      ({ stdout }) => ({ code: 0, stdout }),
      (err: { code: number; stdout: string }) => ({ code: err.code, stdout: err.stdout }),
    );

  it('exits 0 on a clean tree', async () => {
    expect((await run(tree(CLEAN))).code).toBe(0);
  });

  it('exits 1 and prints file:line for each bad import', async () => {
    const result = await run(tree({ ...CLEAN, 'lib/x.ts': `import '../operator/main.ts';\n` }));
    expect(result).toEqual({
      code: 1,
      stdout: 'lib/x.ts:1: imports operator/main.ts — lib/ imports only lib/\n',
    });
  });
});
