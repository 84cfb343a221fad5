/**
 * One pod on the local pod runner: its address, its containers (container.ts), its status as
 * the kubelet writes it, and its termination (preStop hooks, grace period, removal).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import { isConflict, isNotFound, type Logger } from '../../operator/runtime/index.ts';
import { type ContainerHost, ContainerRunner } from './container.ts';
import type { PodFields } from './env.ts';
import type { IpAllocator } from './ips.ts';
import { HOST_IP, type Pod } from './kube.ts';
import {
  buildPodStatus,
  type ContainerView,
  kubeTime,
  type PodCondition,
  type PodStatusOut,
} from './status.ts';

/** What a pod needs from the runner that runs it. */
export interface PodHost extends ContainerHost {
  readonly log: Logger;
  /** Container logs go under `<logDir>/<namespace>_<pod>_<uid>/`. */
  readonly logDir: string;
  readonly ips: IpAllocator;
  /** True once the runner is stopping. */
  readonly stopped: boolean;
  allocateIp(uid: string, spec: IPodSpec): Promise<string>;
  writePodStatus(pod: Pod, status: PodStatusOut): Promise<void>;
  removePod(pod: Pod): Promise<void>;
}

/** Runs one pod: its address, its containers, its status, its termination. Syncs are serialized. */
export class PodWorker {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  ip: string | undefined;
  private pod: Pod;
  private readonly runner: PodHost;
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
  /**
   * WEBHOOK_AUTH_TOKEN of this pod's containers, unless the pod sets one. In a real pod the
   * model server's webhooks reach the sidecar on the pod's own loopback; here every pod shares
   * the machine's, so a random token per pod keeps one pod's webhooks from another's sidecar.
   */
  readonly loopbackToken = randomBytes(32).toString('hex');

  constructor(runner: PodHost, pod: Pod, onDone: () => void) {
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

  get spec(): IPodSpec {
    return this.pod.spec ?? { containers: [] };
  }

  get object(): Pod {
    return this.pod;
  }

  get logDir(): string {
    return join(this.runner.logDir, `${this.namespace}_${this.name}_${this.uid}`);
  }

  update(pod: Pod): void {
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

  get host(): ContainerHost {
    return this.runner;
  }
}
