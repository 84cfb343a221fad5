/**
 * `modelplane operator`: the manager process, wired from its settings (config.ts). Runs the
 * controllers and the autoscaler on the Lease holder, the gateway (the prediction API) and
 * the admission webhook on every replica; serves /healthz, /readyz and /metrics on every
 * replica.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { KubeConfig } from '@kubernetes/client-node';
import { EgressPolicy } from '../lib/egress.ts';
import { guardProcess } from '../lib/process-guard.ts';
import {
  type Autoscaler,
  type AutoscalerSetup,
  addAutoscaler,
  type DemandSource,
  fileToken,
  forwardPokes,
  LocalDemand,
  serveDemand,
  servePokes,
  TokenReviewAuthenticator,
  tokenSubject,
} from './autoscaler/index.ts';
import { ConfigError, type OperatorConfig, parseConfig, USAGE } from './config.ts';
import { addControllers } from './controllers/index.ts';
import { addPredictionController } from './controllers/prediction.ts';
import { DirectoryBackend, type FileBackend, FileService, S3Backend } from './files/index.ts';
import { fileInputResolver, fileRoutes } from './gateway/files.ts';
import { addGateway, type Gateway, type Routes } from './gateway/index.ts';
import { type PredictionService, predictionService } from './gateway/predictions/index.ts';
import { RunCounts, usageRoutes } from './gateway/usage.ts';
import { WebhookSecrets } from './gateway/webhook-secret.ts';
import { POD_SELECTOR, PodResource, ReplicaSetResource } from './predictions/index.ts';
import { Deployments, Models, ModelVersions } from './resources.ts';
import { createLogger, type Logger, Manager } from './runtime/index.ts';
import { SidecarKey } from './sidecar-key.ts';
import { openStore } from './store/index.ts';
import type { UsageCollectorOptions } from './usage/collector.ts';
import { addUsageCollector } from './usage/index.ts';
import { addWebhook, type Webhook, type WebhookTuning } from './webhook.ts';

/** What a caller embedding the operator can add: demand sources, autoscaler settings for tests. */
export interface OperatorParts {
  /** In-process demand sources (the gateway's queues when the gateway runs in this process). */
  demandSources?: DemandSource[];
  /** Overrides of the autoscaler's settings (tests use short intervals and their own token). */
  autoscaler?: Omit<AutoscalerSetup, 'local'>;
  /** How `/autoscaler/demand` checks a peer's token (default: a TokenReview of the token file's subject). */
  authenticatePeer?: (token: string) => Promise<boolean>;
  /** More gateway route groups, or a function of the gateway that makes them. */
  gatewayRoutes?: Routes[] | ((gateway: Gateway) => Routes[]);
  /** The webhook's certificate lifetimes and check interval (tests rotate in seconds). */
  webhook?: WebhookTuning;
  /** The usage collector's intervals (tests read in seconds). */
  usage?: Pick<UsageCollectorOptions, 'intervalMs' | 'terminatingIntervalMs' | 'statusIntervalMs'>;
}

/** An operator made by `createOperator`: its manager and the parts registered on it. */
export interface Operator {
  readonly manager: Manager;
  readonly log: Logger;
  /**
   * The prediction engine, shared by the gateway's routes and the Prediction controller: its
   * queues are this replica's demand.
   */
  readonly predictions: PredictionService;
  /** Files: uploads and prediction outputs (served by the gateway). */
  readonly files: FileService;
  /**
   * This replica's demand: the engine's queues and the sources given in `parts` (add more
   * with `demand.add`). The autoscaler reads it; peers read it from the leader.
   */
  readonly demand: LocalDemand;
  /** The gateway, with the gateway role. */
  readonly gateway: Gateway | undefined;
  /** The autoscaler, with the controllers role (it runs while this replica leads). */
  readonly autoscaler: Autoscaler | undefined;
  /** The admission webhook, with the webhook role. */
  readonly webhook: Webhook | undefined;
  /** Starts the manager: caches, leader election, servers. */
  start(): Promise<void>;
  /** Stops it: drains the gateway and the engine, ends the reconciles, gives up the Lease. */
  stop(): Promise<void>;
}

/** A manager with the roles of `config` registered on it, not started. */
export function createOperator(
  config: OperatorConfig,
  kubeConfig?: KubeConfig,
  parts: OperatorParts = {},
): Operator {
  let kc = kubeConfig;
  if (!kc) {
    kc = new KubeConfig();
    if (config.kubeconfig) kc.loadFromFile(config.kubeconfig);
    else kc.loadFromDefault();
  }
  const log = createLogger({ level: config.logLevel });
  const manager = new Manager({
    name: config.leaseName,
    kubeConfig: kc,
    identity: config.identity,
    // Only the controllers need the Lease: a gateway-only replica must never take it from one
    // that runs them.
    leaderElection:
      config.leaderElect && config.roles.includes('controllers')
        ? {
            namespace: config.leaseNamespace,
            name: config.leaseName,
            leaseDurationMs: config.leaseDurationMs,
            renewDeadlineMs: config.renewDeadlineMs,
            retryPeriodMs: config.retryPeriodMs,
          }
        : false,
    http: config.http,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log,
  });
  const withGateway = config.roles.includes('gateway');
  // The key of the operator's calls to model pods' sidecars, in its own namespace.
  const sidecarKey = SidecarKey.inNamespace(manager.client, config.gateway.tokenNamespace);
  let gateway: Gateway | undefined;
  // Webhook signing secrets: the gateway's cache when it runs here, else read on demand.
  const { svc: predictions, files } = addPredictions(
    manager,
    config,
    withGateway,
    () => gateway?.webhookSecrets,
    sidecarKey,
  );
  const demand = new LocalDemand({ onError: (err) => log.warn({ err }, 'a demand source failed') });
  for (const s of parts.demandSources ?? []) demand.add(s);
  // The gateway's prediction queues are this replica's demand.
  demand.add(predictions.engine);
  const peers = config.autoscalerPeers;
  const token = peers ? fileToken(peers.tokenFile) : undefined;
  let authenticate = parts.authenticatePeer;
  if (peers && token) {
    if (!authenticate) {
      let subject: string | undefined;
      try {
        subject = tokenSubject(token());
      } catch (err) {
        log.warn({ err, tokenFile: peers.tokenFile }, 'cannot read the token peers must present');
      }
      const reviewer = new TokenReviewAuthenticator(manager.client, subject ? [subject] : []);
      authenticate = (t) => reviewer.check(t);
    }
    serveDemand(manager, demand, authenticate);
    forwardPokes(manager, demand, { namespace: peers.namespace, port: peers.port, token });
  }
  let autoscaler: Autoscaler | undefined;
  if (config.roles.includes('controllers')) {
    addControllers(manager, {
      sidecarImage: config.sidecarImage,
      sidecarKey,
      webhookAllowCidrs: config.gateway.webhookAllowCidrs,
      maxOutputBytes: config.gateway.maxOutputBytes,
      workers: config.workers,
      resyncPeriodMs: config.resyncPeriodMs,
    });
    addPredictionController(manager, {
      engine: predictions.engine,
      models: manager.informer(Models),
      modelVersions: manager.informer(ModelVersions),
      deployments: manager.informer(Deployments),
      apiBaseUrl: config.gateway.publicUrl ? `${config.gateway.publicUrl}/v1` : '',
      workers: config.workers,
    });
    ({ autoscaler } = addAutoscaler(manager, {
      tickMs: config.autoscalerTickMs,
      podDeletionCost: config.podDeletionCost,
      local: demand,
      peers:
        peers && token
          ? {
              namespace: peers.namespace,
              labelSelector: peers.labelSelector,
              selfPod: process.env.POD_NAME || config.identity,
              port: peers.port,
              token,
            }
          : undefined,
      ...parts.autoscaler,
    }));
    if (peers && authenticate) servePokes(manager, autoscaler, authenticate);
    addUsageCollector(manager, () => predictions.engine.usageStore(), {
      authorization: (base) => sidecarKey.authorization(base),
      ...parts.usage,
    });
  }
  if (withGateway) {
    const g = config.gateway;
    const usage = () => predictions.engine.usageStore();
    const runCounts = new RunCounts(usage);
    gateway = addGateway(manager, {
      runCount: (model) => runCounts.get(model),
      address: g.address,
      publicUrl: g.publicUrl,
      trustForwardedHeaders: g.trustForwardedHeaders,
      tokenNamespace: g.tokenNamespace,
      allowAnonymous: g.allowAnonymous,
      tokenReviewAudiences: g.tokenReviewAudiences,
      routes: (gw) => [
        predictions.routes,
        usageRoutes({ usage }),
        fileRoutes({
          files,
          prediction: async (id) => {
            const rec = await predictions.engine.get(id);
            return rec && { namespace: rec.namespace, baseUrl: rec.baseUrl, status: rec.status };
          },
        }),
        ...(typeof parts.gatewayRoutes === 'function'
          ? parts.gatewayRoutes(gw)
          : (parts.gatewayRoutes ?? [])),
      ],
    });
  }
  const webhook = config.roles.includes('webhook')
    ? addWebhook(manager, config.webhook, parts.webhook, new EgressPolicy(config.gateway.webhookAllowCidrs))
    : undefined;
  return {
    manager,
    log,
    predictions,
    files,
    demand,
    gateway,
    autoscaler,
    webhook,
    start: () => manager.start(),
    stop: () => manager.stop(),
  };
}

/** `createOperator`, started. */
export async function startOperator(
  config: OperatorConfig,
  kubeConfig?: KubeConfig,
  parts: OperatorParts = {},
): Promise<Operator> {
  const operator = createOperator(config, kubeConfig, parts);
  await operator.start();
  return operator;
}

/**
 * The prediction engine: one per process, shared by the gateway's routes and the Prediction
 * controller. With the gateway role its caches (Deployments, Models, ModelVersions, model
 * Pods) run on every replica; otherwise only on the leader, with the controllers.
 */
function addPredictions(
  manager: Manager,
  config: OperatorConfig,
  everyReplica: boolean,
  gatewaySecrets: () => WebhookSecrets | undefined,
  sidecarKey: SidecarKey,
): { svc: PredictionService; files: FileService } {
  const every = { everyReplica };
  const f = config.files;
  const backend: FileBackend =
    f.kind === 's3'
      ? new S3Backend({
          endpoint: f.s3.endpoint,
          region: f.s3.region,
          bucket: f.s3.bucket,
          prefix: f.s3.prefix,
        })
      : new DirectoryBackend(f.dir);
  const files: FileService = new FileService({
    backend,
    withStore: (fn) => svc.engine.withStore(fn),
    maxBytes: f.maxBytes,
    uploadTtlMs: f.uploadTtlMs,
    outputUrlTtlMs: config.store.dataRetentionMs,
    log: manager.log,
  });
  const streamKey = config.store.streamKeyFile ? readFileSync(config.store.streamKeyFile) : undefined;
  if (streamKey) files.urls.setKey(streamKey);
  const internal = f.internalUrl ?? config.gateway.publicUrl;
  const secrets = new WebhookSecrets(manager.client, config.gateway.tokenNamespace);
  const { store } = config;
  const dataMs = store.dataRetentionMs;
  const svc = predictionService({
    deployments: manager.informer(Deployments, {}, every),
    models: manager.informer(Models, {}, every),
    modelVersions: manager.informer(ModelVersions, {}, every),
    pods: manager.informer(PodResource, { labelSelector: POD_SELECTOR }, every),
    replicaSets: manager.informer(ReplicaSetResource, { labelSelector: POD_SELECTOR }, every),
    log: manager.log,
    registry: manager.metrics.registry,
    secretFor: (namespace) => (gatewaySecrets() ?? secrets).get(namespace),
    // A new name per process: a restarted replica takes over what its predecessor left.
    replica: `${manager.identity}-${randomBytes(4).toString('hex')}`,
    openStore: () =>
      openStore(
        store.kind === 'postgres'
          ? { kind: 'postgres', url: store.databaseUrl ?? '', log: manager.log }
          : store.kind === 'embedded'
            ? { kind: 'embedded', dir: store.dir, log: manager.log }
            : { kind: 'memory', log: manager.log },
      ),
    streamKey,
    onKey: (key) => files.urls.setKey(key),
    resolveInput: fileInputResolver(files),
    // Output files are uploaded while the prediction runs: a day bounds any predict timeout.
    // Without a URL model pods reach the gateway at (a Prediction object, with neither
    // --files-internal-url nor --public-url), none is given: a file output then fails, saying so.
    uploadUrl: (rec) => {
      const base = internal ? `${internal}/v1` : rec.baseUrl;
      return /^https?:\/\//.test(base) ? files.uploadUrl(base, rec.id, 86_400_000) : undefined;
    },
    egress: new EgressPolicy(config.gateway.webhookAllowCidrs),
    inputBudget: config.gateway.inputBudget,
    maxOutputBytes: config.gateway.maxOutputBytes,
    sidecarAuthorization: (base) => sidecarKey.authorization(base),
    retention: {
      dataMs,
      recordMs: store.recordRetentionMs,
      usageMs: store.usageRetentionMs,
      everyMs: Math.min(60_000, Math.max(1000, dataMs / 4)),
    },
  });
  manager.addRunnable({
    name: 'predictions',
    start: () => svc.engine.start(),
    stop: (timeoutMs) => svc.engine.drain(timeoutMs),
  });
  if (everyReplica)
    manager.addRunnable({
      name: 'files',
      start: async () => files.start(),
      stop: () => files.stop(),
    });
  manager.addReadyCheck('prediction store', () => svc.engine.problem() ?? true);
  return { svc, files };
}

export async function run(argv: string[]): Promise<number> {
  let config: ReturnType<typeof parseConfig>;
  try {
    config = parseConfig(argv, process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    process.stderr.write(`modelplane operator: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (config === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  const { manager, stop } = await startOperator(config);
  // An unhandled rejection is logged and counted, an uncaught exception exits 1 (lib/process-guard.ts).
  guardProcess({ log: manager.log, registry: manager.metrics.registry, prefix: 'modelplane_operator' });
  return new Promise<number>((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) process.exit(1);
      received = true;
      manager.log.info({ signal }, 'signal received: shutting down');
      stop().then(
        () => resolve(0),
        (err: unknown) => {
          manager.log.error({ err }, 'shutdown failed');
          resolve(1);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}
