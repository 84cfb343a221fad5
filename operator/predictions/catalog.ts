/**
 * What the prediction engine needs to know about deployments: which version a deployment
 * runs, its input schema, concurrency and queue bounds, why it has no ready instance; which
 * deployment serves a model. Read from informers in the operator; given directly in tests.
 */
import { CONDITION, type Deployment, type Model, type ModelVersion } from '../../crds/index.ts';
import type { Informer, KubeObject } from '../runtime/index.ts';

export interface DeploymentView {
  namespace: string;
  name: string;
  /** Name of the Model (in the namespace). */
  model: string;
  /** The 64-hex id of the version the current release runs ('' when not known yet). */
  versionId: string;
  /** The version's OpenAPI document (spec.openapiSchema ?? status.openapiSchema). */
  openapi?: unknown;
  /** Predictions one instance runs at once. */
  maxConcurrency: number;
  maxLength: number;
  maxWaitSeconds: number;
  /** Ready instances as the Deployment's status reports them. */
  readyInstances?: number;
  /** The Deployment's Ready / Degraded condition messages, for errors. */
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}

export interface Catalog {
  deployment(namespace: string, name: string): DeploymentView | undefined;
  /** Deployments in `namespaces` whose current release runs version `versionId`. */
  deploymentsRunning(versionId: string, namespaces: 'all' | readonly string[]): DeploymentView[];
  /** The Model `namespace/name`: whether it exists and which deployment serves it. */
  model(namespace: string, name: string): { deployment?: string } | undefined;
}

/** Why a deployment has no ready instance, from its conditions. */
export function notReadyReason(d: DeploymentView | undefined): string {
  if (!d) return 'the deployment no longer exists';
  const conds = d.conditions ?? [];
  const parts: string[] = [];
  const degraded = conds.find((c) => c.type === CONDITION.Degraded && c.status === 'True');
  if (degraded?.message) parts.push(`${degraded.reason ?? 'Degraded'}: ${degraded.message}`);
  const ready = conds.find((c) => c.type === CONDITION.Ready);
  if (ready && ready.status !== 'True' && ready.message && ready.message !== degraded?.message)
    parts.push(`${ready.reason ?? 'NotReady'}: ${ready.message}`);
  if (!parts.length) return 'no instance became ready';
  return parts.join('; ');
}

/** A catalog of views given directly (tests, local runs). */
export class StaticCatalog implements Catalog {
  private readonly deployments = new Map<string, DeploymentView>();
  private readonly models = new Map<string, { deployment?: string }>();

  setDeployment(d: DeploymentView): void {
    this.deployments.set(`${d.namespace}/${d.name}`, d);
  }

  setModel(namespace: string, name: string, model: { deployment?: string }): void {
    this.models.set(`${namespace}/${name}`, model);
  }

  deployment(namespace: string, name: string): DeploymentView | undefined {
    return this.deployments.get(`${namespace}/${name}`);
  }

  deploymentsRunning(versionId: string, namespaces: 'all' | readonly string[]): DeploymentView[] {
    return [...this.deployments.values()].filter(
      (d) => d.versionId === versionId && (namespaces === 'all' || namespaces.includes(d.namespace)),
    );
  }

  model(namespace: string, name: string): { deployment?: string } | undefined {
    return this.models.get(`${namespace}/${name}`);
  }
}

type Obj<T> = KubeObject & Omit<T, 'metadata'> & { metadata: NonNullable<KubeObject['metadata']> };

export interface CatalogInformers {
  deployments: Informer<Obj<Deployment>>;
  models: Informer<Obj<Model>>;
  modelVersions: Informer<Obj<ModelVersion>>;
}

/** A catalog read from informers' caches (objects as the API server stores them, defaults applied). */
export class InformerCatalog implements Catalog {
  private readonly inf: CatalogInformers;

  constructor(informers: CatalogInformers) {
    this.inf = informers;
  }

  /**
   * Views made, by the Deployment object they were made of, with the ModelVersion object they
   * read: a change of either is a new object in its informer's cache, and so a new view.
   */
  private readonly views = new WeakMap<object, { version: object | undefined; view: DeploymentView }>();

  private view(d: Obj<Deployment>): DeploymentView {
    const ns = d.metadata.namespace ?? '';
    const version = this.inf.modelVersions.get(d.spec.version, ns);
    const made = this.views.get(d);
    if (made && made.version === version) return made.view;
    const view = this.make(d, ns, version);
    this.views.set(d, { version, view });
    return view;
  }

  private make(d: Obj<Deployment>, ns: string, version: Obj<ModelVersion> | undefined): DeploymentView {
    return {
      namespace: ns,
      name: d.metadata.name ?? '',
      model: d.spec.model,
      versionId: d.status?.versionId ?? version?.status?.id ?? '',
      openapi: version?.spec.openapiSchema ?? version?.status?.openapiSchema,
      maxConcurrency: version?.spec.maxConcurrency ?? 1,
      maxLength: d.spec.queue?.maxLength ?? 1000,
      maxWaitSeconds: d.spec.queue?.maxWaitSeconds ?? 300,
      readyInstances: d.status?.readyInstances,
      conditions: d.status?.conditions,
    };
  }

  deployment(namespace: string, name: string): DeploymentView | undefined {
    const d = this.inf.deployments.get(name, namespace);
    return d ? this.view(d) : undefined;
  }

  deploymentsRunning(versionId: string, namespaces: 'all' | readonly string[]): DeploymentView[] {
    const all =
      namespaces === 'all'
        ? this.inf.deployments.list()
        : namespaces.flatMap((ns) => this.inf.deployments.list(ns));
    return all.map((d) => this.view(d)).filter((v) => v.versionId === versionId);
  }

  model(namespace: string, name: string): { deployment?: string } | undefined {
    const m = this.inf.models.get(name, namespace);
    return m ? { deployment: m.spec.deployment } : undefined;
  }
}
