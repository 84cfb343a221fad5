/**
 * The Prediction controller: hands each Prediction object (kubectl, GitOps) to the prediction
 * engine (operator/predictions) in this process, and writes what happens to its status (at
 * most about once a second while it runs, at once when it ends).
 *
 * - The target resolves to a Deployment: spec.deployment; spec.model's spec.deployment; or a
 *   Deployment running spec.version (a ModelVersion name), the Model's own first. A target
 *   that does not resolve is retried for a minute (objects applied together arrive in any
 *   order), then the prediction fails saying why.
 * - The prediction's id is derived from the object's uid, so after an operator restart the
 *   controller finds it again by id, in the store or on the instance that runs it (the sidecar
 *   keeps it by id), whether or not the status shows it yet; one that had started and that no
 *   instance knows any more fails with the reason.
 * - One status write for a prediction that ends soon: the first is written when it ends, or
 *   once it has run `firstStatusMs` (then at most once every `statusIntervalMs`).
 * - spec.cancel: true cancels it; deleting the object cancels it too.
 * - ttlSecondsAfterFinished deletes the object that long after it finished.
 */

import {
  API_VERSION,
  CONDITION,
  KIND,
  PLURAL,
  type Prediction,
  type PredictionStatus,
  REASON,
} from '../../crds/index.ts';
import { type Clock, realClock, type Timer } from '../../lib/clock.ts';
import { HttpError } from '../../lib/http.ts';
import { isTerminal, predictionIdFor } from '../../lib/prediction.ts';
import type { PredictionEngine, StoredPrediction } from '../predictions/index.ts';
import type { Deployments, Models, ModelVersions, Stored } from '../resources.ts';
import { covers, type Informer, isNotFound, type Manager, resourceType } from '../runtime/index.ts';
import { mergeConditions, type Observation } from './conditions.ts';
import { CONTROLLER, fieldManager } from './names.ts';

export const Predictions = resourceType<Stored<Prediction>>({
  apiVersion: API_VERSION,
  kind: KIND.Prediction,
  plural: PLURAL.Prediction,
  namespaced: true,
});

export const PREDICTION_FIELD_MANAGER = fieldManager(CONTROLLER.prediction);
/** Largest output kept in status.output (serialized); larger ones are left at status.outputUrl. */
export const MAX_STATUS_OUTPUT = 32 * 1024;
const MAX_LOGS = 65536;
const MAX_ERROR = 32768;
/** The most characters of JSON of the model's own metrics that a status holds. */
const MAX_STATUS_METRICS = 8192;
const ORIGIN = 'prediction/';
/**
 * Objects created up to this long after the controller began reconciling may have been sent
 * by the replica that led before (clocks differ a little; creationTimestamp is in seconds).
 */
const SENT_BEFORE_MARGIN_MS = 5_000;

type Of<R> = R extends { readonly object?: infer T } ? NonNullable<T> : never;

export interface PredictionControllerOptions {
  engine: PredictionEngine;
  models: Informer<Of<typeof Models>>;
  modelVersions: Informer<Of<typeof ModelVersions>>;
  deployments: Informer<Of<typeof Deployments>>;
  /** The Predictions informer (default: the manager's, every namespace). */
  predictions?: Informer<Stored<Prediction>>;
  /** The API base URL (with `/v1`) the predictions' urls are built from. */
  apiBaseUrl?: string;
  workers?: number;
  /** Least time between two status writes of a running prediction (default 1 s). */
  statusIntervalMs?: number;
  /**
   * How long after it was sent a prediction that has not ended gets its first status write
   * (default `statusIntervalMs`): one that ends sooner is written once, finished.
   */
  firstStatusMs?: number;
  /** How long a target that does not resolve is retried (default 60 s). */
  resolveGraceMs?: number;
  /** Timestamps and the status throttle's timers (the real clock by default). */
  clock?: Clock;
}

type Target = { deployment: string; target: string } | { error: string; reason: string; target: string };

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());

/** The status a Prediction object shows for an engine record. */
export function statusFor(
  rec: StoredPrediction,
  obj: Stored<Prediction>,
  target: string,
  now: Date,
): PredictionStatus {
  const status: PredictionStatus = {
    observedGeneration: obj.metadata.generation,
    id: rec.id,
    target,
    status: rec.status,
    createdAt: iso(rec.createdAt),
  };
  if (/^[0-9a-f]{64}$/.test(rec.version)) status.versionId = rec.version;
  if (rec.startedAt !== undefined) status.startedAt = iso(rec.startedAt);
  if (rec.completedAt !== undefined) status.completedAt = iso(rec.completedAt);
  if (rec.output !== null && rec.output !== undefined) {
    if (JSON.stringify(rec.output).length <= MAX_STATUS_OUTPUT) status.output = rec.output;
    else status.outputUrl = `${rec.baseUrl}/predictions/${rec.id}`;
  }
  if (rec.logs) status.logs = rec.logs.length > MAX_LOGS ? rec.logs.slice(-MAX_LOGS) : rec.logs;
  if (rec.error) status.error = rec.error.slice(0, MAX_ERROR);
  const metrics: NonNullable<PredictionStatus['metrics']> = {};
  if (rec.predictTime !== undefined) metrics.predictTime = rec.predictTime;
  if (rec.completedAt !== undefined) metrics.totalTime = (rec.completedAt - rec.createdAt) / 1000;
  if (rec.startedAt !== undefined) metrics.queueTime = Math.max(0, (rec.startedAt - rec.createdAt) / 1000);
  if (rec.metrics && JSON.stringify(rec.metrics).length <= MAX_STATUS_METRICS) metrics.model = rec.metrics;
  if (Object.keys(metrics).length) status.metrics = metrics;
  if (rec.cost !== undefined) status.cost = rec.cost;
  status.conditions = mergeConditions(
    obj.status?.conditions,
    [readyCondition(rec)],
    obj.metadata.generation,
    now,
  );
  return status;
}

function readyCondition(rec: StoredPrediction): Observation {
  const where = `deployment ${rec.deployment}`;
  switch (rec.status) {
    case 'succeeded':
      return {
        type: CONDITION.Ready,
        status: 'True',
        reason: REASON.Succeeded,
        message: `succeeded on ${where}`,
      };
    case 'failed':
      return {
        type: CONDITION.Ready,
        status: 'False',
        reason: REASON.Failed,
        message: rec.error ?? 'failed',
      };
    case 'canceled':
      return { type: CONDITION.Ready, status: 'False', reason: REASON.Canceled, message: 'canceled' };
    case 'processing':
      return {
        type: CONDITION.Ready,
        status: 'False',
        reason: REASON.Processing,
        message: `running on instance ${rec.instance ?? '?'} of ${where}`,
      };
    default:
      return {
        type: CONDITION.Ready,
        status: 'False',
        reason: REASON.Queued,
        message: `waiting for an instance of ${where}`,
      };
  }
}

export function addPredictionController(manager: Manager, opts: PredictionControllerOptions) {
  const { engine } = opts;
  const client = manager.leaderClient;
  const predictions = opts.predictions ?? manager.informer(Predictions);
  const clock = opts.clock ?? realClock;
  const now = () => new Date(clock.now());
  const interval = opts.statusIntervalMs ?? 1000;
  const firstStatus = opts.firstStatusMs ?? interval;
  const grace = opts.resolveGraceMs ?? 60_000;
  const baseUrl = opts.apiBaseUrl ?? '';
  // Status follows the engine: at once when a prediction ends, else at most every interval
  // (counted from when it was sent: the first write waits for firstStatusMs, see reconcile).
  const last = new Map<string, number>();
  const timers = new Map<string, Timer>();
  // The final record of each prediction that ended here, by key, until its status is written:
  // the engine has let go of it by then, and asking the store again for it would cost a read.
  const ended = new Map<string, StoredPrediction>();
  // When this process sent each object's prediction (by uid), until its status is written.
  const sent = new Map<string, number>();
  // When this replica began to lead: an object created before (or about then) may have been
  // sent by the replica that led before it.
  let since: number | undefined;
  manager.addLeaderRunnable({
    name: 'prediction-term',
    run: (signal) => {
      since = clock.now();
      return new Promise<void>((resolve) => {
        if (signal.aborted) resolve();
        else signal.addEventListener('abort', () => resolve(), { once: true });
      });
    },
  });
  const idOf = (obj: Stored<Prediction>) => obj.status?.id ?? predictionIdFor(obj.metadata.uid ?? '');

  function resolve(obj: Stored<Prediction>): Target {
    const ns = obj.metadata.namespace ?? '';
    const spec = obj.spec;
    if (spec.deployment) {
      const target = `deployment/${spec.deployment}`;
      return opts.deployments.get(spec.deployment, ns)
        ? { deployment: spec.deployment, target }
        : {
            error: `Deployment ${spec.deployment} does not exist in ${ns}; create it`,
            reason: REASON.DeploymentNotFound,
            target,
          };
    }
    if (spec.model) {
      const target = `model/${spec.model}`;
      const model = opts.models.get(spec.model, ns);
      if (!model)
        return {
          error: `Model ${spec.model} does not exist in ${ns}; create it`,
          reason: REASON.ModelNotFound,
          target,
        };
      const d = model.spec.deployment;
      if (!d)
        return {
          error: `Model ${spec.model} has no deployment: set its spec.deployment, or target a Deployment`,
          reason: REASON.NoDeployment,
          target,
        };
      return opts.deployments.get(d, ns)
        ? { deployment: d, target }
        : {
            error: `Deployment ${d} (spec.deployment of Model ${spec.model}) does not exist in ${ns}`,
            reason: REASON.DeploymentNotFound,
            target,
          };
    }
    const name = spec.version ?? '';
    const target = `version/${name}`;
    const version = opts.modelVersions.get(name, ns);
    if (!version)
      return {
        error: `ModelVersion ${name} does not exist in ${ns}; create it`,
        reason: REASON.VersionNotFound,
        target,
      };
    const id = version.status?.id;
    const running = opts.deployments
      .list(ns)
      .filter((d) => (id && d.status?.versionId === id) || d.spec.version === name);
    const own = opts.models.get(version.spec.model, ns)?.spec.deployment;
    const d =
      running.find((x) => x.metadata.name === own) ??
      running.sort((a, b) => (a.metadata.name! < b.metadata.name! ? -1 : 1))[0];
    if (!d)
      return {
        error: `no Deployment in ${ns} runs ModelVersion ${name}; create one`,
        reason: REASON.NoDeployment,
        target,
      };
    return { deployment: d.metadata.name!, target };
  }

  async function write(obj: Stored<Prediction>, status: PredictionStatus): Promise<void> {
    if (covers(obj.status, status)) return;
    await client.apply(
      Predictions,
      {
        apiVersion: Predictions.apiVersion,
        kind: Predictions.kind,
        metadata: { name: obj.metadata.name, namespace: obj.metadata.namespace },
        status,
      } as never,
      { fieldManager: PREDICTION_FIELD_MANAGER, force: true, subresource: 'status' },
    );
  }

  function failed(obj: Stored<Prediction>, target: string, error: string, reason: string): PredictionStatus {
    const t = now();
    const at = t.toISOString();
    return {
      observedGeneration: obj.metadata.generation,
      ...(obj.status?.id ? { id: obj.status.id } : {}),
      target,
      status: 'failed',
      error: error.slice(0, MAX_ERROR),
      createdAt: obj.status?.createdAt ?? obj.metadata.creationTimestamp ?? at,
      completedAt: at,
      conditions: mergeConditions(
        obj.status?.conditions,
        [{ type: CONDITION.Ready, status: 'False', reason, message: error.slice(0, 32768) }],
        obj.metadata.generation,
        t,
      ),
    };
  }

  async function afterFinish(obj: Stored<Prediction>, completedAt: string | undefined) {
    const ttl = obj.spec.ttlSecondsAfterFinished;
    if (ttl === undefined) return undefined;
    const at = Date.parse(completedAt ?? '') || now().getTime();
    const left = at + ttl * 1000 - now().getTime();
    if (left > 0) return { requeueAfter: left };
    try {
      await client.delete(Predictions, obj.metadata.name!, obj.metadata.namespace);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    return undefined;
  }

  // Predictions of a namespace not finished yet: reconciled when its targets change (and the
  // controller starts only once these caches have synced).
  const unfinished = (o: { metadata?: { namespace?: string } }) =>
    predictions
      .list(o.metadata?.namespace)
      .filter((p) => !(p.status?.status && isTerminal(p.status.status)))
      .map((p) => `${p.metadata.namespace}/${p.metadata.name}`);
  const controller = manager.addController({
    name: 'prediction',
    for: predictions,
    watches: [
      { source: opts.deployments, map: unfinished },
      { source: opts.models, map: unfinished },
      { source: opts.modelVersions, map: unfinished },
    ],
    workers: opts.workers ?? 4,
    reconcile: async (key) => {
      const obj = predictions.getByKey(key);
      if (!obj || obj.metadata.deletionTimestamp) return;
      since ??= clock.now();
      const uid = obj.metadata.uid ?? key;
      const st = obj.status ?? {};
      if (st.status && isTerminal(st.status)) {
        sent.delete(uid);
        return afterFinish(obj, st.completedAt);
      }
      const origin = `${ORIGIN}${key}`;
      const id = idOf(obj);
      const created = Date.parse(st.createdAt ?? obj.metadata.creationTimestamp ?? '');
      // Sent before, by this process or maybe by one before it (else new: nothing to look for).
      const maybeSent =
        st.id !== undefined ||
        sent.has(uid) ||
        !Number.isFinite(created) ||
        created < since + SENT_BEFORE_MARGIN_MS;
      const final = ended.get(key);
      ended.delete(key);
      let rec = final?.id === id ? final : maybeSent ? await engine.get(id) : undefined;
      // The target as resolved when it was sent (the status may not show it yet).
      let target = st.target ?? (rec ? resolve(obj).target : '');
      if (!rec) {
        const t = resolve(obj);
        target = t.target;
        if ('error' in t) {
          const age = now().getTime() - (Date.parse(obj.metadata.creationTimestamp ?? '') || now().getTime());
          if (age < grace) {
            const waiting: PredictionStatus = {
              observedGeneration: obj.metadata.generation,
              ...(st.id ? { id: st.id } : {}),
              target,
              status: 'starting',
              createdAt: st.createdAt ?? obj.metadata.creationTimestamp,
              conditions: mergeConditions(
                st.conditions,
                [{ type: CONDITION.Ready, status: 'False', reason: t.reason, message: t.error }],
                obj.metadata.generation,
                now(),
              ),
            };
            await write(obj, waiting);
            return { requeueAfter: 2000 };
          }
          await write(obj, failed(obj, target, t.error, t.reason));
          return afterFinish(obj, undefined);
        }
        const req = {
          id,
          namespace: obj.metadata.namespace ?? '',
          deployment: t.deployment,
          input: obj.spec.input ?? {},
          webhook: obj.spec.webhook,
          webhookEvents: obj.spec.webhookEventsFilter,
          baseUrl,
          origin,
          createdAt: Number.isFinite(created) ? created : undefined,
        };
        if (maybeSent) {
          rec = await engine.attach(req);
          if (!rec && st.status === 'processing') {
            const error = `no instance of deployment ${t.deployment} knows prediction ${id} any more: the instance running it went away while the operator restarted`;
            await write(obj, failed(obj, target, error, REASON.Failed));
            return afterFinish(obj, undefined);
          }
        }
        if (!rec) {
          // Sent only while this replica leads (as a status write would be).
          client.fence?.check(`send prediction ${id} of ${key}`);
          try {
            sent.set(uid, clock.now());
            last.set(key, clock.now());
            rec = (await engine.create(req)).record;
          } catch (err) {
            sent.delete(uid);
            if (!(err instanceof HttpError)) throw err;
            if (err.status === 429 || err.status === 503) return { requeueAfter: 1000 };
            await write(
              obj,
              failed(obj, target, err.message, err.status === 422 ? 'InvalidInput' : REASON.Failed),
            );
            return afterFinish(obj, undefined);
          }
          manager.log.debug(
            { prediction: rec.id, object: key, deployment: t.deployment },
            'prediction sent to the gateway queue',
          );
        }
      }
      if (obj.spec.cancel && !isTerminal(rec.status)) rec = (await engine.cancel(rec.id)) ?? rec;
      const sentAt = sent.get(uid);
      if (!isTerminal(rec.status) && !obj.status?.status && sentAt !== undefined) {
        // Not ended yet, and sent a moment ago: its first status waits (it may be its last).
        const left = sentAt + firstStatus - clock.now();
        if (left > 0) return { requeueAfter: left };
      }
      const status = statusFor(rec, obj, target, now());
      await write(obj, status);
      if (isTerminal(rec.status)) return afterFinish(obj, status.completedAt);
      // Driven by another replica (it took the prediction over): its changes are read here.
      return engine.drives(rec.id) ? undefined : { requeueAfter: interval };
    },
  });

  engine.onChange((rec) => {
    if (!rec.origin?.startsWith(ORIGIN)) return;
    const key = rec.origin.slice(ORIGIN.length);
    const t = clock.now();
    const since = t - (last.get(key) ?? 0);
    if (isTerminal(rec.status) || since >= interval) {
      const timer = timers.get(key);
      timer?.cancel();
      timers.delete(key);
      last.set(key, t);
      if (isTerminal(rec.status)) {
        last.delete(key);
        ended.set(key, rec as StoredPrediction);
      }
      controller.enqueue(key);
    } else if (!timers.has(key)) {
      timers.set(
        key,
        clock.setTimer(() => {
          timers.delete(key);
          last.set(key, clock.now());
          controller.enqueue(key);
        }, interval - since),
      );
    }
  });
  predictions.addEventHandler({
    onDelete: (obj) => {
      const uid = obj.metadata.uid ?? '';
      const id = idOf(obj);
      ended.delete(`${obj.metadata.namespace}/${obj.metadata.name}`);
      const known = obj.status?.id !== undefined || sent.has(uid);
      sent.delete(uid);
      if (known)
        void engine
          .get(id)
          .then((rec) => (rec && !isTerminal(rec.status) ? engine.cancel(id) : undefined))
          .catch((err: unknown) =>
            manager.log.warn(
              { prediction: id, err: (err as Error).message },
              'cannot cancel the prediction of a deleted object',
            ),
          );
    },
  });
  return controller;
}
