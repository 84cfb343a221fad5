/**
 * The local pod runner: plays the kubelet for the nodes it owns in a local cluster. It keeps
 * its Node objects and their Leases fresh, and runs each pod bound to them as processes on a
 * loopback address of the pod's own: a Cog model image as the real Cog server of a predictor
 * directory, the modelplane image as this checkout's `modelplane` CLI. It reports what it
 * sees as the kubelet would (container states, restarts, probes, phase, conditions) and
 * deletes a pod, after its preStop hooks and grace period, once its processes are gone.
 */
import { randomInt } from 'node:crypto';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { resourcePath } from '../../operator/runtime/client.ts';
import {
  createLogger,
  Informer,
  isConflict,
  isNotFound,
  KubeClient,
  type Logger,
} from '../../operator/runtime/index.ts';
import type { NodePool } from '../cluster/node-pools.ts';
import { repoRoot } from '../cluster/paths.ts';
import { pythonEnv } from '../python.ts';
import type { ImageRules } from './images.ts';
import { IpAllocator } from './ips.ts';
import {
  type ConfigMap,
  ConfigMaps,
  FIELD_MANAGER,
  HOST_IP,
  type Pod,
  Pods,
  type Secret,
  Secrets,
} from './kube.ts';
import { RunnerNodes, runnerPools } from './nodes.ts';
import { PodWorker } from './pod.ts';
import type { PodStatusOut } from './status.ts';

export { FIELD_MANAGER, HOST_IP } from './kube.ts';
export { RUNNER_LABEL, runnerOwner, runnerPools } from './nodes.ts';

/** The operator's default sidecar image is `ghcr.io/modelplane/modelplane:<version>`: any tag runs. */
export const DEFAULT_MODELPLANE_IMAGES = ['ghcr.io/modelplane/modelplane'];
export const DEFAULT_POD_CIDR = '127.10.0.0/16';
export const EXAMPLE_MODELS_DIR = join(repoRoot, 'examples', 'models');

export interface PodRunnerOptions {
  /** Path of a kubeconfig (an admin one: the runner reads Secrets and writes pod status), or a loaded one. */
  kubeconfig: string | KubeConfig;
  /** The runner's name: its nodes carry `modelplane.dev/pod-runner=<name>` (default `local`). */
  name?: string;
  /** Its node pools (default: `runnerPools(name)`, one T4 node with 4 GPUs and one CPU node). */
  pools?: NodePool[];
  /** Directories searched for `<name>/cog.yaml` for `modelplane.local/<name>` images, before examples/models. */
  modelsDirs?: string[];
  /** Also search examples/models of this checkout (default true). */
  exampleModels?: boolean;
  /** Images run as this checkout's `modelplane` (default: any tag of ghcr.io/modelplane/modelplane). */
  modelplaneImages?: string[];
  /** Container logs go to `<logDir>/<namespace>_<pod>_<uid>/<container>/<restart>.log` (default: a temp dir). */
  logDir?: string;
  /** Pod IPs come from this loopback range (default 127.10.0.0/16). */
  podCidr?: string;
  /** The venv with the Cog server (default: the one `make python` installs). */
  pythonEnv?: string;
  /** Crash-loop back-off: first delay and cap (default 10 s and 300 s, as the kubelet). */
  restartBackoff?: { initialMs: number; maxMs: number };
  /** How often the node Leases are renewed (default 10 s; they last 40 s). */
  leaseRenewMs?: number;
  /** How often node status is reported (default 60 s). */
  nodeStatusMs?: number;
  /** Every pod's status is recomputed this often even without an event (default 5 s). */
  resyncMs?: number;
  /** Delete the runner's Node objects on stop (default true). */
  removeNodesOnStop?: boolean;
  /** Grace given to processes on `stop()` before SIGKILL (default 5 s). */
  stopGraceMs?: number;
  log?: Logger;
}

export class PodRunner {
  readonly name: string;
  readonly pools: NodePool[];
  readonly logDir: string;
  readonly client: KubeClient;
  readonly imageRules: ImageRules;
  readonly ips: IpAllocator;
  readonly log: Logger;
  readonly opts: Required<
    Pick<
      PodRunnerOptions,
      'restartBackoff' | 'leaseRenewMs' | 'nodeStatusMs' | 'resyncMs' | 'removeNodesOnStop' | 'stopGraceMs'
    >
  > & { pythonEnv?: string };
  private readonly nodes: RunnerNodes;
  private readonly informers: Informer<Pod>[] = [];
  private readonly workers = new Map<string, PodWorker>();
  private resync: NodeJS.Timeout | undefined;
  private started = false;
  private stopping = false;

  constructor(opts: PodRunnerOptions) {
    this.name = opts.name ?? 'local';
    if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(this.name))
      throw new Error(`pod runner name "${this.name}": want lowercase letters, digits and "-"`);
    this.pools = opts.pools ?? runnerPools(this.name);
    const kc = typeof opts.kubeconfig === 'string' ? loadKubeconfig(opts.kubeconfig) : opts.kubeconfig;
    const server = kc.getCurrentCluster()?.server ?? '';
    if (!/^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/|$)/.test(server))
      throw new Error(
        `the local pod runner talks to a loopback API server only; the kubeconfig's is "${server}"`,
      );
    this.client = new KubeClient(kc);
    this.logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), 'modelplane-pod-runner-'));
    mkdirSync(this.logDir, { recursive: true });
    this.imageRules = {
      modelsDirs: [...(opts.modelsDirs ?? []), ...(opts.exampleModels === false ? [] : [EXAMPLE_MODELS_DIR])],
      modelplaneImages: opts.modelplaneImages ?? DEFAULT_MODELPLANE_IMAGES,
    };
    // A random first address: runners (and test runs) sharing the machine rarely meet.
    this.ips = new IpAllocator(opts.podCidr ?? DEFAULT_POD_CIDR, [HOST_IP], 1 + randomInt(60_000));
    this.log = (opts.log ?? createLogger({ level: process.env.LOG_LEVEL ?? 'info' })).child({
      podRunner: this.name,
    });
    this.opts = {
      restartBackoff: opts.restartBackoff ?? { initialMs: 10_000, maxMs: 300_000 },
      leaseRenewMs: opts.leaseRenewMs ?? 10_000,
      nodeStatusMs: opts.nodeStatusMs ?? 60_000,
      resyncMs: opts.resyncMs ?? 5_000,
      removeNodesOnStop: opts.removeNodesOnStop ?? true,
      stopGraceMs: opts.stopGraceMs ?? 5_000,
      ...(opts.pythonEnv ? { pythonEnv: opts.pythonEnv } : {}),
    };
    this.nodes = new RunnerNodes(this.client, this.name, this.pools, this.log, this.opts);
  }

  /** Names of the runner's nodes. */
  get nodeNames(): string[] {
    return this.nodes.names;
  }

  /** Creates (or takes over) the nodes, starts the heartbeats and the pod watches. */
  async start(): Promise<void> {
    if (this.started) throw new Error('the pod runner is already started');
    this.started = true;
    await this.nodes.start();
    this.resync = setInterval(() => {
      for (const w of this.workers.values()) w.poke();
    }, this.opts.resyncMs);
    for (const node of this.nodeNames) {
      const informer = new Informer<Pod>(this.client, Pods, {
        fieldSelector: `spec.nodeName=${node}`,
        log: this.log,
        silenceTimeoutMs: 90_000,
      });
      informer.addEventHandler({
        onAdd: (p) => this.observe(p),
        onUpdate: (_o, p) => this.observe(p),
        onDelete: (p) => this.observeGone(p),
      });
      informer.start();
      this.informers.push(informer);
    }
    await Promise.all(this.informers.map((i) => i.waitForSync({ timeoutMs: 60_000 })));
    this.log.info({ nodes: this.nodeNames, logDir: this.logDir }, 'pod runner started');
  }

  /**
   * Stops every process of every pod (SIGTERM, SIGKILL after the stop grace), stops the
   * heartbeats and watches, and (by default) deletes the runner's nodes. Idempotent.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.nodes.stop();
    clearInterval(this.resync);
    await Promise.all(this.informers.map((i) => i.stop()));
    await Promise.all([...this.workers.values()].map((w) => w.shutdown(this.opts.stopGraceMs)));
    this.workers.clear();
    if (this.opts.removeNodesOnStop && this.started) await this.nodes.remove();
    this.log.info('pod runner stopped');
  }

  /** Process-group ids of every container process running now (for checks that all are gone). */
  get processGroups(): number[] {
    return [...this.workers.values()].flatMap((w) => w.processGroups());
  }

  /** Process-group ids of the running container processes of the pod `uid`. */
  processGroupsOf(uid: string): number[] {
    return this.workers.get(uid)?.processGroups() ?? [];
  }

  /** The pods the runner is running, by uid. */
  get pods(): { uid: string; namespace: string; name: string; podIP?: string }[] {
    return [...this.workers.values()].map((w) => ({
      uid: w.uid,
      namespace: w.namespace,
      name: w.name,
      ...(w.ip ? { podIP: w.ip } : {}),
    }));
  }

  get stopped(): boolean {
    return this.stopping;
  }

  // --- pods ---

  private observe(pod: Pod): void {
    if (this.stopping) return;
    const uid = pod.metadata?.uid;
    if (!uid) return;
    let w = this.workers.get(uid);
    if (!w) {
      w = new PodWorker(this, pod, () => this.workers.delete(uid));
      this.workers.set(uid, w);
    }
    w.update(pod);
  }

  private observeGone(pod: Pod): void {
    const uid = pod.metadata?.uid;
    const w = uid ? this.workers.get(uid) : undefined;
    w?.markGone();
  }

  /**
   * A pod IP whose container ports nothing on the machine holds yet (another runner's pod,
   * or a process listening on every address); an address found taken is never used.
   */
  async allocateIp(uid: string, spec: IPodSpec): Promise<string> {
    const ports = spec.containers.flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
    for (let i = 0; i < 64; i++) {
      const ip = this.ips.allocate(uid);
      if (await portsFree(ip, ports)) return ip;
      this.log.warn({ ip }, 'a pod address is in use on this machine; taking another');
      this.ips.release(uid);
      this.ips.reserve(ip);
    }
    throw new Error(`no free pod address in ${this.ips.cidr} for ports ${ports.join(', ')}`);
  }

  /** Decoded data of a Secret or ConfigMap, or undefined when it does not exist. */
  async readData(kind: 'Secret' | 'ConfigMap', name: string, namespace: string) {
    const obj = await this.client.find<Secret | ConfigMap>(
      kind === 'Secret' ? Secrets : ConfigMaps,
      name,
      namespace,
    );
    if (!obj) return undefined;
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj.data ?? {}))
      data[k] = kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : v;
    if (kind === 'ConfigMap') {
      const bin = (obj as ConfigMap).binaryData ?? {};
      for (const [k, v] of Object.entries(bin)) data[k] = Buffer.from(v, 'base64').toString('utf8');
    }
    return data;
  }

  /** The venv of the Cog server; throws with what to install when it is missing. */
  pythonDir(): string {
    return this.opts.pythonEnv ?? pythonEnv();
  }

  /** Writes a pod's status (server-side apply on pods/status, with the uid as a precondition). */
  async writePodStatus(pod: Pod, status: PodStatusOut): Promise<void> {
    await this.client.apply(
      Pods,
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: pod.metadata?.name, namespace: pod.metadata?.namespace, uid: pod.metadata?.uid },
        status,
      } as Pod,
      { fieldManager: FIELD_MANAGER, force: true, subresource: 'status' },
    );
  }

  /** Deletes a pod whose processes are gone, as the kubelet does: grace 0, uid precondition. */
  async removePod(pod: Pod): Promise<void> {
    const path = resourcePath(Pods, { namespace: pod.metadata?.namespace, name: pod.metadata?.name ?? '' });
    try {
      await this.client.request('DELETE', path, {
        body: {
          apiVersion: 'v1',
          kind: 'DeleteOptions',
          gracePeriodSeconds: 0,
          preconditions: { uid: pod.metadata?.uid },
        },
      });
    } catch (err) {
      if (!isNotFound(err) && !isConflict(err)) throw err;
    }
  }
}

/** Whether every one of `ports` can be bound on `ip` now. */
async function portsFree(ip: string, ports: readonly number[]): Promise<boolean> {
  for (const port of new Set(ports)) {
    const free = await new Promise<boolean>((resolveFree) => {
      const srv = createServer();
      srv.once('error', () => resolveFree(false));
      srv.listen({ host: ip, port, exclusive: true }, () => srv.close(() => resolveFree(true)));
    });
    if (!free) return false;
  }
  return true;
}

function loadKubeconfig(path: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(path);
  return kc;
}
