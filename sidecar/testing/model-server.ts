/**
 * Runs the example Cog models of examples/models/ as real Cog servers (`python -m
 * cog.server.http` from the venv that hack/python.sh installs) on 127.0.0.1.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort, GroupProcess, waitFor } from '../../harness/processes.ts';
import { pythonEnv } from '../../harness/python.ts';

const root = fileURLToPath(new URL('../../', import.meta.url));
export const modelsDir = join(root, 'examples', 'models');
export const MODELS = ['echo', 'sleep', 'fail', 'stream', 'setup-fail', 'embed', 'upscale'] as const;
export type ModelName = (typeof MODELS)[number];

/** `predict.py:Runner`, from the model's cog.yaml. */
export function predictorRef(model: string): string {
  const yaml = readFileSync(join(modelsDir, model, 'cog.yaml'), 'utf8');
  const m = /^predict:\s*"?([^"\n]+)"?\s*$/m.exec(yaml);
  if (!m?.[1]) throw new Error(`examples/models/${model}/cog.yaml has no predict: line`);
  return m[1];
}

export interface ModelServerOptions {
  port?: number;
  /** COG_MAX_CONCURRENCY. */
  concurrency?: number;
  /** WEBHOOK_AUTH_TOKEN. */
  webhookToken?: string;
  /** COG_THROTTLE_RESPONSE_INTERVAL in seconds (Cog's default is 0.5). */
  throttleSeconds?: number;
  /** Cog's --upload-url: where it uploads the files its predictions return. */
  uploadUrl?: string;
  /** COG_SETUP_TIMEOUT in seconds. */
  setupTimeout?: number;
  /** Ignore SIGTERM; stop on POST /shutdown (what a pod's model container should do). */
  awaitExplicitShutdown?: boolean;
  env?: NodeJS.ProcessEnv;
  logDir?: string;
}

export class ModelServer {
  readonly model: string;
  readonly port: number;
  readonly url: string;
  readonly process: GroupProcess;

  constructor(model: string, port: number, proc: GroupProcess) {
    this.model = model;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.process = proc;
  }

  async health(): Promise<{ status: string; setup?: { logs?: string } }> {
    const res = await fetch(`${this.url}/health-check`);
    return (await res.json()) as { status: string; setup?: { logs?: string } };
  }

  /** Waits until the health check reports `statuses` (default READY). */
  async waitFor(statuses: string[] = ['READY'], timeoutMs = 60_000): Promise<string> {
    return waitFor(
      `${this.model} model server to report ${statuses.join(' or ')}`,
      async () => {
        if (!this.process.running)
          throw new Error(`the model server exited:\n${this.process.log().slice(-2000)}`);
        const h = await this.health();
        return statuses.includes(h.status) ? h.status : undefined;
      },
      { timeoutMs, intervalMs: 50 },
    );
  }

  /** POST /shutdown (honoured even with --await-explicit-shutdown), then stops the group. */
  async stop(): Promise<void> {
    if (this.process.running) {
      try {
        await fetch(`${this.url}/shutdown`, { method: 'POST', signal: AbortSignal.timeout(1000) });
        await Promise.race([this.process.exited, new Promise((r) => setTimeout(r, 2000))]);
      } catch {
        // not answering: the signals below end it
      }
    }
    await this.process.stop();
  }
}

/** Starts the Cog server of `examples/models/<model>` (not waiting for its setup). */
export async function startModelServer(model: string, opts: ModelServerOptions = {}): Promise<ModelServer> {
  const env = pythonEnv();
  const port = opts.port ?? (await freePort());
  const logDir = opts.logDir ?? mkdtempSync(join(tmpdir(), `modelplane-${model}-`));
  const args = ['-m', 'cog.server.http', '--host', '127.0.0.1'];
  if (opts.awaitExplicitShutdown) args.push('--await-explicit-shutdown', 'true');
  if (opts.uploadUrl) args.push('--upload-url', opts.uploadUrl);
  const childEnv: NodeJS.ProcessEnv = {
    ...process.env,
    // coglet starts its worker as `python` from PATH: the venv's must come first.
    PATH: `${join(env, 'bin')}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    VIRTUAL_ENV: env,
    PORT: String(port),
    COG_PREDICT_TYPE_STUB: predictorRef(model),
    COG_MAX_CONCURRENCY: String(opts.concurrency ?? 1),
    COG_THROTTLE_RESPONSE_INTERVAL: String(opts.throttleSeconds ?? 0.5),
    PYTHONUNBUFFERED: '1',
    ...(opts.webhookToken ? { WEBHOOK_AUTH_TOKEN: opts.webhookToken } : {}),
    ...(opts.setupTimeout ? { COG_SETUP_TIMEOUT: String(opts.setupTimeout) } : {}),
    ...opts.env,
  };
  const proc = new GroupProcess(`cog ${model}`, join(env, 'bin', 'python'), args, {
    logFile: join(logDir, `cog-${model}.log`),
    env: childEnv,
    cwd: join(modelsDir, model),
  });
  return new ModelServer(model, port, proc);
}
