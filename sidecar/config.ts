/**
 * Settings of `modelplane sidecar`: each is a flag, or an environment variable (the way the
 * operator sets them in the pod), flag first.
 */
import { ConfigError, formatOptions, HELP_ROW, option, parseOptions } from '../lib/config.ts';
import { isDecimal } from '../lib/decimal.ts';
import { allowCidrsOption } from '../lib/egress.ts';
import { type Pricing, parsePricing } from '../lib/pricing.ts';

/** Environment variables the sidecar reads (the pod template sets these). */
export const ENV = {
  host: 'MODELPLANE_SIDECAR_HOST',
  port: 'MODELPLANE_SIDECAR_PORT',
  metricsHost: 'MODELPLANE_METRICS_HOST',
  metricsPort: 'MODELPLANE_METRICS_PORT',
  modelUrl: 'MODELPLANE_MODEL_URL',
  concurrency: 'COG_MAX_CONCURRENCY',
  queueSize: 'MODELPLANE_QUEUE_SIZE',
  setupTimeout: 'MODELPLANE_SETUP_TIMEOUT',
  predictTimeout: 'MODELPLANE_PREDICT_TIMEOUT',
  healthInterval: 'MODELPLANE_HEALTH_INTERVAL',
  webhookHost: 'MODELPLANE_WEBHOOK_HOST',
  webhookPort: 'MODELPLANE_WEBHOOK_PORT',
  uploadHost: 'MODELPLANE_UPLOAD_HOST',
  uploadPort: 'MODELPLANE_UPLOAD_PORT',
  webhookToken: 'WEBHOOK_AUTH_TOKEN',
  operatorKey: 'MODELPLANE_OPERATOR_KEY',
  podIp: 'MODELPLANE_POD_IP',
  deployment: 'MODELPLANE_DEPLOYMENT',
  version: 'MODELPLANE_MODEL_VERSION',
  hardware: 'MODELPLANE_HARDWARE',
  pricePerSecond: 'MODELPLANE_PRICE_PER_SECOND',
  pricing: 'MODELPLANE_PRICING',
  drainTimeout: 'MODELPLANE_DRAIN_TIMEOUT',
  drainReadTimeout: 'MODELPLANE_DRAIN_READ_TIMEOUT',
  usageReadTimeout: 'MODELPLANE_USAGE_READ_TIMEOUT',
  retention: 'MODELPLANE_RETENTION',
  retainMax: 'MODELPLANE_RETAIN_MAX',
  retainBytes: 'MODELPLANE_RETAIN_BYTES',
  maxLogBytes: 'MODELPLANE_MAX_LOG_BYTES',
  maxOutputBytes: 'MODELPLANE_MAX_OUTPUT_BYTES',
  shutdownModel: 'MODELPLANE_SHUTDOWN_MODEL',
  logLevel: 'MODELPLANE_LOG_LEVEL',
  progress: 'MODELPLANE_PROGRESS',
  liveAfter: 'MODELPLANE_LIVE_AFTER',
  webhookAllowCidrs: 'MODELPLANE_WEBHOOK_ALLOW_CIDRS',
} as const;

/**
 * How the sidecar follows a prediction on the model server: `webhook` (async create, Cog's
 * webhooks bring logs and output as they happen), `final` (a held request that answers
 * when the prediction ends: no live logs or output, the least overhead), or `auto` (held
 * unless something needs it live: progress.ts decides per prediction).
 */
export type Progress = 'auto' | 'webhook' | 'final';

export interface SidecarConfig {
  host: string;
  port: number;
  metricsHost: string;
  metricsPort: number;
  /** Base URL of the Cog server. */
  modelUrl: string;
  /** Predictions the model server runs at once (its COG_MAX_CONCURRENCY). */
  concurrency: number;
  /** Predictions waiting here for a slot; one more is refused with 429. */
  queueSize: number;
  /** Seconds to wait for setup before reporting SetupTimeout; 0 waits forever. */
  setupTimeout: number;
  /** Seconds a prediction may run before it is canceled and failed; 0 = no limit. */
  predictTimeout: number;
  /** Seconds between health checks of the model server. */
  healthInterval: number;
  /** Address the webhook listener binds, which the model server calls (loopback). */
  webhookHost: string;
  /** Port of the webhook listener; 0 picks a free one. */
  webhookPort: number;
  /** Address of the listener the model server uploads output files to (loopback). */
  uploadHost: string;
  /** Its port (Cog's --upload-url names it); 0 picks a free one. */
  uploadPort: number;
  /** Bearer token the model server sends on its webhooks (its WEBHOOK_AUTH_TOKEN). */
  webhookToken: string | undefined;
  /**
   * The operator's public key (base64 SPKI DER, Ed25519): when set, the API takes only calls
   * with a token it signed for this pod (lib/sidecar-token.ts); unset, the API is open.
   */
  operatorKey: string | undefined;
  /** This pod's IP: the operator's tokens name it with the API port. */
  podIp: string | undefined;
  deployment: string;
  version: string;
  hardware: string;
  /** Price of one second of this hardware, a decimal string. */
  pricePerSecond: string;
  /** How predictions are priced (the version's spec.pricing); undefined: by hardware time. */
  pricing: Pricing | undefined;
  /** Seconds a drain may take before the sidecar exits anyway; 0 = until done. */
  drainTimeout: number;
  /**
   * Seconds a drain waits, once its predictions have ended, for their callers to read the
   * final records (the gateway reads each after the stream's `done`); 0 = no wait.
   */
  drainReadTimeout: number;
  /** Seconds the drain waits at its end for the operator to read the final usage. */
  usageReadTimeout: number;
  /** Seconds finished predictions stay readable. */
  retention: number;
  /** The most finished predictions kept; past it the oldest go first (those already read before the others). */
  retainMax: number;
  /** The most bytes (logs, output, events) finished predictions hold together; past it as retainMax. */
  retainBytes: number;
  /** Bytes of logs a prediction keeps: the last ones, behind a marker line. */
  maxLogBytes: number;
  /** Bytes of output a prediction may have; past it it ends `failed`. */
  maxOutputBytes: number;
  /** Whether to ask the model server to shut down (POST /shutdown) when the sidecar exits. */
  shutdownModel: boolean;
  logLevel: string;
  progress: Progress;
  /**
   * `--progress auto`: a model whose recent predictions ran at least this many seconds has
   * its predictions followed live (by webhook).
   */
  liveAfter: number;
  /** CIDRs callers' webhooks may reach besides public addresses (lib/egress.ts). */
  webhookAllowCidrs: string[];
}

export { ConfigError };

const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** Every setting of `modelplane sidecar`, in the order --help lists them. */
const FLAGS = {
  host: option({
    flag: 'host',
    env: ENV.host,
    default: '0.0.0.0',
    meta: 'ADDR',
    help: `API address (${ENV.host}; default 0.0.0.0)`,
  }),
  port: option({
    flag: 'port',
    env: ENV.port,
    type: 'int',
    min: 0,
    default: 8080,
    meta: 'N',
    help: `API port (${ENV.port}; default 8080)`,
  }),
  metricsHost: option({
    flag: 'metrics-host',
    env: ENV.metricsHost,
    meta: 'ADDR',
    help: `metrics address (${ENV.metricsHost}; default: --host)`,
  }),
  metricsPort: option({
    flag: 'metrics-port',
    env: ENV.metricsPort,
    type: 'int',
    min: 0,
    default: 9090,
    meta: 'N',
    help: `Prometheus metrics port (${ENV.metricsPort}; default 9090)`,
  }),
  modelUrl: option({
    flag: 'model-url',
    env: ENV.modelUrl,
    parse: (raw) => {
      const url = raw.replace(/\/+$/, '');
      if (!URL.canParse(url)) throw new Error(`want a URL, got "${raw}"`);
      return url;
    },
    default: 'http://127.0.0.1:5000',
    meta: 'URL',
    help: `the Cog server (${ENV.modelUrl}; default http://127.0.0.1:5000)`,
  }),
  concurrency: option({
    flag: 'concurrency',
    env: ENV.concurrency,
    type: 'int',
    min: 1,
    default: 1,
    meta: 'N',
    help: `predictions the model server runs at once, its slots
(${ENV.concurrency}; default 1)`,
  }),
  queueSize: option({
    flag: 'queue-size',
    env: ENV.queueSize,
    type: 'int',
    min: 0,
    default: 16,
    meta: 'N',
    help: `predictions that may wait for a slot (${ENV.queueSize}; default 16)`,
  }),
  setupTimeout: option({
    flag: 'setup-timeout',
    env: ENV.setupTimeout,
    type: 'number',
    min: 0,
    default: 1800,
    meta: 'SECONDS',
    help: `not ready with reason SetupTimeout after this (${ENV.setupTimeout};
default 1800; 0 waits forever)`,
  }),
  predictTimeout: option({
    flag: 'predict-timeout',
    env: ENV.predictTimeout,
    type: 'number',
    min: 0,
    default: 0,
    meta: 'SECONDS',
    help: `
cancel and fail a prediction running longer (${ENV.predictTimeout};
default 0, no limit)`,
  }),
  healthInterval: option({
    flag: 'health-interval',
    env: ENV.healthInterval,
    type: 'number',
    min: 0.01,
    default: 0.5,
    meta: 'SECONDS',
    help: `
how often to check the model server (${ENV.healthInterval}; default 0.5)`,
  }),
  webhookHost: option({
    flag: 'webhook-host',
    env: ENV.webhookHost,
    default: '127.0.0.1',
    meta: 'ADDR',
    help: `loopback address the model server's webhooks come to
(${ENV.webhookHost}; default 127.0.0.1)`,
  }),
  webhookPort: option({
    flag: 'webhook-port',
    env: ENV.webhookPort,
    type: 'int',
    min: 0,
    default: 0,
    meta: 'N',
    help: `port for those webhooks (${ENV.webhookPort}; default 0, any free one)`,
  }),
  uploadHost: option({
    flag: 'upload-host',
    env: ENV.uploadHost,
    default: '127.0.0.1',
    meta: 'ADDR',
    help: `loopback address the model server uploads output files to
(${ENV.uploadHost}; default 127.0.0.1)`,
  }),
  uploadPort: option({
    flag: 'upload-port',
    env: ENV.uploadPort,
    type: 'int',
    min: 0,
    default: 8081,
    meta: 'N',
    help: `port of that listener, which the model server's --upload-url
names (${ENV.uploadPort}; default 8081)`,
  }),
  deployment: option({
    flag: 'deployment',
    env: ENV.deployment,
    default: '',
    meta: 'NAME',
    help: `metric and prediction label (${ENV.deployment})`,
  }),
  version: option({
    flag: 'model-version',
    env: ENV.version,
    default: '',
    meta: 'ID',
    help: `metric and prediction label (${ENV.version})`,
  }),
  hardware: option({
    flag: 'hardware',
    env: ENV.hardware,
    default: '',
    meta: 'SKU',
    help: `metric and prediction label (${ENV.hardware})`,
  }),
  pricePerSecond: option({
    flag: 'price-per-second',
    env: ENV.pricePerSecond,
    parse: (raw) => {
      const price = raw.trim();
      if (!isDecimal(price) || price.startsWith('-'))
        throw new Error(`want a non-negative decimal such as 0.000225, got "${raw}"`);
      return price;
    },
    default: '0',
    meta: 'DEC',
    help: `price of a second of this hardware, a decimal string
(${ENV.pricePerSecond}; default 0)`,
  }),
  pricing: option({
    flag: 'pricing',
    env: ENV.pricing,
    parse: (raw): Pricing | undefined => (raw.trim() ? parsePricing(raw) : undefined),
    meta: 'JSON',
    help: `how predictions are priced, the version's spec.pricing as JSON, e.g.
{"perUnit":{"output_token_count":"0.000001"}} (${ENV.pricing}; default: predict
seconds × the price per second)`,
  }),
  drainTimeout: option({
    flag: 'drain-timeout',
    env: ENV.drainTimeout,
    type: 'number',
    min: 0,
    default: 0,
    meta: 'SECONDS',
    help: `on SIGTERM, exit after this even if work remains
(${ENV.drainTimeout}; default 0, finish everything)`,
  }),
  drainReadTimeout: option({
    flag: 'drain-read-timeout',
    env: ENV.drainReadTimeout,
    type: 'number',
    min: 0,
    default: 10,
    meta: 'SECONDS',
    help: `
on SIGTERM, once the predictions that were running or queued
have ended, wait up to this long for their callers to read the
final records before exiting (${ENV.drainReadTimeout}; default 10)`,
  }),
  usageReadTimeout: option({
    flag: 'usage-read-timeout',
    env: ENV.usageReadTimeout,
    type: 'number',
    min: 0,
    default: 0,
    meta: 'SECONDS',
    help: `at the end of the drain, wait up to this long for the
operator to read the instance's final usage (GET /status)
(${ENV.usageReadTimeout}; default 0, no wait; pods get 5)`,
  }),
  retention: option({
    flag: 'retention',
    env: ENV.retention,
    type: 'number',
    min: 0,
    default: 600,
    meta: 'SECONDS',
    help: `how long finished predictions stay readable (${ENV.retention};
default 600)`,
  }),
  retainMax: option({
    flag: 'retain-max',
    env: ENV.retainMax,
    type: 'number',
    min: 1,
    default: 1000,
    meta: 'N',
    help: `the most finished predictions kept; past it the oldest go,
those already read first (${ENV.retainMax}; default 1000)`,
  }),
  retainBytes: option({
    flag: 'retain-bytes',
    env: ENV.retainBytes,
    type: 'number',
    min: 0,
    default: 64 << 20,
    meta: 'BYTES',
    help: `the most bytes of logs, output and events finished predictions
hold together; past it as --retain-max (${ENV.retainBytes};
default 67108864, 64 MiB)`,
  }),
  maxLogBytes: option({
    flag: 'max-log-bytes',
    env: ENV.maxLogBytes,
    type: 'number',
    min: 1024,
    default: 1 << 20,
    meta: 'BYTES',
    help: `bytes of logs a prediction keeps: the last ones, after a line
saying how many were dropped (${ENV.maxLogBytes}; default 1048576)`,
  }),
  maxOutputBytes: option({
    flag: 'max-output-bytes',
    env: ENV.maxOutputBytes,
    type: 'number',
    min: 1024,
    default: 16 << 20,
    meta: 'BYTES',
    help: `bytes of output (as JSON) a prediction may have; past it the
prediction fails (${ENV.maxOutputBytes}; default 16777216)`,
  }),
  webhookAllowCidrs: allowCidrsOption(ENV.webhookAllowCidrs),
  shutdownModel: option({
    flag: 'shutdown-model',
    env: ENV.shutdownModel,
    type: 'bool',
    default: true,
    meta: 'BOOL',
    help: `POST /shutdown to the model server on exit (${ENV.shutdownModel};
default true)`,
  }),
  progress: option({
    flag: 'progress',
    env: ENV.progress,
    oneOf: ['auto', 'webhook', 'final'],
    default: 'auto',
    meta: 'MODE',
    help: `auto: each prediction held (one synchronous request) unless
something needs its logs and output live, then by webhook;
webhook: always by webhook; final: always held
(${ENV.progress}; default auto; see docs/sidecar.md)`,
  }),
  liveAfter: option({
    flag: 'live-after',
    env: ENV.liveAfter,
    type: 'number',
    min: 0,
    default: 1,
    meta: 'SECONDS',
    help: `with --progress auto, follow predictions live once the model's
recent ones ran this long (${ENV.liveAfter}; default 1)`,
  }),
  logLevel: option({
    flag: 'log-level',
    env: ENV.logLevel,
    oneOf: LOG_LEVELS,
    default: 'info',
    meta: 'LEVEL',
    help: `trace, debug, info, warn, error (${ENV.logLevel}; default info)`,
  }),
};

/** Settings only the environment sets. */
const ENV_ONLY = {
  webhookToken: option({
    env: ENV.webhookToken,
    help: `bearer token the model server puts on its webhooks; the same
value must be in the model container's environment`,
  }),
  operatorKey: option({
    env: ENV.operatorKey,
    help: `the operator's public key (base64 SPKI DER, Ed25519); set, every
API call but GET /ready and /live needs a token it signed for
this pod; unset, the API is open (the operator always sets it)`,
  }),
  podIp: option({
    env: ENV.podIp,
    help: `this pod's IP, which the operator's tokens name (with the API port)`,
  }),
};

const COLUMN = 27;

export const USAGE = `Usage: modelplane sidecar [flags]

Serves the prediction API of one model pod in front of its Cog model server: queues
predictions to the server's concurrency, streams output and logs, meters runtime and cost,
and drains on SIGTERM. Each flag can also be set by the environment variable shown.

Flags:
${formatOptions([...Object.values(FLAGS), HELP_ROW], COLUMN)}
Environment only:
${formatOptions(Object.values(ENV_ONLY), COLUMN)}
Endpoints: see docs/sidecar.md.
`;

/** Parses flags and environment; returns `help` when usage was asked for. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): SidecarConfig | 'help' {
  const v = parseOptions({ ...FLAGS, ...ENV_ONLY }, argv, env);
  if (v === 'help') return v;
  if (v.operatorKey && !v.podIp)
    throw new ConfigError(
      `${ENV.operatorKey} needs ${ENV.podIp}: the operator's tokens name the pod's address`,
    );
  return { ...v, metricsHost: v.metricsHost ?? v.host, progress: v.progress as Progress };
}
