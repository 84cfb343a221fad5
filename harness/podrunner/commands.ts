/**
 * The command lines and environments of the processes the local pod runner starts for a
 * pod's containers. Every pod shares one machine, so what a container would bind or dial on
 * its own loopback (127.0.0.1, localhost, 0.0.0.0) is moved to the pod's own address.
 */
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { IContainer } from 'kubernetes-models/v1/Container';
import { repoRoot } from '../cluster/paths.ts';
import type { ImagePlan } from './images.ts';

/** What a container runs: its command and args. */
export type ContainerCommand = Pick<IContainer, 'command' | 'args'>;

/** A container's process: what to run, where, with what environment. */
export interface Launch {
  command: string;
  args: string[];
  cwd?: string;
  env: Record<string, string>;
}

/**
 * The process of a container that can run here: a Cog image as the Cog server of its predictor
 * directory (with the Python of the venv `venv()` names), the modelplane image as this
 * checkout's `modelplane` CLI. `env` is the container's resolved environment. Throws when the
 * container asks for something the runner cannot run.
 */
export function containerLaunch(
  plan: Exclude<ImagePlan, { kind: 'unknown' }>,
  c: Pick<IContainer, 'command' | 'args' | 'ports'>,
  env: Record<string, string>,
  pod: { ip: string; name: string },
  venv: () => string,
): Launch {
  const base: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
    HOME: process.env.HOME ?? '/tmp',
    TMPDIR: process.env.TMPDIR ?? tmpdir(),
    HOSTNAME: pod.name,
  };
  if (plan.kind === 'cog') {
    const dir = venv();
    const port = env.PORT ?? String(c.ports?.[0]?.containerPort ?? 5000);
    return {
      command: join(dir, 'bin', 'python'),
      args: cogServerArgs(c, pod.ip),
      cwd: plan.dir,
      env: {
        ...base,
        // The Cog server starts its worker as `python` from PATH: the venv's comes first.
        PATH: `${join(dir, 'bin')}:${base.PATH}`,
        VIRTUAL_ENV: dir,
        PYTHONUNBUFFERED: '1',
        COG_PREDICT_TYPE_STUB: plan.predictor,
        ...env,
        PORT: port,
      },
    };
  }
  const rewritten = rewriteModelplane(modelplaneArgs(c), env, pod.ip);
  return {
    command: process.execPath,
    args: [join(repoRoot, 'cli', 'modelplane.ts'), ...rewritten.args],
    env: { ...base, ...rewritten.env },
  };
}

/** Cog images run `python -m cog.server.http` (under tini) when no command or args are given. */
export const COG_DEFAULT_ARGS = ['python', '-m', 'cog.server.http'];

/**
 * The flags for `python -m cog.server.http` of a Cog container (its command and args, or the
 * image's default), with `--host` set to the pod's IP. Anything other than the Cog server is
 * an error: the runner has only the predictor directory, not the image.
 */
export function cogServerArgs(c: ContainerCommand, podIP: string): string[] {
  let argv = [...(c.command ?? []), ...(c.args ?? [])];
  if (argv.length === 0) argv = [...COG_DEFAULT_ARGS];
  // tini, the Cog images' entrypoint, may be named explicitly.
  if (argv[0] && basename(argv[0]) === 'tini') {
    argv = argv.slice(1);
    if (argv[0] === '--') argv = argv.slice(1);
  }
  const py = argv[0] ? basename(argv[0]) : '';
  if (!/^python(3(\.\d+)?)?$/.test(py) || argv[1] !== '-m' || argv[2] !== 'cog.server.http') {
    throw new Error(
      `the local pod runner runs a Cog container as "python -m cog.server.http [flags]"; this one asks for "${argv.join(' ')}"`,
    );
  }
  const flags: string[] = [];
  const rest = argv.slice(3);
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--host') {
      i++;
      continue;
    }
    if (a.startsWith('--host=')) continue;
    // The sidecar's upload listener is on the pod's own loopback: the pod's IP here.
    if (a === '--upload-url' && i + 1 < rest.length) {
      flags.push(a, rewriteUrl(rest[++i]!, podIP));
      continue;
    }
    if (a.startsWith('--upload-url=')) {
      flags.push(`--upload-url=${rewriteUrl(a.slice('--upload-url='.length), podIP)}`);
      continue;
    }
    flags.push(a);
  }
  return ['-m', 'cog.server.http', ...flags, '--host', podIP];
}

/** Whether the Cog flags ask the server to ignore SIGTERM (`--await-explicit-shutdown true`). */
export function awaitsExplicitShutdown(args: readonly string[]): boolean {
  const i = args.findIndex(
    (a) => a === '--await-explicit-shutdown' || a.startsWith('--await-explicit-shutdown='),
  );
  if (i < 0) return false;
  const a = args[i]!;
  const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : args[i + 1];
  return v === undefined || v.startsWith('--') || /^(true|1|yes)$/i.test(v);
}

/** Arguments of `modelplane` for a container of the modelplane image (its command, then args). */
export function modelplaneArgs(c: ContainerCommand): string[] {
  let argv = [...(c.command ?? []), ...(c.args ?? [])];
  if (argv[0] && basename(argv[0]) === 'modelplane') argv = argv.slice(1);
  return argv;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '0.0.0.0', '::', '[::]', '::1', '[::1]']);

/** A URL on the container's own loopback, moved to `podIP`; other URLs are left alone. */
export function rewriteUrl(value: string, podIP: string): string {
  try {
    const u = new URL(value);
    if (!LOOPBACK_HOSTS.has(u.hostname)) return value;
    u.hostname = podIP;
    const out = u.toString();
    // URL adds a trailing slash to a bare origin; keep the value's own form.
    return value.endsWith('/') || u.pathname !== '/' ? out : out.replace(/\/$/, '');
  } catch {
    return value;
  }
}

/** Environment variables of `modelplane sidecar` that name an address to bind or the model server. */
const SIDECAR_HOST_ENV = [
  'MODELPLANE_SIDECAR_HOST',
  'MODELPLANE_METRICS_HOST',
  'MODELPLANE_WEBHOOK_HOST',
  'MODELPLANE_UPLOAD_HOST',
];
const SIDECAR_URL_ENV = ['MODELPLANE_MODEL_URL'];
const SIDECAR_HOST_FLAGS = ['--host', '--metrics-host', '--webhook-host', '--upload-host'];
const SIDECAR_URL_FLAGS = ['--model-url'];

/**
 * The environment and arguments of a modelplane container, with every address it binds set
 * to the pod's IP (in a pod they would be the pod's own interfaces) and a model URL on
 * loopback moved to the pod's IP (where the pod's model container listens).
 */
export function rewriteModelplane(
  args: readonly string[],
  env: Record<string, string>,
  podIP: string,
): { args: string[]; env: Record<string, string> } {
  const outEnv = { ...env };
  for (const k of SIDECAR_HOST_ENV) outEnv[k] = podIP;
  for (const k of SIDECAR_URL_ENV) if (outEnv[k] !== undefined) outEnv[k] = rewriteUrl(outEnv[k]!, podIP);
  if (args[0] === 'sidecar' && outEnv.MODELPLANE_MODEL_URL === undefined)
    outEnv.MODELPLANE_MODEL_URL = `http://${podIP}:5000`;
  const outArgs: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const fix = SIDECAR_HOST_FLAGS.includes(flag)
      ? () => podIP
      : SIDECAR_URL_FLAGS.includes(flag)
        ? (v: string) => rewriteUrl(v, podIP)
        : undefined;
    if (!fix) {
      outArgs.push(a);
    } else if (eq > 0) {
      outArgs.push(`${flag}=${fix(a.slice(eq + 1))}`);
    } else {
      outArgs.push(a);
      if (i + 1 < args.length) outArgs.push(fix(args[++i]!));
    }
  }
  return { args: outArgs, env: outEnv };
}
