/** The Python environment the example Cog models run in, installed by hack/python.sh. */
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './cluster/paths.ts';

let venv: string | undefined;

/** The venv of hack/python.sh; throws saying to run `make python` when it is not installed. */
export function pythonEnv(): string {
  if (venv) return venv;
  try {
    venv = execFileSync('bash', [join(repoRoot, 'hack', 'python.sh'), '--check'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    }).trim();
  } catch (err) {
    const stderr = String((err as { stderr?: unknown }).stderr ?? '').trim();
    throw new Error(
      `the Python environment of the example Cog models is missing: run \`make python\` (hack/python.sh)${stderr ? `\n${stderr}` : ''}`,
    );
  }
  return venv;
}
