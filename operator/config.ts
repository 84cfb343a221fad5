/**
 * Settings of `modelplane operator`: each is a flag, or an environment variable (the way the
 * chart sets them), flag first; the defaults, the checks and the --help text.
 */
import { existsSync, readFileSync } from 'node:fs';
import { ConfigError, formatOptions, HELP_ROW, option, parseBytes, parseOptions } from '../lib/config.ts';
import { allowCidrsOption } from '../lib/egress.ts';
import { DEFAULT_PEER_SELECTOR, SA_TOKEN_FILE } from './autoscaler/peers.ts';
import { DEFAULT_RESYNC_MS } from './controllers/index.ts';

export { ConfigError };

export const ROLES = ['controllers', 'gateway', 'webhook'] as const;
export type Role = (typeof ROLES)[number];
/** Roles this build can run. */
export const AVAILABLE_ROLES: readonly Role[] = ['controllers', 'gateway', 'webhook'];
/** Roles run when none are named. */
export const DEFAULT_ROLES: readonly Role[] = ['controllers', 'gateway', 'webhook'];

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
  podDeletionCost: 'MODELPLANE_POD_DELETION_COST',
  autoscalerPeers: 'MODELPLANE_AUTOSCALER_PEERS',
  autoscalerPeerPort: 'MODELPLANE_AUTOSCALER_PEER_PORT',
  autoscalerPeerTokenFile: 'MODELPLANE_AUTOSCALER_PEER_TOKEN_FILE',
  gatewayAddress: 'MODELPLANE_GATEWAY_ADDRESS',
  publicUrl: 'MODELPLANE_PUBLIC_URL',
  trustForwardedHeaders: 'MODELPLANE_TRUST_FORWARDED_HEADERS',
  tokenNamespace: 'MODELPLANE_TOKEN_NAMESPACE',
  allowAnonymous: 'MODELPLANE_ALLOW_ANONYMOUS',
  tokenReviewAudiences: 'MODELPLANE_TOKEN_REVIEW_AUDIENCES',
  store: 'MODELPLANE_STORE',
  storeDir: 'MODELPLANE_STORE_DIR',
  databaseUrl: 'MODELPLANE_DATABASE_URL',
  streamKeyFile: 'MODELPLANE_STREAM_KEY_FILE',
  dataRetention: 'MODELPLANE_DATA_RETENTION',
  recordRetention: 'MODELPLANE_RECORD_RETENTION',
  usageRetention: 'MODELPLANE_USAGE_RETENTION',
  webhookAddress: 'MODELPLANE_WEBHOOK_ADDRESS',
  webhookConfiguration: 'MODELPLANE_WEBHOOK_CONFIGURATION',
  webhookCertSecret: 'MODELPLANE_WEBHOOK_CERT_SECRET',
  webhookCertNames: 'MODELPLANE_WEBHOOK_CERT_NAMES',
  webhookCertDir: 'MODELPLANE_WEBHOOK_CERT_DIR',
  webhookAllowCidrs: 'MODELPLANE_WEBHOOK_ALLOW_CIDRS',
  queueBytesPerDeployment: 'MODELPLANE_QUEUE_BYTES_PER_DEPLOYMENT',
  queueBytesPerReplica: 'MODELPLANE_QUEUE_BYTES_PER_REPLICA',
  maxOutputBytes: 'MODELPLANE_MAX_OUTPUT_BYTES',
  files: 'MODELPLANE_FILES',
  filesDir: 'MODELPLANE_FILES_DIR',
  filesS3Endpoint: 'MODELPLANE_FILES_S3_ENDPOINT',
  filesS3Region: 'MODELPLANE_FILES_S3_REGION',
  filesS3Bucket: 'MODELPLANE_FILES_S3_BUCKET',
  filesS3Prefix: 'MODELPLANE_FILES_S3_PREFIX',
  filesMaxSize: 'MODELPLANE_FILES_MAX_SIZE',
  filesUploadTtl: 'MODELPLANE_FILES_UPLOAD_TTL',
  filesInternalUrl: 'MODELPLANE_FILES_INTERNAL_URL',
} as const;

export const STORES = ['embedded', 'postgres', 'memory'] as const;
export type StoreKind = (typeof STORES)[number];

function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function defaultSidecarImage(): string {
  return `ghcr.io/modelplane/modelplane:${packageVersion()}`;
}

function defaultNamespace(): string {
  try {
    if (existsSync(SA_NAMESPACE_FILE)) return readFileSync(SA_NAMESPACE_FILE, 'utf8').trim() || 'default';
  } catch {}
  return 'default';
}

export interface Address {
  host: string;
  port: number;
}

/** HOST:PORT, :PORT or PORT (host 0.0.0.0); `"off"` too where `off` is allowed. */
function address(raw: string, off: boolean): Address | false {
  if (raw === 'off' && off) return false;
  const colon = raw.lastIndexOf(':');
  const host = colon > 0 ? raw.slice(0, colon) : '0.0.0.0';
  const port = Number(colon >= 0 ? raw.slice(colon + 1) : raw);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`want HOST:PORT${off ? ' or "off"' : ''}, got "${raw}"`);
  return { host: host.replace(/^\[|\]$/g, ''), port };
}

/** An absolute http(s) URL without query or fragment, its trailing slashes and /v1 removed. */
function publicUrl(raw: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new Error(`want an absolute http(s) URL, got "${raw}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new Error(`want an absolute http(s) URL, got "${raw}"`);
  if (url.search || url.hash) throw new Error(`no query or fragment, got "${raw}"`);
  return url.toString().replace(/\/+$/, '').replace(/\/v1$/, '');
}

function checkRoles(roles: string[]): string | undefined {
  for (const r of roles) {
    if (!(ROLES as readonly string[]).includes(r))
      return `unknown role "${r}"; roles are ${ROLES.join(', ')}`;
    if (!AVAILABLE_ROLES.includes(r as Role))
      return `the ${r} role is not in this build; run --roles=${AVAILABLE_ROLES.join(',')}`;
  }
  return roles.length ? undefined : 'name at least one role';
}

/** The settings of every replica, in the order --help lists them. */
const GENERAL = {
  kubeconfig: option({
    flag: 'kubeconfig',
    env: ENV.kubeconfig,
    meta: 'PATH',
    help: `kubeconfig to use (${ENV.kubeconfig}; default: the pod's service
account in a cluster, else ~/.kube/config)`,
  }),
  roles: option({
    flag: 'roles',
    env: ENV.roles,
    type: 'list',
    default: () => [...DEFAULT_ROLES],
    check: checkRoles,
    meta: 'LIST',
    help: `comma-separated roles to run: controllers, gateway, webhook
(${ENV.roles}; default all three)`,
  }),
  leaderElect: option({
    flag: 'leader-elect',
    env: ENV.leaderElect,
    type: 'bool',
    default: true,
    meta: 'BOOL',
    help: `hold a Lease before running controllers (${ENV.leaderElect};
default true; false only with a single replica)`,
  }),
  leaseName: option({
    flag: 'lease-name',
    env: ENV.leaseName,
    default: 'modelplane-operator',
    meta: 'NAME',
    help: `the Lease's name (${ENV.leaseName}; default modelplane-operator)`,
  }),
  leaseNamespace: option({
    flag: 'lease-namespace',
    env: [ENV.leaseNamespace, 'POD_NAMESPACE'],
    default: defaultNamespace,
    meta: 'NS',
    help: `the Lease's namespace (${ENV.leaseNamespace}; default: the pod's
namespace in a cluster, else default)`,
  }),
  leaseDurationMs: option({
    flag: 'lease-duration',
    env: ENV.leaseDuration,
    type: 'duration',
    min: 0.1,
    default: 15_000,
    meta: 'SECONDS',
    help: `how long a Lease holds without renewal (${ENV.leaseDuration}; default 15)`,
  }),
  renewDeadlineMs: option({
    flag: 'renew-deadline',
    env: ENV.renewDeadline,
    type: 'duration',
    min: 0.1,
    default: 10_000,
    meta: 'SECONDS',
    help: `how long the leader keeps trying to renew before it steps down
(${ENV.renewDeadline}; default 10)`,
  }),
  retryPeriodMs: option({
    flag: 'retry-period',
    env: ENV.retryPeriod,
    type: 'duration',
    min: 0.05,
    default: 2_000,
    meta: 'SECONDS',
    help: `pause between tries to acquire or renew (${ENV.retryPeriod}; default 2)`,
  }),
  http: option({
    flag: 'http-address',
    env: ENV.httpAddress,
    parse: (raw) => address(raw, true),
    default: () => ({ host: '0.0.0.0', port: 8081 }),
    meta: 'HOST:PORT',
    help: `health (/healthz, /readyz) and metrics (/metrics) server
(${ENV.httpAddress}; default 0.0.0.0:8081; "off" for none)`,
  }),
  logLevel: option({
    flag: 'log-level',
    env: [ENV.logLevel, 'LOG_LEVEL'],
    default: 'info',
    meta: 'LEVEL',
    help: `trace, debug, info, warn, error (${ENV.logLevel}, or LOG_LEVEL; default info)`,
  }),
  sidecarImage: option({
    flag: 'sidecar-image',
    env: ENV.sidecarImage,
    default: defaultSidecarImage,
    meta: 'IMAGE',
    help: `image of the sidecar container in model pods (${ENV.sidecarImage};
default ${defaultSidecarImage()})`,
  }),
  workers: option({
    flag: 'workers',
    env: ENV.workers,
    type: 'int',
    min: 1,
    max: 64,
    default: 16,
    meta: 'N',
    help: `concurrent reconciles per controller (${ENV.workers}; default 16)`,
  }),
  resyncPeriodMs: option({
    flag: 'resync-period',
    env: ENV.resyncPeriod,
    type: 'duration',
    min: 0,
    default: DEFAULT_RESYNC_MS,
    meta: 'SECONDS',
    help: `reconcile every object this often even without a change
(${ENV.resyncPeriod}; default ${DEFAULT_RESYNC_MS / 1000}; 0 = never)`,
  }),
  identity: option({
    flag: 'identity',
    env: [ENV.identity, 'POD_NAME'],
    meta: 'NAME',
    help: `this replica among the Lease candidates (${ENV.identity}, or
POD_NAME; default: the host name and a random suffix)`,
  }),
  shutdownTimeoutMs: option({
    flag: 'shutdown-timeout',
    env: ENV.shutdownTimeout,
    type: 'duration',
    min: 0,
    default: 30_000,
    meta: 'SECONDS',
    help: `how long running reconciles and gateway requests may finish
after SIGTERM (${ENV.shutdownTimeout}; default 30)`,
  }),
};

/** Where predictions are kept. */
const STORE = {
  store: option({
    flag: 'store',
    env: ENV.store,
    default: 'embedded',
    check: (v: string) =>
      (STORES as readonly string[]).includes(v) ? undefined : `want one of ${STORES.join(', ')}, got "${v}"`,
    meta: 'KIND',
    help: `where predictions are kept (${ENV.store}): embedded (PostgreSQL
in this process, in --store-dir; one replica), postgres (a server at
--database-url; any number of replicas) or memory (lost on exit);
default embedded`,
  }),
  storeDir: option({
    flag: 'store-dir',
    env: ENV.storeDir,
    default: '.modelplane/store',
    meta: 'DIR',
    help: `the embedded store's directory (${ENV.storeDir};
default .modelplane/store)`,
  }),
  databaseUrl: option({
    flag: 'database-url',
    env: ENV.databaseUrl,
    meta: 'URL',
    help: `postgres://user:password@host:5432/db of the postgres store
(${ENV.databaseUrl}; PG* variables fill what it leaves out)`,
  }),
  streamKeyFile: option({
    flag: 'stream-key-file',
    env: ENV.streamKeyFile,
    meta: 'PATH',
    help: `the key that signs stream URLs, shared by every replica
(${ENV.streamKeyFile}; default: one kept in the store)`,
  }),
  dataRetentionMs: option({
    flag: 'data-retention',
    env: ENV.dataRetention,
    type: 'duration',
    min: 1,
    default: 3_600_000,
    meta: 'SECONDS',
    help: `how long a finished prediction keeps its input, output and logs
(${ENV.dataRetention}; default 3600)`,
  }),
  recordRetentionMs: option({
    flag: 'record-retention',
    env: ENV.recordRetention,
    type: 'duration',
    min: 1,
    default: 30 * 86_400_000,
    meta: 'SECONDS',
    help: `how long the record of a finished prediction (status, times,
metrics, cost) is kept (${ENV.recordRetention}; default 2592000, 30 days)`,
  }),
  usageRetentionMs: option({
    flag: 'usage-retention',
    env: ENV.usageRetention,
    type: 'duration',
    min: 1,
    default: 400 * 86_400_000,
    meta: 'SECONDS',
    help: `how long usage (instance time by state, predictions, cost; in
five-minute buckets) is kept (${ENV.usageRetention}; default 34560000,
400 days)`,
  }),
};

/** The gateway role's settings. */
const GATEWAY = {
  gatewayAddress: option({
    flag: 'gateway-address',
    env: ENV.gatewayAddress,
    parse: (raw) => address(raw, false) as Address,
    default: () => ({ host: '0.0.0.0', port: 8000 }),
    meta: 'HOST:PORT',
    help: `the prediction API server (${ENV.gatewayAddress};
default 0.0.0.0:8000)`,
  }),
  publicUrl: option({
    flag: 'public-url',
    env: ENV.publicUrl,
    parse: publicUrl,
    meta: 'URL',
    help: `base URL callers reach the API at, without /v1, used in the
absolute URLs the API returns (${ENV.publicUrl}; default: from each
request's Host header)`,
  }),
  trustForwardedHeaders: option({
    flag: 'trust-forwarded-headers',
    env: ENV.trustForwardedHeaders,
    type: 'bool',
    default: false,
    meta: 'BOOL',
    help: `build URLs from X-Forwarded-Proto/-Host; only behind a proxy
that sets them (${ENV.trustForwardedHeaders}; default false)`,
  }),
  tokenNamespace: option({
    flag: 'token-namespace',
    env: ENV.tokenNamespace,
    meta: 'NS',
    help: `namespace of the API token Secrets and webhook signing Secrets
(${ENV.tokenNamespace}; default: the lease namespace)`,
  }),
  allowAnonymous: option({
    flag: 'allow-anonymous',
    env: ENV.allowAnonymous,
    type: 'list',
    meta: 'LIST',
    help: `namespaces callers without a token may act in, comma-separated
(${ENV.allowAnonymous}; default none: every request needs a token)`,
  }),
  tokenReviewAudiences: option({
    flag: 'token-review-audiences',
    env: ENV.tokenReviewAudiences,
    type: 'list',
    meta: 'LIST',
    help: `audiences Kubernetes tokens must be for, comma-separated
(${ENV.tokenReviewAudiences}; default: the API server's)`,
  }),
  webhookAllowCidrs: allowCidrsOption(ENV.webhookAllowCidrs),
  queueBytesPerDeployment: option({
    flag: 'queue-bytes-per-deployment',
    env: ENV.queueBytesPerDeployment,
    parse: parseBytes,
    default: 256 * 2 ** 20,
    meta: 'BYTES',
    help: `the most bytes of inputs this replica holds for one deployment's
predictions, queued or running; past it new ones get 429 with Retry-After
(${ENV.queueBytesPerDeployment}; default 256Mi)`,
  }),
  queueBytesPerReplica: option({
    flag: 'queue-bytes-per-replica',
    env: ENV.queueBytesPerReplica,
    parse: parseBytes,
    default: 2 ** 30,
    meta: 'BYTES',
    help: `the most bytes of inputs this replica holds for all deployments
together (${ENV.queueBytesPerReplica}; default 1Gi)`,
  }),
  maxOutputBytes: option({
    flag: 'max-output-bytes',
    env: ENV.maxOutputBytes,
    // The sidecars get it too, and take no less than 1Ki.
    parse: (raw) => {
      const n = parseBytes(raw);
      if (n < 1024) throw new Error(`want at least 1Ki (1024 bytes), got "${raw}"`);
      return n;
    },
    default: 16 * 2 ** 20,
    meta: 'BYTES',
    help: `the most bytes of output (its JSON) a prediction may bring from its
instance: past it the prediction fails; model pods get the same cap
(${ENV.maxOutputBytes}; default 16Mi)`,
  }),
};

const FILE_BACKENDS = ['directory', 's3'] as const;

/** Where files (uploads, prediction outputs) are kept (docs/files.md). */
const FILES = {
  files: option({
    flag: 'files',
    env: ENV.files,
    default: 'directory',
    check: (v: string) =>
      (FILE_BACKENDS as readonly string[]).includes(v)
        ? undefined
        : `want one of ${FILE_BACKENDS.join(', ')}, got "${v}"`,
    meta: 'KIND',
    help: `where files are kept (${ENV.files}): directory (--files-dir;
one replica, or a volume every replica mounts) or s3 (any
S3-compatible store; credentials from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY or the SDK's other sources); default directory`,
  }),
  filesDir: option({
    flag: 'files-dir',
    env: ENV.filesDir,
    default: '.modelplane/files',
    meta: 'DIR',
    help: `the files directory (${ENV.filesDir}; default .modelplane/files)`,
  }),
  filesS3Endpoint: option({
    flag: 'files-s3-endpoint',
    env: ENV.filesS3Endpoint,
    meta: 'URL',
    help: `the S3-compatible endpoint (${ENV.filesS3Endpoint}; default AWS's)`,
  }),
  filesS3Region: option({
    flag: 'files-s3-region',
    env: ENV.filesS3Region,
    default: 'us-east-1',
    meta: 'REGION',
    help: `the bucket's region (${ENV.filesS3Region}; default us-east-1)`,
  }),
  filesS3Bucket: option({
    flag: 'files-s3-bucket',
    env: ENV.filesS3Bucket,
    meta: 'NAME',
    help: `the bucket (${ENV.filesS3Bucket}; needed with --files=s3)`,
  }),
  filesS3Prefix: option({
    flag: 'files-s3-prefix',
    env: ENV.filesS3Prefix,
    default: '',
    meta: 'PREFIX',
    help: `prefix of every key in the bucket (${ENV.filesS3Prefix}; default none)`,
  }),
  filesMaxSize: option({
    flag: 'files-max-size',
    env: ENV.filesMaxSize,
    type: 'int',
    min: 1,
    default: 100 * 1024 * 1024,
    meta: 'BYTES',
    help: `largest file accepted (${ENV.filesMaxSize}; default 104857600, 100 MiB)`,
  }),
  filesUploadTtlMs: option({
    flag: 'files-upload-ttl',
    env: ENV.filesUploadTtl,
    type: 'duration',
    min: 1,
    default: 86_400_000,
    meta: 'SECONDS',
    help: `how long an uploaded file is kept (${ENV.filesUploadTtl}; default
86400); output files go with their prediction's data`,
  }),
  filesInternalUrl: option({
    flag: 'files-internal-url',
    env: ENV.filesInternalUrl,
    parse: publicUrl,
    meta: 'URL',
    help: `base URL, without /v1, at which model pods reach the gateway to
upload output files, e.g. http://modelplane.modelplane.svc:8000
(${ENV.filesInternalUrl}; default: --public-url, else the URL each
prediction was created at)`,
  }),
};

/** The webhook role's settings. */
const WEBHOOK = {
  webhookAddress: option({
    flag: 'webhook-address',
    env: ENV.webhookAddress,
    parse: (raw) => address(raw, false) as Address,
    default: () => ({ host: '0.0.0.0', port: 9443 }),
    meta: 'HOST:PORT',
    help: `the admission webhook's HTTPS server (${ENV.webhookAddress};
default 0.0.0.0:9443)`,
  }),
  webhookConfiguration: option({
    flag: 'webhook-configuration',
    env: ENV.webhookConfiguration,
    default: 'modelplane',
    meta: 'NAME',
    help: `the ValidatingWebhookConfiguration whose caBundle the operator
keeps current (${ENV.webhookConfiguration}; default modelplane)`,
  }),
  webhookCertSecret: option({
    flag: 'webhook-cert-secret',
    env: ENV.webhookCertSecret,
    default: 'modelplane-webhook-cert',
    meta: 'NAME',
    help: `the Secret, in the lease namespace, holding the webhook's CA and
serving certificate (${ENV.webhookCertSecret}; default
modelplane-webhook-cert)`,
  }),
  webhookCertNames: option({
    flag: 'webhook-cert-names',
    env: ENV.webhookCertNames,
    type: 'list',
    meta: 'LIST',
    help: `DNS names and IP addresses of the serving certificate, comma-
separated (${ENV.webhookCertNames}; default
modelplane-webhook.<lease namespace>.svc)`,
  }),
  webhookCertDir: option({
    flag: 'webhook-cert-dir',
    env: ENV.webhookCertDir,
    meta: 'DIR',
    help: `read tls.crt and tls.key from DIR (cert-manager's Secret,
mounted) instead of keeping certificates of its own
(${ENV.webhookCertDir}; default: its own)`,
  }),
};

/** The autoscaler's settings (it runs with the controllers). */
const AUTOSCALER = {
  autoscalerTickMs: option({
    flag: 'autoscaler-tick',
    env: ENV.autoscalerTick,
    type: 'duration',
    min: 0.05,
    default: 1_000,
    meta: 'SECONDS',
    help: `time between scaling decisions (${ENV.autoscalerTick}; default 1;
a gateway holding a request with no ready instance also
triggers one at once)`,
  }),
  podDeletionCost: option({
    flag: 'pod-deletion-cost',
    env: ENV.podDeletionCost,
    type: 'bool',
    default: false,
    meta: 'BOOL',
    help: `mark busy model pods with controller.kubernetes.io/pod-deletion-cost
before a scale-down, so idle pods go first (${ENV.podDeletionCost};
default false: it needs patch on every pod, the optional
ClusterRole modelplane-operator-pod-deletion-cost of rbac.yaml)`,
  }),
  autoscalerPeers: option({
    flag: 'autoscaler-peers',
    env: ENV.autoscalerPeers,
    default: 'auto',
    meta: 'MODE',
    help: `gather demand from the other operator replicas: "auto" (on when
running in a pod with a ServiceAccount token and the HTTP
server on), "off", or the
label selector of the operator's pods (${ENV.autoscalerPeers};
default auto; auto selects
${DEFAULT_PEER_SELECTOR}).
Each replica serves GET /autoscaler/demand (and the leader
POST /autoscaler/poke) on the --http-address server to
callers whose bearer token a TokenReview finds to be this
operator's own ServiceAccount`,
  }),
  autoscalerPeerPort: option({
    flag: 'autoscaler-peer-port',
    env: ENV.autoscalerPeerPort,
    type: 'int',
    min: 1,
    max: 65535,
    meta: 'N',
    help: `the peers' --http-address port, unless their pod names a
container port "metrics" (${ENV.autoscalerPeerPort}; default: the
port of --http-address)`,
  }),
  autoscalerPeerTokenFile: option({
    flag: 'autoscaler-peer-token-file',
    env: ENV.autoscalerPeerTokenFile,
    default: SA_TOKEN_FILE,
    meta: 'PATH',
    help: `
the token sent to peers, and whose subject peers accept
(${ENV.autoscalerPeerTokenFile}; default ${SA_TOKEN_FILE})`,
  }),
};

/** Every setting of `modelplane operator`. */
export const OPTIONS = { ...GENERAL, ...STORE, ...FILES, ...GATEWAY, ...WEBHOOK, ...AUTOSCALER };

const COLUMN = 29;

export const USAGE = `Usage: modelplane operator [flags]

Runs the modelplane operator. The controllers (HardwareClass, Model, ModelVersion,
Deployment, Prediction) and the autoscaler run only in the replica that holds the leader
Lease; the gateway (the prediction API under /v1), the admission webhook and /healthz,
/readyz and /metrics are served by every replica. Each flag can also be set by the environment variable shown; a flag wins over its
variable.

Flags:
${formatOptions(Object.values(GENERAL), COLUMN)}
Prediction store:
${formatOptions(Object.values(STORE), COLUMN)}
Files (role gateway):
${formatOptions(Object.values(FILES), COLUMN)}
Gateway flags (role gateway):
${formatOptions(Object.values(GATEWAY), COLUMN)}
Webhook flags (role webhook):
${formatOptions(Object.values(WEBHOOK), COLUMN)}
Autoscaler (runs with the controllers, on the Lease holder):
${formatOptions([...Object.values(AUTOSCALER), HELP_ROW], COLUMN)}`;

export interface OperatorConfig {
  kubeconfig: string | undefined;
  roles: Role[];
  leaderElect: boolean;
  leaseName: string;
  leaseNamespace: string;
  leaseDurationMs: number;
  renewDeadlineMs: number;
  retryPeriodMs: number;
  http: Address | false;
  logLevel: string;
  sidecarImage: string;
  workers: number;
  resyncPeriodMs: number;
  identity: string | undefined;
  shutdownTimeoutMs: number;
  autoscalerTickMs: number;
  /** Mark busy pods with their deletion cost before a scale-down (needs patch on pods). */
  podDeletionCost: boolean;
  /** Demand across replicas: off, or the operator pods' selector and how to reach and trust them. */
  autoscalerPeers: false | { labelSelector: string; port: number; tokenFile: string; namespace: string };
  store: {
    kind: StoreKind;
    dir: string;
    databaseUrl: string | undefined;
    streamKeyFile: string | undefined;
    dataRetentionMs: number;
    recordRetentionMs: number;
    usageRetentionMs: number;
  };
  files: {
    kind: 'directory' | 's3';
    dir: string;
    s3: { endpoint: string | undefined; region: string; bucket: string; prefix: string };
    maxBytes: number;
    uploadTtlMs: number;
    internalUrl: string | undefined;
  };
  gateway: {
    address: Address;
    publicUrl: string | undefined;
    trustForwardedHeaders: boolean;
    tokenNamespace: string;
    allowAnonymous: string[];
    tokenReviewAudiences: string[];
    /** CIDRs webhooks may reach besides public addresses (lib/egress.ts). */
    webhookAllowCidrs: string[];
    /** Byte budgets of the inputs held (operator/predictions/budget.ts). */
    inputBudget: { perDeploymentBytes: number; perReplicaBytes: number };
    /** The most bytes of output a prediction may bring from its instance; the sidecars get it too. */
    maxOutputBytes: number;
  };
  webhook: {
    address: Address;
    /** The ValidatingWebhookConfiguration whose caBundle is kept current. */
    configurationName: string;
    certSecret: string;
    certNamespace: string;
    certNames: string[];
    /** Certificates read from here (cert-manager) instead of kept by the operator. */
    certDir: string | undefined;
  };
}

/**
 * The settings of `argv` and `env` (flags first, then the environment, then defaults), or
 * `'help'` when asked for. Throws ConfigError on a bad value.
 */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): OperatorConfig | 'help' {
  const v = parseOptions(OPTIONS, argv, env);
  if (v === 'help') return v;
  const { http, autoscalerPeerTokenFile: tokenFile } = v;
  if (v.store === 'postgres' && !v.databaseUrl && !env.PGHOST)
    throw new ConfigError(
      `--store=postgres needs --database-url (or ${ENV.databaseUrl}, or the PG* variables)`,
    );
  if (v.files === 's3' && !v.filesS3Bucket)
    throw new ConfigError(`--files=s3 needs --files-s3-bucket (or ${ENV.filesS3Bucket})`);
  const mode = v.autoscalerPeers;
  let autoscalerPeers: OperatorConfig['autoscalerPeers'] = false;
  // auto: on in a pod (it has a ServiceAccount token) that serves HTTP.
  if (mode !== 'off' && !(mode === 'auto' && (!existsSync(tokenFile) || !http))) {
    if (!http)
      throw new ConfigError(
        '--autoscaler-peers needs the HTTP server: set --http-address, or --autoscaler-peers=off',
      );
    autoscalerPeers = {
      labelSelector: mode === 'auto' ? DEFAULT_PEER_SELECTOR : mode,
      port: v.autoscalerPeerPort ?? http.port,
      tokenFile,
      namespace: env.POD_NAMESPACE || defaultNamespace(),
    };
  }
  return {
    kubeconfig: v.kubeconfig,
    roles: v.roles as Role[],
    leaderElect: v.leaderElect,
    leaseName: v.leaseName,
    leaseNamespace: v.leaseNamespace,
    leaseDurationMs: v.leaseDurationMs,
    renewDeadlineMs: v.renewDeadlineMs,
    retryPeriodMs: v.retryPeriodMs,
    http,
    logLevel: v.logLevel,
    sidecarImage: v.sidecarImage,
    workers: v.workers,
    resyncPeriodMs: v.resyncPeriodMs,
    identity: v.identity,
    shutdownTimeoutMs: v.shutdownTimeoutMs,
    autoscalerTickMs: v.autoscalerTickMs,
    podDeletionCost: v.podDeletionCost,
    autoscalerPeers,
    store: {
      kind: v.store as StoreKind,
      dir: v.storeDir,
      databaseUrl: v.databaseUrl,
      streamKeyFile: v.streamKeyFile,
      dataRetentionMs: v.dataRetentionMs,
      recordRetentionMs: v.recordRetentionMs,
      usageRetentionMs: v.usageRetentionMs,
    },
    files: {
      kind: v.files as 'directory' | 's3',
      dir: v.filesDir,
      s3: {
        endpoint: v.filesS3Endpoint,
        region: v.filesS3Region,
        bucket: v.filesS3Bucket ?? '',
        prefix: v.filesS3Prefix,
      },
      maxBytes: v.filesMaxSize,
      uploadTtlMs: v.filesUploadTtlMs,
      internalUrl: v.filesInternalUrl,
    },
    gateway: {
      address: v.gatewayAddress,
      publicUrl: v.publicUrl,
      trustForwardedHeaders: v.trustForwardedHeaders,
      tokenNamespace: v.tokenNamespace ?? v.leaseNamespace,
      allowAnonymous: v.allowAnonymous,
      tokenReviewAudiences: v.tokenReviewAudiences,
      webhookAllowCidrs: v.webhookAllowCidrs,
      inputBudget: { perDeploymentBytes: v.queueBytesPerDeployment, perReplicaBytes: v.queueBytesPerReplica },
      maxOutputBytes: v.maxOutputBytes,
    },
    webhook: {
      address: v.webhookAddress,
      configurationName: v.webhookConfiguration,
      certSecret: v.webhookCertSecret,
      certNamespace: v.leaseNamespace,
      certNames: v.webhookCertNames.length
        ? v.webhookCertNames
        : [`modelplane-webhook.${v.leaseNamespace}.svc`],
      certDir: v.webhookCertDir,
    },
  };
}
