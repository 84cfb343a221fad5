/**
 * The pod runner's nodes, kept alive as a kubelet keeps its own: the Node objects (created, or
 * taken over when they carry the runner's label), their status reported on a period, and
 * their Leases in kube-node-lease renewed.
 */
import type { INode } from 'kubernetes-models/v1/Node';
import type { INodeStatus } from 'kubernetes-models/v1/NodeStatus';
import { isConflict, isNotFound, type KubeClient, type Logger } from '../../operator/runtime/index.ts';
import {
  type NodeOwner,
  type NodePool,
  type PoolSizes,
  poolNodeManifests,
  standardPools,
} from '../cluster/node-pools.ts';
import { FIELD_MANAGER, HOST_IP, Leases, Nodes } from './kube.ts';
import { kubeTime } from './status.ts';

/** Label on the runner's nodes naming the runner (kwok leaves nodes without its annotation alone). */
export const RUNNER_LABEL = 'modelplane.dev/pod-runner';

const LEASE_SECONDS = 40;

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

/** metav1.MicroTime: RFC 3339 with microseconds. */
function microTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}

interface RunnerNode {
  name: string;
  uid?: string;
  manifest: INode;
}

export interface RunnerNodesOptions {
  /** How often the Leases are renewed (they last 40 s). */
  leaseRenewMs: number;
  /** How often node status is reported. */
  nodeStatusMs: number;
}

/** The Node objects and Leases of one pod runner's pools. */
export class RunnerNodes {
  private readonly client: KubeClient;
  private readonly runner: string;
  private readonly log: Logger;
  private readonly opts: RunnerNodesOptions;
  private readonly nodes: RunnerNode[] = [];
  private readonly readySince = kubeTime(new Date());
  private timers: NodeJS.Timeout[] = [];
  private stopped = false;

  constructor(client: KubeClient, runner: string, pools: NodePool[], log: Logger, opts: RunnerNodesOptions) {
    this.client = client;
    this.runner = runner;
    this.log = log;
    this.opts = opts;
    const owner = runnerOwner(runner);
    for (const pool of pools) {
      for (const manifest of poolNodeManifests(pool, owner)) {
        this.nodes.push({ name: manifest.metadata?.name ?? '', manifest });
      }
    }
  }

  get names(): string[] {
    return this.nodes.map((n) => n.name);
  }

  /** Registers the nodes, renews their Leases, and keeps both fresh until `stop()`. */
  async start(): Promise<void> {
    for (const node of this.nodes) await this.register(node);
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
          void this.reportStatus(n).catch(async (err) => {
            // A node deleted under a running kubelet is registered again, as the kubelet does.
            if (isNotFound(err) && !this.stopped) {
              this.log.warn({ node: n.name }, 'the node was deleted; registering it again');
              await this.register(n).catch((e) =>
                this.log.warn({ err: e, node: n.name }, 'could not register the node'),
              );
            } else this.log.warn({ err, node: n.name }, 'node status failed');
          });
      }, this.opts.nodeStatusMs),
    );
  }

  /** Stops the heartbeats (status and Leases). */
  stop(): void {
    this.stopped = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Deletes the Node objects. */
  async remove(): Promise<void> {
    await Promise.all(
      this.nodes.map((n) =>
        this.client.delete(Nodes, n.name).catch((err) => {
          if (!isNotFound(err)) this.log.warn({ err, node: n.name }, 'could not delete the node');
        }),
      ),
    );
  }

  private async register(node: RunnerNode): Promise<void> {
    const manifest = structuredClone(node.manifest);
    manifest.status = { ...manifest.status, ...this.statusFields(node.name, new Date()) };
    try {
      const created = await this.client.create(Nodes, manifest, {
        fieldManager: FIELD_MANAGER,
      });
      node.uid = created.metadata?.uid;
    } catch (err) {
      if (!isConflict(err)) throw err;
      const existing = await this.client.get(Nodes, node.name);
      const labels = existing.metadata?.labels ?? {};
      if (labels[RUNNER_LABEL] !== this.runner)
        throw new Error(
          `node ${node.name} exists and does not belong to pod runner ${this.runner} (${RUNNER_LABEL}=${labels[RUNNER_LABEL] ?? ''}); choose another runner name or pool name`,
        );
      node.uid = existing.metadata?.uid;
    }
    await this.reportStatus(node);
  }

  private statusFields(name: string, now: Date): INodeStatus {
    const heartbeat = kubeTime(now);
    const cond = (type: string, status: string, reason: string, message: string) => ({
      type,
      status,
      reason,
      message,
      lastHeartbeatTime: heartbeat,
      lastTransitionTime: this.readySince,
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
        cond('Ready', 'True', 'KubeletReady', `the local pod runner ${this.runner} is posting ready status`),
      ],
      addresses: [
        { type: 'InternalIP', address: HOST_IP },
        { type: 'Hostname', address: name },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 0 } },
    };
  }

  private async reportStatus(node: RunnerNode): Promise<void> {
    if (this.stopped) return;
    const base = node.manifest.status;
    const status: INodeStatus = {
      capacity: base?.capacity,
      allocatable: base?.allocatable,
      nodeInfo: base?.nodeInfo,
      ...this.statusFields(node.name, new Date()),
    };
    await this.client.apply(
      Nodes,
      { apiVersion: 'v1', kind: 'Node', metadata: { name: node.name }, status },
      { fieldManager: FIELD_MANAGER, force: true, subresource: 'status' },
    );
  }

  private async renewLease(node: RunnerNode): Promise<void> {
    if (this.stopped) return;
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
      },
      { fieldManager: FIELD_MANAGER, force: true },
    );
  }
}
