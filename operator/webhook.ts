/**
 * The webhook role: the admission webhook of webhook/ served on every replica, with what it
 * needs of Kubernetes — caches of the modelplane kinds (the API server asked on a miss), the
 * nodes of a GPU product (asked when a Deployment's hardware is checked), and its
 * certificates: the operator's own (a Secret in its namespace, the CA published to the
 * webhook configuration's caBundle) or cert-manager's (files in a folder).
 */

import type { Clock } from '../lib/clock.ts';
import { EgressPolicy } from '../lib/egress.ts';
import {
  type CertBundle,
  CertKeeper,
  type CertLifetimes,
  type CertStore,
  FileCertKeeper,
  type Lookup,
  StoreConflict,
  WebhookServer,
} from '../webhook/index.ts';
import type { OperatorConfig } from './config.ts';
import {
  Deployments,
  HardwareClasses,
  Models,
  ModelVersions,
  Nodes,
  type Secret,
  Secrets,
} from './resources.ts';
import { resourcePath } from './runtime/client.ts';
import {
  type Informer,
  isConflict,
  isNotFound,
  type KubeClient,
  type KubeObject,
  type Manager,
  type ResourceType,
  resourceType,
} from './runtime/index.ts';

/** The field manager the caBundle is applied under. */
export const CA_BUNDLE_MANAGER = 'modelplane-webhook-ca';
/** How long a live lookup may take: well inside the webhook's timeout. */
const LOOKUP_TIMEOUT_MS = 2_000;

interface WebhookConfiguration extends KubeObject {
  webhooks?: { name: string; clientConfig?: { caBundle?: string } }[];
}
export const WebhookConfigurations = resourceType<WebhookConfiguration>({
  apiVersion: 'admissionregistration.k8s.io/v1',
  kind: 'ValidatingWebhookConfiguration',
  plural: 'validatingwebhookconfigurations',
  namespaced: false,
});

/** Settings tests shorten. */
export interface WebhookTuning {
  lifetimes?: Partial<CertLifetimes>;
  /** How often certificates are checked (default 30 s). */
  intervalMs?: number;
  clock?: Clock;
}

export interface Webhook {
  server: WebhookServer;
  keeper: CertKeeper | FileCertKeeper;
}

export function addWebhook(
  manager: Manager,
  config: OperatorConfig['webhook'],
  tuning: WebhookTuning = {},
  /** Where Predictions' webhooks may go: a literal host it refuses is refused at admission. */
  egress: EgressPolicy = new EgressPolicy(),
): Webhook {
  const every = { everyReplica: true };
  const caches = {
    hardwareClasses: manager.informer(HardwareClasses, {}, every),
    models: manager.informer(Models, {}, every),
    modelVersions: manager.informer(ModelVersions, {}, every),
    deployments: manager.informer(Deployments, {}, every),
  };
  const client = manager.client;
  /** From the cache, else from the API server (undefined when it has none either). */
  const byName =
    <T extends KubeObject>(cache: Informer<T>, type: ResourceType<T>) =>
    async (namespace: string, name: string): Promise<T | undefined> => {
      const cached = cache.get(name, namespace);
      if (cached) return cached;
      try {
        return await client.request<T>('GET', resourcePath(type, { namespace, name }), {
          timeoutMs: LOOKUP_TIMEOUT_MS,
        });
      } catch (err) {
        if (isNotFound(err)) return undefined;
        throw err;
      }
    };
  const lookup: Lookup = {
    hardwareClasses: async (opts) => {
      if (!opts?.fresh && caches.hardwareClasses.hasSynced()) return caches.hardwareClasses.list();
      const list = await client.request<{ items?: KubeObject[] }>('GET', resourcePath(HardwareClasses), {
        timeoutMs: LOOKUP_TIMEOUT_MS,
      });
      return (list.items ?? []) as never;
    },
    model: byName(caches.models, Models) as Lookup['model'],
    modelVersion: byName(caches.modelVersions, ModelVersions) as Lookup['modelVersion'],
    deployment: byName(caches.deployments, Deployments) as Lookup['deployment'],
    gpuNodes: async (products) => {
      const list = await client.request<{ items?: KubeObject[] }>('GET', resourcePath(Nodes), {
        query: { labelSelector: `nvidia.com/gpu.product in (${products.join(',')})` },
        timeoutMs: LOOKUP_TIMEOUT_MS,
      });
      return (list.items ?? []) as never;
    },
  };
  const log = manager.log.child({ role: 'webhook' });
  const server = new WebhookServer({
    host: config.address.host,
    port: config.address.port,
    lookup,
    log,
    registry: manager.metrics.registry,
    egress,
  });
  const keeperOpts = {
    log,
    intervalMs: tuning.intervalMs,
    clock: tuning.clock,
    onCertificate: (cert: { cert: string; key: string }) => {
      server.useCertificate(cert).catch((err) => log.error({ err }, 'the webhook server cannot start'));
    },
  };
  const keeper = config.certDir
    ? new FileCertKeeper(config.certDir, keeperOpts)
    : new CertKeeper(secretStore(client, config), config.certNames, {
        ...keeperOpts,
        lifetimes: tuning.lifetimes,
      });
  const abort = new AbortController();
  let running: Promise<void> | undefined;
  manager.addRunnable({
    name: 'webhook',
    start: async () => {
      running = keeper.run(abort.signal);
    },
    stop: async () => {
      abort.abort();
      await running;
      await server.close();
    },
  });
  manager.addReadyCheck('webhook serving certificate', () => server.ready);
  return { server, keeper };
}

const DATA = { caBundle: 'ca.crt', caKey: 'ca.key', tlsCert: 'tls.crt', tlsKey: 'tls.key' } as const;
const PUBLISHED_AT = 'modelplane.dev/ca-published-at';

/** The certificates in the Secret `certSecret`, the CA published to the configuration. */
function secretStore(client: KubeClient, config: OperatorConfig['webhook']): CertStore {
  const { certSecret: name, certNamespace: namespace, configurationName } = config;
  const decode = (s: Secret): CertBundle | undefined => {
    const d = s.data ?? {};
    const text = (k: string) => (d[k] ? Buffer.from(d[k], 'base64').toString('utf8') : undefined);
    const [caBundle, caKey, tlsCert, tlsKey] = [
      text(DATA.caBundle),
      text(DATA.caKey),
      text(DATA.tlsCert),
      text(DATA.tlsKey),
    ];
    if (!caBundle || !caKey || !tlsCert || !tlsKey) return undefined;
    return { caBundle, caKey, tlsCert, tlsKey, caPublishedAt: s.metadata?.annotations?.[PUBLISHED_AT] };
  };
  return {
    read: async () => {
      const s = await client.find(Secrets, name, namespace);
      return { bundle: s ? decode(s) : undefined, version: s?.metadata?.resourceVersion };
    },
    write: async (b, version) => {
      const secret: Secret = {
        apiVersion: 'v1',
        kind: 'Secret',
        type: 'kubernetes.io/tls',
        metadata: {
          name,
          namespace,
          labels: { 'app.kubernetes.io/name': 'modelplane', 'app.kubernetes.io/component': 'webhook' },
          ...(b.caPublishedAt ? { annotations: { [PUBLISHED_AT]: b.caPublishedAt } } : {}),
          ...(version ? { resourceVersion: version } : {}),
        },
        data: Object.fromEntries(
          Object.entries(DATA).map(([field, key]) => [
            key,
            Buffer.from(b[field as keyof typeof DATA]).toString('base64'),
          ]),
        ),
      };
      try {
        if (version) await client.replace(Secrets, secret);
        else await client.create(Secrets, secret);
      } catch (err) {
        if (isConflict(err)) throw new StoreConflict(`the Secret ${namespace}/${name} changed meanwhile`);
        throw err;
      }
    },
    published: async () => {
      const c = await client.find(WebhookConfigurations, configurationName);
      if (!c) return null;
      const bundles = (c.webhooks ?? []).map((w) => w.clientConfig?.caBundle ?? '');
      // One that differs from the first makes the whole set differ, so it is published again.
      const first = bundles[0] ?? '';
      const text = Buffer.from(first, 'base64').toString('utf8');
      return bundles.every((b) => b === first) ? text : '';
    },
    publish: async (caBundle) => {
      const c = await client.find(WebhookConfigurations, configurationName);
      if (!c) return;
      const encoded = Buffer.from(caBundle).toString('base64');
      await client.apply(
        WebhookConfigurations,
        {
          apiVersion: WebhookConfigurations.apiVersion,
          kind: WebhookConfigurations.kind,
          metadata: { name: configurationName },
          webhooks: (c.webhooks ?? []).map((w) => ({ name: w.name, clientConfig: { caBundle: encoded } })),
        },
        { fieldManager: CA_BUNDLE_MANAGER, force: true },
      );
    },
  };
}
