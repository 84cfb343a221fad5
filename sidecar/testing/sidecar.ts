/** Starts a sidecar in front of a model server, in this process or as `modelplane sidecar`. */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { freePort, GroupProcess, waitFor } from '../../harness/processes.ts';
import { parseConfig, type SidecarConfig } from '../config.ts';
import { Sidecar, type SidecarOptions } from '../sidecar.ts';

const cli = fileURLToPath(new URL('../../cli/modelplane.ts', import.meta.url));

/** Sidecar settings for a test: every listener on 127.0.0.1, ports picked by the system. */
export function testConfig(modelUrl: string, overrides: Partial<SidecarConfig> = {}): SidecarConfig {
  const base = parseConfig([], {});
  if (base === 'help') throw new Error('unreachable');
  return {
    ...base,
    host: '127.0.0.1',
    port: 0,
    metricsHost: '127.0.0.1',
    metricsPort: 0,
    uploadPort: 0,
    modelUrl,
    healthInterval: 0.1,
    deployment: 'test-deployment',
    version: 'test-version',
    hardware: 'gpu-t4',
    pricePerSecond: '0.000225',
    shutdownModel: false,
    // Webhook receivers in tests listen on loopback.
    webhookAllowCidrs: ['127.0.0.0/8', '::1'],
    ...overrides,
  };
}

export interface RunningSidecar {
  sidecar: Sidecar;
  api: string;
  metrics: string;
  /** The listener for the model server's webhooks. */
  webhook: string;
  logFile: string;
  stop(): Promise<void>;
}

export async function startSidecar(
  modelUrl: string,
  overrides: Partial<SidecarConfig> = {},
  opts: SidecarOptions = {},
): Promise<RunningSidecar> {
  const config = testConfig(modelUrl, overrides);
  const logFile = join(mkdtempSync(join(tmpdir(), 'modelplane-sidecar-')), 'sidecar.log');
  const logger = pino({ level: 'debug' }, pino.destination({ dest: logFile, sync: true }));
  const sidecar = new Sidecar(config, { logger, ...opts });
  const listening = await sidecar.start();
  return {
    sidecar,
    api: listening.api,
    metrics: listening.metrics,
    webhook: listening.webhook,
    logFile,
    stop: () => sidecar.stop(),
  };
}

export interface SidecarProcess {
  process: GroupProcess;
  api: string;
  metrics: string;
}

/**
 * Runs `modelplane sidecar` as its own process on free ports of 127.0.0.1; `opts.cli` runs
 * another checkout's `cli/modelplane.ts` (a benchmark's baseline).
 */
export async function spawnSidecar(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  opts: { cli?: string } = {},
): Promise<SidecarProcess> {
  const port = await freePort();
  const metricsPort = await freePort();
  const logFile = join(mkdtempSync(join(tmpdir(), 'modelplane-sidecar-')), 'sidecar.log');
  const proc = new GroupProcess(
    'modelplane sidecar',
    process.execPath,
    [
      opts.cli ?? cli,
      'sidecar',
      '--host',
      '127.0.0.1',
      '--port',
      String(port),
      '--metrics-port',
      String(metricsPort),
      ...args,
    ],
    // The upload listener on a free port too (an environment variable: a baseline ignores it).
    { logFile, env: { ...process.env, MODELPLANE_UPLOAD_PORT: '0', ...env } },
  );
  const api = `http://127.0.0.1:${port}`;
  await waitFor('the sidecar to listen', async () => {
    if (!proc.running) throw new Error(`the sidecar exited:\n${proc.log()}`);
    return (await fetch(`${api}/live`)).ok;
  });
  return { process: proc, api, metrics: `http://127.0.0.1:${metricsPort}` };
}
