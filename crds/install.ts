/**
 * Installs (or updates) the API's CRDs on a cluster with server-side apply, then waits until
 * the API server serves every kind: each CRD Established with its names accepted, discovery
 * listing every resource, and a list of each resource answering.
 */
import {
  ApiextensionsV1Api,
  ApisApi,
  type Configuration,
  CustomObjectsApi,
  createConfiguration,
  KubeConfig,
  KubernetesObjectApi,
  PatchStrategy,
  ServerConfiguration,
} from '@kubernetes/client-node';
import { GROUP, VERSION } from './constants.ts';
import { type CustomResourceDefinition, crds } from './crd.ts';

export const CRD_FIELD_MANAGER = 'modelplane-crds';

export interface InstallOptions {
  /** How long to wait for the CRDs to be served (default 60 s). */
  timeoutMs?: number;
  fieldManager?: string;
}

function kubeConfig(kubeconfig: string | KubeConfig): KubeConfig {
  if (kubeconfig instanceof KubeConfig) return kubeconfig;
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfig);
  return kc;
}

function established(crd: { status?: { conditions?: Array<{ type: string; status: string }> } }): boolean {
  const cond = (t: string) => crd.status?.conditions?.find((c) => c.type === t)?.status === 'True';
  return cond('Established') && cond('NamesAccepted');
}

/**
 * A client configuration that sends `body` exactly as given. The client's own serializer
 * knows CustomResourceDefinition as a typed model and drops keys it spells differently
 * (x-kubernetes-validations, x-kubernetes-int-or-string, ...); the generated JSON is sent as is.
 */
function sendingExactly(kc: KubeConfig, body: unknown): Configuration {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new Error('installing the modelplane CRDs: the kubeconfig has no current cluster');
  return createConfiguration({
    baseServer: new ServerConfiguration(cluster.server, {}),
    authMethods: { default: kc },
    promiseMiddleware: [
      {
        pre: async (ctx) => {
          if (ctx.getHttpMethod() === 'PATCH') ctx.setBody(JSON.stringify(body));
          return ctx;
        },
        post: async (res) => res,
      },
    ],
  });
}

/** Applies every CRD and resolves once all of them are served. Returns the CRDs applied. */
export async function installCrds(
  kubeconfig: string | KubeConfig,
  opts: InstallOptions = {},
): Promise<CustomResourceDefinition[]> {
  const kc = kubeConfig(kubeconfig);
  const ext = kc.makeApiClient(ApiextensionsV1Api);
  const custom = kc.makeApiClient(CustomObjectsApi);
  const apis = kc.makeApiClient(ApisApi);
  const want = crds();
  for (const crd of want) {
    await new KubernetesObjectApi(sendingExactly(kc, crd)).patch(
      crd,
      undefined,
      undefined,
      opts.fieldManager ?? CRD_FIELD_MANAGER,
      true,
      PatchStrategy.ServerSideApply,
    );
  }
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
  let waitingFor = '';
  for (;;) {
    try {
      waitingFor = '';
      for (const crd of want) {
        const got = await ext.readCustomResourceDefinition({ name: crd.metadata.name });
        if (!established(got)) {
          waitingFor = `${crd.metadata.name} to be Established`;
          break;
        }
      }
      if (!waitingFor) {
        const groups = await apis.getAPIVersions();
        const served = groups.groups.some(
          (g) => g.name === GROUP && g.versions.some((v) => v.version === VERSION),
        );
        if (!served) waitingFor = `discovery to list ${GROUP}/${VERSION}`;
      }
      if (!waitingFor) {
        const resources = await custom.getAPIResources({ group: GROUP, version: VERSION });
        const names = new Set(resources.resources.map((r) => r.name));
        const missing = want.map((c) => c.spec.names.plural).filter((p) => !names.has(p));
        if (missing.length > 0) waitingFor = `discovery to list ${missing.join(', ')}`;
      }
      if (!waitingFor) {
        // Served: the storage behind each resource answers (right after Established it may
        // still answer 429 "storage is (re)initializing").
        for (const crd of want) {
          await custom.listClusterCustomObject({
            group: GROUP,
            version: VERSION,
            plural: crd.spec.names.plural,
            limit: 1,
          });
        }
      }
    } catch (err) {
      waitingFor = `the API server: ${(err as Error).message}`;
    }
    if (!waitingFor) return want;
    if (Date.now() > deadline)
      throw new Error(`installing the modelplane CRDs: timed out waiting for ${waitingFor}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
