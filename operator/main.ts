/**
 * `modelplane operator`: the manager process. Runs the controllers on the Lease holder, the
 * gateway (the prediction API) on every replica; serves /healthz, /readyz and /metrics on
 * every replica.
 */
import { existsSync, readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import {
  type AutoscalerSetup,
  addAutoscaler,
  DEFAULT_PEER_SELECTOR,
  type DemandSource,
  fileToken,
  forwardPokes,
  LocalDemand,
  SA_TOKEN_FILE,
  serveDemand,
  servePokes,
  TokenReviewAuthenticator,
  tokenSubject,
} from './autoscaler/index.ts';
import { addControllers, DEFAULT_RESYNC_MS } from './controllers/index.ts';
import { addPredictionController } from './controllers/prediction.ts';
import { addGateway, type Gateway, type Route } from './gateway/index.ts';
import { type PredictionService, predictionService } from './gateway/predictions/index.ts';
import { WebhookSecrets } from './gateway/webhook-secret.ts';
import { POD_SELECTOR, PodResource } from './predictions/index.ts';
import { Deployments, Models, ModelVersions } from './resources.ts';
import { createLogger, Manager } from './runtime/index.ts';

export const summary =
  'run the controllers (leader-elected) and the gateway, with health and metrics endpoints';

export const ROLES = ['controllers', 'gateway', 'webhook'] as const;
export type Role = (typeof ROLES)[number];
/** Roles this build can run. */
export const AVAILABLE_ROLES: readonly Role[] = ['controllers', 'gateway'];
/** Roles run when none are named. */
export const DEFAULT_ROLES: readonly Role[] = ['controllers', 'gateway'];

const SA_NAMESPACE_FILE = '/var/run/secrets/kubernetes.io/serviceaccount/namespace';

export const ENV = {
  kubeconfig: 'KUBECONFIG',
  roles: 'MODELPLANE_ROLES',
  leaderElect: 'MODELPLANE_LEADER_ELECT',
  leaseName: 'MODELPLANE_LEASE_NAME',
  leaseNamespace: 'MODELPLANE_LEASE_NAMESPACE',
  leaseDuration: 'MODELPLANE_LEASE_DURATION',
  renewDeadline: 'MODELPLANE_RENEW_DEADLINE',
  retryPeriod: 'MODELPLANE_RETRY_PERIOD',
  httpAddress: 'MODELPLANE_HTTP_ADDRESS',
  logLevel: 'MODELPLANE_LOG_LEVEL',
  sidecarImage: 'MODELPLANE_SIDECAR_IMAGE',
  workers: 'MODELPLANE_WORKERS',
  resyncPeriod: 'MODELPLANE_RESYNC_PERIOD',
  identity: 'MODELPLANE_IDENTITY',
  shutdownTimeout: 'MODELPLANE_SHUTDOWN_TIMEOUT',
  autoscalerTick: 'MODELPLANE_AUTOSCALER_TICK',
  autoscalerPeers: 'MODELPLANE_AUTOSCALER_PEERS',
  autoscalerPeerPort: 'MODELPLANE_AUTOSCALER_PEER_PORT',
  autoscalerPeerTokenFile: 'MODELPLANE_AUTOSCALER_PEER_TOKEN_FILE',
  gatewayAddress: 'MODELPLANE_GATEWAY_ADDRESS',
  publicUrl: 'MODELPLANE_PUBLIC_URL',
  trustForwardedHeaders: 'MODELPLANE_TRUST_FORWARDED_HEADERS',
  tokenNamespace: 'MODELPLANE_TOKEN_NAMESPACE',
  allowAnonymous: 'MODELPLANE_ALLOW_ANONYMOUS',
  tokenReviewAudiences: 'MODELPLANE_TOKEN_REVIEW_AUDIENCES',
} as const;

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function defaultSidecarImage(): string {
  return `ghcr.io/modelplane/modelplane:${packageVersion()}`;
}

export const USAGE = `Usage: modelplane operator [flags]

Runs the modelplane operator. The controllers (HardwareClass, Model, ModelVersion,
Deployment, Prediction) and the autoscaler run only in the replica that holds the leader
Lease; the gateway (the prediction API under /v1) and /healthz, /readyz and /metrics are
served by every
replica. Each flag can also be set by the environment variable shown; a flag wins over its
variable.

Flags:
  --kubeconfig PATH          kubeconfig to use (${ENV.kubeconfig}; default: the pod's service
                             account in a cluster, else ~/.kube/config)
  --roles LIST               comma-separated roles to run: controllers, gateway (${ENV.roles};
                             default controllers,gateway; webhook is not in this build)
  --leader-elect BOOL        hold a Lease before running controllers (${ENV.leaderElect};
                             default true; false only with a single replica)
  --lease-name NAME          the Lease's name (${ENV.leaseName}; default modelplane-operator)
  --lease-namespace NS       the Lease's namespace (${ENV.leaseNamespace}; default: the pod's
                             namespace in a cluster, else default)
  --lease-duration SECONDS   how long a Lease holds without renewal (${ENV.leaseDuration}; default 15)
  --renew-deadline SECONDS   how long the leader keeps trying to renew before it steps down
                             (${ENV.renewDeadline}; default 10)
  --retry-period SECONDS     pause between tries to acquire or renew (${ENV.retryPeriod}; default 2)
  --http-address HOST:PORT   health (/healthz, /readyz) and metrics (/metrics) server
                             (${ENV.httpAddress}; default 0.0.0.0:8081; "off" for none)
  --log-level LEVEL          trace, debug, info, warn, error (${ENV.logLevel}, or LOG_LEVEL; default info)
  --sidecar-image IMAGE      image of the sidecar container in model pods (${ENV.sidecarImage};
                             default ${defaultSidecarImage()})
  --workers N                concurrent reconciles per controller (${ENV.workers}; default 4)
  --resync-period SECONDS    reconcile every object this often even without a change
                             (${ENV.resyncPeriod}; default ${DEFAULT_RESYNC_MS / 1000}; 0 = never)
  --identity NAME            this replica among the Lease candidates (${ENV.identity}, or
                             POD_NAME; default: the host name and a random suffix)
  --shutdown-timeout SECONDS how long running reconciles and gateway requests may finish
                             after SIGTERM (${ENV.shutdownTimeout}; default 30)

Gateway flags (role gateway):
  --gateway-address HOST:PORT  the prediction API server (${ENV.gatewayAddress};
                             default 0.0.0.0:8000)
  --public-url URL           base URL callers reach the API at, without /v1, used in the
                             absolute URLs the API returns (${ENV.publicUrl}; default: from each
                             request's Host header)
  --trust-forwarded-headers BOOL  build URLs from X-Forwarded-Proto/-Host; only behind a proxy
                             that sets them (${ENV.trustForwardedHeaders}; default false)
  --token-namespace NS       namespace of the API token Secrets and webhook signing Secrets
                             (${ENV.tokenNamespace}; default: the lease namespace)
  --allow-anonymous LIST     namespaces callers without a token may act in, comma-separated
                             (${ENV.allowAnonymous}; default none: every request needs a token)
  --token-review-audiences LIST  audiences Kubernetes tokens must be for, comma-separated
                             (${ENV.tokenReviewAudiences}; default: the API server's)

Autoscaler (runs with the controllers, on the Lease holder):
  --autoscaler-tick SECONDS  time between scaling decisions (${ENV.autoscalerTick}; default 1;
                             a gateway holding a request with no ready instance also
                             triggers one at once)
  --autoscaler-peers MODE    gather demand from the other operator replicas: "auto" (on when
                             running in a pod with a ServiceAccount token and the HTTP
                             server on), "off", or the
                             label selector of the operator's pods (${ENV.autoscalerPeers};
                             default auto; auto selects
                             ${DEFAULT_PEER_SELECTOR}).
                             Each replica serves GET /autoscaler/demand (and the leader
                             POST /autoscaler/poke) on the --http-address server to
                             callers whose bearer token a TokenReview finds to be this
                             operator's own ServiceAccount
  --autoscaler-peer-port N   the peers' --http-address port, unless their pod names a
                             container port "metrics" (${ENV.autoscalerPeerPort}; default: the
                             port of --http-address)
  --autoscaler-peer-token-file PATH
                             the token sent to peers, and whose subject peers accept
                             (${ENV.autoscalerPeerTokenFile}; default ${SA_TOKEN_FILE})
  -h, --help                 show this help
`;

export interface OperatorConfig {
  kubeconfig: string | undefined;
  roles: Role[];
  leaderElect: boolean;
  leaseName: string;
  leaseNamespace: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  http: { host: string; port: number } | false;
  logLevel: string;
  sidecarImage: string;
  workers: number;
  resyncPeriodMs: number;
  identity: string | undefined;
  shutdownTimeoutMs: number;
  autoscalerTickMs: number;
  /** Demand across replicas: off, or the operator pods' selector and how to reach and trust them. */
  autoscalerPeers: false | { labelSelector: string; port: number; tokenFile: string; namespace: string };
  gateway: {
    address: { host: string; port: number };
    publicUrl: string | undefined;
    trustForwardedHeaders: boolean;
    tokenNamespace: string;
    allowAnonymous: string[];
    tokenReviewAudiences: string[];
  };
}

export class ConfigError extends Error {}

const FLAGS = {
  kubeconfig: { type: 'string' },
  roles: { type: 'string' },
  'leader-elect': { type: 'string' },
  'lease-name': { type: 'string' },
  'lease-namespace': { type: 'string' },
  'lease-duration': { type: 'string' },
  'renew-deadline': { type: 'string' },
  'retry-period': { type: 'string' },
  'http-address': { type: 'string' },
  'log-level': { type: 'string' },
  'sidecar-image': { type: 'string' },
  workers: { type: 'string' },
  'resync-period': { type: 'string' },
  identity: { type: 'string' },
  'shutdown-timeout': { type: 'string' },
  'autoscaler-tick': { type: 'string' },
  'autoscaler-peers': { type: 'string' },
  'autoscaler-peer-port': { type: 'string' },
  'autoscaler-peer-token-file': { type: 'string' },
  'gateway-address': { type: 'string' },
  'public-url': { type: 'string' },
  'trust-forwarded-headers': { type: 'string' },
  'token-namespace': { type: 'string' },
  'allow-anonymous': { type: 'string' },
  'token-review-audiences': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

function seconds(name: string, raw: string, min: number): number {
  const v = Number(raw);
  if (!Number.isFinite(v) || v < min)
    throw new ConfigError(`--${name}: want a number of seconds >= ${min}, got "${raw}"`);
  return Math.round(v * 1000);
}

function bool(name: string, raw: string): boolean {
  if (['true', '1', 'yes'].includes(raw.toLowerCase())) return true;
  if (['false', '0', 'no'].includes(raw.toLowerCase())) return false;
  throw new ConfigError(`--${name}: want true or false, got "${raw}"`);
}

function address(raw: string, flag = 'http-address'): { host: string; port: number } | false {
  if (raw === 'off' && flag === 'http-address') return false;
  const colon = raw.lastIndexOf(':');
  const host = colon > 0 ? raw.slice(0, colon) : '0.0.0.0';
  const port = Number(colon >= 0 ? raw.slice(colon + 1) : raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new ConfigError(
      `--${flag}: want HOST:PORT${flag === 'http-address' ? ' or "off"' : ''}, got "${raw}"`,
    );
  return { host: host.replace(/^\[|\]$/g, ''), port };
}

function list(raw: string | undefined): string[] {
  return (raw ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function publicUrl(raw: string | undefined): string | undefined {
  if (!raw) return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(`--public-url: want an absolute http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new ConfigError(`--public-url: want an absolute http(s) URL, got "${raw}"`);
  if (url.search || url.hash) throw new ConfigError(`--public-url: no query or fragment, got "${raw}"`);
  return url.toString().replace(/\/+$/, '').replace(/\/v1$/, '');
}

function defaultNamespace(): string {
  try {
    if (existsSync(SA_NAMESPACE_FILE)) return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim() || 'default';
  } catch {}
  return 'default';
}

/** Flags first, then the environment, then defaults. Throws ConfigError on a bad value. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig & { help: boolean } {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  const get = (flag: keyof typeof FLAGS, envName?: string, ...more: string[]): string | undefined => {
    const v = values[flag];
    if (typeof v === 'string') return v;
    for (const e of [envName, ...more]) if (e && env[e] !== undefined && env[e] !== '') return env[e];
    return undefined;
  };
  const roles = (get('roles', ENV.roles) ?? DEFAULT_ROLES.join(','))
    .split(',')
    .map((r) => r.trim())
    .filter(Boolean);
  for (const r of roles) {
    if (!(ROLES as readonly string[]).includes(r))
      throw new ConfigError(`--roles: unknown role "${r}"; roles are ${ROLES.join(', ')}`);
    if (!AVAILABLE_ROLES.includes(r as Role))
      throw new ConfigError(
        `--roles: the ${r} role is not in this build; run --roles=${AVAILABLE_ROLES.join(',')}`,
      );
  }
  if (!roles.length) throw new ConfigError('--roles: name at least one role');
  const workers = Number(get('workers', ENV.workers) ?? '4');
  if (!Number.isInteger(workers) || workers < 1 || workers > 64)
    throw new ConfigError(
      `--workers: want a whole number from 1 to 64, got "${get('workers', ENV.workers)}"`,
    );
  const leaseName = get('lease-name', ENV.leaseName) ?? 'modelplane-operator';
  const leaseNamespace = get('lease-namespace', ENV.leaseNamespace, 'POD_NAMESPACE') ?? defaultNamespace();
  const gatewayAddress = address(
    get('gateway-address', ENV.gatewayAddress) ?? '0.0.0.0:8000',
    'gateway-address',
  );
  const http = address(get('http-address', ENV.httpAddress) ?? '0.0.0.0:8081');
  const autoscalerTickMs = seconds(
    'autoscaler-tick',
    get('autoscaler-tick', ENV.autoscalerTick) ?? '1',
    0.05,
  );
  const tokenFile = get('autoscaler-peer-token-file', ENV.autoscalerPeerTokenFile) ?? SA_TOKEN_FILE;
  const peersMode = get('autoscaler-peers', ENV.autoscalerPeers) ?? 'auto';
  let autoscalerPeers: OperatorConfig['autoscalerPeers'] = false;
  // auto: on in a pod (it has a ServiceAccount token) that serves HTTP.
  if (peersMode !== 'off' && !(peersMode === 'auto' && (!existsSync(tokenFile) || !http))) {
    const rawPort = get('autoscaler-peer-port', ENV.autoscalerPeerPort);
    const port = rawPort === undefined ? (http ? http.port : 8081) : Number(rawPort);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new ConfigError(`--autoscaler-peer-port: want a port number, got "${rawPort}"`);
    if (!http)
      throw new ConfigError(
        '--autoscaler-peers needs the HTTP server: set --http-address, or --autoscaler-peers=off',
      );
    autoscalerPeers = {
      labelSelector: peersMode === 'auto' ? DEFAULT_PEER_SELECTOR : peersMode,
      port,
      tokenFile,
      namespace: env.POD_NAMESPACE || defaultNamespace(),
    };
  }
  return {
    help: values.help === true,
    kubeconfig: get('kubeconfig', ENV.kubeconfig),
    roles: roles as Role[],
    leaderElect: bool('leader-elect', get('leader-elect', ENV.leaderElect) ?? 'true'),
    leaseName,
    leaseNamespace,
    leaseDurationMs: seconds('lease-duration', get('lease-duration', ENV.leaseDuration) ?? '15', 0.1),
    renewDeadlineMs: seconds('renew-deadline', get('renew-deadline', ENV.renewDeadline) ?? '10', 0.1),
    retryPeriodMs: seconds('retry-period', get('retry-period', ENV.retryPeriod) ?? '2', 0.05),
    http,
    logLevel: get('log-level', ENV.logLevel, 'LOG_LEVEL') ?? 'info',
    sidecarImage: get('sidecar-image', ENV.sidecarImage) ?? defaultSidecarImage(),
    workers,
    resyncPeriodMs: seconds(
      'resync-period',
      get('resync-period', ENV.resyncPeriod) ?? String(DEFAULT_RESYNC_MS / 1000),
      0,
    ),
    identity: get('identity', ENV.identity, 'POD_NAME'),
    shutdownTimeoutMs: seconds('shutdown-timeout', get('shutdown-timeout', ENV.shutdownTimeout) ?? '30', 0),
    autoscalerTickMs,
    autoscalerPeers,
    gateway: {
      address: gatewayAddress || { host: '0.0.0.0', port: 8000 },
      publicUrl: publicUrl(get('public-url', ENV.publicUrl)),
      trustForwardedHeaders: bool(
        'trust-forwarded-headers',
        get('trust-forwarded-headers', ENV.trustForwardedHeaders) ?? 'false',
      ),
      tokenNamespace: get('token-namespace', ENV.tokenNamespace) ?? leaseNamespace,
      allowAnonymous: list(get('allow-anonymous', ENV.allowAnonymous)),
      tokenReviewAudiences: list(get('token-review-audiences', ENV.tokenReviewAudiences)),
    },
  };
}

/** What a caller embedding the operator can add: demand sources, autoscaler settings for tests. */
export interface OperatorParts {
  /** In-process demand sources (the gateway's queues when the gateway runs in this process). */
  demandSources?: DemandSource[];
  /** Overrides of the autoscaler's settings (tests use short intervals and their own token). */
  autoscaler?: Omit<AutoscalerSetup, 'local'>;
  /** How `/autoscaler/demand` checks a peer's token (default: a TokenReview of the token file's subject). */
  authenticatePeer?: (token: string) => Promise<boolean>;
  /** More gateway routes (the prediction endpoints), or a function of the gateway that makes them. */
  gatewayRoutes?: Route[] | ((gateway: Gateway) => Route[]);
}

const localDemand = new WeakMap<Manager, LocalDemand>();

/**
 * Registers an in-process DemandSource (the gateway's) with the operator's autoscaler, and
 * serves it to the leader when this replica is not the leader.
 */
export function registerDemandSource(manager: Manager, source: DemandSource): void {
  const local = localDemand.get(manager);
  if (!local) throw new Error('this manager was not made by createOperator');
  local.add(source);
}

/**
 * A manager with the roles of `config` registered (not started): the controllers and the
 * autoscaler, the gateway (then `gatewayOf(manager)`).
 */
export function createOperator(
  config: OperatorConfig,
  kubeConfig?: KubeConfig,
  parts: OperatorParts = {},
): Manager {
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
  const predictions = addPredictions(manager, config, withGateway);
  const local = new LocalDemand({ onError: (err) => log.warn({ err }, 'a demand source failed') });
  for (const s of parts.demandSources ?? []) local.add(s);
  // The gateway's prediction queues are this replica's demand.
  local.add(predictions.engine);
  localDemand.set(manager, local);
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
    serveDemand(manager, local, authenticate);
    forwardPokes(manager, local, { namespace: peers.namespace, port: peers.port, token });
  }
  if (config.roles.includes('controllers')) {
    addControllers(manager, {
      sidecarImage: config.sidecarImage,
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
    const { autoscaler } = addAutoscaler(manager, {
      tickMs: config.autoscalerTickMs,
      local,
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
    });
    if (peers && authenticate) servePokes(manager, autoscaler, authenticate);
  }
  if (withGateway) {
    const g = config.gateway;
    gateways.set(
      manager,
      addGateway(manager, {
        address: g.address,
        publicUrl: g.publicUrl,
        trustForwardedHeaders: g.trustForwardedHeaders,
        tokenNamespace: g.tokenNamespace,
        allowAnonymous: g.allowAnonymous,
        tokenReviewAudiences: g.tokenReviewAudiences,
        routes: (gateway) => [
          ...predictions.routes,
          ...(typeof parts.gatewayRoutes === 'function'
            ? parts.gatewayRoutes(gateway)
            : (parts.gatewayRoutes ?? [])),
        ],
      }),
    );
  }
  return manager;
}

const engines = new WeakMap<Manager, PredictionService>();

/**
 * The prediction engine of an operator made by `createOperator`: its queues are the demand
 * the autoscaler reads (`demand()`, `onPoke`).
 */
export function predictionsOf(manager: Manager): PredictionService | undefined {
  return engines.get(manager);
}

/**
 * The prediction engine: one per process, shared by the gateway's routes and the Prediction
 * controller. With the gateway role its caches (Deployments, Models, ModelVersions, model
 * Pods) run on every replica; otherwise only on the leader, with the controllers.
 */
function addPredictions(manager: Manager, config: OperatorConfig, everyReplica: boolean): PredictionService {
  const every = { everyReplica };
  const secrets = new WebhookSecrets(manager.client, config.gateway.tokenNamespace);
  const svc = predictionService({
    deployments: manager.informer(Deployments, {}, every),
    models: manager.informer(Models, {}, every),
    modelVersions: manager.informer(ModelVersions, {}, every),
    pods: manager.informer(PodResource, { labelSelector: POD_SELECTOR }, every),
    log: manager.log,
    registry: manager.metrics.registry,
    secretFor: (namespace) => (gatewayOf(manager)?.webhookSecrets ?? secrets).get(namespace),
  });
  manager.addRunnable({
    name: 'predictions',
    start: async () => {},
    stop: (timeoutMs) => svc.engine.drain(timeoutMs),
  });
  engines.set(manager, svc);
  return svc;
}

const gateways = new WeakMap<Manager, Gateway>();

/** The gateway `createOperator` added to `manager`, if it has the gateway role. */
export function gatewayOf(manager: Manager): Gateway | undefined {
  return gateways.get(manager);
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
  if (config.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const manager = createOperator(config);
  await manager.start();
  return new Promise<number>((resolve) => {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) process.exit(1);
      received = true;
      manager.log.info({ signal }, 'signal received: shutting down');
      manager.stop().then(
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
