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
import type { V1Container, V1PodSpec } from '@kubernetes/client-node';
import { KubeConfig } from '@kubernetes/client-node';
import { resourcePath } from '../../operator/runtime/client.ts';
import {
  createLogger,
  Informer,
  isConflict,
  isNotFound,
  KubeClient,
  type KubeObject,
  type Logger,
  resourceType,
} from '../../operator/runtime/index.ts';
import {
  type NodeOwner,
  type NodePool,
  type PoolSizes,
  poolNodeManifests,
  standardPools,
} from '../cluster/node-pools.ts';
import { repoRoot } from '../cluster/paths.ts';
import { GroupProcess, groupAlive } from '../processes.ts';
import { pythonEnv } from '../python.ts';
import { awaitsExplicitShutdown, cogServerArgs, modelplaneArgs, rewriteModelplane } from './commands.ts';
import { EnvConfigError, type PodFields, resolveEnv } from './env.ts';
import { type ImagePlan, type ImageRules, resolveImage } from './images.ts';
import { IpAllocator } from './ips.ts';
import { ProbeResult, type ProbeSpec, probeTiming, resolvePort, runProbe } from './probes.ts';
import {
  buildPodStatus,
  type ContainerState,
  type ContainerView,
  exitCodeOf,
  kubeTime,
  type PodCondition,
  restartDelay,
  shouldRestart,
  type TerminatedState,
  terminationReason,
} from './status.ts';

/** Label on the runner's nodes naming the runner (kwok leaves nodes without its annotation alone). */
export const RUNNER_LABEL = 'modelplane.dev/pod-runner';
/** Field manager of the runner's writes (pod and node status, leases). */
export const FIELD_MANAGER = 'modelplane-pod-runner';
/** The operator's default sidecar image is `ghcr.io/modelplane/modelplane:<version>`: any tag runs. */
export const DEFAULT_MODELPLANE_IMAGES = ['ghcr.io/modelplane/modelplane'];
export const DEFAULT_POD_CIDR = '127.10.0.0/16';
export const HOST_IP = '127.0.0.1';
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

/** The runner's default pools: `<name>-gpu-t4` and `<name>-cpu`, sized like the harness's. */
export function runnerPools(name: string, sizes: Partial<PoolSizes> = { t4: 1, cpu: 1 }): NodePool[] {
  return standardPools({ t4: 0, a100: 0, h100: 0, cpu: 0, ...sizes }).map((p) => ({
    ...p,
    name: `${name}-${p.name}`,
  }));
}

export function runnerOwner(name: string): NodeOwner {
  return {
    annotations: {},
    labels: { [RUNNER_LABEL]: name, type: 'pod-runner' },
    runtime: 'modelplane-pod-runner',
  };
}

// --- the kinds the runner reads and writes ------------------------------------------------

export interface PodObject extends KubeObject {
  metadata?: KubeObject['metadata'] & {
    uid?: string;
    deletionTimestamp?: string;
    deletionGracePeriodSeconds?: number;
    creationTimestamp?: string;
  };
  spec?: V1PodSpec;
  status?: {
    phase?: string;
    podIP?: string;
    startTime?: string;
    conditions?: PodCondition[];
    containerStatuses?: { name: string; restartCount?: number }[];
  };
}
const Pods = resourceType<PodObject>({ apiVersion: 'v1', kind: 'Pod', plural: 'pods', namespaced: true });
const Nodes = resourceType<KubeObject & { status?: Record<string, unknown> }>({
  apiVersion: 'v1',
  kind: 'Node',
  plural: 'nodes',
  namespaced: false,
});
const Leases = resourceType<KubeObject>({
  apiVersion: 'coordination.k8s.io/v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
});
const Secrets = resourceType<KubeObject & { data?: Record<string, string> }>({
  apiVersion: 'v1',
  kind: 'Secret',
  plural: 'secrets',
  namespaced: true,
});
const ConfigMaps = resourceType<KubeObject & { data?: Record<string, string> }>({
  apiVersion: 'v1',
  kind: 'ConfigMap',
  plural: 'configmaps',
  namespaced: true,
});

const LEASE_SECONDS = 40;

/** metav1.MicroTime: RFC 3339 with microseconds. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

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
  private readonly nodes: { name: string; uid?: string; manifest: Record<string, unknown> }[] = [];
  private readonly informers: Informer<PodObject>[] = [];
  private readonly workers = new Map<string, PodWorker>();
  private timers: NodeJS.Timeout[] = [];
  private started = false;
  private stopping = false;
  private readonly nodeReadySince = kubeTime(new Date());

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
    const owner = runnerOwner(this.name);
    for (const pool of this.pools) {
      for (const manifest of poolNodeManifests(pool, owner)) {
        this.nodes.push({ name: (manifest.metadata as { name: string }).name, manifest });
      }
    }
  }

  /** Names of the runner's nodes. */
  get nodeNames(): string[] {
    return this.nodes.map((n) => n.name);
  }

  /** Creates (or takes over) the nodes, starts the heartbeats and the pod watches. */
  async start(): Promise<void> {
    if (this.started) throw new Error('the pod runner is already started');
    this.started = true;
    for (const node of this.nodes) await this.registerNode(node);
    await Promise.all(this.nodes.map((n) => this.renewLease(n)));
    this.timers.push(
      setInterval(() => {
        for (const n of this.nodes)
          void this.renewLease(n).catch((err) =>
            this.log.warn({ err, node: n.name }, 'lease renewal failed'),
          );
      }, this.opts.leaseRenewMs),
      setInterval(() => {
        for (const n of this.nodes)
          void this.reportNodeStatus(n).catch(async (err) => {
            // A node deleted under a running kubelet is registered again, as the kubelet does.
            if (isNotFound(err) && !this.stopping) {
              this.log.warn({ node: n.name }, 'the node was deleted; registering it again');
              await this.registerNode(n).catch((e) =>
                this.log.warn({ err: e, node: n.name }, 'could not register the node'),
              );
            } else this.log.warn({ err, node: n.name }, 'node status failed');
          });
      }, this.opts.nodeStatusMs),
      setInterval(() => {
        for (const w of this.workers.values()) w.poke();
      }, this.opts.resyncMs),
    );
    for (const node of this.nodes) {
      const informer = new Informer<PodObject>(this.client, Pods, {
        fieldSelector: `spec.nodeName=${node.name}`,
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
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await Promise.all(this.informers.map((i) => i.stop()));
    await Promise.all([...this.workers.values()].map((w) => w.shutdown(this.opts.stopGraceMs)));
    this.workers.clear();
    if (this.opts.removeNodesOnStop && this.started) {
      await Promise.all(
        this.nodes.map((n) =>
          this.client.delete(Nodes, n.name).catch((err) => {
            if (!isNotFound(err)) this.log.warn({ err, node: n.name }, 'could not delete the node');
          }),
        ),
      );
    }
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

  // --- nodes ---

  private async registerNode(node: (typeof this.nodes)[number]): Promise<void> {
    const manifest = structuredClone(node.manifest) as Record<string, unknown> & {
      status: Record<string, unknown>;
    };
    Object.assign(manifest.status, this.nodeStatusFields(node.name, new Date()));
    try {
      const created = await this.client.create(Nodes, manifest as KubeObject, {
        fieldManager: FIELD_MANAGER,
      });
      node.uid = created.metadata?.uid;
    } catch (err) {
      if (!isConflict(err)) throw err;
      const existing = await this.client.get(Nodes, node.name);
      const labels = existing.metadata?.labels ?? {};
      if (labels[RUNNER_LABEL] !== this.name)
        throw new Error(
          `node ${node.name} exists and does not belong to pod runner ${this.name} (${RUNNER_LABEL}=${labels[RUNNER_LABEL] ?? ''}); choose another runner name or pool name`,
        );
      node.uid = existing.metadata?.uid;
    }
    await this.reportNodeStatus(node);
  }

  private nodeStatusFields(name: string, now: Date): Record<string, unknown> {
    const heartbeat = kubeTime(now);
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: heartbeat,
      lastTransitionTime: this.nodeReadySince,
    });
    return {
      conditions: [
        cond(
          'MemoryPressure',
          'False',
          'KubeletHasSufficientMemory',
          'kubelet has sufficient memory available',
        ),
        cond('DiskPressure', 'False', 'KubeletHasNoDiskPressure', 'kubelet has no disk pressure'),
        cond('PIDPressure', 'False', 'KubeletHasSufficientPID', 'kubelet has sufficient PID available'),
        cond('Ready', 'True', 'KubeletReady', `the local pod runner ${this.name} is posting ready status`),
      ],
      addresses: [
        { type: 'InternalIP', address: HOST_IP },
        { type: 'Hostname', address: name },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
    };
  }

  private async reportNodeStatus(node: (typeof this.nodes)[number]): Promise<void> {
    if (this.stopping) return;
    const base = node.manifest as { status: Record<string, unknown> };
    const status = {
      capacity: base.status.capacity,
      allocatable: base.status.allocatable,
      nodeInfo: base.status.nodeInfo,
      ...this.nodeStatusFields(node.name, new Date()),
    };
    await this.client.apply(
      Nodes,
      { apiVersion: 'v1', kind: 'Node', metadata: { name: node.name }, status } as KubeObject,
      { fieldManager: FIELD_MANAGER, force: true, subresource: 'status' },
    );
  }

  private async renewLease(node: (typeof this.nodes)[number]): Promise<void> {
    if (this.stopping) return;
    await this.client.apply(
      Leases,
      {
        apiVersion: 'coordination.k8s.io/v1',
        kind: 'Lease',
        metadata: {
          name: node.name,
          namespace: 'kube-node-lease',
          ...(node.uid
            ? { ownerReferences: [{ apiVersion: 'v1', kind: 'Node', name: node.name, uid: node.uid }] }
            : {}),
        },
        spec: {
          holderIdentity: node.name,
          leaseDurationSeconds: LEASE_SECONDS,
          renewTime: microTime(new Date()),
        },
      } as KubeObject,
      { fieldManager: FIELD_MANAGER, force: true },
    );
  }

  // --- pods ---

  private observe(pod: PodObject): void {
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

  private observeGone(pod: PodObject): void {
    const uid = pod.metadata?.uid;
    const w = uid ? this.workers.get(uid) : undefined;
    w?.markGone();
  }

  /**
   * A pod IP whose container ports nothing on the machine holds yet (another runner's pod,
   * or a process listening on every address); an address found taken is never used.
   */
  async allocateIp(uid: string, spec: V1PodSpec): Promise<string> {
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
    const obj = await this.client.find(kind === 'Secret' ? Secrets : ConfigMaps, name, namespace);
    if (!obj) return undefined;
    const data: Record<string, string> = {};
    for (const [k, v] of Object.entries(obj.data ?? {}))
      data[k] = kind === 'Secret' ? Buffer.from(v, 'base64').toString('utf8') : v;
    if (kind === 'ConfigMap') {
      const bin = (obj as { binaryData?: Record<string, string> }).binaryData ?? {};
      for (const [k, v] of Object.entries(bin)) data[k] = Buffer.from(v, 'base64').toString('utf8');
    }
    return data;
  }

  /** The venv of the Cog server; throws with what to install when it is missing. */
  pythonDir(): string {
    return this.opts.pythonEnv ?? pythonEnv();
  }

  /** Writes a pod's status (server-side apply on pods/status, with the uid as a precondition). */
  async writePodStatus(pod: PodObject, status: unknown): Promise<void> {
    await this.client.apply(
      Pods,
      {
        apiVersion: 'v1',
        kind: 'Pod',
        metadata: { name: pod.metadata?.name, namespace: pod.metadata?.namespace, uid: pod.metadata?.uid },
        status,
      } as PodObject,
      { fieldManager: FIELD_MANAGER, force: true, subresource: 'status' },
    );
  }

  /** Deletes a pod whose processes are gone, as the kubelet does: grace 0, uid precondition. */
  async removePod(pod: PodObject): Promise<void> {
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

// --- one pod --------------------------------------------------------------------------------

/** Runs one pod: its address, its containers, its status, its termination. Syncs are serialized. */
class PodWorker {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  ip: string | undefined;
  private pod: PodObject;
  private readonly runner: PodRunner;
  private readonly onDone: () => void;
  private readonly containers = new Map<string, ContainerRunner>();
  private readonly startTime: string;
  private dirty = false;
  private syncing: Promise<void> | undefined;
  private gone = false;
  private finished = false;
  private terminating: Promise<void> | undefined;
  private lastStatus = '';
  private conditions: PodCondition[] | undefined;
  private readonly ended: boolean;
  readonly log: Logger;

  constructor(runner: PodRunner, pod: PodObject, onDone: () => void) {
    this.runner = runner;
    this.pod = pod;
    this.onDone = onDone;
    this.uid = pod.metadata?.uid ?? '';
    this.namespace = pod.metadata?.namespace ?? '';
    this.name = pod.metadata?.name ?? '';
    this.startTime = pod.status?.startTime ?? kubeTime(new Date());
    this.conditions = pod.status?.conditions;
    this.log = runner.log.child({ pod: `${this.namespace}/${this.name}` });
    // A pod that had ended before this runner saw it (a runner started again) stays ended.
    this.ended = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
    // A pod this runner ran before it restarted keeps its address.
    const prev = pod.status?.podIP;
    if (prev && runner.ips.claim(this.uid, prev)) this.ip = prev;
  }

  get spec(): V1PodSpec {
    return this.pod.spec ?? { containers: [] };
  }

  get object(): PodObject {
    return this.pod;
  }

  get logDir(): string {
    return join(this.runner.logDir, `${this.namespace}_${this.name}_${this.uid}`);
  }

  update(pod: PodObject): void {
    this.pod = pod;
    this.poke();
  }

  markGone(): void {
    this.gone = true;
    this.poke();
  }

  /** Asks for a sync; syncs run one at a time, and a request during one runs another after it. */
  poke(): void {
    if (this.finished) return;
    this.dirty = true;
    if (!this.syncing) this.syncing = this.loop();
  }

  private async loop(): Promise<void> {
    while (this.dirty && !this.finished) {
      this.dirty = false;
      try {
        await this.sync();
      } catch (err) {
        this.log.warn({ err }, 'pod sync failed');
      }
    }
    this.syncing = undefined;
  }

  processGroups(): number[] {
    return [...this.containers.values()].flatMap((c) => c.processGroup());
  }

  fields(): PodFields {
    const m = this.pod.metadata ?? {};
    return {
      name: this.name,
      namespace: this.namespace,
      uid: this.uid,
      nodeName: this.spec.nodeName ?? '',
      podIP: this.ip ?? '',
      hostIP: HOST_IP,
      serviceAccountName: this.spec.serviceAccountName,
      labels: m.labels ?? {},
      annotations: m.annotations ?? {},
    };
  }

  private async sync(): Promise<void> {
    if (this.finished) return;
    if (this.gone || this.runner.stopped) {
      await this.shutdown(0);
      return;
    }
    if (this.pod.metadata?.deletionTimestamp) {
      this.terminating ??= this.terminate();
    } else if (this.ended) {
      return;
    } else {
      this.ip ??= await this.runner.allocateIp(this.uid, this.spec);
      const initContainers = this.spec.initContainers ?? [];
      for (const c of this.spec.containers) {
        let rt = this.containers.get(c.name);
        if (!rt) {
          const prev = this.pod.status?.containerStatuses?.find((s) => s.name === c.name);
          rt = new ContainerRunner(this, c, prev?.restartCount ?? 0);
          this.containers.set(c.name, rt);
        }
        if (initContainers.length) {
          rt.refuse('CreateContainerError', 'the local pod runner does not run init containers');
          continue;
        }
        await rt.ensure();
      }
    }
    await this.writeStatus();
  }

  private async writeStatus(): Promise<void> {
    if (this.gone || this.ended) return;
    const views: ContainerView[] = this.spec.containers.map(
      (c) =>
        this.containers.get(c.name)?.view() ?? {
          name: c.name,
          image: c.image ?? '',
          imageID: '',
          state: { waiting: { reason: 'ContainerCreating' } },
          restartCount: 0,
          ready: false,
        },
    );
    const status = buildPodStatus(
      {
        ...(this.ip ? { podIP: this.ip } : {}),
        hostIP: HOST_IP,
        startTime: this.startTime,
        restartPolicy: this.spec.restartPolicy ?? 'Always',
        containers: views,
      },
      this.conditions,
      new Date(),
    );
    const json = JSON.stringify(status);
    if (json === this.lastStatus) return;
    try {
      await this.runner.writePodStatus(this.pod, status);
      this.lastStatus = json;
      this.conditions = status.conditions;
    } catch (err) {
      if (isNotFound(err)) this.gone = true;
      else if (isConflict(err))
        this.log.debug({ err }, 'pod status conflict (a newer pod of the same name?)');
      else throw err;
    }
  }

  /** The kubelet's pod termination: preStop hooks, SIGTERM, SIGKILL at the grace deadline, then delete. */
  private async terminate(): Promise<void> {
    const grace =
      this.pod.metadata?.deletionGracePeriodSeconds ?? this.spec.terminationGracePeriodSeconds ?? 30;
    const deadline = Date.now() + grace * 1000;
    this.log.info({ graceSeconds: grace }, 'terminating pod');
    await Promise.all([...this.containers.values()].map((c) => c.terminate(deadline)));
    // The final container states (of a pod this runner ran), then the pod's removal.
    await this.writeStatus().catch((err) => this.log.debug({ err }, 'final status not written'));
    if (!this.gone) await this.runner.removePod(this.pod);
    this.log.info('pod terminated and removed');
    this.finish();
  }

  /** Stops everything at once (the pod is gone, or the runner stops). */
  async shutdown(graceMs: number): Promise<void> {
    if (this.finished) return;
    await Promise.all([...this.containers.values()].map((c) => c.stop(graceMs)));
    this.finish();
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    for (const c of this.containers.values()) c.dispose();
    this.runner.ips.release(this.uid);
    this.onDone();
  }

  get isTerminating(): boolean {
    return this.terminating !== undefined || this.gone || this.finished;
  }

  get runnerRef(): PodRunner {
    return this.runner;
  }
}

// --- one container --------------------------------------------------------------------------

interface Running {
  proc: GroupProcess;
  startedAt: string;
  containerID: string;
  exit: Promise<void>;
}

/** One container as processes: started, probed, restarted with back-off, stopped. */
class ContainerRunner {
  private readonly pod: PodWorker;
  private readonly spec: V1Container;
  private state: ContainerState = { waiting: { reason: 'ContainerCreating' } };
  private lastTerminated: TerminatedState | undefined;
  private restartCount: number;
  private running: Running | undefined;
  private plan: ImagePlan | undefined;
  private failures = 0;
  private nextStartAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readiness: ProbeResult | undefined;
  private probeTimers: NodeJS.Timeout[] = [];
  private ranBefore = false;

  constructor(pod: PodWorker, spec: V1Container, restartCount: number) {
    this.pod = pod;
    this.spec = spec;
    this.restartCount = restartCount;
  }

  private get runner(): PodRunner {
    return this.pod.runnerRef;
  }

  processGroup(): number[] {
    const r = this.running;
    return r && groupAlive(r.proc.pid) ? [r.proc.pid] : [];
  }

  view(): ContainerView {
    const ready =
      this.running !== undefined && 'running' in this.state && (this.readiness ? this.readiness.ok : true);
    return {
      name: this.spec.name,
      image: this.spec.image ?? '',
      // No registry, no digest: the image reference stands for itself once it could run.
      imageID: this.plan && this.plan.kind !== 'unknown' ? (this.spec.image ?? '') : '',
      ...(this.running ? { containerID: this.running.containerID } : {}),
      state: this.state,
      ...(this.lastTerminated ? { lastState: { terminated: this.lastTerminated } } : {}),
      restartCount: this.restartCount,
      ready,
    };
  }

  /** Reports a container the runner will not start. */
  refuse(reason: string, message: string): void {
    this.state = { waiting: { reason, message } };
  }

  /** Starts the container when it is due: not running, allowed to (re)start, back-off over. */
  async ensure(): Promise<void> {
    if (this.running || this.stopping) return;
    if ('terminated' in this.state) {
      const t = this.state.terminated;
      if (!shouldRestart(this.pod.spec.restartPolicy ?? 'Always', t.exitCode)) return;
    }
    const now = Date.now();
    if (now < this.nextStartAt) {
      this.scheduleRetry(this.nextStartAt - now);
      return;
    }
    await this.start();
  }

  private scheduleRetry(ms: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pod.poke();
    }, ms);
  }

  private backOff(reason: string, message: string): void {
    this.failures++;
    const delay = restartDelay(this.failures, this.runner.opts.restartBackoff);
    this.nextStartAt = Date.now() + delay;
    this.scheduleRetry(delay);
    this.state = { waiting: { reason, message } };
  }

  private async start(): Promise<void> {
    const c = this.spec;
    const wasPullFailure = 'waiting' in this.state && /ImagePull/.test(this.state.waiting.reason);
    this.plan = resolveImage(c.image, this.runner.imageRules);
    if (this.plan.kind === 'unknown') {
      // First ErrImagePull, then ImagePullBackOff between attempts, as the kubelet shows them.
      this.backOff(wasPullFailure ? 'ImagePullBackOff' : 'ErrImagePull', this.plan.message);
      if (wasPullFailure) this.pod.log.debug({ image: c.image }, 'image still cannot run');
      else this.pod.log.warn({ container: c.name, reason: this.plan.message }, 'image cannot run');
      return;
    }
    const ip = this.pod.ip;
    if (!ip) return;
    let env: Record<string, string>;
    const cancelled = () => this.stopping || this.pod.isTerminating;
    try {
      env = await resolveEnv(c as never, this.pod.fields(), (kind, name) =>
        this.runner.readData(kind, name, this.pod.namespace),
      );
    } catch (err) {
      if (err instanceof EnvConfigError) {
        this.backOff('CreateContainerConfigError', err.message);
        return;
      }
      throw err;
    }
    // The pod may have been deleted, or the runner stopped, while the env was read.
    if (cancelled()) return;
    let command: string;
    let args: string[];
    let cwd: string | undefined;
    const base: Record<string, string> = {
      PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: process.env.HOME ?? '/tmp',
      TMPDIR: process.env.TMPDIR ?? tmpdir(),
      HOSTNAME: this.pod.name,
    };
    let childEnv: Record<string, string>;
    try {
      if (this.plan.kind === 'cog') {
        const venv = this.runner.pythonDir();
        const port = env.PORT ?? String(c.ports?.[0]?.containerPort ?? 5000);
        args = cogServerArgs(c, ip);
        command = join(venv, 'bin', 'python');
        cwd = this.plan.dir;
        childEnv = {
          ...base,
          // The Cog server starts its worker as `python` from PATH: the venv's comes first.
          PATH: `${join(venv, 'bin')}:${base.PATH}`,
          VIRTUAL_ENV: venv,
          PYTHONUNBUFFERED: '1',
          COG_PREDICT_TYPE_STUB: this.plan.predictor,
          ...env,
          PORT: port,
        };
      } else {
        const rewritten = rewriteModelplane(modelplaneArgs(c), env, ip);
        command = process.execPath;
        args = [join(repoRoot, 'cli', 'modelplane.ts'), ...rewritten.args];
        childEnv = { ...base, ...rewritten.env };
      }
    } catch (err) {
      this.backOff('CreateContainerError', (err as Error).message);
      return;
    }
    const dir = join(this.pod.logDir, c.name);
    mkdirSync(dir, { recursive: true });
    const logFile = join(dir, `${this.restartCount + (this.ranBefore ? 1 : 0)}.log`);
    if (this.ranBefore) this.restartCount++;
    let proc: GroupProcess;
    try {
      proc = new GroupProcess(`${this.pod.name}/${c.name}`, command, args, { logFile, env: childEnv, cwd });
    } catch (err) {
      this.backOff('RunContainerError', (err as Error).message);
      return;
    }
    const startedAt = kubeTime(new Date());
    const containerID = `podrunner://${this.pod.uid}/${c.name}/${proc.pid}`;
    this.ranBefore = true;
    this.state = { running: { startedAt } };
    const exit = new Promise<void>((resolveExit) => {
      let settled = false;
      const done = (code: number | null, signal: NodeJS.Signals | null, message?: string) => {
        if (settled) return;
        settled = true;
        this.exited(exitCodeOf(code, signal), startedAt, containerID, message);
        resolveExit();
      };
      proc.child.once('exit', (code, signal) => done(code, signal));
      proc.child.once('error', (err) => done(128, null, err.message));
    });
    this.running = { proc, startedAt, containerID, exit };
    this.pod.log.info(
      {
        container: c.name,
        pid: proc.pid,
        podIP: ip,
        log: logFile,
        ...(this.plan.kind === 'cog'
          ? { predictor: this.plan.dir, awaitExplicitShutdown: awaitsExplicitShutdown(args) }
          : { modelplane: args.slice(1) }),
      },
      'container started',
    );
    this.startProbes();
  }

  private exited(exitCode: number, startedAt: string, containerID: string, message?: string): void {
    const r = this.running;
    this.running = undefined;
    this.stopProbes();
    // As the container runtime does when a container's main process ends: nothing of it stays.
    if (r) {
      try {
        process.kill(-r.proc.pid, 'SIGKILL');
      } catch {}
    }
    const finishedAt = kubeTime(new Date());
    const terminated: TerminatedState = {
      exitCode,
      reason: message ? 'StartError' : terminationReason(exitCode),
      ...(message ? { message } : {}),
      startedAt,
      finishedAt,
      containerID,
    };
    this.pod.log.info({ container: this.spec.name, exitCode }, 'container exited');
    const restart =
      !this.stopping &&
      !this.pod.isTerminating &&
      shouldRestart(this.pod.spec.restartPolicy ?? 'Always', exitCode);
    if (restart) {
      // A container that ran ten minutes starts its back-off afresh.
      const ranMs = Date.parse(finishedAt) - Date.parse(startedAt);
      if (ranMs > 600_000) this.failures = 0;
      this.lastTerminated = terminated;
      const delay = restartDelay(this.failures + 1, this.runner.opts.restartBackoff);
      this.backOff(
        'CrashLoopBackOff',
        `back-off ${Math.round(delay / 1000)}s restarting failed container=${this.spec.name} pod=${this.pod.name}_${this.pod.namespace}(${this.pod.uid})`,
      );
    } else {
      this.state = { terminated };
    }
    this.pod.poke();
  }

  // --- probes ---

  private startProbes(): void {
    this.readiness = undefined;
    const ready = this.spec.readinessProbe as ProbeSpec | undefined;
    const live = this.spec.livenessProbe as ProbeSpec | undefined;
    if (ready) {
      const t = probeTiming(ready);
      const result = new ProbeResult(t.successThreshold, t.failureThreshold, false);
      this.readiness = result;
      this.loopProbe(ready, t, (ok, msg) => {
        if (result.record(ok, msg)) {
          this.pod.log.info(
            { container: this.spec.name, ready: result.ok, message: msg || undefined },
            'readiness changed',
          );
          this.pod.poke();
        }
      });
    }
    if (live) {
      const t = probeTiming(live);
      const result = new ProbeResult(t.successThreshold, t.failureThreshold, true);
      this.loopProbe(live, t, (ok, msg) => {
        if (result.record(ok, msg) && !result.ok) {
          this.pod.log.warn(
            { container: this.spec.name, message: msg },
            'liveness probe failed; restarting the container',
          );
          const grace = (this.pod.spec.terminationGracePeriodSeconds ?? 30) * 1000;
          void this.kill(grace);
        }
      });
    }
  }

  private loopProbe(
    probe: ProbeSpec,
    t: ReturnType<typeof probeTiming>,
    onResult: (ok: boolean, message: string) => void,
  ): void {
    const run = this.running;
    const tick = async () => {
      if (this.running !== run || !run) return;
      const ip = this.pod.ip;
      const { ok, message } = ip ? await runProbe(probe, this.spec, ip) : { ok: false, message: 'no pod IP' };
      if (this.running !== run) return;
      onResult(ok, message);
      this.probeTimers.push(setTimeout(tick, t.periodMs));
    };
    this.probeTimers.push(setTimeout(tick, t.initialDelayMs));
  }

  private stopProbes(): void {
    for (const t of this.probeTimers) clearTimeout(t);
    this.probeTimers = [];
  }

  // --- stopping ---

  /** preStop hook, then SIGTERM to the main process, SIGKILL to the group at `deadline`. */
  async terminate(deadline: number): Promise<void> {
    this.stopping = true;
    this.cancelRetry();
    const r = this.running;
    if (!r) return;
    const preStop = this.spec.lifecycle?.preStop;
    if (preStop) {
      const left = deadline - Date.now();
      this.pod.log.info({ container: this.spec.name }, 'running the preStop hook');
      await Promise.race([this.runPreStop(preStop as never), sleep(Math.max(0, left)), r.exit]);
    }
    await this.signalAndWait(r, deadline);
  }

  private async runPreStop(hook: {
    sleep?: { seconds: number };
    httpGet?: { path?: string; port: number | string; host?: string };
    exec?: unknown;
  }): Promise<void> {
    try {
      if (hook.sleep) await sleep(hook.sleep.seconds * 1000);
      else if (hook.httpGet) {
        const ip = this.pod.ip;
        const port = resolvePort(hook.httpGet.port, this.spec);
        const path = hook.httpGet.path ?? '/';
        if (!ip || (hook.httpGet.host && !/^(127\.\d+\.\d+\.\d+|localhost)$/.test(hook.httpGet.host)))
          throw new Error(
            `preStop httpGet to ${hook.httpGet.host}: the local pod runner dials loopback only`,
          );
        const res = await fetch(
          `http://${hook.httpGet.host ?? ip}:${port}${path.startsWith('/') ? path : `/${path}`}`,
        );
        await res.body?.cancel();
      } else if (hook.exec) {
        this.pod.log.warn(
          { container: this.spec.name },
          'exec preStop hooks do not run on the local pod runner',
        );
      }
    } catch (err) {
      this.pod.log.warn({ container: this.spec.name, err }, 'preStop hook failed');
    }
  }

  private async signalAndWait(r: Running, deadline: number): Promise<void> {
    try {
      // A container runtime signals the container's first process, not everything in it.
      process.kill(r.proc.pid, 'SIGTERM');
    } catch {}
    const left = deadline - Date.now();
    const timedOut = await Promise.race([
      r.exit.then(() => false),
      sleep(Math.max(0, left)).then(() => true),
    ]);
    if (timedOut) {
      this.pod.log.warn({ container: this.spec.name }, 'grace period over; SIGKILL');
      try {
        process.kill(-r.proc.pid, 'SIGKILL');
      } catch {}
      await r.exit;
    }
    // The main process is gone and the rest of its group was sent SIGKILL: wait for them too.
    const until = Date.now() + 5_000;
    while (groupAlive(r.proc.pid) && Date.now() < until) await sleep(20);
  }

  /** Stops the container within `graceMs` (SIGTERM, then SIGKILL); no preStop hook. */
  async kill(graceMs: number): Promise<void> {
    const r = this.running;
    if (!r) return;
    await this.signalAndWait(r, Date.now() + graceMs);
  }

  /** Stops the container for good (the pod is gone, or the runner stops). */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.cancelRetry();
    await this.kill(graceMs);
  }

  private cancelRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  dispose(): void {
    this.stopping = true;
    this.cancelRetry();
    this.stopProbes();
  }
}
