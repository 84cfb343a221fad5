/**
 * `modelplane dev` (and `make dev`): everything on one machine. Builds what is missing, starts
 * the local control plane with GPU node pools and the pod runner's nodes, installs the CRDs
 * and default HardwareClasses, starts the operator (controllers, autoscaler and gateway) and
 * the pod runner, applies the example models, waits until they serve, and mints an API token.
 * The operator keeps its predictions in the embedded store under .modelplane/dev/store, and is
 * restarted, as a kubelet would restart it, when it exits after it was ready.
 *
 * `startDev` is what the end-to-end test runs too; `stop` ends everything it started.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { Logger } from 'pino';
import { parseAllDocuments } from 'yaml';
import { CONDITION, installCrds } from '../crds/index.ts';
import { LocalCluster } from '../harness/cluster/local.ts';
import { type NodePool, standardPools } from '../harness/cluster/node-pools.ts';
import { binaries, repoRoot } from '../harness/cluster/paths.ts';
import { PodRunner, runnerPools } from '../harness/podrunner/index.ts';
import { freePort, GiveUp, GroupProcess, Restarting, waitFor } from '../harness/processes.ts';
import { spawnTethered } from '../harness/tether.ts';
import { createApiToken } from '../operator/gateway/tokens.ts';
import { Deployments } from '../operator/resources.ts';
import { createLogger, KubeClient } from '../operator/runtime/index.ts';
import { WebhookConfigurations } from '../operator/webhook.ts';
import { webhookConfiguration } from '../webhook/index.ts';

export interface DevOptions {
  /** Namespace the example models go to, and that the API token acts in (default `default`). */
  namespace?: string;
  /** Manifests to apply (default examples/dev/*.yaml). */
  examples?: string[];
  /** Port of the gateway on 127.0.0.1 (default 8000; 0 picks a free one). */
  gatewayPort?: number;
  /** Extra directories of Cog predictors the pod runner serves as modelplane.local/<name>. */
  modelsDirs?: string[];
  /** Where logs go (default .modelplane/dev/ in the checkout). */
  logDir?: string;
  /**
   * The directory of the operator's embedded prediction store (default .modelplane/dev/store
   * in the checkout): predictions outlive a restart of the operator, and of `modelplane dev`.
   */
  storeDir?: string;
  /** Flags added to `modelplane operator` (a later flag wins). */
  operatorFlags?: string[];
  /** Environment variables added to the operator's (NODE_OPTIONS for a CPU profile, say). */
  operatorEnv?: NodeJS.ProcessEnv;
  /** Aborting it while starting stops what was started and rejects. */
  signal?: AbortSignal;
  /** Progress lines. */
  log?: (line: string) => void;
}

export interface Dev {
  kubeconfig: string;
  /** The gateway's base URL, without /v1. */
  gatewayUrl: string;
  /** The operator's health and metrics server (`/healthz`, `/readyz`, `/metrics`). */
  httpUrl: string;
  /** An API token for `namespace`. */
  token: string;
  namespace: string;
  logDir: string;
  /** Where the operator's log is. */
  operatorLog: string;
  /** The operator's embedded prediction store. */
  storeDir: string;
  /** The operator: restarted when it exits, as a kubelet would. */
  operator: Restarting<GroupProcess>;
  /** Deployments applied from the examples, `namespace/name`. */
  deployments: string[];
  stop(): Promise<void>;
}

export const DEFAULT_EXAMPLES = ['echo.yaml', 'embed.yaml', 'upscale.yaml'].map((f) =>
  join(repoRoot, 'examples', 'dev', f),
);
/** Namespace of the operator's own objects: its Lease and the API token Secrets. */
export const SYSTEM_NAMESPACE = 'modelplane-system';

/**
 * The arguments (after node) of `modelplane operator` on the local cluster: its kubeconfig,
 * `roles`, the system namespace for its Lease and API tokens, the gateway and HTTP servers on
 * loopback ports, then `flags` (a later flag wins).
 */
export function operatorArgs(o: {
  kubeconfig: string;
  roles: string;
  gatewayPort: number;
  httpPort: number;
  flags?: string[];
}): string[] {
  return [
    join(repoRoot, 'cli', 'modelplane.ts'),
    'operator',
    `--kubeconfig=${o.kubeconfig}`,
    `--roles=${o.roles}`,
    `--lease-namespace=${SYSTEM_NAMESPACE}`,
    `--token-namespace=${SYSTEM_NAMESPACE}`,
    `--gateway-address=127.0.0.1:${o.gatewayPort}`,
    `--http-address=127.0.0.1:${o.httpPort}`,
    ...(o.flags ?? []),
  ];
}

/** An operator replica beside `modelplane dev`'s own, started by `startReplica`. */
export interface Replica {
  process: GroupProcess;
  /** `http://127.0.0.1:PORT` of its gateway (without /v1). */
  gatewayUrl: string;
  /** `http://127.0.0.1:PORT` of its /healthz, /readyz and /metrics. */
  httpUrl: string;
}

/**
 * Starts another `modelplane operator` on the local cluster of `kubeconfig` (another gateway
 * replica, say) on free loopback ports, its output in `logFile`, and waits until it is ready.
 */
export async function startReplica(o: {
  name: string;
  kubeconfig: string;
  roles: string;
  flags?: string[];
  logFile: string;
  env?: NodeJS.ProcessEnv;
}): Promise<Replica> {
  const [gatewayPort, httpPort] = [await freePort(), await freePort()];
  const child = new GroupProcess(
    o.name,
    process.execPath,
    operatorArgs({ kubeconfig: o.kubeconfig, roles: o.roles, gatewayPort, httpPort, flags: o.flags }),
    { logFile: o.logFile, env: o.env },
  );
  const replica = {
    process: child,
    gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
    httpUrl: `http://127.0.0.1:${httpPort}`,
  };
  try {
    await waitFor(
      `${o.name} to be ready`,
      async () => {
        if (!child.running) throw new GiveUp(`${o.name} exited; see ${o.logFile}`);
        return (await fetch(`${replica.httpUrl}/readyz`).catch(() => undefined))?.ok === true;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
  } catch (err) {
    await child.stop(5_000);
    throw err;
  }
  return replica;
}
export const RUNNER_NAME = 'local';

/**
 * Nodes kwok fakes: one A100 and one H100 node, to see GPU scheduling at work. The example
 * models run on the pod runner's T4 and CPU nodes; kwok has no T4 or CPU node, so they always
 * land there.
 */
export function kwokPools(): NodePool[] {
  return standardPools({ t4: 0, a100: 1, h100: 1, cpu: 0 });
}

/** Runs a build script when `check` fails, its progress on this terminal. */
async function ensureBuilt(what: string, check: () => boolean, script: string, log: (l: string) => void) {
  if (check()) return;
  log(`${what} missing: running hack/${script} (first run only, several minutes; progress follows)`);
  await new Promise<void>((resolve, reject) => {
    const child = spawnTethered('bash', [join(repoRoot, 'hack', script)], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    child.on('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`hack/${script} exited with ${code}`)),
    );
    child.on('error', reject);
  });
}

function controlPlaneBuilt(): boolean {
  try {
    binaries();
    return true;
  } catch {
    return false;
  }
}

function pythonBuilt(): boolean {
  return (
    spawnSync('bash', [join(repoRoot, 'hack', 'python.sh'), '--check'], { stdio: 'ignore' }).status === 0
  );
}

export function readManifests(file: string): Record<string, unknown>[] {
  return parseAllDocuments(readFileSync(file, 'utf8'))
    .map((d) => d.toJS() as Record<string, unknown> | null)
    .filter((d): d is Record<string, unknown> => d !== null);
}

/** Runs the built kubectl against `kubeconfig`. */
export function kubectl(kubeconfig: string, args: string[]): string {
  const r = spawnSync(binaries().kubectl, args, {
    env: { ...process.env, KUBECONFIG: kubeconfig },
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`kubectl ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout;
}

/** The Ready condition of a modelplane Deployment, or undefined while it has none. */
async function readyCondition(client: KubeClient, namespace: string, name: string) {
  const d = await client.get(Deployments, name, namespace);
  return d?.status?.conditions?.find((c) => c.type === CONDITION.Ready);
}

export async function startDev(opts: DevOptions = {}): Promise<Dev> {
  const log = opts.log ?? (() => {});
  const namespace = opts.namespace ?? 'default';
  const logDir = opts.logDir ?? join(repoRoot, '.modelplane', 'dev', 'logs');
  mkdirSync(logDir, { recursive: true });
  const cleanups: { what: string; run: () => Promise<void> }[] = [];
  const stop = async () => {
    for (const c of cleanups.splice(0).reverse()) {
      const t0 = Date.now();
      try {
        await c.run();
        log(`stopped ${c.what} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
      } catch (err) {
        log(`while stopping ${c.what}: ${(err as Error).message}`);
      }
    }
  };
  const step = (line: string) => {
    if (opts.signal?.aborted) throw new Error('interrupted');
    log(line);
  };
  try {
    await ensureBuilt('the control-plane binaries', controlPlaneBuilt, 'cluster-bin.sh', log);
    await ensureBuilt('the Python environment of the example models', pythonBuilt, 'python.sh', log);

    step('starting the control plane (etcd, kube-apiserver, controller manager, scheduler, kwok)');
    const cluster = await LocalCluster.start({ pools: kwokPools(), log: (l) => log(`  cluster: ${l}`) });
    cleanups.push({ what: 'the control plane', run: () => cluster.stop() });
    const kubeconfig = cluster.kubeconfig;
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfig);
    const client = new KubeClient(kc);

    step('installing the CRDs and the default HardwareClasses');
    await installCrds(kc);
    kubectl(kubeconfig, ['create', 'namespace', SYSTEM_NAMESPACE]);
    if (namespace !== 'default' && namespace !== SYSTEM_NAMESPACE)
      kubectl(kubeconfig, ['create', 'namespace', namespace]);
    kubectl(kubeconfig, [
      'apply',
      '--server-side',
      '-f',
      join(repoRoot, 'examples', 'hardware-classes.yaml'),
    ]);

    step('starting the pod runner (a T4 GPU node and a CPU node whose pods run here)');
    const runnerLog: Logger = createLogger({ level: process.env.MODELPLANE_LOG_LEVEL ?? 'warn' });
    const runner = new PodRunner({
      kubeconfig,
      name: RUNNER_NAME,
      pools: runnerPools(RUNNER_NAME),
      modelsDirs: opts.modelsDirs ?? [],
      logDir: join(logDir, 'pods'),
      log: runnerLog,
    });
    await runner.start();
    cleanups.push({ what: 'the pod runner and its pods', run: () => runner.stop() });

    const gatewayPort =
      opts.gatewayPort === 0 || opts.gatewayPort === undefined ? await freePort() : opts.gatewayPort;
    const httpPort = await freePort();
    const webhookPort = await freePort();
    // The admission webhook, registered at its loopback address (a Service in a cluster); the
    // operator makes its certificates and fills in the caBundle.
    await client.create(
      WebhookConfigurations,
      webhookConfiguration({
        name: 'modelplane',
        target: { url: `https://127.0.0.1:${webhookPort}` },
      }) as never,
    );
    const operatorLog = join(logDir, 'operator.log');
    const storeDir = opts.storeDir ?? join(repoRoot, '.modelplane', 'dev', 'store');
    mkdirSync(storeDir, { recursive: true });
    step(
      `starting the operator (controllers, autoscaler, gateway on 127.0.0.1:${gatewayPort}, webhook on 127.0.0.1:${webhookPort}; predictions in ${storeDir}); log: ${operatorLog}`,
    );
    const readyz = `http://127.0.0.1:${httpPort}/readyz`;
    // Restarted once it has been ready: an operator that cannot start at all fails `dev`.
    let wasReady = false;
    const operator = new Restarting<GroupProcess>({
      start: () =>
        new GroupProcess(
          'operator',
          process.execPath,
          operatorArgs({
            kubeconfig,
            roles: 'controllers,gateway,webhook',
            gatewayPort,
            httpPort,
            flags: [
              '--leader-elect=false',
              `--webhook-address=127.0.0.1:${webhookPort}`,
              '--webhook-cert-names=127.0.0.1',
              '--store=embedded',
              `--store-dir=${storeDir}`,
              // Files (uploads, outputs) beside the predictions whose they are.
              `--files-dir=${join(storeDir, '..', `${basename(storeDir)}-files`)}`,
              // Webhook receivers on this machine (a script, a local app) listen on loopback.
              '--webhook-allow-cidrs=127.0.0.0/8,::1',
              // `dev` runs the operator as the cluster's admin: idle pods go first on a scale-down.
              '--pod-deletion-cost=true',
              ...(opts.operatorFlags ?? []),
            ],
          }),
          {
            logFile: operatorLog,
            env: opts.operatorEnv ? { ...process.env, ...opts.operatorEnv } : undefined,
          },
        ),
      keepRunning: () => wasReady,
      onExit: (how, delayMs) =>
        log(
          delayMs === 0
            ? `the operator exited (${how}); restarting it`
            : `the operator exited (${how}) again soon after it started; restarting it in ${(delayMs / 1000).toFixed(0)} s (log: ${operatorLog})`,
        ),
      onStartError: (err, delayMs) =>
        log(
          `could not start the operator (${err.message}); trying again in ${(delayMs / 1000).toFixed(0)} s`,
        ),
      onStart: (proc, restarts) => {
        if (restarts > 0) void announceReady(proc, restarts);
      },
    });
    // Says when a restarted operator serves again.
    const announceReady = async (proc: GroupProcess, restarts: number) => {
      try {
        await waitFor(
          'the restarted operator to be ready',
          async () => {
            if (!proc.running) throw new GiveUp('exited');
            return (await fetch(readyz)).ok;
          },
          { timeoutMs: 120_000, intervalMs: 250 },
        );
        log(`the operator is ready again (restart ${restarts})`);
      } catch (err) {
        if (proc.running)
          log(`the restarted operator is not ready: ${(err as Error).message}; see ${operatorLog}`);
      }
    };
    cleanups.push({ what: 'the operator', run: () => operator.stop(35_000) });
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    // Stops a wait at once when there is no point in waiting any longer.
    const carryOn = () => {
      if (opts.signal?.aborted) throw new GiveUp('interrupted');
      const proc = operator.current;
      if (!wasReady && proc && !proc.running)
        throw new GiveUp(`the operator exited; see ${operatorLog}:\n${proc.logTail()}`);
    };
    await waitFor(
      'the operator to be ready',
      async () => {
        carryOn();
        return (await fetch(readyz)).ok;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    wasReady = true;

    const { token } = await createApiToken(client, {
      name: 'dev',
      namespaces: [namespace],
      tokenNamespace: SYSTEM_NAMESPACE,
    });

    // The API server calls the webhook with the caBundle the operator just published: wait
    // until it does (a dry run the webhook answers), so the examples below are checked too.
    const examples = opts.examples ?? DEFAULT_EXAMPLES;
    if (examples.length > 0)
      await waitFor(
        'the API server to call the admission webhook',
        () => {
          carryOn();
          try {
            kubectl(kubeconfig, [
              'apply',
              '--server-side',
              '--dry-run=server',
              '-n',
              namespace,
              '-f',
              examples[0]!,
            ]);
            return true;
          } catch {
            return false;
          }
        },
        { timeoutMs: 30_000, intervalMs: 250 },
      );

    const deployments: string[] = [];
    for (const file of examples) {
      step(`applying ${file.startsWith(repoRoot) ? file.slice(repoRoot.length + 1) : file}`);
      kubectl(kubeconfig, ['apply', '--server-side', '-n', namespace, '-f', file]);
      for (const doc of readManifests(file)) {
        const meta = doc.metadata as { name?: string } | undefined;
        if (doc.kind === 'Deployment' && String(doc.apiVersion).startsWith('modelplane.dev/') && meta?.name)
          deployments.push(`${namespace}/${meta.name}`);
      }
    }
    for (const key of deployments) {
      const [ns, name] = key.split('/') as [string, string];
      step(`waiting for deployment ${name} to be ready (its model server starts on this machine)`);
      let last = '';
      await waitFor(
        `deployment ${key} to be Ready`,
        async () => {
          carryOn();
          const c = await readyCondition(client, ns, name);
          const line = c ? `${c.reason}: ${c.message}` : 'no status yet';
          if (line !== last) {
            log(`  ${name}: ${line}`);
            last = line;
          }
          return c?.status === 'True';
        },
        { timeoutMs: 600_000, intervalMs: 250 },
      );
    }
    const httpUrl = `http://127.0.0.1:${httpPort}`;
    return {
      kubeconfig,
      gatewayUrl,
      httpUrl,
      token,
      namespace,
      logDir,
      operatorLog,
      storeDir,
      operator,
      deployments,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** What `modelplane dev` prints once everything serves. */
export function banner(dev: Dev): string {
  const model = 'echo';
  return `
modelplane is running.

  gateway     ${dev.gatewayUrl}/v1
  API token   ${dev.token}
  kubeconfig  export KUBECONFIG=${dev.kubeconfig}
  logs        ${dev.logDir}
  predictions ${dev.storeDir}

Call a model:

  curl -s -X POST ${dev.gatewayUrl}/v1/models/${dev.namespace}/${model}/predictions \\
    -H 'Authorization: Bearer ${dev.token}' -H 'Content-Type: application/json' \\
    -H 'Prefer: wait' -d '{"input": {"text": "hello"}}'

With the replicate npm client (npm install replicate):

  import Replicate from 'replicate';
  const replicate = new Replicate({ auth: '${dev.token}', baseUrl: '${dev.gatewayUrl}/v1' });
  console.log(await replicate.run('${dev.namespace}/embed', { input: { text: 'hello' } }));

Watch it work:

  kubectl get deployments.modelplane.dev,predictions -A -w
  kubectl get pods -o wide -w

Add a model: put a Cog predictor in examples/models/<name>/ (predict.py, cog.yaml), apply a
Model, a ModelVersion with image modelplane.local/<name>:dev and a Deployment (see
examples/dev/echo.yaml). If the operator exits (a crash, kill -9), it is restarted, as a
kubelet would, and carries on with the predictions it had accepted. Ctrl-C stops everything.
`;
}
