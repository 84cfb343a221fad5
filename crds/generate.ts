/**
 * `make crds`: writes the CRDs generated from the zod schemas to crds/generated/, removing
 * files of kinds that no longer exist. With --check it writes nothing and exits 1 when the
 * committed files differ from what the schemas generate.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedFiles } from './crd.ts';

export const generatedDir = fileURLToPath(new URL('./generated', import.meta.url));

/** Names of files in `dir` that differ from, are missing from, or are extra to `want`. */
export function drift(dir: string, want: Map<string, string>): string[] {
  const have = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith('.yaml')) : [];
  const out: string[] = [];
  for (const [name, text] of want) {
    const path = join(dir, name);
    if (!existsSync(path)) out.push(`${name} (missing)`);
    else if (readFileSync(path, 'utf8') !== text) out.push(`${name} (differs)`);
  }
  for (const name of have) if (!want.has(name)) out.push(`${name} (no longer generated)`);
  return out.sort();
}

export function writeGenerated(dir: string, files: Map<string, string>): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const name of readdirSync(dir)) {
    if (name.endsWith('.yaml') && !files.has(name)) rmSync(join(dir, name));
  }
  for (const [name, text] of files) {
    const path = join(dir, name);
    if (existsSync(path) && readFileSync(path, 'utf8') === text) continue;
    writeFileSync(path, text);
    written.push(name);
  }
  return written;
}

if (import.meta.main) {
  const files = generatedFiles();
  if (process.argv.includes('--check')) {
    const changed = drift(generatedDir, files);
    if (changed.length > 0) {
      process.stderr.write(`crds/generated is out of date (run make crds):\n  ${changed.join('\n  ')}\n`);
      process.exitCode = 1;
    }
  } else {
    const written = writeGenerated(generatedDir, files);
    process.stdout.write(
      written.length > 0
        ? `crds: wrote ${written.map((n) => `crds/generated/${n}`).join(', ')}\n`
        : 'crds: up to date\n',
    );
  }
}
