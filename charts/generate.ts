/**
 * `make chart` (also run by `make crds`): writes what the chart takes from the rest of the
 * tree — `charts/modelplane/values.schema.json` from the zod schema in charts/values.ts, and
 * `charts/modelplane/files/` with copies of crds/generated/ and operator/rbac.yaml (the
 * templates read them). With --check it writes nothing and exits 1 when the committed files differ.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { drift, generatedDir, writeGenerated } from '../crds/generate.ts';
import { valuesJsonSchema } from './values.ts';

export const chartDir = fileURLToPath(new URL('./modelplane', import.meta.url));
export const chartCrdsDir = join(chartDir, 'files', 'crds');
export const valuesSchemaPath = join(chartDir, 'values.schema.json');
/** The chart's copy of operator/rbac.yaml, whose rules templates/rbac.yaml reads. */
export const chartRbacPath = join(chartDir, 'files', 'rbac.yaml');
export const rbacPath = fileURLToPath(new URL('../operator/rbac.yaml', import.meta.url));

/** The single files the chart holds: path → wanted text. */
function singleFiles(): Map<string, string> {
  return new Map([
    [valuesSchemaPath, valuesSchemaText()],
    [chartRbacPath, readFileSync(rbacPath, 'utf8')],
  ]);
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

export function valuesSchemaText(): string {
  return `${JSON.stringify(valuesJsonSchema(), null, 2)}\n`;
}

/** The chart's CRD files: the files of crds/generated/, byte for byte. */
export function chartCrdFiles(): Map<string, string> {
  const out = new Map<string, string>();
  for (const name of readdirSync(generatedDir).sort()) {
    if (name.endsWith('.yaml')) out.set(name, readFileSync(join(generatedDir, name), 'utf8'));
  }
  return out;
}

/** What differs between the committed chart files and what this tree generates. */
export function chartDrift(): string[] {
  const out = drift(chartCrdsDir, chartCrdFiles()).map((f) => `files/crds/${f}`);
  for (const [path, text] of singleFiles()) {
    const have = readOr(path);
    if (have !== text) out.push(`${relative(chartDir, path)} (${have ? 'differs' : 'missing'})`);
  }
  return out;
}

if (import.meta.main) {
  if (process.argv.includes('--check')) {
    const changed = chartDrift();
    if (changed.length > 0) {
      process.stderr.write(`charts/modelplane is out of date (run make chart):\n  ${changed.join('\n  ')}\n`);
      process.exitCode = 1;
    }
  } else {
    const written = writeGenerated(chartCrdsDir, chartCrdFiles()).map((n) => `files/crds/${n}`);
    for (const [path, text] of singleFiles()) {
      if (readOr(path) === text) continue;
      writeFileSync(path, text);
      written.push(relative(chartDir, path));
    }
    process.stdout.write(
      written.length > 0
        ? `chart: wrote ${written.map((n) => `charts/modelplane/${n}`).join(', ')}\n`
        : 'chart: up to date\n',
    );
  }
}
