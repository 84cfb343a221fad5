/**
 * The Model and ModelVersion controllers: a version's id (a content hash) and whether its
 * Model exists; a model's latest version, version count and the Deployments running it.
 */
import {
  CONDITION,
  LABEL,
  ModelSpecSchema,
  type ModelStatus,
  ModelVersionSpecSchema,
  type ModelVersionStatus,
  REASON,
} from '../../crds/index.ts';
import type { Pod } from '../resources.ts';
import { type Meta, Models, ModelVersions } from '../resources.ts';
import {
  applyStatus,
  type Manager,
  type ReconcileContext,
  type ReconcileResult,
  specChanged,
  TerminalError,
} from '../runtime/index.ts';
import { type Caches, keysWhere } from './caches.ts';
import { mergeConditions, type Observation } from './conditions.ts';
import { CONTROLLER, fieldManager, reportingController } from './names.ts';
import { needsSchema, readSchema, SchemaRefused, schemaSource } from './openapi-schema.ts';
import { versionId } from './version-id.ts';

interface Options {
  /** The `Authorization` header for a call to the sidecar at `base` (operator/sidecar-key.ts). */
  sidecarAuthorization?: ((base: string) => Promise<string>) | undefined;
  /** The largest OpenAPI document read from a running container (default 1 MiB). */
  maxSchemaBytes?: number;
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

function podReady(obj: unknown): boolean {
  const pod = obj as Pod | undefined;
  return pod?.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

/**
 * The ModelVersion controller. It is also the one that reads a version's OpenAPI document from
 * its running container when the version was applied without one: it is the one writer of the
 * version's status (one field manager owns status.openapiSchema, whether copied from the spec
 * or read), and it sees the pods that run the version through the shared pod informer — a
 * pod becoming Ready reconciles the version its `modelplane.dev/version` label names.
 */
export function addModelVersionController(manager: Manager, c: Caches, opts: Options) {
  const client = manager.leaderClient;
  const now = opts.now ?? (() => new Date());
  const events = manager.eventRecorder(reportingController(CONTROLLER.modelVersion));
  /** Versions (by uid) whose document was refused: any pod of theirs serves the same one. */
  const refused = new Map<string, string>();

  /** The document read from a Ready pod of the version, when it needs one and one runs. */
  async function readFromPod(
    obj: NonNullable<ReturnType<Caches['modelVersions']['getByKey']>>,
    id: string,
    ctx: ReconcileContext,
  ): Promise<{ schema?: Record<string, unknown>; retry?: boolean }> {
    const uid = obj.metadata.uid ?? '';
    if (!needsSchema(obj) || refused.has(uid)) return {};
    const namespace = obj.metadata.namespace ?? '';
    const name = obj.metadata.name ?? '';
    const source = schemaSource(
      c.pods.list(namespace),
      name,
      id,
      (d) => c.deployments.get(d, namespace)?.spec?.version,
    );
    if (!source) return {};
    try {
      const schema = await readSchema(source.base, {
        authorization: opts.sidecarAuthorization,
        maxBytes: opts.maxSchemaBytes,
        signal: ctx.signal,
      });
      ctx.log.info({ pod: source.pod }, 'OpenAPI schema read from the running container');
      void events.normal(
        obj,
        'SchemaRead',
        `OpenAPI schema read from pod ${source.pod} into status.openapiSchema`,
        'ReadSchema',
      );
      return { schema };
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (err instanceof SchemaRefused) {
        if (refused.size >= 10_000) refused.clear();
        refused.set(uid, message);
        ctx.log.warn({ pod: source.pod, err: message }, 'OpenAPI schema of the running container refused');
        void events.warning(
          obj,
          'SchemaRefused',
          `the OpenAPI schema pod ${source.pod} serves was not kept: ${message}; set spec.openapiSchema in a new version`,
          'ReadSchema',
        );
        return {};
      }
      ctx.log.info({ pod: source.pod, err: message }, 'OpenAPI schema not read yet; trying again');
      return { retry: true };
    }
  }

  return manager.addController({
    name: 'modelversion',
    for: c.modelVersions,
    watches: [
      {
        source: c.models,
        map: (m) =>
          keysWhere(c.modelVersions.list(m.metadata?.namespace), (v) => v.spec?.model, m.metadata?.name),
      },
      // A pod of a version that still needs its document, when it becomes Ready.
      {
        source: c.pods,
        map: (pod) => {
          const version = pod.metadata?.labels?.[LABEL.version];
          const namespace = pod.metadata?.namespace;
          if (!version || !namespace || !podReady(pod)) return [];
          const v = c.modelVersions.get(version, namespace);
          return v && needsSchema(v) ? [`${namespace}/${version}`] : [];
        },
        changed: (old, pod) =>
          podReady(old) !== podReady(pod) || (old as Pod).status?.podIP !== (pod as Pod).status?.podIP,
      },
    ],
    workers: opts.workers,
    resyncPeriodMs: opts.resyncPeriodMs,
    reconcile: async (key, ctx): Promise<ReconcileResult | undefined> => {
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
      // The spec's document wins; one read from the container is kept once set (versions are
      // immutable): it is carried on every write so that this field manager keeps owning it.
      const read = await readFromPod(obj, status.id ?? '', ctx);
      const openapi = spec.openapiSchema ?? obj.status?.openapiSchema ?? read.schema;
      if (openapi) status.openapiSchema = openapi;
      if (spec.cogVersion) status.cogVersion = spec.cogVersion;
      await applyStatus(client, ModelVersions, obj, status, {
        fieldManager: fieldManager(CONTROLLER.modelVersion),
      });
      // A read that failed (the pod went, its sidecar has no document: 503) is tried again
      // after the key's backoff, which grows while it keeps failing.
      return read.retry ? { requeue: true } : undefined;
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
