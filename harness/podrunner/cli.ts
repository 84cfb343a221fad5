/**
 * `node harness/podrunner/cli.ts [flags]`: runs the local pod runner in the foreground until
 * SIGINT or SIGTERM, then stops every process it started and removes its nodes.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createLogger } from '../../operator/runtime/index.ts';
import type { PoolSizes } from '../cluster/node-pools.ts';
import { repoRoot } from '../cluster/paths.ts';
import { DEFAULT_MODELPLANE_IMAGES, DEFAULT_POD_CIDR, PodRunner, runnerPools } from './runner.ts';

export const USAGE = `Usage: node harness/podrunner/cli.ts [flags]

Plays the kubelet for nodes of its own in a local cluster: runs each pod bound to them as
processes on a loopback address of the pod's own (modelplane.local/<name> images as the
Cog server of a predictor directory, the modelplane image as this checkout's modelplane),
and reports their status. See docs/pod-runner.md.

Flags:
  --kubeconfig PATH        admin kubeconfig of the cluster (default $KUBECONFIG, else the
                           cluster of make cluster-up)
  --name NAME              runner name; its nodes are labelled modelplane.dev/pod-runner=NAME
                           and named NAME-<pool>-<i> (default local)
  --t4 N, --a100 N, --h100 N, --cpu N
                           nodes per pool (default: --t4 1 --cpu 1)
  --models-dir DIR         also run modelplane.local/<name> from DIR/<name>/cog.yaml
                           (repeatable; searched before examples/models)
  --no-example-models      do not run the predictors of examples/models
  --modelplane-image IMG   an image run as this checkout's modelplane CLI (repeatable;
                           a reference without tag matches every tag; default
                           ${DEFAULT_MODELPLANE_IMAGES.join(', ')})
  --log-dir DIR            container logs (default: a new temp dir, printed at start)
  --pod-cidr CIDR          loopback range of pod IPs (default ${DEFAULT_POD_CIDR})
  --restart-backoff SECS   first crash-loop back-off (default 10)
  --keep-nodes             leave the Node objects behind on exit
  --log-level LEVEL        pino level (default info)
  -h, --help
`;

/** The stable kubeconfig `make cluster-up` writes, when a cluster was started that way. */
function clusterUpKubeconfig(): string | undefined {
  const path = join(process.env.MODELPLANE_STATE ?? join(repoRoot, '.modelplane', 'cluster'), 'kubeconfig');
  return existsSync(path) ? path : undefined;
}

export async function main(argv: string[]): Promise<number> {
  let values: Record<string, string | string[] | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        kubeconfig: { type: 'string' },
        name: { type: 'string' },
        t4: { type: 'string' },
        a100: { type: 'string' },
        h100: { type: 'string' },
        cpu: { type: 'string' },
        'models-dir': { type: 'string', multiple: true },
        'no-example-models': { type: 'boolean' },
        'modelplane-image': { type: 'string', multiple: true },
        'log-dir': { type: 'string' },
        'pod-cidr': { type: 'string' },
        'restart-backoff': { type: 'string' },
        'keep-nodes': { type: 'boolean' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`podrunner: ${(err as Error).message}\n\n${USAGE}`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const kubeconfig =
    (values.kubeconfig as string | undefined) ?? process.env.KUBECONFIG ?? clusterUpKubeconfig();
  if (!kubeconfig) {
    process.stderr.write(
      'podrunner: no cluster: pass --kubeconfig, set $KUBECONFIG, or start one with make cluster-up\n',
    );
    return 2;
  }
  const sizes: Partial<PoolSizes> = {};
  const given = ['t4', 'a100', 'h100', 'cpu'].filter((k) => values[k] !== undefined);
  for (const k of ['t4', 'a100', 'h100', 'cpu'] as const) {
    const v = values[k] as string | undefined;
    if (v === undefined) continue;
    if (!/^\d+$/.test(v)) {
      process.stderr.write(`podrunner: --${k}=${v}: want a whole number of nodes\n`);
      return 2;
    }
    sizes[k] = Number(v);
  }
  const name = (values.name as string | undefined) ?? 'local';
  const backoff = values['restart-backoff'] as string | undefined;
  if (backoff !== undefined && !(Number(backoff) > 0)) {
    process.stderr.write(`podrunner: --restart-backoff=${backoff}: want a number of seconds > 0\n`);
    return 2;
  }
  const log = createLogger({ level: (values['log-level'] as string | undefined) ?? 'info' });
  const runner = new PodRunner({
    kubeconfig,
    name,
    pools: runnerPools(name, given.length ? sizes : undefined),
    modelsDirs: (values['models-dir'] as string[] | undefined) ?? [],
    exampleModels: !values['no-example-models'],
    ...(values['modelplane-image'] ? { modelplaneImages: values['modelplane-image'] as string[] } : {}),
    ...(values['log-dir'] ? { logDir: values['log-dir'] as string } : {}),
    ...(values['pod-cidr'] ? { podCidr: values['pod-cidr'] as string } : {}),
    ...(backoff ? { restartBackoff: { initialMs: Number(backoff) * 1000, maxMs: 300_000 } } : {}),
    removeNodesOnStop: !values['keep-nodes'],
    log,
  });
  let stopping: Promise<void> | undefined;
  const done = new Promise<void>((resolveDone) => {
    const onSignal = (sig: string) => {
      if (stopping) return;
      log.info({ signal: sig }, 'stopping');
      stopping = runner.stop().then(resolveDone);
    };
    process.on('SIGINT', () => onSignal('SIGINT'));
    process.on('SIGTERM', () => onSignal('SIGTERM'));
  });
  try {
    await runner.start();
  } catch (err) {
    await runner.stop();
    throw err;
  }
  await done;
  return 0;
}

if (import.meta.main) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`podrunner: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
