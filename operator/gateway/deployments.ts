/**
 * `/deployments`: modelplane Deployments, shaped as the prediction API returns them. They are
 * ordinary custom resources (`kubectl get mpdeploy`): the gateway creates them, changes only
 * the fields a PATCH names (a JSON merge patch under the field manager `modelplane-gateway`,
 * never forcing ownership and writing nothing when nothing changes), and deletes them.
 */
import { API_VERSION, KIND } from '../../crds/index.ts';
import { methodNotAllowed } from '../../lib/express.ts';
import { HttpError, sendJson } from '../../lib/http.ts';
import { Deployments } from '../resources.ts';
import { ApiError, type KubeClient } from '../runtime/index.ts';
import { caughtUp, type GatewayCaches, type StoredDeployment } from './caches.ts';
import {
  checkName,
  createObject,
  GATEWAY_FIELD_MANAGER,
  HEX64,
  hardwareField,
  type InvalidField,
  invalid,
  newestFirstPage,
  notFound,
  objectBody,
  ownerName,
} from './common.ts';
import { context } from './server.ts';
import type { Routes } from './types.ts';

/** What Kubernetes accepts as a namespace (a DNS label) and as an object's name (a DNS subdomain). */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * The release a caller sees: `status.release`, or one more than it while the operator has
 * not yet acted on the latest spec (every spec change is a new release).
 */
export function releaseNumber(d: StoredDeployment): number {
  const release = d.status?.release ?? 0;
  const behind =
    d.status?.observedGeneration === undefined || d.status.observedGeneration < (d.metadata.generation ?? 1);
  return behind ? release + 1 : Math.max(release, 1);
}

export function deploymentView(d: StoredDeployment, caches: GatewayCaches) {
  const owner = d.metadata.namespace ?? '';
  const version = caches.modelVersions.get(d.spec.version, owner);
  return {
    owner,
    name: d.metadata.name ?? '',
    current_release: {
      number: releaseNumber(d),
      model: `${owner}/${d.spec.model}`,
      version: version?.status?.id ?? d.status?.versionId ?? '',
      created_at: d.status?.releasedAt ?? d.metadata.creationTimestamp ?? new Date(0).toISOString(),
      created_by: { type: 'organization', username: owner, name: owner },
      configuration: {
        hardware: d.spec.hardware,
        min_instances: d.spec.minInstances ?? 0,
        max_instances: d.spec.maxInstances ?? 1,
      },
    },
  };
}

function instances(
  body: Record<string, unknown>,
  field: 'min_instances' | 'max_instances',
  bad: InvalidField[],
) {
  const v = body[field];
  if (v === undefined) return undefined;
  const min = field === 'min_instances' ? 0 : 1;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > 1000) {
    bad.push({ type: 'range', field, description: `${field} must be a whole number from ${min} to 1000` });
    return undefined;
  }
  return v;
}

export function deploymentRoutes(deps: {
  caches: GatewayCaches;
  client: KubeClient;
  pageSize?: number;
}): Routes {
  const { caches, client, pageSize } = deps;

  /** Names of the version (by id) and hardware (by SKU or alias) a body asks for. */
  const resolve = (owner: string, model: string, body: Record<string, unknown>, bad: InvalidField[]) => {
    let version: string | undefined;
    if (body.version !== undefined) {
      const id = typeof body.version === 'string' ? body.version.split(':').pop() : undefined;
      const v = id && HEX64.test(id) ? caches.versionById(owner, id, model) : undefined;
      if (!v)
        bad.push({
          type: 'not_found',
          field: 'version',
          description: `version must be the 64-hex id of a version of ${owner}/${model}`,
        });
      version = v?.metadata.name;
    }
    const hardware = body.hardware !== undefined ? hardwareField(caches, body.hardware, bad) : undefined;
    return { version, hardware };
  };

  /** The Deployment, fresh from the API server (404 problem when missing). */
  const current = async (owner: string, name: string) => {
    const d = caches.deployments.get(name, owner) ?? (await client.find(Deployments, name, owner));
    if (!d) throw notFound(`the deployment ${owner}/${name}`);
    return d;
  };

  return (api, { authenticated, json }) => {
    api
      .route('/deployments')
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const allowed = await ctx.namespacesFor('list', 'deployments');
        const visible = caches.deployments
          .list()
          .filter((d) => allowed === 'all' || allowed.includes(d.metadata.namespace ?? ''));
        const page = newestFirstPage(visible, ctx.url, pageSize);
        sendJson(res, 200, { ...page, results: page.results.map((d) => deploymentView(d, caches)) });
      })
      .post(authenticated, json, async (req, res) => {
        const body = objectBody(req);
        const bad: InvalidField[] = [];
        checkName(body, bad);
        const model = ownerName(body.model);
        if (!model) bad.push({ type: 'format', field: 'model', description: 'model must be "owner/name"' });
        if (body.version === undefined)
          bad.push({ type: 'required', field: 'version', description: 'version is required' });
        if (body.hardware === undefined)
          bad.push({ type: 'required', field: 'hardware', description: 'hardware is required' });
        const min = instances(body, 'min_instances', bad) ?? 0;
        const max = instances(body, 'max_instances', bad) ?? Math.max(1, min);
        if (min > max)
          bad.push({
            type: 'range',
            field: 'min_instances',
            description: 'min_instances must be at most max_instances',
          });
        if (!model) throw invalid(bad);
        const { owner } = model;
        await context(res).authorize('create', 'deployments', owner);
        if (!caches.models.get(model.name, owner)) throw notFound(`the model ${owner}/${model.name}`);
        const { version, hardware } = resolve(owner, model.name, body, bad);
        if (bad.length || !version || !hardware) throw invalid(bad);
        const name = body.name as string;
        const created = await createObject(
          client,
          Deployments,
          caches.deployments,
          {
            apiVersion: API_VERSION,
            kind: KIND.Deployment,
            metadata: { name, namespace: owner },
            spec: { model: model.name, version, hardware, minInstances: min, maxInstances: max },
          } as unknown as StoredDeployment,
          `the deployment ${owner}/${name}`,
        );
        sendJson(res, 200, deploymentView(created, caches));
      })
      .all(methodNotAllowed);

    /** A deployment's namespace and name from the path; what no object can be named is a 404. */
    const objectName = (p: { owner?: string; name?: string }) => {
      const { owner = '', name = '' } = p;
      if (!DNS_LABEL.test(owner) || !DNS_SUBDOMAIN.test(name) || name.length > 253)
        throw notFound(`the deployment ${owner}/${name}`);
      return { owner, name };
    };

    api
      .route('/deployments/:owner/:name')
      .get(authenticated, async (req, res) => {
        const { owner, name } = objectName(req.params);
        await context(res).authorize('get', 'deployments', owner);
        sendJson(res, 200, deploymentView(await current(owner, name), caches));
      })
      .patch(authenticated, json, async (req, res) => {
        const { owner, name } = objectName(req.params);
        const body = objectBody(req);
        await context(res).authorize('patch', 'deployments', owner);
        // Read fresh and patch conditionally on that resourceVersion; when something else
        // wrote in between (the operator writes status), read again and recompute.
        let out: StoredDeployment | undefined;
        for (let attempt = 1; !out; attempt++) {
          const d = await client.find(Deployments, name, owner);
          if (!d) throw notFound(`the deployment ${owner}/${name}`);
          const bad: InvalidField[] = [];
          const min = instances(body, 'min_instances', bad);
          const max = instances(body, 'max_instances', bad);
          const { version, hardware } = resolve(owner, d.spec.model, body, bad);
          const wantMin = min ?? d.spec.minInstances ?? 0;
          const wantMax = max ?? d.spec.maxInstances ?? 1;
          if (!bad.length && wantMin > wantMax)
            bad.push({
              type: 'range',
              field: 'min_instances',
              description: 'min_instances must be at most max_instances',
            });
          if (bad.length) throw invalid(bad);
          const patch: Record<string, unknown> = {};
          if (version !== undefined && version !== d.spec.version) patch.version = version;
          if (hardware !== undefined && hardware !== d.spec.hardware) patch.hardware = hardware;
          if (min !== undefined && min !== d.spec.minInstances) patch.minInstances = min;
          if (max !== undefined && max !== d.spec.maxInstances) patch.maxInstances = max;
          if (!Object.keys(patch).length) {
            out = d; // nothing changes: nothing is written
            break;
          }
          try {
            out = await client.mergePatch(
              Deployments,
              name,
              owner,
              { metadata: { resourceVersion: d.metadata.resourceVersion }, spec: patch },
              { fieldManager: GATEWAY_FIELD_MANAGER },
            );
          } catch (err) {
            if (!(err instanceof ApiError && err.code === 409)) throw err;
            if (attempt >= 5)
              throw new HttpError(
                409,
                'Conflict',
                `the deployment ${owner}/${name} keeps changing; try again`,
              );
          }
          if (out) await caughtUp(caches.deployments, `${owner}/${name}`, out.metadata.resourceVersion);
        }
        sendJson(res, 200, deploymentView(out, caches));
      })
      .delete(authenticated, async (req, res) => {
        const { owner, name } = objectName(req.params);
        await context(res).authorize('delete', 'deployments', owner);
        try {
          await client.delete(Deployments, name, owner);
        } catch (err) {
          if (err instanceof ApiError && err.code === 404) throw notFound(`the deployment ${owner}/${name}`);
          throw err;
        }
        await caughtUp(caches.deployments, `${owner}/${name}`, undefined);
        res.writeHead(204).end();
      })
      .all(methodNotAllowed);
  };
}
