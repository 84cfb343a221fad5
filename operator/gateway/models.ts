/**
 * `/models`: Models and their ModelVersions, shaped as the prediction API returns them.
 *
 * A public Model (spec.visibility) and its versions are readable by every authenticated
 * caller; a private one by callers who may `get` (`list` for lists) models in its namespace.
 */
import { API_VERSION, KIND } from '../../crds/index.ts';
import { methodNotAllowed } from '../../lib/express.ts';
import { sendJson } from '../../lib/http.ts';
import { Models } from '../resources.ts';
import type { KubeClient } from '../runtime/index.ts';
import type { GatewayCaches, StoredModel, StoredModelVersion } from './caches.ts';
import {
  checkName,
  createObject,
  hardwareField,
  type InvalidField,
  invalid,
  isDnsLabel,
  newestFirstPage,
  notFound,
  objectBody,
} from './common.ts';
import { paginate } from './pagination.ts';
import { context } from './server.ts';
import type { RequestContext, Routes } from './types.ts';

export interface VersionView {
  id: string;
  created_at: string;
  cog_version: string;
  openapi_schema: Record<string, unknown>;
}

export function versionView(v: StoredModelVersion): VersionView {
  return {
    id: v.status?.id ?? '',
    created_at: v.metadata.creationTimestamp ?? new Date(0).toISOString(),
    cog_version: v.status?.cogVersion ?? v.spec.cogVersion ?? '',
    openapi_schema: (v.spec.openapiSchema ?? v.status?.openapiSchema ?? {}) as Record<string, unknown>,
  };
}

export function modelUrl(baseUrl: string, owner: string, name: string): string {
  return `${baseUrl}/models/${owner}/${name}`;
}

export function modelView(
  m: StoredModel,
  caches: GatewayCaches,
  baseUrl: string,
  runCount: (model: string) => number = () => 0,
) {
  const owner = m.metadata.namespace ?? '';
  const name = m.metadata.name ?? '';
  const named = m.status?.latestVersion ? caches.modelVersions.get(m.status.latestVersion, owner) : undefined;
  const latest = named?.status?.id ? named : caches.versionsOf(owner, name)[0];
  return {
    url: modelUrl(baseUrl, owner, name),
    owner,
    name,
    description: m.spec.description ?? null,
    visibility: m.spec.visibility ?? 'private',
    github_url: m.spec.githubUrl ?? null,
    paper_url: m.spec.paperUrl ?? null,
    license_url: m.spec.licenseUrl ?? null,
    cover_image_url: m.spec.coverImageUrl ?? null,
    run_count: runCount(`${owner}/${name}`),
    default_example: null,
    latest_version: latest ? versionView(latest) : null,
  };
}

/** The Model `owner/name` if the caller may read it: 403 or 404 otherwise (in that order for private ones). */
export async function readableModel(
  ctx: RequestContext,
  caches: GatewayCaches,
  owner: string,
  name: string,
): Promise<StoredModel> {
  const m = caches.models.get(name, owner);
  if (m?.spec.visibility === 'public') return m;
  await ctx.authorize('get', 'models', owner);
  if (!m) throw notFound(`the model ${owner}/${name}`);
  return m;
}

const URL_FIELDS = [
  ['github_url', 'githubUrl'],
  ['paper_url', 'paperUrl'],
  ['license_url', 'licenseUrl'],
  ['cover_image_url', 'coverImageUrl'],
] as const;

export function modelRoutes(deps: {
  caches: GatewayCaches;
  client: KubeClient;
  pageSize?: number;
  /** Predictions of a model (`namespace/name`) in the usage records, for run_count. */
  runCount?: (model: string) => number;
}): Routes {
  const { caches, client, pageSize, runCount } = deps;
  return (api, { authenticated, json }) => {
    api
      .route('/models')
      .get(authenticated, async (_req, res) => {
        const ctx = context(res);
        const allowed = await ctx.namespacesFor('list', 'models');
        const visible = caches.models
          .list()
          .filter(
            (m) =>
              m.spec.visibility === 'public' ||
              allowed === 'all' ||
              allowed.includes(m.metadata.namespace ?? ''),
          );
        const page = newestFirstPage(visible, ctx.url, pageSize);
        sendJson(res, 200, {
          ...page,
          results: page.results.map((m) => modelView(m, caches, ctx.baseUrl, runCount)),
        });
      })
      .post(authenticated, json, async (req, res) => {
        const ctx = context(res);
        const body = objectBody(req);
        const bad: InvalidField[] = [];
        if (!isDnsLabel(body.owner))
          bad.push({ type: 'format', field: 'owner', description: 'owner must be a namespace name' });
        checkName(body, bad);
        const visibility = body.visibility ?? 'private';
        if (visibility !== 'public' && visibility !== 'private')
          bad.push({
            type: 'enum',
            field: 'visibility',
            description: 'visibility must be "public" or "private"',
          });
        if (body.description !== undefined && typeof body.description !== 'string')
          bad.push({ type: 'type', field: 'description', description: 'description must be a string' });
        for (const [field] of URL_FIELDS) {
          const v = body[field];
          if (v !== undefined && v !== null && (typeof v !== 'string' || !/^https?:\/\/\S+$/.test(v)))
            bad.push({ type: 'format', field, description: `${field} must be an http(s) URL` });
        }
        let hardware: string | undefined;
        if (body.hardware !== undefined && body.hardware !== null) {
          hardware = hardwareField(caches, body.hardware, bad);
        }
        if (bad.length) throw invalid(bad);
        const owner = body.owner as string;
        const name = body.name as string;
        await ctx.authorize('create', 'models', owner);
        const spec: Record<string, unknown> = { visibility };
        if (typeof body.description === 'string') spec.description = body.description;
        if (hardware) spec.defaultHardware = hardware;
        for (const [field, key] of URL_FIELDS) if (typeof body[field] === 'string') spec[key] = body[field];
        const created = await createObject(
          client,
          Models,
          caches.models,
          {
            apiVersion: API_VERSION,
            kind: KIND.Model,
            metadata: { name, namespace: owner },
            spec,
          } as unknown as StoredModel,
          `the model ${owner}/${name}`,
        );
        sendJson(res, 201, modelView(created, caches, ctx.baseUrl, runCount));
      })
      .all(methodNotAllowed);

    api
      .route('/models/:owner/:name')
      .get(authenticated, async (req, res) => {
        const ctx = context(res);
        const { owner, name } = req.params;
        const m = await readableModel(ctx, caches, owner, name);
        sendJson(res, 200, modelView(m, caches, ctx.baseUrl, runCount));
      })
      .all(methodNotAllowed);

    api
      .route('/models/:owner/:name/versions')
      .get(authenticated, async (req, res) => {
        const ctx = context(res);
        const { owner, name } = req.params;
        await readableModel(ctx, caches, owner, name);
        const page = paginate(caches.versionsOf(owner, name), {
          url: ctx.url,
          key: (v) => `${v.metadata.creationTimestamp ?? ''}|${v.metadata.name}`,
          pageSize,
        });
        sendJson(res, 200, { ...page, results: page.results.map(versionView) });
      })
      .all(methodNotAllowed);

    api
      .route('/models/:owner/:name/versions/:id')
      .get(authenticated, async (req, res) => {
        const { owner, name, id } = req.params;
        await readableModel(context(res), caches, owner, name);
        const v = caches.versionById(owner, id, name);
        if (!v) throw notFound(`the version ${id} of ${owner}/${name}`);
        sendJson(res, 200, versionView(v));
      })
      .all(methodNotAllowed);
  };
}
