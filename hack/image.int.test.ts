/**
 * The image, built by hack/image.sh (`make image`) with base images made on this machine, run
 * through testcontainers as a user's cluster runs it: `modelplane operator` as uid 65532 with a
 * read-only root file system, on the host network, against a local control plane whose only
 * GPU node is the pod runner's. It reconciles a Deployment, its gateway serves a prediction
 * from a model pod the pod runner runs, and SIGTERM stops it cleanly within its grace period.
 * The same image serves as the sidecar, and its files carry nothing of the build machine's
 * npm configuration or CA certificates, no shell and no package manager.
 */
import { execFileSync } from 'node:child_process';
import {
  createWriteStream,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import {
  GenericContainer,
  getContainerRuntimeClient,
  ImageName,
  type StartedTestContainer,
  Wait,
} from 'testcontainers';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CONDITION, installCrds } from '../crds/index.ts';
import { LocalCluster } from '../harness/cluster/local.ts';
import { repoRoot } from '../harness/cluster/paths.ts';
import { buildImage, type EngineApi, engineName, startEngineApi } from '../harness/engine.ts';
import { PodRunner, runnerPools } from '../harness/podrunner/index.ts';
import { freePort, GiveUp, waitFor } from '../harness/processes.ts';
import { applyDefaultHardware, applyModel, clientFor, workloadsOf } from '../operator/controllers/testing.ts';
import { createApiToken } from '../operator/gateway/tokens.ts';
import { Deployments } from '../operator/resources.ts';
import { createLogger, type KubeClient } from '../operator/runtime/index.ts';

const NS = 'image';
const SYSTEM_NS = 'modelplane-system';
/** The operator's --shutdown-timeout, and its grace period as the chart sets it (+15 s). */
const SHUTDOWN_SECONDS = 10;
const GRACE_SECONDS = SHUTDOWN_SECONDS + 15;
const KUBECONFIG_IN_CONTAINER = '/etc/modelplane/kubeconfig';

const log = (line: string) => process.stderr.write(`${line}\n`);
const dir = mkdtempSync(join(tmpdir(), 'modelplane-image-test-'));

let image = '';
let engine: EngineApi | undefined;
let cluster: LocalCluster | undefined;
let runner: PodRunner | undefined;
let client: KubeClient;
let operator: StartedTestContainer | undefined;
let token = '';
let gatewayUrl = '';
let httpUrl = '';
const operatorLog = join(dir, 'operator.log');

/** testcontainers' GenericContainer with the chart's read-only root file system. */
class ReadOnlyRootContainer extends GenericContainer {
  withReadOnlyRootFilesystem(): this {
    this.hostConfig.ReadonlyRootfs = true;
    return this;
  }
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as Readable) chunks.push(Buffer.from(c as Buffer));
  return Buffer.concat(chunks);
}

/** The PEM certificates in a text, whitespace removed. */
function certificates(pem: string): string[] {
  return [...pem.matchAll(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g)].map((m) =>
    (m[1] ?? '').replace(/\s+/g, ''),
  );
}

const savedEnv = Object.fromEntries(
  ['TESTCONTAINERS_RYUK_DISABLED', 'TESTCONTAINERS_HOST_OVERRIDE', 'DOCKER_HOST'].map((k) => [
    k,
    process.env[k],
  ]),
);

beforeAll(async () => {
  // testcontainers drives the engine's Docker-compatible API; its reaper image cannot be
  // pulled here, and what it starts is reached on 127.0.0.1 (host network).
  process.env.TESTCONTAINERS_RYUK_DISABLED = 'true';
  process.env.TESTCONTAINERS_HOST_OVERRIDE = '127.0.0.1';
  const name = await engineName(log);
  image = await buildImage(log);
  engine = await startEngineApi(name);
  process.env.DOCKER_HOST = engine.dockerHost;

  // A control plane with no kwok nodes: the pod runner's T4 node is the only GPU node.
  cluster = await LocalCluster.start({ pools: [] });
  client = clientFor(cluster.kubeconfig);
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(client);
  for (const ns of [NS, SYSTEM_NS])
    await client.create(
      { apiVersion: 'v1', kind: 'Namespace', plural: 'namespaces', namespaced: false },
      { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } },
    );
  runner = new PodRunner({
    kubeconfig: cluster.kubeconfig,
    name: 'image',
    pools: runnerPools('image', { t4: 1 }),
    // The sidecar image the operator in the container names: the pod runner runs the sidecar
    // of this checkout for it.
    modelplaneImages: [image.replace(/:[^:/]+$/, '')],
    logDir: join(dir, 'pods'),
    log: createLogger({ level: process.env.LOG_LEVEL ?? 'error' }),
  });
  await runner.start();
  ({ token } = await createApiToken(client, { name: 'image', namespaces: [NS], tokenNamespace: SYSTEM_NS }));

  // The admin kubeconfig (CA and token inside), readable by the container's uid 65532.
  const kubeconfig = join(dir, 'kubeconfig');
  writeFileSync(kubeconfig, readFileSync(cluster.kubeconfig), { mode: 0o644 });
  const gatewayPort = await freePort();
  const httpPort = await freePort();
  gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  httpUrl = `http://127.0.0.1:${httpPort}`;
  const out = createWriteStream(operatorLog);
  operator = await new ReadOnlyRootContainer(image)
    .withNetworkMode('host')
    .withReadOnlyRootFilesystem()
    // Writable: /tmp, and the embedded prediction store's directory (a PVC in the chart).
    .withTmpFs({ '/tmp': 'rw,size=64m', '/var/lib/modelplane': 'rw,size=256m,mode=1777' })
    .withBindMounts([{ source: kubeconfig, target: KUBECONFIG_IN_CONTAINER, mode: 'ro' }])
    .withCommand([
      'operator',
      `--kubeconfig=${KUBECONFIG_IN_CONTAINER}`,
      '--roles=controllers,gateway',
      '--leader-elect=false',
      `--lease-namespace=${SYSTEM_NS}`,
      `--token-namespace=${SYSTEM_NS}`,
      `--gateway-address=127.0.0.1:${gatewayPort}`,
      `--http-address=127.0.0.1:${httpPort}`,
      `--sidecar-image=${image}`,
      `--shutdown-timeout=${SHUTDOWN_SECONDS}`,
      '--store-dir=/var/lib/modelplane/store',
    ])
    .withLogConsumer((stream) => stream.pipe(out))
    .start();
  log(`image: the operator runs in container ${operator.getId().slice(0, 12)}; its log: ${operatorLog}`);
}, 600_000);

afterEach((ctx) => {
  if (ctx.task.result?.state === 'fail')
    log(
      `\n${ctx.task.name} failed; operator log: ${operatorLog}; pod logs: ${join(dir, 'pods')}\n${cluster?.describe() ?? ''}`,
    );
});

afterAll(async () => {
  await operator?.stop({ timeout: 1_000 }).catch(() => {});
  if (cluster) {
    for (const w of await workloadsOf(client, NS).catch(() => [])) {
      await client.delete(Deployments, w.metadata?.name ?? '', NS).catch(() => {});
    }
  }
  await runner?.stop();
  await cluster?.stop();
  await engine?.stop();
  for (const [k, v] of Object.entries(savedEnv)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
}, 120_000);

/** The operator container's state, from the engine. */
async function state() {
  const runtime = await getContainerRuntimeClient();
  return (await runtime.container.inspect(runtime.container.getById(operator!.getId()))).State;
}

describe('the image', () => {
  it('runs `modelplane operator` as uid 65532 on a read-only root file system, and turns ready', async () => {
    await waitFor(
      'the operator in the container to be ready',
      async () => {
        const s = await state();
        if (!s.Running) throw new GiveUp(`the operator container exited (${s.ExitCode}); see ${operatorLog}`);
        return (await fetch(`${httpUrl}/readyz`)).ok;
      },
      { timeoutMs: 60_000, intervalMs: 250 },
    );
    const runtime = await getContainerRuntimeClient();
    const info = await runtime.container.inspect(runtime.container.getById(operator!.getId()));
    expect(info.HostConfig.ReadonlyRootfs).toBe(true);
    expect(info.Config.User).toBe('65532:65532');
    // The process itself, seen from here.
    const status = readFileSync(`/proc/${info.State.Pid}/status`, 'utf8');
    expect(status).toMatch(/^Uid:\s+65532\s+65532\s+65532\s+65532$/m);
  });

  it('reconciles a Deployment, and its gateway serves a prediction from a model pod of the pod runner', async () => {
    await applyModel(client, NS, 'echo', { hardware: 'gpu-t4', image: 'modelplane.local/echo:dev' });
    await waitFor(
      'the echo Deployment to be Ready',
      async () => {
        const d = await client.get(Deployments, 'echo', NS);
        return d.status?.conditions?.some((c) => c.type === CONDITION.Ready && c.status === 'True');
      },
      { timeoutMs: 120_000, intervalMs: 250 },
    );
    // The model pods' sidecar is this image.
    const [workload] = await workloadsOf(client, NS, 'echo');
    expect(workload?.spec?.template?.spec?.containers?.map((c) => c.image)).toContain(image);

    const res = await fetch(`${gatewayUrl}/v1/deployments/${NS}/echo/predictions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', prefer: 'wait' },
      body: JSON.stringify({ input: { text: 'hello from the image' } }),
    });
    const body = (await res.json()) as { status?: string; output?: unknown; error?: unknown };
    expect(res.status, JSON.stringify(body)).toBe(201);
    expect(body.status, String(body.error ?? '')).toBe('succeeded');
    expect(body.output).toBe('hello from the image');
  });

  it('serves as the sidecar: `modelplane sidecar --help`', async () => {
    let output = '';
    const sidecar = await new GenericContainer(image)
      .withCommand(['sidecar', '--help'])
      .withLogConsumer((stream) => stream.on('data', (d: Buffer) => (output += d)))
      .withWaitStrategy(Wait.forOneShotStartup())
      .start();
    await sidecar.stop();
    expect(output).toContain('Usage: modelplane sidecar');
  });

  it('holds no npm configuration or CA certificate of the build machine, no shell and no package manager', async () => {
    const runtime = await getContainerRuntimeClient();
    const container = await runtime.container.create({ Image: image });
    let names: string[];
    let bundle = '';
    try {
      const listing = execFileSync('tar', ['-t'], {
        input: await readAll(await container.export()),
        maxBuffer: 64 * 1024 * 1024,
      });
      names = listing
        .toString()
        .split('\n')
        .filter(Boolean)
        .map((n) => n.replace(/^\.?\//, '').replace(/\/$/, ''));
      const archive = await readAll(
        await runtime.container.fetchArchive(container, '/etc/ssl/certs/ca-certificates.crt'),
      );
      bundle = execFileSync('tar', ['-xO'], { input: archive }).toString();
    } finally {
      await runtime.container.remove(container);
    }
    expect(names).toContain('app/cli/modelplane.js');
    expect(names).toContain('app/operator/store/migrations/0001_predictions.sql');
    // Compiled JavaScript only: no TypeScript source for Node.js to strip at run time.
    expect(
      names.filter((n) => n.startsWith('app/') && !n.startsWith('app/node_modules/') && n.endsWith('.ts')),
    ).toEqual([]);
    expect(names).toContain('nodejs/bin/node');

    // npm's configuration (a user's or global npmrc, or the build secret's mount) is nowhere.
    expect(names.filter((n) => /(^|\/)\.?npmrc$/.test(n) || n.startsWith('run/secrets/'))).toEqual([]);
    expect(names.filter((n) => n.startsWith('usr/local/share/ca-certificates/'))).toEqual([]);
    // The image's CA bundle is Debian's: none of the certificates this machine added
    // (/usr/local/share/ca-certificates, where a network's TLS-inspecting CA goes), and not
    // the bundle the build was given.
    const imageCerts = new Set(certificates(bundle));
    expect(imageCerts.size).toBeGreaterThan(50);
    const localDir = '/usr/local/share/ca-certificates';
    const added = existsSync(localDir)
      ? readdirSync(localDir, { recursive: true, encoding: 'utf8' })
          .filter((f) => f.endsWith('.crt'))
          .flatMap((f) => certificates(readFileSync(join(localDir, f), 'utf8')))
      : [];
    expect(added.filter((c) => imageCerts.has(c))).toEqual([]);
    const given = process.env.NODE_EXTRA_CA_CERTS;
    if (given && existsSync(given) && added.length > 0) expect(bundle).not.toBe(readFileSync(given, 'utf8'));

    // No shell, no package manager.
    const tools = /^(usr\/)?(s?bin)\/(sh|bash|dash|ash|zsh|busybox|apt|apt-get|dpkg|npm|npx|yarn|pip3?)$/;
    expect(names.filter((n) => tools.test(n) || /(^|\/)lib\/node_modules\/npm$/.test(n))).toEqual([]);

    // Its configuration: nonroot, OCI labels, no CA or npm settings in its environment.
    const info = await runtime.image.inspect(ImageName.fromString(image));
    expect(info.Config.User).toBe('65532:65532');
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as { version: string };
    const revision = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: repoRoot }).toString().trim();
    expect(info.Config.Labels).toMatchObject({
      'org.opencontainers.image.source': 'https://github.com/modelplane/modelplane',
      'org.opencontainers.image.version': pkg.version,
      'org.opencontainers.image.revision': revision,
    });
    expect(
      (info.Config.Env ?? []).filter((e) => /^(NODE_EXTRA_CA_CERTS|npm_config_|NPM_CONFIG_)/.test(e)),
    ).toEqual([]);
  });

  it('stops cleanly on SIGTERM within its grace period', async () => {
    expect((await state()).Running).toBe(true);
    const runtime = await getContainerRuntimeClient();
    const container = runtime.container.getById(operator!.getId());
    const sent = Date.now();
    await container.kill({ signal: 'SIGTERM' });
    const s = await waitFor(
      'the operator container to exit',
      async () => {
        const st = await state();
        return st.Running ? undefined : st;
      },
      { timeoutMs: GRACE_SECONDS * 1000, intervalMs: 100 },
    );
    const seconds = (Date.now() - sent) / 1000;
    expect(s.ExitCode).toBe(0);
    expect(seconds).toBeLessThan(GRACE_SECONDS);
    // It shut down on the signal (its last lines reach the log file shortly after it exits).
    await waitFor(
      'the shutdown in the operator log',
      () => readFileSync(operatorLog, 'utf8').includes('signal received: shutting down'),
      { timeoutMs: 10_000 },
    );
  }, 60_000);
});
