/**
 * The admission webhook against the real API server: registered with a
 * ValidatingWebhookConfiguration whose URL is a TCP relay on 127.0.0.1 standing in for the
 * Service (it spreads connections over the replicas and skips one that refuses them, as
 * endpoints do), called over TLS with the CA the operator made and published itself.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { installCrds } from '../crds/install.ts';
import { binaries } from '../harness/cluster/paths.ts';
import { useCluster, useNamespace } from '../harness/cluster/testing.ts';
import { waitFor } from '../harness/processes.ts';
import { splitPem, webhookConfiguration } from '../webhook/index.ts';
import { clientFor, startOperator } from './controllers/testing.ts';
import type { Operator } from './main.ts';
import { Deployments, HardwareClasses, Secrets } from './resources.ts';
import { isNotFound, type KubeObject } from './runtime/index.ts';
import { WebhookConfigurations, type WebhookTuning } from './webhook.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'webhook');
const examplesNs = useNamespace(cluster, 'webhook-examples');
const client = clientFor(cluster.kubeconfig);
const suffix = randomBytes(3).toString('hex');
const CONFIG = `modelplane-test-${suffix}`;
const root = fileURLToPath(new URL('..', import.meta.url));

// ── A relay in place of the Service ───────────────────────────────────────────────────────

class Relay {
  readonly server: Server;
  backends: number[] = [];
  private next = 0;
  private readonly sockets = new Set<Socket>();

  constructor() {
    this.server = createServer((downstream) => this.relay(downstream, 0));
  }

  async listen(): Promise<number> {
    this.server.listen(0, '127.0.0.1');
    await once(this.server, 'listening');
    return (this.server.address() as AddressInfo).port;
  }

  private relay(downstream: Socket, tried: number): void {
    if (this.backends.length === 0 || tried >= this.backends.length) return void downstream.destroy();
    const port = this.backends[this.next++ % this.backends.length]!;
    const upstream = connect(port, '127.0.0.1');
    this.sockets.add(upstream).add(downstream);
    upstream.once('connect', () => {
      downstream.pipe(upstream).pipe(downstream);
    });
    upstream.once('error', () => {
      // A replica that is gone refuses the connection: try the next one, as endpoints would.
      if (!upstream.readyState || upstream.connecting) return this.relay(downstream, tried + 1);
      downstream.destroy();
    });
    downstream.once('error', () => upstream.destroy());
    upstream.once('close', () => {
      this.sockets.delete(upstream);
      if (!upstream.connecting) downstream.destroy();
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

// ── kubectl ───────────────────────────────────────────────────────────────────────────────

interface Applied {
  code: number;
  stdout: string;
  stderr: string;
}

/** `kubectl apply -f -` of `objects` (server-side, or client-side), its output and exit code. */
async function kubectlApply(
  objects: object[],
  mode: 'server' | 'client',
  namespace = ns(),
): Promise<Applied> {
  const args = ['apply', '-n', namespace, '-f', '-', ...(mode === 'server' ? ['--server-side'] : [])];
  const child = spawn(binaries().kubectl, args, { env: { ...process.env, KUBECONFIG: cluster.kubeconfig } });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => out.push(c));
  child.stderr.on('data', (c: Buffer) => err.push(c));
  child.stdin.end(objects.map((o) => JSON.stringify(o)).join('\n---\n'));
  const [code] = (await once(child, 'close')) as [number];
  return { code, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() };
}

// ── Objects ───────────────────────────────────────────────────────────────────────────────

const API = 'modelplane.dev/v1alpha1';
const t4 = `wh-${suffix}-t4`;
const t4x8 = `wh-${suffix}-t4x8`;
const cpu = `wh-${suffix}-cpu`;
const toleration = [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }];
const hardware = (name: string, extra: Record<string, unknown> = {}) => ({
  apiVersion: API,
  kind: 'HardwareClass',
  metadata: { name },
  spec: { displayName: name, resources: { cpu: '1', memory: '1Gi' }, pricePerSecond: '0.000100', ...extra },
});
const model = (name: string, spec: Record<string, unknown> = {}) => ({
  apiVersion: API,
  kind: 'Model',
  metadata: { name },
  spec,
});
const INPUT_SCHEMA = {
  openapi: '3.0.2',
  components: {
    schemas: {
      Input: {
        type: 'object',
        required: ['text'],
        properties: { text: { type: 'string' }, repeat: { type: 'integer', minimum: 1 } },
      },
    },
  },
};
const version = (name: string, of: string) => ({
  apiVersion: API,
  kind: 'ModelVersion',
  metadata: { name },
  spec: { model: of, image: 'registry.example.com/echo:1', openapiSchema: INPUT_SCHEMA },
});
const deployment = (name: string, spec: Record<string, unknown>, namespace?: string) => ({
  apiVersion: API,
  kind: 'Deployment',
  metadata: { name, namespace },
  spec: { minInstances: 0, maxInstances: 1, ...spec },
});
const prediction = (name: string, spec: Record<string, unknown>) => ({
  apiVersion: API,
  kind: 'Prediction',
  metadata: { name },
  spec,
});

// ── The operator ──────────────────────────────────────────────────────────────────────────

const relay = new Relay();
const operators: Operator[] = [];
/** Default HardwareClasses this file created (deleted after it). */
const createdDefaults: string[] = [];

async function startReplica(secret: string, tuning: WebhookTuning = {}) {
  const op = await startOperator(
    cluster.kubeconfig,
    {
      roles: ['webhook'],
      leaseNamespace: ns(),
      webhook: {
        address: { host: '127.0.0.1', port: 0 },
        configurationName: CONFIG,
        certSecret: secret,
        certNamespace: ns(),
        certNames: ['127.0.0.1'],
        certDir: undefined,
      },
    },
    { webhook: { intervalMs: 300, ...tuning } },
  );
  operators.push(op);
  await waitFor('the webhook serving', () => op.webhook?.server.ready && op.manager.notReady().length === 0, {
    timeoutMs: 30_000,
  });
  return op;
}

/** The certificate the relay's replicas serve, as a TLS client sees it. */
async function servedSerial(port: number): Promise<string> {
  const socket = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false });
  await once(socket, 'secureConnect');
  const serial = socket.getPeerX509Certificate()?.serialNumber ?? '';
  socket.destroy();
  return serial;
}

async function published(): Promise<string> {
  const c = (await client.get(WebhookConfigurations, CONFIG)) as KubeObject & {
    webhooks: { clientConfig: { caBundle?: string } }[];
  };
  return Buffer.from(c.webhooks[0]?.clientConfig.caBundle ?? '', 'base64').toString();
}

async function caOf(secret: string): Promise<string> {
  const s = await client.get(Secrets, secret, ns());
  return Buffer.from(s.data?.['ca.crt'] ?? '', 'base64').toString();
}

/** Waits until the API server calls the webhook (a dry-run it must refuse is refused). */
async function untilAdmitting(): Promise<void> {
  await waitFor(
    'the API server calling the webhook',
    async () => {
      const r = await kubectlApply(
        [deployment(`probe-${suffix}`, { model: 'a', version: `v-b`, hardware: cpu })],
        'server',
      );
      return r.code !== 0 && r.stderr.includes('belongs to Model');
    },
    { timeoutMs: 30_000, intervalMs: 300 },
  );
}

let relayPort = 0;

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  relayPort = await relay.listen();
  await client.create(
    WebhookConfigurations,
    webhookConfiguration({ name: CONFIG, target: { url: `https://127.0.0.1:${relayPort}` } }) as never,
  );
  for (const h of [
    hardware(cpu),
    hardware(t4, {
      gpu: { products: ['Tesla-T4'], count: 1 },
      tolerations: toleration,
      aliases: [`${t4}-alias`],
    }),
    hardware(t4x8, { gpu: { products: ['Tesla-T4'], count: 8 }, tolerations: toleration }),
  ])
    await client.create(HardwareClasses, h as never);
  const op = await startReplica(`cert-a-${suffix}`);
  relay.backends = [op.webhook!.server.address!.port];
  await waitFor('the CA published', async () =>
    (await published()).includes(splitPem(await caOf(`cert-a-${suffix}`))[0]!),
  );
  // The refusals below need the model "b" and its version "v-b" (the probe's version too).
  const base = await kubectlApply([model('b'), version('v-b', 'b')], 'server');
  expect(base.code, base.stderr).toBe(0);
  await untilAdmitting();
}, 120_000);

afterAll(async () => {
  // Unregister first: the shared cluster's other files must not meet a webhook that is gone.
  await client.delete(WebhookConfigurations, CONFIG).catch((err) => {
    if (!isNotFound(err)) throw err;
  });
  await Promise.all(operators.map((o) => o.stop()));
  await relay.close();
  for (const h of [cpu, t4, t4x8, `wh-${suffix}-clash`, `wh-${suffix}-clash2`, ...createdDefaults])
    await client.delete(HardwareClasses, h).catch(() => undefined);
});

// ── The rules through kubectl ─────────────────────────────────────────────────────────────

const REFUSALS: [string, () => object[], RegExp][] = [
  [
    'a Deployment whose version belongs to another Model',
    () => [deployment('wrong-version', { model: 'a', version: 'v-b', hardware: cpu })],
    /spec\.version: ModelVersion "v-b" belongs to Model "b", not "a"/,
  ],
  [
    'a Deployment on a hardware name no HardwareClass has',
    () => [deployment('no-hardware', { model: 'b', version: 'v-b', hardware: `wh-${suffix}-nope` })],
    /spec\.hardware: no HardwareClass is named "wh-\w+-nope"/,
  ],
  [
    'a Deployment on a HardwareClass needing more GPUs than any matching node has',
    () => [deployment('too-many-gpus', { model: 'b', version: 'v-b', hardware: t4x8 })],
    /spec\.hardware: HardwareClass "wh-\w+-t4x8" needs 8 nvidia\.com\/gpu per instance, but its matching nodes have at most 4/,
  ],
  [
    "a HardwareClass whose alias is another class's name",
    () => [hardware(`wh-${suffix}-clash`, { aliases: [cpu] })],
    /spec\.aliases\[0\]: "wh-\w+-cpu" is the name of HardwareClass/,
  ],
  [
    "a HardwareClass whose alias is another class's alias",
    () => [hardware(`wh-${suffix}-clash2`, { aliases: [`${t4}-alias`] })],
    /spec\.aliases\[0\]: "wh-\w+-t4-alias" is already an alias of HardwareClass "wh-\w+-t4"/,
  ],
  [
    "a Prediction whose input breaks its version's Input schema",
    () => [prediction('bad-input', { version: 'v-b', input: { repeat: 0 } })],
    /spec\.input\.text is required by ModelVersion "v-b".*spec\.input\.repeat must be at least 1|spec\.input\.repeat must be at least 1.*spec\.input\.text is required/,
  ],
];

describe.each(['server', 'client'] as const)('kubectl apply (%s-side)', (mode) => {
  it.each(REFUSALS)('refuses %s, naming the field', async (_what, objects, message) => {
    const r = await kubectlApply(objects(), mode);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/denied the request/);
    expect(r.stderr).toMatch(message);
  });

  it('accepts references that arrive later, with a warning naming the field', async () => {
    const s = `${mode}-late`;
    const r = await kubectlApply(
      [
        prediction(`${s}-p`, { deployment: `${s}-d`, input: { text: 'hi' } }),
        deployment(`${s}-d`, { model: `${s}-m`, version: `${s}-v`, hardware: cpu }),
        version(`${s}-v`, `${s}-m`),
      ],
      mode,
    );
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(
      new RegExp(`Warning: spec.deployment: Deployment "${s}-d" does not exist in namespace`),
    );
    expect(r.stderr).toMatch(new RegExp(`Warning: spec.model: Model "${s}-m" does not exist in namespace`));
    expect(r.stderr).toMatch(new RegExp(`Warning: spec.model: Model "${s}-m" does not exist`));
    // Once everything is there, applying again warns of nothing and a good input passes.
    const again = await kubectlApply(
      [
        model(`${s}-m`),
        version(`${s}-v`, `${s}-m`),
        deployment(`${s}-d`, { model: `${s}-m`, version: `${s}-v`, hardware: cpu }),
        prediction(`${s}-ok`, { deployment: `${s}-d`, input: { text: 'hi', repeat: 2 } }),
      ],
      mode,
    );
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).not.toMatch(/Warning/);
  });
});

it('never blocks a change that leaves the spec alone, nor a cancel', async () => {
  // A Deployment stored while the webhook was not looking (dry-run proves it is refused now).
  const name = `stored-${suffix}`;
  await client.delete(WebhookConfigurations, CONFIG);
  try {
    await waitFor('the webhook unregistered', async () => {
      const r = await kubectlApply(
        [deployment(name, { model: 'a', version: 'v-b', hardware: cpu })],
        'server',
      );
      return r.code === 0;
    });
  } finally {
    await client.create(
      WebhookConfigurations,
      webhookConfiguration({
        name: CONFIG,
        target: { url: `https://127.0.0.1:${relayPort}` },
        caBundle: await caOf(`cert-a-${suffix}`),
      }) as never,
    );
  }
  await untilAdmitting();
  const labelled = await client.mergePatch(Deployments, name, ns(), {
    metadata: { labels: { team: 'search' } },
  });
  expect(labelled.metadata?.labels?.team).toBe('search');
  const scaled = await kubectlApply(
    [deployment(name, { model: 'a', version: 'v-b', hardware: cpu, maxInstances: 2 })],
    'server',
  );
  // A change of fields no rule reads goes through (the deployment can still be scaled)…
  expect(scaled.code, scaled.stderr).toBe(0);
  // …while a change of the fields a rule reads is checked again.
  const moved = await kubectlApply(
    [deployment(name, { model: 'c', version: 'v-b', hardware: cpu, maxInstances: 2 })],
    'server',
  );
  expect(moved.code).not.toBe(0);
  expect(moved.stderr).toMatch(/spec\.version: ModelVersion "v-b" belongs to Model "b", not "c"/);
  // …but a Prediction's cancel never is.
  const p = prediction(`cancel-${suffix}`, { version: 'v-b', input: { text: 'x' } });
  expect((await kubectlApply([p], 'server')).code).toBe(0);
  const cancelled = await kubectlApply([{ ...p, spec: { ...p.spec, cancel: true } }], 'server');
  expect(cancelled.code, cancelled.stderr).toBe(0);
});

it("applies every one of the repository's examples, in any order, with no refusal", async () => {
  const dir = join(root, 'examples');
  const read = (f: string) =>
    parseAllDocuments(readFileSync(f, 'utf8'))
      .map((d) => d.toJS() as KubeObject | null)
      .filter((o): o is KubeObject => o !== null && o.apiVersion === API);
  // The default HardwareClasses, as the chart installs them with the operator.
  const defaults = read(join(dir, 'hardware-classes.yaml'));
  for (const h of defaults) {
    if (!(await client.find(HardwareClasses, h.metadata!.name!))) createdDefaults.push(h.metadata!.name!);
  }
  const installed = await kubectlApply(defaults, 'server');
  expect(installed.code, installed.stderr).toBe(0);
  const objects = ['', 'dev/']
    .flatMap((d) =>
      readdirSync(join(dir, d))
        .filter((f) => f.endsWith('.yaml') && f !== 'hardware-classes.yaml')
        .map((f) => join(dir, d, f)),
    )
    .flatMap(read);
  expect(objects.length).toBeGreaterThan(10);
  const shuffled = [...objects].sort(() => Math.random() - 0.5);
  for (const [i, order] of [[...objects].reverse(), shuffled, objects].entries()) {
    const r = await kubectlApply(order, 'server', examplesNs());
    expect(r.code, `order ${i}: ${r.stderr}`).toBe(0);
    expect(r.stderr).not.toMatch(/denied/);
    // Delete them again, so the next order starts from nothing.
    if (i < 2)
      await cluster.kubectl(
        'delete',
        '-n',
        examplesNs(),
        '--wait=false',
        'predictions,deployments.modelplane.dev,modelversions,models',
        '--all',
      );
    await waitFor('the examples deleted', async () => {
      const left = await cluster.kubectl(
        'get',
        '-n',
        examplesNs(),
        'predictions,deployments.modelplane.dev,modelversions,models',
        '-o',
        'name',
      );
      return i >= 2 || !objects.some((o) => left.includes(`/${o.metadata!.name}\n`));
    });
  }
});

// ── Certificates, replicas and load ───────────────────────────────────────────────────────

/** Server-side applies of a Deployment the webhook accepts, one after another, until stopped. */
function applyLoop(name: string) {
  let stop = false;
  const failures: string[] = [];
  let applied = 0;
  const done = (async () => {
    for (let i = 0; !stop; i++) {
      try {
        await client.apply(
          Deployments,
          deployment(
            name,
            { model: 'b', version: 'v-b', hardware: cpu, maxInstances: 1 + (i % 5) },
            ns(),
          ) as never,
          { fieldManager: 'webhook-test' },
        );
        applied++;
      } catch (err) {
        failures.push((err as Error).message);
      }
    }
  })();
  return {
    failures,
    get applied() {
      return applied;
    },
    stop: async () => {
      stop = true;
      await done;
    },
  };
}

it('rotates its serving certificate and its CA without dropping an admission', async () => {
  for (const op of operators.splice(0)) await op.stop();
  const secret = `cert-r-${suffix}`;
  const op = await startReplica(secret, {
    lifetimes: { caMs: 24_000, servingMs: 9_000, propagationMs: 1_500 },
  });
  const port = op.webhook!.server.address!.port;
  relay.backends = [port];
  await waitFor('the new CA published', async () =>
    (await published()).includes(splitPem(await caOf(secret))[0]!),
  );
  await untilAdmitting();
  const serials = new Set<string>([await servedSerial(port)]);
  const cas = new Set<string>([splitPem(await caOf(secret))[0]!]);
  const loop = applyLoop(`rotating-${suffix}`);
  // Until the CA has been rotated and a serving certificate signed by the new one is served.
  await waitFor(
    'a CA rotation and two serving certificate rotations',
    async () => {
      serials.add(await servedSerial(port));
      cas.add(splitPem(await caOf(secret))[0]!);
      return cas.size >= 2 && serials.size >= 3;
    },
    { timeoutMs: 60_000, intervalMs: 200 },
  );
  await loop.stop();
  expect(loop.failures).toEqual([]);
  expect(loop.applied).toBeGreaterThan(10);
}, 90_000);

/** A free port on 127.0.0.1. */
async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as AddressInfo).port;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

it('keeps admitting with two replicas when one is killed, and answers 50 applies at once in time', async () => {
  for (const op of operators.splice(0)) await op.stop();
  const secret = `cert-k-${suffix}`;
  const ports = [await freePort(), await freePort()];
  const children = ports.map((port) =>
    spawn(
      join(root, 'bin/modelplane'),
      [
        'operator',
        '--roles=webhook',
        `--kubeconfig=${cluster.kubeconfig}`,
        `--lease-namespace=${ns()}`,
        `--webhook-address=127.0.0.1:${port}`,
        `--webhook-configuration=${CONFIG}`,
        `--webhook-cert-secret=${secret}`,
        '--webhook-cert-names=127.0.0.1',
        '--http-address=off',
        '--autoscaler-peers=off',
        '--log-level=warn',
      ],
      { stdio: ['ignore', 'inherit', 'inherit'] },
    ),
  );
  try {
    relay.backends = ports;
    await waitFor(
      'both replicas serving',
      async () => {
        for (const p of ports) await servedSerial(p);
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 300 },
    );
    // Both replicas raced to make the Secret: one made it, and both serve its certificate.
    const served = await Promise.all(ports.map(servedSerial));
    expect(served[0]).toBe(served[1]);
    await waitFor('the CA published', async () =>
      (await published()).includes(splitPem(await caOf(secret))[0]!),
    );
    await untilAdmitting();
    const loop = applyLoop(`replicas-${suffix}`);
    await waitFor('applies through both replicas', () => loop.applied >= 10, { timeoutMs: 30_000 });
    expect(loop.failures).toEqual([]);
    children[0]!.kill('SIGKILL');
    await once(children[0]!, 'exit');
    const before = loop.applied;
    await waitFor('the first apply after the kill', () => loop.applied > before, { timeoutMs: 30_000 });
    // What the killed replica was answering at that instant fails (the API server does not
    // send it again); once an apply has gone through after the kill, none fails.
    const atKill = loop.failures.length;
    for (const f of loop.failures) expect(f).toMatch(/failed calling webhook.*(EOF|connection reset)/);
    await waitFor('applies after the kill', () => loop.applied >= before + 20, { timeoutMs: 30_000 });
    await loop.stop();
    expect(loop.failures.slice(atKill)).toEqual([]);

    // 50 applies at once, each answered inside the webhook's timeout (a late answer fails the
    // apply under failurePolicy Fail); the one that must be refused still is.
    relay.backends = [ports[1]!];
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, (_, i) =>
        client.apply(
          Deployments,
          deployment(
            `burst-${i}`,
            { model: 'b', version: i === 49 ? 'v-x' : 'v-b', hardware: cpu },
            ns(),
          ) as never,
          { fieldManager: 'webhook-test' },
        ),
      ),
    );
    const failed = results.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
    expect(failed).toEqual([]);
    const refused = await kubectlApply(
      [deployment('burst-refused', { model: 'a', version: 'v-b', hardware: cpu })],
      'server',
    );
    expect(refused.stderr).toMatch(/belongs to Model "b", not "a"/);
  } finally {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  }
}, 180_000);
