/**
 * Files as the official `replicate` clients see them (the npm one in this process, the Python
 * one in a child process): the gateway (API token auth, caches of the cluster's Models,
 * versions and Deployments) runs in this process with the prediction and file routes, once
 * with each files backend — a directory, and a real S3-compatible server (harness/s3.ts). The
 * `upscale` model is a real Cog server run with `--upload-url` pointing at a real sidecar's
 * upload listener, as in a pod. Callers reach the gateway over HTTPS, through a TLS proxy with
 * a CA of the test's own, as in a cluster behind an ingress: both clients return file objects
 * for `https:` URLs only. Needs `make python` and `make s3`.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Replicate from 'replicate';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { installCrds } from '../../crds/index.ts';
import { useCluster, useNamespace } from '../../harness/cluster/testing.ts';
import { freePort, waitFor } from '../../harness/processes.ts';
import { pythonEnv } from '../../harness/python.ts';
import { S3Server } from '../../harness/s3.ts';
import { type ModelServer, modelsDir, startModelServer } from '../../sidecar/testing/model-server.ts';
import { type RunningSidecar, startSidecar } from '../../sidecar/testing/sidecar.ts';
import { issueServing, newCa } from '../../webhook/certs.ts';
import { addControllers } from '../controllers/index.ts';
import { applyDefaultHardware, clientFor, TEST_MANAGER } from '../controllers/testing.ts';
import { DirectoryBackend, type FileBackend, FileService, S3Backend } from '../files/index.ts';
import { InformerCatalog, PredictionEngine, StaticEndpoints } from '../predictions/index.ts';
import { Deployments, Models, ModelVersions, Workloads } from '../resources.ts';
import { createLogger, Manager } from '../runtime/index.ts';
import { fileInputResolver, fileRoutes } from './files.ts';
import { addGateway, type Gateway } from './index.ts';
import { predictionRoutes } from './predictions/routes.ts';
import { StreamTokens } from './predictions/stream-token.ts';
import { createApiToken } from './tokens.ts';

const cluster = useCluster();
const ns = useNamespace(cluster, 'mp-files');
const tokenNs = useNamespace(cluster, 'mp-files-system');
const admin = clientFor(cluster.kubeconfig);
const endpoints = new StaticEndpoints();
const MAX_BYTES = 5 * 1024 * 1024;
let model: ModelServer;
let sidecar: RunningSidecar;
let s3: S3Server;
let token = '';
/** The input image: a 24x10 PNG Pillow made. */
let png: Buffer;
/** The test's CA (a PEM file), which the clients and the model server trust. */
let caFile = '';
let serving: { cert: string; key: string };
let dispatcher: Agent;
/**
 * fetch that trusts the test's CA (undici's, with its own dispatcher). A body of the global
 * FormData class is encoded first, as the global fetch would: undici's fetch knows only its own.
 */
async function tlsFetch(url: string | URL | Request, init: RequestInit = {}): Promise<Response> {
  let opts: RequestInit = init;
  if (init.body instanceof FormData) {
    const encoded = new Request('http://encode.invalid/', { method: 'POST', body: init.body });
    const headers = new Headers(init.headers);
    headers.set('content-type', encoded.headers.get('content-type') ?? '');
    opts = { ...init, headers, body: Buffer.from(await encoded.arrayBuffer()) };
  }
  return undiciFetch(url as string, { ...(opts as object), dispatcher }) as unknown as Response;
}

/** An HTTPS proxy to `target` that says so in X-Forwarded-Proto/-Host; resolves its origin. */
async function tlsProxy(target: string): Promise<{ origin: string; server: HttpsServer }> {
  const t = new URL(target);
  const server = createHttpsServer({ cert: serving.cert, key: serving.key }, (req, res) => {
    const out = httpRequest(
      {
        host: t.hostname,
        port: t.port,
        method: req.method,
        path: req.url,
        headers: { ...req.headers, 'x-forwarded-proto': 'https', 'x-forwarded-host': req.headers.host ?? '' },
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`, server };
}

/** Width and height from a PNG's IHDR; throws when `b` is not a PNG. */
function pngSize(b: Uint8Array): { width: number; height: number } {
  const buf = Buffer.from(b);
  if (buf.subarray(0, 8).toString('hex') !== '89504e470d0a1a0a') throw new Error('not a PNG');
  return { width: buf.readUInt32BE(16), height: buf.readUInt32BE(20) };
}

/** Runs `script` with the official Python client, `client` bound to `base`; its JSON answer. */
function python(base: string, script: string, ...args: string[]): Promise<unknown> {
  const program = [
    'import json, sys, replicate',
    'client = replicate.Client(api_token=sys.argv[1], base_url=sys.argv[2])',
    script,
  ].join('\n');
  return new Promise((resolve, reject) => {
    execFile(
      join(pythonEnv(), 'bin', 'python'),
      ['-c', program, token, base, ...args],
      { timeout: 120_000, env: { ...process.env, SSL_CERT_FILE: caFile } },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`python: ${err.message}\n${stderr}`));
        else resolve(JSON.parse(stdout));
      },
    );
  });
}

beforeAll(async () => {
  await installCrds(cluster.kubeconfig);
  await applyDefaultHardware(admin);
  const ca = await newCa(Date.now(), 86_400_000);
  serving = await issueServing(ca, ['127.0.0.1', 'localhost'], Date.now(), 86_400_000);
  caFile = join(mkdtempSync(join(tmpdir(), 'mp-files-ca-')), 'ca.pem');
  writeFileSync(caFile, ca.cert);
  dispatcher = new Agent({ connect: { ca: ca.cert } });
  const uploadPort = await freePort();
  model = await startModelServer('upscale', {
    uploadUrl: `http://127.0.0.1:${uploadPort}/upload/`,
    // Cog downloads URL inputs with requests: the test's CA for the gateway's HTTPS URLs.
    env: { REQUESTS_CA_BUNDLE: caFile, SSL_CERT_FILE: caFile },
  });
  sidecar = await startSidecar(model.url, { uploadPort });
  await model.waitFor(['READY'], 120_000);
  await waitFor('the sidecar to be ready', async () => (await fetch(`${sidecar.api}/ready`)).status === 200, {
    timeoutMs: 60_000,
  });
  s3 = await S3Server.start();
  await s3.createBucket('files');
  const schema = JSON.parse(readFileSync(join(modelsDir, 'upscale', '.cog', 'openapi_schema.json'), 'utf8'));
  const apply = (type: typeof Models | typeof ModelVersions | typeof Deployments, obj: object) =>
    admin.apply(type as typeof Models, obj as never, { fieldManager: TEST_MANAGER });
  await apply(Models, {
    apiVersion: Models.apiVersion,
    kind: Models.kind,
    metadata: { name: 'upscale', namespace: ns() },
    spec: { deployment: 'upscale' },
  });
  await apply(ModelVersions, {
    apiVersion: ModelVersions.apiVersion,
    kind: ModelVersions.kind,
    metadata: { name: 'upscale-v1', namespace: ns() },
    spec: {
      model: 'upscale',
      image: 'modelplane.local/upscale:dev',
      cogVersion: '0.23.1',
      openapiSchema: schema,
    },
  });
  await apply(Deployments, {
    apiVersion: Deployments.apiVersion,
    kind: Deployments.kind,
    metadata: { name: 'upscale', namespace: ns() },
    spec: { model: 'upscale', version: 'upscale-v1', hardware: 'cpu', minInstances: 0, maxInstances: 1 },
  });
  endpoints.set(ns(), 'upscale', [{ id: 'upscale-0', url: sidecar.api }]);
  ({ token } = await createApiToken(admin, { name: 'files', namespaces: [ns()], tokenNamespace: tokenNs() }));
  png = Buffer.from(
    (await python(
      'http://unused',
      [
        'import base64, io',
        'from PIL import Image',
        'b = io.BytesIO()',
        'Image.new("RGB", (24, 10), (200, 30, 90)).save(b, format="PNG")',
        'print(json.dumps(base64.b64encode(b.getvalue()).decode()))',
      ].join('\n'),
    )) as string,
    'base64',
  );
}, 240_000);

afterAll(async () => {
  for (const w of (await admin.list(Workloads, { namespace: ns() })).items) {
    await admin.delete(Workloads, w.metadata?.name ?? '', ns(), { propagationPolicy: 'Background' });
  }
  await sidecar?.stop();
  await model?.stop();
  await s3?.destroy();
});

/** The gateway with the prediction and file routes on `backend`. */
function gatewayWith(name: string, backend: () => FileBackend) {
  const state = {} as {
    manager: Manager;
    gateway: Gateway;
    engine: PredictionEngine;
    files: FileService;
    proxy: HttpsServer;
    origin: string;
  };
  beforeAll(async () => {
    const manager = new Manager({
      name: `modelplane-files-${name}`,
      kubeConfig: cluster.kc,
      leaderElection: false,
      http: false,
      shutdownTimeoutMs: 5_000,
      log: createLogger({ level: 'silent' }),
    });
    // The controllers give the version its id (one manager at a time runs them).
    addControllers(manager, { sidecarImage: 'registry.example.com/modelplane:test' });
    const tokens = new StreamTokens();
    let engine: PredictionEngine | undefined;
    const files = new FileService({
      backend: backend(),
      withStore: (fn) => engine!.withStore(fn),
      maxBytes: MAX_BYTES,
    });
    const gateway = addGateway(manager, {
      address: { host: '127.0.0.1', port: 0 },
      tokenNamespace: tokenNs(),
      trustForwardedHeaders: true,
      routes: (gw) => {
        const catalog = new InformerCatalog(gw.caches);
        engine = new PredictionEngine({
          catalog,
          endpoints,
          log: manager.log,
          streamUrl: (rec) => tokens.url(rec),
          // The sidecar uploads to the gateway directly (--files-internal-url), not via the proxy.
          uploadUrl: (rec) => files.uploadUrl(`${gateway.url}/v1`, rec.id, 3600_000),
        });
        return [
          predictionRoutes({ engine, catalog, tokens, resolveInput: fileInputResolver(files) }),
          fileRoutes({
            files,
            prediction: async (id) => {
              const rec = await engine!.get(id);
              return rec && { namespace: rec.namespace, baseUrl: rec.baseUrl, status: rec.status };
            },
          }),
        ];
      },
    });
    await manager.start();
    const proxy = await tlsProxy(gateway.url);
    Object.assign(state, { manager, gateway, engine, files, proxy: proxy.server, origin: proxy.origin });
    await waitFor('the gateway to accept the API token and see the version', async () => {
      const res = await fetch(`${gateway.url}/v1/models/${ns()}/upscale`, {
        headers: { authorization: `Bearer ${token}` },
      });
      return res.ok && gateway.caches.modelVersions.get('upscale-v1', ns())?.status?.id;
    });
  }, 120_000);
  afterAll(async () => {
    state.proxy?.close();
    await state.manager?.stop();
    state.engine?.close();
    await state.files?.stop();
  });
  return state;
}

for (const kind of ['directory', 's3'] as const) {
  describe(`files on the ${kind} backend`, () => {
    const gw = gatewayWith(kind, () =>
      kind === 'directory'
        ? new DirectoryBackend(mkdtempSync(join(tmpdir(), 'mp-files-int-')))
        : new S3Backend({
            endpoint: s3.endpoint,
            region: s3.region,
            bucket: 'files',
            prefix: 'modelplane/',
            accessKeyId: s3.accessKeyId,
            secretAccessKey: s3.secretAccessKey,
          }),
    );
    const base = () => `${gw.origin}/v1`;
    const npm = () => new Replicate({ auth: token, baseUrl: base(), fetch: tlsFetch as typeof fetch });

    it('runs upscale from the Python client with an open file, and reads back a PNG twice the size', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'mp-files-in-'));
      const inPath = join(dir, 'in.png');
      (await import('node:fs')).writeFileSync(inPath, png);
      const out = (await python(
        gw.origin,
        [
          'import base64',
          'out = client.run(f"{sys.argv[3]}/upscale", input={"image": open(sys.argv[4], "rb"), "scale": 2})',
          'print(json.dumps({"type": type(out).__name__, "url": out.url, "data": base64.b64encode(out.read()).decode()}))',
        ].join('\n'),
        ns(),
        inPath,
      )) as { type: string; url: string; data: string };
      expect(out.type).toBe('FileOutput');
      expect(out.url.startsWith(`${base()}/files/`)).toBe(true);
      expect(pngSize(Buffer.from(out.data, 'base64'))).toEqual({ width: 48, height: 20 });
    });

    it('runs upscale from the npm client with a Buffer, and reads back a PNG twice the size', async () => {
      const out = (await npm().run(`${ns()}/upscale`, { input: { image: png, scale: 2 } })) as {
        url(): URL;
        blob(): Promise<Blob>;
      };
      expect(out.url().toString().startsWith(`${base()}/files/`)).toBe(true);
      const bytes = new Uint8Array(await (await out.blob()).arrayBuffer());
      expect(pngSize(bytes)).toEqual({ width: 48, height: 20 });
      // The client uploaded the Buffer with files.create: the input is our own file's URL.
      const [p] = (await npm().predictions.list()).results;
      expect(String((p?.input as { image?: unknown } | undefined)?.image)).toMatch(
        new RegExp(`^${base()}/files/[a-z0-9]+/download/`),
      );
    });

    it("takes a file's API URL as an input, and refuses the URL of no file with 422", async () => {
      const replicate = npm();
      const f = (await replicate.files.create(png)) as { id: string };
      const version = gw.gateway.caches.modelVersions.get('upscale-v1', ns())?.status?.id ?? '';
      const p = await replicate.predictions.create({
        version,
        input: { image: `${base()}/files/${f.id}`, scale: 2 },
        wait: 60,
      });
      const done = await replicate.wait(p, { interval: 200 });
      expect(done.status, String(done.error)).toBe('succeeded');
      expect(String((done.input as { image: string }).image)).toMatch(/\/download\//);
      const file = await tlsFetch(String(done.output));
      expect(pngSize(new Uint8Array(await file.arrayBuffer()))).toEqual({ width: 48, height: 20 });
      const missing = await tlsFetch(`${base()}/predictions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ version, input: { image: `${base()}/files/nosuchfile`, scale: 2 } }),
      });
      expect(missing.status).toBe(422);
      expect(JSON.stringify(await missing.json())).toContain('no file');
    });

    it('creates, lists, gets and deletes files with both clients', async () => {
      const replicate = npm();
      const created = (await replicate.files.create(Buffer.from('hello files'), { purpose: 'test' })) as {
        id: string;
        size: number;
        metadata: unknown;
        checksums: { sha256: string };
        urls: { get: string };
      };
      expect(created).toMatchObject({ size: 11, metadata: { purpose: 'test' } });
      expect(created.checksums.sha256).toBe(
        (await import('node:crypto')).createHash('sha256').update('hello files').digest('hex'),
      );
      expect(await (await tlsFetch(created.urls.get)).text()).toBe('hello files');
      expect(((await replicate.files.get(created.id)) as { id: string }).id).toBe(created.id);
      const listed = (await replicate.files.list()) as { results: { id: string }[] };
      expect(listed.results.map((f) => f.id)).toContain(created.id);
      const fromPython = (await python(
        gw.origin,
        [
          'import io',
          'f = client.files.create(io.BytesIO(b"from python"), filename="note.txt", metadata={"k": "v"})',
          'got = client.files.get(f.id)',
          'ids = [x.id for x in client.files.list()]',
          'client.files.delete(f.id)',
          'print(json.dumps({"id": f.id, "name": got.name, "type": got.content_type, "size": got.size, "metadata": got.metadata, "listed": f.id in ids, "npm": sys.argv[3] in ids}))',
        ].join('\n'),
        created.id,
      )) as Record<string, unknown>;
      expect(fromPython).toMatchObject({
        name: 'note.txt',
        type: 'text/plain',
        size: 11,
        metadata: { k: 'v' },
        listed: true,
        npm: true,
      });
      const gone = await tlsFetch(`${base()}/files/${fromPython.id}`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(gone.status).toBe(404);
      await replicate.files.delete(created.id);
      expect((await tlsFetch(created.urls.get)).status).toBe(404);
    });

    it('refuses a file over the limit with 413 problem+json, and a caller without a token', async () => {
      const form = new FormData();
      form.append('content', new Blob([new Uint8Array(MAX_BYTES + 1)]), 'big.bin');
      const res = await tlsFetch(`${base()}/files`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: form,
      });
      expect(res.status).toBe(413);
      expect(res.headers.get('content-type')).toBe('application/problem+json');
      const anon = await tlsFetch(`${base()}/files`);
      expect(anon.status).toBe(401);
    });

    it('serves an output URL without a token; refuses it altered or expired (403); 404 once the data is removed', async () => {
      const prediction = await npm().predictions.create({
        version: gw.gateway.caches.modelVersions.get('upscale-v1', ns())?.status?.id ?? '',
        input: { image: `data:image/png;base64,${png.toString('base64')}`, scale: 3 },
        wait: 60,
      });
      const done = await npm().wait(prediction, { interval: 200 });
      expect(done.status).toBe('succeeded');
      const url = String(done.output);
      const ok = await tlsFetch(url);
      expect(ok.status).toBe(200);
      expect(pngSize(new Uint8Array(await ok.arrayBuffer()))).toEqual({ width: 72, height: 30 });
      const token64 = url.split('/').at(-1)!;
      const [exp, mac] = token64.split('.');
      const altered = url.replace(token64, `${exp}.${mac!.startsWith('A') ? 'B' : 'A'}${mac!.slice(1)}`);
      expect((await tlsFetch(altered)).status).toBe(403);
      const later = url.replace(token64, `${Number(exp) + 3600}.${mac}`);
      expect((await tlsFetch(later)).status).toBe(403);
      const id = url.split('/files/')[1]!.split('/')[0]!;
      const expired = gw.files.urls.download(base(), id, Date.now() - 1000);
      const refused = await tlsFetch(expired);
      expect(refused.status).toBe(403);
      expect(((await refused.json()) as { detail: string }).detail).toContain('expired');
      await gw.engine.withStore((s) => s.removeData(Date.now() + 1));
      expect((await tlsFetch(url)).status).toBe(404);
      // The sweep removes its bytes from the backend too.
      const rec = await gw.engine.withStore((s) => s.getFile(id));
      expect(rec).toBeDefined();
      expect(await gw.files.sweep()).toBeGreaterThanOrEqual(1);
      expect(await gw.files.backend.get(rec!.key)).toBeUndefined();
      expect(await gw.engine.withStore((s) => s.getFile(id))).toBeUndefined();
    });
  });
}
