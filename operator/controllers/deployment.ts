/**
 * The Deployment controller: one apps/v1 Deployment per modelplane Deployment (the model
 * container and the sidecar, on the HardwareClass's nodes), a release number per spec, and a
 * status read from the workload and its pods.
 */
import {
  CONDITION,
  type Deployment,
  DeploymentSpecSchema,
  type DeploymentStatus,
  HardwareClassSpecSchema,
  LABEL,
  ModelVersionSpecSchema,
  REASON,
} from '../../crds/index.ts';
import { Deployments, type Stored, type Workload, Workloads } from '../resources.ts';
import {
  apply,
  applyStatus,
  controllerOwnerKeys,
  type EventRecorder,
  type Manager,
  ownsField,
  type ReconcileContext,
  specChanged,
  TerminalError,
} from '../runtime/index.ts';
import type { SidecarKey } from '../sidecar-key.ts';
import { type Caches, keysWhere, podsOf } from './caches.ts';
import { findCondition, transitions } from './conditions.ts';
import { type Blocker, deploymentStatus } from './deployment-status.ts';
import { AUTOSCALER_FIELD_MANAGER, CONTROLLER, fieldManager, reportingController } from './names.ts';
import { desiredWorkload, podTemplateHash, type WorkloadInput } from './pod-spec.ts';
import { podReleaseFor, releaseFor, releaseHash, replicasToApply } from './release.ts';
import { versionId } from './version-id.ts';

export interface DeploymentControllerOptions {
  /** Image of the sidecar container (`modelplane sidecar`). */
  sidecarImage: string;
  /** The operator's key: its public half goes into every model pod (MODELPLANE_OPERATOR_KEY). */
  sidecarKey?: SidecarKey | undefined;
  /** Address ranges the sidecars' webhooks may reach besides public ones. */
  webhookAllowCidrs?: readonly string[] | undefined;
  /** The most bytes of output a prediction may have: the sidecars get it too. */
  maxOutputBytes?: number | undefined;
  workers?: number;
  resyncPeriodMs?: number;
  now?: () => Date;
}

const FIELD_MANAGER = fieldManager(CONTROLLER.deployment);
const POD_DELAY_MS = 1000;

/** What this process last wrote per Deployment, so a stale cache never cuts a release twice. */
interface Written {
  uid: string;
  generation: number | undefined;
  hash: string;
  release: number;
  templateHash: string;
  podRelease: number;
}

function ownedBy(workload: Workload, uid: string | undefined): boolean {
  return (workload.metadata?.ownerReferences ?? []).some((r) => r.controller && r.uid === uid);
}

export function addDeploymentController(manager: Manager, c: Caches, opts: DeploymentControllerOptions) {
  const client = manager.leaderClient;
  const events: EventRecorder = manager.eventRecorder(reportingController(CONTROLLER.deployment));
  const now = opts.now ?? (() => new Date());
  const written = new Map<string, Written>();

  async function reconcile(key: string, ctx: ReconcileContext): Promise<void> {
    const obj = c.deployments.getByKey(key);
    if (!obj || obj.metadata.deletionTimestamp) {
      written.delete(key);
      return; // the garbage collector removes the children
    }
    const parsed = DeploymentSpecSchema.safeParse(obj.spec);
    if (!parsed.success) throw new TerminalError(`invalid spec: ${parsed.error.message}`);
    const spec = parsed.data;
    const namespace = obj.metadata.namespace ?? '';
    const name = obj.metadata.name ?? '';
    const uid = obj.metadata.uid ?? '';
    const generation = obj.metadata.generation;
    const previous = obj.status;

    let workload: Workload | undefined =
      c.workloads.get(name, namespace) ?? (await client.find(Workloads, name, namespace));
    let blocker: Blocker | undefined;
    if (workload && !ownedBy(workload, uid)) {
      blocker = {
        reason: 'WorkloadConflict',
        message: `an apps/v1 Deployment named ${name} that modelplane does not own exists in ${namespace}; rename or delete it`,
      };
      workload = undefined;
    }

    const versionObj = c.modelVersions.get(spec.version, namespace);
    const hardwareObj = c.hardwareClasses.get(spec.hardware);
    const versionSpec = versionObj ? ModelVersionSpecSchema.safeParse(versionObj.spec) : undefined;
    const hardwareSpec = hardwareObj ? HardwareClassSpecSchema.safeParse(hardwareObj.spec) : undefined;
    const id = versionSpec?.success ? versionId(namespace, versionSpec.data) : undefined;
    if (blocker) {
      // reported as is
    } else if (!versionSpec?.success) {
      blocker = {
        reason: REASON.VersionNotFound,
        message: `ModelVersion ${spec.version} does not exist in ${namespace}; create it or set spec.version to an existing version of ${spec.model}`,
      };
    } else if (versionSpec.data.model !== spec.model) {
      blocker = {
        reason: REASON.VersionModelMismatch,
        message: `ModelVersion ${spec.version} is a version of ${versionSpec.data.model}, not of ${spec.model}; fix spec.model or spec.version`,
      };
    } else if (!hardwareSpec?.success) {
      blocker = {
        reason: REASON.HardwareClassNotFound,
        message: `HardwareClass ${spec.hardware} does not exist; create it or set spec.hardware to one of: ${
          c.hardwareClasses
            .list()
            .map((h) => h.metadata.name)
            .sort()
            .join(', ') || '(none defined)'
        }`,
      };
    }

    const hash = releaseHash(spec);
    const mine = written.get(key);
    let release: number;
    let podRelease: number | undefined;
    let cut = false;
    if (mine && mine.uid === uid && mine.generation === generation && mine.hash === hash) {
      release = mine.release;
    } else {
      ({ release, cut } = releaseFor(hash, workload, previous, generation));
    }

    if (!blocker && versionSpec?.success && hardwareSpec?.success && id) {
      // spec.replicas belongs to the autoscaler: set only on creation, kept until it takes over.
      const autoscalerOwns =
        workload !== undefined && ownsField(workload, AUTOSCALER_FIELD_MANAGER, ['spec', 'replicas']);
      const replicas = replicasToApply(spec, workload, autoscalerOwns);
      const input: WorkloadInput = {
        owner: { name, namespace, uid },
        spec,
        version: { name: spec.version, id, spec: versionSpec.data },
        hardware: { name: spec.hardware, spec: hardwareSpec.data },
        release,
        releaseHash: hash,
        sidecarImage: opts.sidecarImage,
        operatorKey: opts.sidecarKey ? await opts.sidecarKey.publicKey() : undefined,
        webhookAllowCidrs: opts.webhookAllowCidrs,
        maxOutputBytes: opts.maxOutputBytes,
        replicas,
      };
      // A release that leaves the pod template as it is keeps the pods: they keep the label
      // of the release that started them.
      const templateHash = podTemplateHash(input);
      podRelease =
        mine && mine.uid === uid && mine.release === release && mine.templateHash === templateHash
          ? mine.podRelease
          : podReleaseFor(templateHash, workload, release);
      input.podRelease = podRelease;
      const desired = desiredWorkload(input);
      // Keeping the count as read must not undo a change the autoscaler made since: the
      // resourceVersion makes the API server refuse the apply (409) if the cache was stale.
      if (workload && replicas !== undefined && desired.metadata)
        desired.metadata.resourceVersion = workload.metadata?.resourceVersion;
      workload = await apply(client, Workloads, desired, {
        fieldManager: FIELD_MANAGER,
        current: workload,
      });
      written.set(key, { uid, generation, hash, release, templateHash, podRelease });
      if (cut) {
        const rolls = podRelease === release;
        ctx.log.info({ release, podRelease, version: spec.version }, 'release cut');
        // The first release is the Deployment's creation: its Ready (or Degraded) Event says
        // what came of it; an Event for each later release says what changed.
        if (previous?.release !== undefined)
          void events.normal(
            obj,
            rolls ? REASON.RollingOut : REASON.Released,
            `release ${release}: version ${spec.version} on ${spec.hardware}, ${spec.minInstances}–${spec.maxInstances} instances${
              rolls ? '' : `; the pods of release ${podRelease} keep running`
            }`,
            'Release',
          );
      }
    } else if (cut) {
      // Nothing was applied: the release stays the last one that ran.
      release = previous?.release ?? 0;
    }

    const pods = podsOf(c.pods, namespace, name);
    const status = deploymentStatus({
      generation,
      spec,
      previous,
      release,
      podRelease,
      versionId: blocker ? undefined : id,
      hardware: spec.hardware,
      blocker,
      workload,
      pods,
      now: now(),
    });
    const wrote = await applyStatus(client, Deployments, obj, status, { fieldManager: FIELD_MANAGER });
    if (wrote) recordTransitions(events, obj, previous, status);
  }

  return manager.addController({
    name: 'deployment',
    for: c.deployments,
    watches: [
      // The workloads it makes: kube-controller-manager writes a new one's status several
      // times as its pod comes up; coalesced like the pods'.
      {
        source: c.workloads,
        map: (w) => controllerOwnerKeys(w, Deployments),
        delayMs: POD_DELAY_MS,
      },
      {
        source: c.pods,
        map: (pod) => {
          const owner = pod.metadata?.labels?.[LABEL.deployment];
          return owner && pod.metadata?.namespace ? [`${pod.metadata.namespace}/${owner}`] : [];
        },
        // A pod goes through several states within a second or two (created, placed,
        // started, ready): one reconcile a second writes the status they lead to, not each.
        delayMs: POD_DELAY_MS,
      },
      // Only their spec matters here: their status writes (a HardwareClass's nodes, say) would
      // otherwise reconcile every Deployment on them.
      {
        source: c.modelVersions,
        map: (v) =>
          keysWhere(c.deployments.list(v.metadata?.namespace), (d) => d.spec?.version, v.metadata?.name),
        changed: specChanged,
      },
      {
        source: c.hardwareClasses,
        map: (h) => keysWhere(c.deployments.list(), (d) => d.spec?.hardware, h.metadata?.name),
        changed: specChanged,
      },
    ],
    reconcile,
    workers: opts.workers,
    resyncPeriodMs: opts.resyncPeriodMs,
  });
}

function recordTransitions(
  events: EventRecorder,
  obj: Stored<Deployment>,
  previous: DeploymentStatus | undefined,
  status: DeploymentStatus,
): void {
  for (const cond of transitions(previous?.conditions, status.conditions ?? [])) {
    if (cond.type === CONDITION.Degraded && cond.status === 'True') {
      void events.warning(obj, cond.reason, cond.message);
    } else if (cond.type === CONDITION.Degraded && findCondition(previous?.conditions, CONDITION.Degraded)) {
      void events.normal(
        obj,
        'Recovered',
        `no longer ${findCondition(previous?.conditions, CONDITION.Degraded)?.reason}: ${cond.message}`,
      );
    } else if (cond.type === CONDITION.Ready && cond.status === 'True') {
      void events.normal(obj, cond.reason, cond.message);
    }
  }
}
