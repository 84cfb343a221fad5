import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { KubeConfig, KubernetesObjectApi } from '@kubernetes/client-node';
import { stringify } from 'yaml';
import { Nodes } from '../../operator/resources.ts';
import { KubeClient } from '../../operator/runtime/index.ts';
import { freePort, GiveUp, GroupProcess, waitFor } from '../processes.ts';
import {
  KWOK_NODE_ANNOTATION,
  KWOK_NODE_ANNOTATION_VALUE,
  type NodePool,
  nodeManifests,
} from './node-pools.ts';
import { binaries } from './paths.ts';
import { CLUSTER_DIR_PREFIX, LOG_ROOT, pruneLogDirs, reapStaleClusters, writeClusterState } from './stale.ts';

export interface LocalClusterOptions {
  pools: NodePool[];
  /** Wait for every node to report Ready before returning (default true). */
  waitForNodes?: boolean;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
  /** Extra kube-apiserver flags, after the harness's own (a later flag wins). */
  apiServerFlags?: string[];
  /** Extra kube-controller-manager flags (`--kube-api-qps=200`, say), after the harness's own. */
  controllerManagerFlags?: string[];
  /** Extra kube-scheduler flags, after the harness's own. */
  schedulerFlags?: string[];
}

type Ports = Record<'etcdPort' | 'etcdPeerPort' | 'apiPort' | 'cmPort' | 'schedPort' | 'kwokPort', number>;

/**
 * An admin-ready control plane on 127.0.0.1: etcd, apiserver, controller manager, scheduler,
 * kwok. It is a `Cluster` of cluster.ts (checked where `startCluster` returns it; cluster.ts
 * imports this file, not the other way round).
 */
export class LocalCluster {
  readonly provider = 'local' as const;
  readonly logs: Record<string, string> = {};
  readonly kubeconfig: string;
  private readonly procs: GroupProcess[] = [];
  private stopped = false;

  readonly dir: string;
  readonly logDir: string;
  readonly server: string;
  /** etcd's client URL (plain HTTP on loopback; its v3 JSON gateway answers under /v3/). */
  readonly etcdUrl: string;
  /** How to start kube-apiserver again (set once booted): its flags and a readiness probe. */
  private apiServer?: { args: string[]; ready: () => Promise<boolean> };

  private constructor(dir: string, logDir: string, server: string, etcdUrl: string) {
    this.dir = dir;
    this.logDir = logDir;
    this.server = server;
    this.etcdUrl = etcdUrl;
    this.kubeconfig = join(dir, 'admin.kubeconfig');
  }

  /** Process-group ids of every component started (each component leads its own group). */
  get pgids(): number[] {
    return this.procs.map((p) => p.pid);
  }

  describe(): string {
    const lines = Object.entries(this.logs).map(([name, file]) => `  ${name}: ${file}`);
    return `local control plane at ${this.server}\nkubeconfig: ${this.kubeconfig}\ncomponent logs:\n${lines.join('\n')}`;
  }

  static async start(opts: LocalClusterOptions): Promise<LocalCluster> {
    const bin = binaries();
    const log = opts.log ?? (() => {});
    reapStaleClusters();
    pruneLogDirs();
    const dir = mkdtempSync(join(tmpdir(), CLUSTER_DIR_PREFIX));
    const logDir = join(LOG_ROOT, basename(dir));
    mkdirSync(logDir, { recursive: true });
    const ports: Ports = {
      etcdPort: await freePort(),
      etcdPeerPort: await freePort(),
      apiPort: await freePort(),
      cmPort: await freePort(),
      schedPort: await freePort(),
      kwokPort: await freePort(),
    };
    const cluster = new LocalCluster(
      dir,
      logDir,
      `https://127.0.0.1:${ports.apiPort}`,
      `http://127.0.0.1:${ports.etcdPort}`,
    );
    try {
      await cluster.boot(bin, opts, log, ports);
    } catch (err) {
      const where = cluster.describe();
      await cluster.stop();
      throw new Error(`${(err as Error).message}\n${where}`, { cause: err });
    }
    return cluster;
  }

  private spawn(name: string, command: string, args: string[]): GroupProcess {
    const logFile = join(this.logDir, `${name}.log`);
    this.logs[name] = logFile;
    const proc = new GroupProcess(name, command, args, { logFile });
    this.procs.push(proc);
    this.saveState();
    return proc;
  }

  /**
   * Stops kube-apiserver (its whole process group, SIGTERM then SIGKILL) and starts it again
   * with the same port and flags; resolves once it answers /readyz. etcd and the other
   * components keep running, so clients see their connections drop and come back.
   */
  async restartApiServer(): Promise<void> {
    const api = this.apiServer;
    const old = this.procs.find((p) => p.name === 'kube-apiserver');
    if (!api || !old || this.stopped) throw new Error('the cluster is not running');
    await old.stop();
    this.procs.splice(this.procs.indexOf(old), 1);
    const proc = this.spawn('kube-apiserver', binaries()['kube-apiserver'], api.args);
    await this.waitUp(proc, 'kube-apiserver /readyz after a restart', api.ready);
  }

  private saveState(): void {
    writeClusterState(this.dir, this.pgids);
  }

  /**
   * Compacts etcd's history up to its current revision (through its v3 JSON gateway), so
   * a watch from any older resourceVersion that reaches etcd gets 410 Gone. Returns the
   * revision. kube-apiserver's watch cache still serves what it holds in memory; start the
   * cluster with `--watch-cache=false` to have every watch go to etcd.
   */
  async compactEtcd(): Promise<number> {
    const post = async (path: string, body: unknown) => {
      const res = await fetch(`${this.etcdUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`etcd ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as { header?: { revision?: string } };
    };
    const { header } = await post('/v3/kv/range', { key: Buffer.from('\0').toString('base64') });
    const revision = Number(header?.revision);
    await post('/v3/kv/compaction', { revision: String(revision), physical: true });
    return revision;
  }

  /** Waits for `check`, failing at once with the component's log tail if the process dies. */
  private async waitUp(proc: GroupProcess, what: string, check: () => Promise<boolean>, timeoutMs = 90_000) {
    await waitFor(
      what,
      async () => {
        if (!proc.running)
          throw new GiveUp(
            `${proc.name} exited during start-up; the end of ${proc.logFile}:\n${proc.logTail()}`,
          );
        return check();
      },
      { timeoutMs, intervalMs: 200 },
    );
  }

  private async boot(
    bin: ReturnType<typeof binaries>,
    opts: LocalClusterOptions,
    log: (line: string) => void,
    ports: Ports,
  ): Promise<void> {
    const d = this.dir;
    const t0 = Date.now();
    const step = (msg: string) => log(`[${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);

    // etcd
    const etcdUrl = this.etcdUrl;
    const etcd = this.spawn('etcd', bin.etcd, [
      '--name=modelplane',
      `--data-dir=${join(d, 'etcd')}`,
      `--listen-client-urls=${etcdUrl}`,
      `--advertise-client-urls=${etcdUrl}`,
      `--listen-peer-urls=http://127.0.0.1:${ports.etcdPeerPort}`,
      `--initial-advertise-peer-urls=http://127.0.0.1:${ports.etcdPeerPort}`,
      `--initial-cluster=modelplane=http://127.0.0.1:${ports.etcdPeerPort}`,
      '--unsafe-no-fsync',
      '--quota-backend-bytes=4294967296',
      '--log-level=warn',
    ]);
    await this.waitUp(etcd, 'etcd /health', async () => {
      const res = await fetch(`${etcdUrl}/health`);
      return res.ok && ((await res.json()) as { health?: string }).health === 'true';
    });
    step('etcd ready');

    // Credentials: one service-account signing key; static tokens per component.
    const pki = join(d, 'pki');
    mkdirSync(pki, { mode: 0o700 });
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    writeFileSync(join(pki, 'sa.key'), privateKey.export({ type: 'pkcs1', format: 'pem' }), { mode: 0o600 });
    writeFileSync(join(pki, 'sa.pub'), publicKey.export({ type: 'spki', format: 'pem' }));
    const token = () => randomBytes(24).toString('hex');
    const users = {
      admin: { token: token(), user: 'modelplane-admin', groups: 'system:masters' },
      cm: { token: token(), user: 'system:kube-controller-manager', groups: '' },
      scheduler: { token: token(), user: 'system:kube-scheduler', groups: '' },
      kwok: { token: token(), user: 'modelplane-kwok', groups: 'system:masters' },
    };
    writeFileSync(
      join(pki, 'tokens.csv'),
      Object.values(users)
        .map((u, i) => `${u.token},${u.user},uid-${i}${u.groups ? `,"${u.groups}"` : ''}`)
        .join('\n') + '\n',
      { mode: 0o600 },
    );

    // kube-apiserver
    const apiArgs = [
      `--etcd-servers=${etcdUrl}`,
      '--bind-address=127.0.0.1',
      '--advertise-address=127.0.0.1',
      `--secure-port=${ports.apiPort}`,
      `--cert-dir=${join(pki, 'apiserver')}`,
      `--token-auth-file=${join(pki, 'tokens.csv')}`,
      `--service-account-key-file=${join(pki, 'sa.pub')}`,
      `--service-account-signing-key-file=${join(pki, 'sa.key')}`,
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--authorization-mode=Node,RBAC',
      '--allow-privileged=true',
      '--endpoint-reconciler-type=none',
      '--profiling=false',
      '--v=1',
      ...(opts.apiServerFlags ?? []),
    ];
    const caFile = join(pki, 'apiserver', 'apiserver.crt');
    const apiReady = async () => {
      if (!existsSync(caFile)) return false;
      const res = await httpsGet(`${this.server}/readyz`, {
        ca: readFileSync(caFile),
        token: users.admin.token,
      });
      return res.status === 200;
    };
    this.apiServer = { args: apiArgs, ready: apiReady };
    const apiserver = this.spawn('kube-apiserver', bin['kube-apiserver'], apiArgs);
    await this.waitUp(apiserver, 'kube-apiserver /readyz', apiReady);
    step('kube-apiserver ready');

    const ca = readFileSync(caFile);
    const writeKubeconfig = (name: string, tok: string) => {
      const path = join(d, `${name}.kubeconfig`);
      writeFileSync(path, kubeconfigYaml(this.server, ca, name, tok), { mode: 0o600 });
      return path;
    };
    writeKubeconfig('admin', users.admin.token);
    const cmConfig = writeKubeconfig('controller-manager', users.cm.token);
    const schedConfig = writeKubeconfig('scheduler', users.scheduler.token);
    const kwokConfig = writeKubeconfig('kwok', users.kwok.token);

    const cm = this.spawn('kube-controller-manager', bin['kube-controller-manager'], [
      `--kubeconfig=${cmConfig}`,
      `--authentication-kubeconfig=${cmConfig}`,
      `--authorization-kubeconfig=${cmConfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${ports.cmPort}`,
      `--cert-dir=${join(pki, 'controller-manager')}`,
      '--leader-elect=false',
      '--use-service-account-credentials=true',
      `--service-account-private-key-file=${join(pki, 'sa.key')}`,
      `--root-ca-file=${caFile}`,
      '--cluster-name=modelplane',
      // The pod GC reaps pods of deleted nodes; everything else of the default set is wanted.
      '--controllers=*',
      '--concurrent-gc-syncs=10',
      '--v=1',
      ...(opts.controllerManagerFlags ?? []),
    ]);
    const scheduler = this.spawn('kube-scheduler', bin['kube-scheduler'], [
      `--kubeconfig=${schedConfig}`,
      `--authentication-kubeconfig=${schedConfig}`,
      `--authorization-kubeconfig=${schedConfig}`,
      '--bind-address=127.0.0.1',
      `--secure-port=${ports.schedPort}`,
      `--cert-dir=${join(pki, 'scheduler')}`,
      '--leader-elect=false',
      '--v=1',
      ...(opts.schedulerFlags ?? []),
    ]);
    const kwokConfigFile = join(d, 'kwok.yaml');
    writeFileSync(
      kwokConfigFile,
      stringify({ apiVersion: 'config.kwok.x-k8s.io/v1alpha1', kind: 'KwokConfiguration', options: {} }),
    );
    const kwok = this.spawn('kwok', bin.kwok, [
      `--kubeconfig=${kwokConfig}`,
      `--config=${kwokConfigFile}`,
      '--manage-all-nodes=false',
      `--manage-nodes-with-annotation-selector=${KWOK_NODE_ANNOTATION}=${KWOK_NODE_ANNOTATION_VALUE}`,
      '--node-ip=127.0.0.1',
      `--server-address=127.0.0.1:${ports.kwokPort}`,
      '--node-lease-duration-seconds=40',
      // Loopback pod IPs where no pod listens: anything that dials a fake pod is refused at once.
      '--cidr=127.244.0.1/16',
    ]);
    const healthz = (port: number) => async () =>
      (await httpsGet(`https://127.0.0.1:${port}/healthz`, { insecure: true })).status === 200;
    await Promise.all([
      this.waitUp(cm, 'kube-controller-manager /healthz', healthz(ports.cmPort)),
      this.waitUp(scheduler, 'kube-scheduler /healthz', healthz(ports.schedPort)),
      this.waitUp(
        kwok,
        'kwok /healthz',
        async () => (await fetch(`http://127.0.0.1:${ports.kwokPort}/healthz`)).ok,
      ),
    ]);
    step('controller manager, scheduler and kwok up');

    await createNodePools(this.kubeconfig, opts.pools);
    const total = opts.pools.reduce((n, p) => n + p.count, 0);
    step(`created ${total} nodes in ${opts.pools.length} pools`);
    const kc = new KubeConfig();
    kc.loadFromFile(this.kubeconfig);
    const api = kc.makeApiClient(KubernetesObjectApi);
    if (opts.waitForNodes !== false && total > 0) {
      const client = new KubeClient(kc);
      await waitFor(
        `${total} nodes to be Ready (kwok)`,
        async () => {
          const list = await client.list(Nodes);
          const ready = list.items.filter((n) =>
            n.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True'),
          ).length;
          return ready >= total;
        },
        { timeoutMs: 120_000, intervalMs: 250 },
      );
      step('nodes Ready');
    }
    // Pods need the namespace's default ServiceAccount, made by the controller manager.
    await waitFor(
      'the default ServiceAccount',
      async () => {
        await api.read({
          apiVersion: 'v1',
          kind: 'ServiceAccount',
          metadata: { name: 'default', namespace: 'default' },
        });
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    step('ready');
  }

  /** Kills every process the cluster started and removes its temporary directory. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    const byName = (n: string) => this.procs.filter((p) => p.name === n);
    const etcd = byName('etcd');
    await Promise.all(this.procs.filter((p) => p.name !== 'etcd').map((p) => p.stop()));
    await Promise.all(etcd.map((p) => p.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Creates the pools' Node objects (in parallel batches; scale tests ask for hundreds). */
export async function createNodePools(kubeconfigPath: string, pools: NodePool[]): Promise<void> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const api = kc.makeApiClient(KubernetesObjectApi);
  const manifests = pools.flatMap(nodeManifests);
  const batch = 32;
  for (let i = 0; i < manifests.length; i += batch) {
    await Promise.all(
      manifests.slice(i, i + batch).map(async (m) => {
        try {
          await api.create(m as never);
        } catch (err) {
          // Re-running against the same cluster is fine: the node already exists.
          if ((err as { code?: number }).code !== 409) throw err;
        }
      }),
    );
  }
}

export function kubeconfigYaml(server: string, ca: Buffer, user: string, token: string): string {
  return stringify({
    apiVersion: 'v1',
    kind: 'Config',
    clusters: [
      { name: 'modelplane', cluster: { server, 'certificate-authority-data': ca.toString('base64') } },
    ],
    users: [{ name: user, user: { token } }],
    contexts: [{ name: 'modelplane', context: { cluster: 'modelplane', user, namespace: 'default' } }],
    'current-context': 'modelplane',
  });
}

interface HttpsResult {
  status: number;
  body: string;
}

/** GET over HTTPS to a loopback component, trusting `ca` (or nothing, for health probes). */
export function httpsGet(
  url: string,
  opts: { ca?: Buffer; token?: string; insecure?: boolean; timeoutMs?: number },
): Promise<HttpsResult> {
  return new Promise((resolveGet, reject) => {
    const req = request(
      url,
      {
        method: 'GET',
        ca: opts.ca,
        rejectUnauthorized: !opts.insecure,
        headers: opts.token ? { authorization: `Bearer ${opts.token}` } : {},
        timeout: opts.timeoutMs ?? 5_000,
      },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          body += c;
        });
        res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`GET ${url} timed out`)));
    req.on('error', reject);
    req.end();
  });
}
