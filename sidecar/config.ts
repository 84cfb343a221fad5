/**
 * Settings of `modelplane sidecar`: each is a flag, or an environment variable (the way the
 * operator sets them in the pod), flag first.
 */
import { parseArgs } from 'node:util';
import { isDecimal } from './decimal.ts';

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
  webhookToken: 'WEBHOOK_AUTH_TOKEN',
  deployment: 'MODELPLANE_DEPLOYMENT',
  version: 'MODELPLANE_MODEL_VERSION',
  hardware: 'MODELPLANE_HARDWARE',
  pricePerSecond: 'MODELPLANE_PRICE_PER_SECOND',
  drainTimeout: 'MODELPLANE_DRAIN_TIMEOUT',
  drainReadTimeout: 'MODELPLANE_DRAIN_READ_TIMEOUT',
  retention: 'MODELPLANE_RETENTION',
  shutdownModel: 'MODELPLANE_SHUTDOWN_MODEL',
  logLevel: 'MODELPLANE_LOG_LEVEL',
  progress: 'MODELPLANE_PROGRESS',
} as const;

/**
 * How the sidecar follows a prediction on the model server: `webhook` (async create, Cog's
 * webhooks bring logs and output as they happen) or `final` (a held request that answers
 * when the prediction ends: no live logs or output, the least overhead).
 */
export type Progress = 'webhook' | 'final';

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
  /** Bearer token the model server sends on its webhooks (its WEBHOOK_AUTH_TOKEN). */
  webhookToken: string | undefined;
  deployment: string;
  version: string;
  hardware: string;
  /** Price of one second of this hardware, a decimal string. */
  pricePerSecond: string;
  /** Seconds a drain may take before the sidecar exits anyway; 0 = until done. */
  drainTimeout: number;
  /**
   * Seconds a drain waits, once its predictions have ended, for their callers to read the
   * final records (the gateway reads each after the stream's `done`); 0 = no wait.
   */
  drainReadTimeout: number;
  /** Seconds finished predictions stay readable. */
  retention: number;
  /** Whether to ask the model server to shut down (POST /shutdown) when the sidecar exits. */
  shutdownModel: boolean;
  logLevel: string;
  progress: Progress;
}

export class ConfigError extends Error {}

const FLAGS = {
  host: { type: 'string' },
  port: { type: 'string' },
  'metrics-host': { type: 'string' },
  'metrics-port': { type: 'string' },
  'model-url': { type: 'string' },
  concurrency: { type: 'string' },
  'queue-size': { type: 'string' },
  'setup-timeout': { type: 'string' },
  'predict-timeout': { type: 'string' },
  'health-interval': { type: 'string' },
  'webhook-host': { type: 'string' },
  'webhook-port': { type: 'string' },
  deployment: { type: 'string' },
  'model-version': { type: 'string' },
  hardware: { type: 'string' },
  'price-per-second': { type: 'string' },
  'drain-timeout': { type: 'string' },
  'drain-read-timeout': { type: 'string' },
  retention: { type: 'string' },
  'shutdown-model': { type: 'string' },
  'log-level': { type: 'string' },
  progress: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

export const USAGE = `Usage: modelplane sidecar [flags]

Serves the prediction API of one model pod in front of its Cog model server: queues
predictions to the server's concurrency, streams output and logs, meters runtime and cost,
and drains on SIGTERM. Each flag can also be set by the environment variable shown.

Flags:
  --host ADDR              API address (${ENV.host}; default 0.0.0.0)
  --port N                 API port (${ENV.port}; default 8080)
  --metrics-host ADDR      metrics address (${ENV.metricsHost}; default: --host)
  --metrics-port N         Prometheus metrics port (${ENV.metricsPort}; default 9090)
  --model-url URL          the Cog server (${ENV.modelUrl}; default http://127.0.0.1:5000)
  --concurrency N          predictions the model server runs at once, its slots
                           (${ENV.concurrency}; default 1)
  --queue-size N           predictions that may wait for a slot (${ENV.queueSize}; default 16)
  --setup-timeout SECONDS  not ready with reason SetupTimeout after this (${ENV.setupTimeout};
                           default 1800; 0 waits forever)
  --predict-timeout SECONDS
                           cancel and fail a prediction running longer (${ENV.predictTimeout};
                           default 0, no limit)
  --health-interval SECONDS
                           how often to check the model server (${ENV.healthInterval}; default 0.5)
  --webhook-host ADDR      loopback address the model server's webhooks come to
                           (${ENV.webhookHost}; default 127.0.0.1)
  --webhook-port N         port for those webhooks (${ENV.webhookPort}; default 0, any free one)
  --deployment NAME        metric and prediction label (${ENV.deployment})
  --model-version ID       metric and prediction label (${ENV.version})
  --hardware SKU           metric and prediction label (${ENV.hardware})
  --price-per-second DEC   price of a second of this hardware, a decimal string
                           (${ENV.pricePerSecond}; default 0)
  --drain-timeout SECONDS  on SIGTERM, exit after this even if work remains
                           (${ENV.drainTimeout}; default 0, finish everything)
  --drain-read-timeout SECONDS
                           on SIGTERM, once the predictions that were running or queued
                           have ended, wait up to this long for their callers to read the
                           final records before exiting (${ENV.drainReadTimeout}; default 10)
  --retention SECONDS      how long finished predictions stay readable (${ENV.retention};
                           default 600)
  --shutdown-model BOOL    POST /shutdown to the model server on exit (${ENV.shutdownModel};
                           default true)
  --progress MODE          webhook: Cog's webhooks bring logs and output as they happen;
                           final: one held request per prediction, results at the end, the
                           least overhead (${ENV.progress}; default webhook)
  --log-level LEVEL        trace, debug, info, warn, error (${ENV.logLevel}; default info)
  -h, --help               show this help

Environment only:
  ${ENV.webhookToken}       bearer token the model server puts on its webhooks; the same
                           value must be in the model container's environment

Endpoints: see docs/sidecar.md.
`;

function num(
  name: string,
  raw: string | undefined,
  def: number,
  opts: { min?: number; int?: boolean } = {},
): number {
  if (raw === undefined || raw === '') return def;
  const v = Number(raw);
  if (!Number.isFinite(v)) throw new ConfigError(`${name}: "${raw}" is not a number`);
  if (opts.int && !Number.isInteger(v)) throw new ConfigError(`${name}: "${raw}" is not a whole number`);
  if (opts.min !== undefined && v < opts.min) throw new ConfigError(`${name}: ${v} is below ${opts.min}`);
  return v;
}

function bool(name: string, raw: string | undefined, def: boolean): boolean {
  if (raw === undefined || raw === '') return def;
  if (/^(1|true|yes|on)$/i.test(raw)) return true;
  if (/^(0|false|no|off)$/i.test(raw)) return false;
  throw new ConfigError(`${name}: "${raw}" is not true or false`);
}

/** Parses flags and environment; returns `help` when usage was asked for. */
export function parseConfig(argv: string[], env: NodeJS.ProcessEnv): SidecarConfig | 'help' {
  let values: Partial<Record<keyof typeof FLAGS, string | boolean>>;
  try {
    ({ values } = parseArgs({ args: argv, options: FLAGS, strict: true, allowPositionals: false }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (values.help) return 'help';
  const pick = (flag: keyof typeof FLAGS, envName: string): string | undefined => {
    const v = values[flag];
    return typeof v === 'string' ? v : env[envName];
  };
  const host = pick('host', ENV.host) || '0.0.0.0';
  const modelUrl = (pick('model-url', ENV.modelUrl) || 'http://127.0.0.1:5000').replace(/\/+$/, '');
  try {
    new URL(modelUrl);
  } catch {
    throw new ConfigError(`--model-url: "${modelUrl}" is not a URL`);
  }
  const price = pick('price-per-second', ENV.pricePerSecond) || '0';
  if (!isDecimal(price) || price.trim().startsWith('-')) {
    throw new ConfigError(`--price-per-second: "${price}" is not a non-negative decimal such as 0.000225`);
  }
  const logLevel = pick('log-level', ENV.logLevel) || 'info';
  if (!['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'].includes(logLevel)) {
    throw new ConfigError(`--log-level: "${logLevel}" is not one of trace, debug, info, warn, error`);
  }
  const progress = pick('progress', ENV.progress) || 'webhook';
  if (progress !== 'webhook' && progress !== 'final') {
    throw new ConfigError(`--progress: "${progress}" is not webhook or final`);
  }
  const token = env[ENV.webhookToken];
  return {
    host,
    port: num('--port', pick('port', ENV.port), 8080, { min: 0, int: true }),
    metricsHost: pick('metrics-host', ENV.metricsHost) || host,
    metricsPort: num('--metrics-port', pick('metrics-port', ENV.metricsPort), 9090, { min: 0, int: true }),
    modelUrl,
    concurrency: num('--concurrency', pick('concurrency', ENV.concurrency), 1, { min: 1, int: true }),
    queueSize: num('--queue-size', pick('queue-size', ENV.queueSize), 16, { min: 0, int: true }),
    setupTimeout: num('--setup-timeout', pick('setup-timeout', ENV.setupTimeout), 1800, { min: 0 }),
    predictTimeout: num('--predict-timeout', pick('predict-timeout', ENV.predictTimeout), 0, { min: 0 }),
    healthInterval: num('--health-interval', pick('health-interval', ENV.healthInterval), 0.5, { min: 0.01 }),
    webhookHost: pick('webhook-host', ENV.webhookHost) || '127.0.0.1',
    webhookPort: num('--webhook-port', pick('webhook-port', ENV.webhookPort), 0, { min: 0, int: true }),
    webhookToken: token ? token : undefined,
    deployment: pick('deployment', ENV.deployment) || '',
    version: pick('model-version', ENV.version) || '',
    hardware: pick('hardware', ENV.hardware) || '',
    pricePerSecond: price.trim(),
    drainTimeout: num('--drain-timeout', pick('drain-timeout', ENV.drainTimeout), 0, { min: 0 }),
    drainReadTimeout: num('--drain-read-timeout', pick('drain-read-timeout', ENV.drainReadTimeout), 10, {
      min: 0,
    }),
    retention: num('--retention', pick('retention', ENV.retention), 600, { min: 0 }),
    shutdownModel: bool('--shutdown-model', pick('shutdown-model', ENV.shutdownModel), true),
    logLevel,
    progress,
  };
}
