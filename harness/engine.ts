/**
 * The container engine and the image, for the tests that run the image: `hack/image.sh`
 * builds it (and picks the engine: docker when its daemon answers, else podman, which it
 * installs or names as missing), and this module gives testcontainers a Docker-compatible API
 * to drive — the Docker engine's own socket, or podman's API service started here for the
 * run, under the project's engine settings (hack/containers.conf).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './cluster/paths.ts';
import { GiveUp, GroupProcess, waitFor } from './processes.ts';
import { spawnTethered } from './tether.ts';

export const IMAGE_SCRIPT = join(repoRoot, 'hack', 'image.sh');
export const CONTAINERS_CONF = join(repoRoot, 'hack', 'containers.conf');

export type EngineName = 'docker' | 'podman';

/** Runs hack/image.sh with `args` and `env` added; resolves with its last line of output. */
async function imageScript(args: string[], env: NodeJS.ProcessEnv, log: (line: string) => void) {
  return new Promise<string>((resolve, reject) => {
    const child = spawnTethered('bash', [IMAGE_SCRIPT, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d;
    });
    child.stderr?.on('data', (d: Buffer) => {
      err += d;
      for (const line of d.toString().split('\n')) if (line.startsWith('image: ')) log(line);
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      const last = out.trim().split('\n').at(-1) ?? '';
      if (code === 0 && last) resolve(last);
      else
        reject(new Error(`hack/image.sh ${args.join(' ')} exited with ${code}:\n${err.trim().slice(-4000)}`));
    });
  });
}

/** The engine hack/image.sh builds with (podman installed first when missing and possible). */
export async function engineName(log: (line: string) => void = () => {}): Promise<EngineName> {
  return (await imageScript(['--engine'], {}, log)) as EngineName;
}

/**
 * Builds the image with base images made on this machine (no image registry is dialled, so
 * nothing is pulled) and returns its reference. A second call with the same inputs takes
 * about a second.
 */
export async function buildImage(log: (line: string) => void = () => {}): Promise<string> {
  return imageScript([], { MODELPLANE_IMAGE_BASES: 'local' }, log);
}

/** A GET over a Unix socket; resolves with the status code. */
function getUnix(socketPath: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET', timeout: 2000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

export interface EngineApi {
  name: EngineName;
  /** For DOCKER_HOST: `unix:///…`. */
  dockerHost: string;
  stop(): Promise<void>;
}

/**
 * A Docker-compatible API for the engine: DOCKER_HOST (or the Docker engine's default socket)
 * with docker; with podman, `podman system service` on a socket of its own until `stop`.
 */
export async function startEngineApi(name: EngineName): Promise<EngineApi> {
  if (name === 'docker') {
    return {
      name,
      dockerHost: process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock',
      stop: async () => {},
    };
  }
  const dir = mkdtempSync(join(tmpdir(), 'modelplane-podman-'));
  const socket = join(dir, 'podman.sock');
  const service = new GroupProcess(
    'podman system service',
    'podman',
    ['system', 'service', '--time=0', `unix://${socket}`],
    {
      logFile: join(dir, 'service.log'),
      env: { ...process.env, CONTAINERS_CONF: process.env.CONTAINERS_CONF ?? CONTAINERS_CONF },
    },
  );
  const stop = async () => {
    await service.stop(10_000);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(
      `podman's API on ${socket}`,
      async () => {
        if (!service.running) throw new GiveUp(`podman system service exited:\n${service.logTail()}`);
        return (await getUnix(socket, '/_ping')) === 200;
      },
      { timeoutMs: 30_000, intervalMs: 100 },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { name, dockerHost: `unix://${socket}`, stop };
}
