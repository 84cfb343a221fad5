/**
 * Temporary Deployments of `modelplane check` (the cold start and other hardware): made with
 * the checked Deployment's Model and ModelVersion, labelled as the check's and owned by the
 * checked Deployment, and deleted afterwards — also when the check fails, and on SIGINT
 * (main.ts calls removeAll). Pods are read through the Kubernetes API, polled with deadlines.
 */
import { randomBytes } from 'node:crypto';
import { CoreV1Api, CustomObjectsApi, type KubeConfig, type V1Pod, Watch } from '@kubernetes/client-node';
import { API_VERSION, GROUP, KIND, LABEL, PLURAL, VERSION } from '../../crds/constants.ts';
import { type PodTimes, podStates, temporaryName } from './temporary-rows.ts';

/** The label that marks a check's temporary Deployment (its value: the check run's id). */
export const CHECK_LABEL = 'modelplane.dev/check';
export const MANAGED_BY = 'modelplane-check';

const POLL_MS = 250;

type Obj = {
  metadata: { name: string; uid?: string; generation?: number };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
};

const ms = (v: unknown): number =>
  v === undefined || v === null ? Number.NaN : new Date(v as string).getTime();

/** Polls `get` until it answers a value, or throws saying what it waited for past the deadline. */
async function until<T>(what: string, deadline: number, get: () => Promise<T | undefined>): Promise<T> {
  for (;;) {
    const v = await get();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/** What a pod's status says of its start, or undefined until it is Ready with all containers started. */
export function podTimes(pod: V1Pod): PodTimes | undefined {
  const cond = (type: string) => pod.status?.conditions?.find((c) => c.type === type && c.status === 'True');
  const scheduled = cond('PodScheduled');
  const ready = cond('Ready');
  const statuses = pod.status?.containerStatuses ?? [];
  const started = statuses.map((s) => ms(s.state?.running?.startedAt));
  if (!scheduled || !ready || statuses.length === 0 || started.some((x) => Number.isNaN(x))) return undefined;
  return {
    created: ms(pod.metadata?.creationTimestamp),
    scheduled: ms(scheduled.lastTransitionTime),
    started: Math.max(...started),
    ready: ms(ready.lastTransitionTime),
  };
}

/** When the client first saw each state of the first pod of a Deployment, by a watch. */
export interface PodObserver {
  seen: Partial<PodTimes>;
  stop(): void;
}

export class Temporaries {
  private readonly kc: KubeConfig;
  private readonly custom: CustomObjectsApi;
  private readonly core: CoreV1Api;
  /** This check run's id: the value of CHECK_LABEL on its Deployments. */
  readonly runId = randomBytes(4).toString('hex');
  private readonly made = new Map<string, string>();
  /** The names removed so far (the report says so). */
  readonly removed: string[] = [];

  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.custom = kc.makeApiClient(CustomObjectsApi);
    this.core = kc.makeApiClient(CoreV1Api);
  }

  /** Creates a Deployment like `owner` on `hardware` with the instances given; answers its name. */
  async create(
    namespace: string,
    owner: Obj,
    what: string,
    spec: { hardware: string; minInstances: number; maxInstances: number },
  ): Promise<string> {
    const suffix = Array.from(randomBytes(5), (b) => 'abcdefghijklmnopqrstuvwxyz0123456789'[b % 36]).join('');
    const name = temporaryName(owner.metadata.name, what, suffix);
    this.made.set(name, namespace);
    await this.custom.createNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL.Deployment,
      body: {
        apiVersion: API_VERSION,
        kind: KIND.Deployment,
        metadata: {
          name,
          labels: { [CHECK_LABEL]: this.runId, [LABEL.appManagedBy]: MANAGED_BY },
          annotations: { 'modelplane.dev/check-of': owner.metadata.name },
          ...(owner.metadata.uid
            ? {
                ownerReferences: [
                  {
                    apiVersion: API_VERSION,
                    kind: KIND.Deployment,
                    name: owner.metadata.name,
                    uid: owner.metadata.uid,
                  },
                ],
              }
            : {}),
        },
        spec: { model: owner.spec.model, version: owner.spec.version, ...spec },
      },
    });
    return name;
  }

  private async get(namespace: string, name: string): Promise<Obj | undefined> {
    try {
      return (await this.custom.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL.Deployment,
        name,
      })) as Obj;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }

  /** Waits until the operator has reconciled a Deployment (status.observedGeneration). */
  async reconciled(namespace: string, name: string, deadline: number): Promise<Obj> {
    return until(`the operator to reconcile Deployment ${namespace}/${name}`, deadline, async () => {
      const d = await this.get(namespace, name);
      const observed = Number(d?.status?.observedGeneration ?? 0);
      return d && observed >= (d.metadata.generation ?? 1) ? d : undefined;
    });
  }

  /** Waits until a Deployment has a ready instance. */
  async ready(namespace: string, name: string, deadline: number): Promise<void> {
    await until(`Deployment ${namespace}/${name} to have a ready instance`, deadline, async () => {
      const d = await this.get(namespace, name);
      return Number(d?.status?.readyInstances ?? 0) >= 1 ? true : undefined;
    });
  }

  async pods(namespace: string, deployment: string): Promise<V1Pod[]> {
    const list = await this.core.listNamespacedPod({
      namespace,
      labelSelector: `${LABEL.deployment}=${deployment}`,
    });
    return list.items;
  }

  /**
   * Watches a Deployment's pods and notes, on this machine's clock, when the first one was
   * first seen created, scheduled, with every container running, and Ready. The API's own
   * timestamps are whole seconds; these narrow them (temporary-rows.ts's refine).
   */
  async observe(namespace: string, deployment: string): Promise<PodObserver> {
    const seen: Partial<PodTimes> = {};
    let first: string | undefined;
    const ctl = await new Watch(this.kc).watch(
      `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods`,
      { labelSelector: `${LABEL.deployment}=${deployment}` },
      (_type, pod: V1Pod) => {
        const now = Date.now();
        first ??= pod.metadata?.uid;
        if (pod.metadata?.uid !== first) return;
        for (const k of podStates(pod)) seen[k] ??= now;
      },
      () => {},
    );
    return { seen, stop: () => ctl.abort() };
  }

  /** The start timestamps of the Deployment's first pod, once they are all there. */
  async firstPodTimes(namespace: string, deployment: string, deadline: number): Promise<PodTimes> {
    return until(`a Ready pod of Deployment ${namespace}/${deployment}`, deadline, async () => {
      const pods = (await this.pods(namespace, deployment)).sort(
        (a, b) => ms(a.metadata?.creationTimestamp) - ms(b.metadata?.creationTimestamp),
      );
      return pods[0] ? podTimes(pods[0]) : undefined;
    });
  }

  /** Deletes one temporary Deployment and waits (up to the deadline) until its pods are gone. */
  async remove(name: string, deadline: number): Promise<void> {
    const namespace = this.made.get(name);
    if (namespace === undefined) return;
    try {
      await this.custom.deleteNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural: PLURAL.Deployment,
        name,
        propagationPolicy: 'Background',
      });
    } catch (err) {
      if ((err as { code?: number }).code !== 404) throw err;
    }
    await until(`Deployment ${namespace}/${name} and its pods to be gone`, deadline, async () =>
      !(await this.get(namespace, name)) && (await this.pods(namespace, name)).length === 0
        ? true
        : undefined,
    );
    this.made.delete(name);
    this.removed.push(name);
  }

  /** Removes every temporary Deployment still there; answers the errors (none when all went). */
  async removeAll(timeoutMs = 180_000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    const errors: string[] = [];
    await Promise.all(
      [...this.made.keys()].map((n) =>
        this.remove(n, deadline).catch((err) => errors.push(`${n}: ${(err as Error).message}`)),
      ),
    );
    return errors;
  }

  /** Names still there (made and not yet removed). */
  get pending(): string[] {
    return [...this.made.keys()];
  }
}
