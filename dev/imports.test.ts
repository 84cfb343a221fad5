/**
 * `modelplane dev` is a product command: what `modelplane` loads to run it (cli/modelplane.ts
 * and everything it imports, statically or when asked for) holds no test code.
 */
import { readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../harness/cluster/paths.ts';

// `import … from '…'`, `export … from '…'`, `import '…'` and `import('…')`.
const IMPORT =
  /(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+'([^']+)'|(?:^|\n)\s*import\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g;

/** Files of this checkout that `entry` loads, and the packages it imports, transitively. */
function closure(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const todo = [resolve(repoRoot, entry)];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const m of readFileSync(file, 'utf8').matchAll(IMPORT)) {
      const spec = m[1] ?? m[2] ?? m[3]!;
      if (spec.startsWith('.')) todo.push(resolve(dirname(file), spec));
      else if (!spec.startsWith('node:')) packages.add(spec);
    }
  }
  return { files: [...files].map((f) => relative(repoRoot, f)).sort(), packages: [...packages].sort() };
}

describe('modelplane dev', () => {
  it('loads no test code', () => {
    const { files, packages } = closure('cli/modelplane.ts');
    expect(files).toContain('dev/main.ts');
    expect(files).toContain('harness/podrunner/runner.ts');
    const testCode = files.filter(
      (f) =>
        f.endsWith('.test.ts') ||
        /(^|\/)testing(\.ts|\/)/.test(f) ||
        /(^|\/)fixtures\//.test(f) ||
        f.startsWith('e2e/') ||
        f.startsWith('bench/'),
    );
    expect(testCode).toEqual([]);
    expect(packages.filter((p) => p === 'vitest' || p.startsWith('vitest/'))).toEqual([]);
  });
});
