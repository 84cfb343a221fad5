/**
 * The Model and ModelVersion controllers: a version's id (a content hash) and whether its
 * Model exists; a model's latest version, version count and the Deployments running it.
 */
import {
  CONDITION,
  ModelSpecSchema,
  type ModelStatus,
  ModelVersionSpecSchema,
  type ModelVersionStatus,
  REASON,
} from '../../crds/index.ts';
import { type Meta, Models, ModelVersions } from '../resources.ts';
import { applyStatus, type Manager, specChanged, TerminalError } from '../runtime/index.ts';
import { type Caches, keysWhere } from './caches.ts';
import { mergeConditions, type Observation } from './conditions.ts';
import { CONTROLLER, fieldManager } from './names.ts';
import { versionId } from './version-id.ts';

interface Options {
  workers?: number;
  resyncPeriodMs?: number;
  now?: () => Date;
}

/** Newest first: by creation time, then by name. */
export function newestFirst(a: { metadata: Meta }, b: { metadata: Meta }): number {
  const ta = a.metadata.creationTimestamp ?? '';
  const tb = b.metadata.creationTimestamp ?? '';
  if (ta !== tb) return ta < tb ? 1 : -1;
  const na = a.metadata.name ?? '';
  const nb = b.metadata.name ?? '';
  return na < nb ? 1 : na > nb ? -1 : 0;
}

export function addModelVersionController(manager: Manager, c: Caches, opts: Options) {
  const client = manager.leaderClient;
  const now = opts.now ?? (() => new Date());
  return manager.addController({
    name: 'modelversion',
    for: c.modelVersions,
    watches: [
      {
        source: c.models,
        map: (m) =>
          keysWhere(c.modelVersions.list(m.metadata?.namespace), (v) => v.spec?.model, m.metadata?.name),
      },
    ],
    workers: opts.workers,
    resyncPeriodMs: opts.resyncPeriodMs,
    reconcile: async (key) => {
      const obj = c.modelVersions.getByKey(key);
      if (!obj || obj.metadata.deletionTimestamp) return;
      const parsed = ModelVersionSpecSchema.safeParse(obj.spec);
      if (!parsed.success) throw new TerminalError(`invalid spec: ${parsed.error.message}`);
      const spec = parsed.data;
      const namespace = obj.metadata.namespace ?? '';
      const model = c.models.get(spec.model, namespace);
      const ready: Observation = model
        ? {
            type: CONDITION.Ready,
            status: 'True',
            reason: REASON.Ready,
            message: `a version of ${spec.model}`,
          }
        : {
            type: CONDITION.Ready,
            status: 'False',
            reason: REASON.ModelNotFound,
            message: `Model ${spec.model} does not exist in ${namespace}; create it`,
          };
      const status: ModelVersionStatus = {
        observedGeneration: obj.metadata.generation,
        id: versionId(namespace, spec),
        conditions: mergeConditions(obj.status?.conditions, [ready], obj.metadata.generation, now()),
      };
      if (spec.openapiSchema) status.openapiSchema = spec.openapiSchema;
      if (spec.cogVersion) status.cogVersion = spec.cogVersion;
      await applyStatus(client, ModelVersions, obj, status, {
        fieldManager: fieldManager(CONTROLLER.modelVersion),
      });
    },
  });
}

/** How long a Model waits after a change of its versions or deployments before its status is written. */
const MODEL_BURST_MS = 1_000;

export function addModelController(manager: Manager, c: Caches, opts: Options) {
  const client = manager.leaderClient;
  const now = opts.now ?? (() => new Date());
  const modelKey = (o: { metadata?: { namespace?: string }; spec?: { model?: string } }) =>
    o.spec?.model && o.metadata?.namespace ? [`${o.metadata.namespace}/${o.spec.model}`] : [];
  return manager.addController({
    name: 'model',
    for: c.models,
    // Its status counts versions and names deployments: their status writes do not concern
    // it, and a burst of new Deployments of one Model is one status write a second.
    watches: [
      { source: c.modelVersions, map: modelKey, changed: specChanged, delayMs: MODEL_BURST_MS },
      { source: c.deployments, map: modelKey, changed: specChanged, delayMs: MODEL_BURST_MS },
    ],
    workers: opts.workers,
    resyncPeriodMs: opts.resyncPeriodMs,
    reconcile: async (key) => {
      const obj = c.models.getByKey(key);
      if (!obj || obj.metadata.deletionTimestamp) return;
      const parsed = ModelSpecSchema.safeParse(obj.spec ?? {});
      if (!parsed.success) throw new TerminalError(`invalid spec: ${parsed.error.message}`);
      const spec = parsed.data;
      const namespace = obj.metadata.namespace ?? '';
      const name = obj.metadata.name ?? '';
      const versions = c.modelVersions
        .list(namespace)
        .filter((v) => v.spec?.model === name)
        .sort(newestFirst);
      const deployments = c.deployments
        .list(namespace)
        .filter((d) => d.spec?.model === name)
        .map((d) => d.metadata.name ?? '')
        .sort();
      const latest = versions[0];
      const latestSpec = latest ? ModelVersionSpecSchema.safeParse(latest.spec) : undefined;
      let ready: Observation;
      if (!latest) {
        ready = {
          type: CONDITION.Ready,
          status: 'False',
          reason: REASON.VersionNotFound,
          message: `no ModelVersion in ${namespace} has spec.model: ${name}; create one`,
        };
      } else if (spec.deployment && !c.deployments.get(spec.deployment, namespace)) {
        ready = {
          type: CONDITION.Ready,
          status: 'False',
          reason: REASON.DeploymentNotFound,
          message: `spec.deployment names ${spec.deployment}, which does not exist in ${namespace}; create it or fix spec.deployment`,
        };
      } else {
        ready = {
          type: CONDITION.Ready,
          status: 'True',
          reason: REASON.Ready,
          message: `${versions.length} versions, the latest ${latest.metadata.name}`,
        };
      }
      const status: ModelStatus = {
        observedGeneration: obj.metadata.generation,
        versionCount: versions.length,
        deployments,
        conditions: mergeConditions(obj.status?.conditions, [ready], obj.metadata.generation, now()),
      };
      if (latest) status.latestVersion = latest.metadata.name;
      if (latestSpec?.success) status.latestVersionId = versionId(namespace, latestSpec.data);
      await applyStatus(client, Models, obj, status, { fieldManager: fieldManager(CONTROLLER.model) });
    },
  });
}
