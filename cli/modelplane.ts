/**
 * The one modelplane executable. Subcommands are the processes of DESIGN.md §2:
 * `operator`, `sidecar` and `dev` (each arrives with the component that implements it), and
 * `token` (API tokens for the gateway), `usage` (cost and usage, from the gateway) and `check`
 * (the production-readiness checklist of a deployment).
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

export interface Subcommand {
  summary: string;
  run(argv: string[]): Promise<number>;
}

/**
 * Registered subcommands. Each is loaded when it runs, so `--help` and `--version` read no
 * more than package.json.
 */
export const subcommands: Record<string, Subcommand> = {
  operator: {
    summary: 'run the controllers (leader-elected) and the gateway, with health and metrics endpoints',
    run: async (argv) => (await import('../operator/main.ts')).run(argv),
  },
  sidecar: {
    summary: 'serve one model pod: prediction API over its Cog server, metering, metrics',
    run: async (argv) => (await import('../sidecar/main.ts')).run(argv),
  },
  token: {
    summary: 'create, list and revoke API tokens for the gateway',
    run: async (argv) => (await import('../operator/gateway/token-cli.ts')).run(argv),
  },
  usage: {
    summary:
      'cost and usage by namespace, model, deployment, hardware or day, with idle cost and utilization',
    run: async (argv) => (await import('./usage.ts')).run(argv),
  },
  check: {
    summary:
      'production-readiness checklist of a deployment: consistency, runtime, timeouts, cost, license, stability',
    run: async (argv) => (await import('./check/main.ts')).run(argv),
  },
  dev: {
    summary: 'run modelplane on this machine: control plane, operator, pod runner, example models',
    run: async (argv) => (await import('../dev/main.ts')).run(argv),
  },
};

export function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function usage(): string {
  const names = Object.keys(subcommands);
  const width = Math.max(10, ...names.map((n) => n.length)) + 2;
  const list = names.length
    ? names.map((n) => `  ${n.padEnd(width)}${subcommands[n]!.summary}`).join('\n')
    : '  (none yet)';
  return `modelplane ${version()}: a self-hosted model platform on Kubernetes

Usage:
  modelplane <command> [flags]

Commands:
${list}

Flags:
  -h, --help       show this help
  -v, --version    print the version
`;
}

export async function main(argv: string[]): Promise<number> {
  const [first, ...rest] = argv;
  if (first && !first.startsWith('-')) {
    const cmd = subcommands[first];
    if (!cmd) {
      process.stderr.write(`modelplane: unknown command "${first}"\n\n${usage()}`);
      return 2;
    }
    return cmd.run(rest);
  }
  let values: { help?: boolean; version?: boolean };
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`modelplane: ${(err as Error).message}\n\n${usage()}`);
    return 2;
  }
  if (values.version) {
    process.stdout.write(`modelplane ${version()}\n`);
    return 0;
  }
  if (values.help) {
    process.stdout.write(usage());
    return 0;
  }
  process.stderr.write(usage());
  return 2;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`modelplane: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
