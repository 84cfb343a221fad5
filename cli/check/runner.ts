/**
 * What `modelplane check` measures and reads: predictions through the gateway's prediction
 * API (plain fetch, `Prefer: wait`, then polling `urls.get`), and the Deployment, its
 * ModelVersion and the one before it, the Model and the HardwareClass through the Kubernetes
 * API (@kubernetes/client-node; no kubectl). The rows themselves are checks.ts's.
 */
import { createHash, randomUUID } from 'node:crypto';
import { CustomObjectsApi, type KubeConfig } from '@kubernetes/client-node';
import { GROUP, LABEL, PLURAL, VERSION } from '../../crds/constants.ts';
import { isTerminal } from '../../lib/prediction.ts';
import * as c from './checks.ts';
import type { Report } from './report.ts';
import { Temporaries } from './temporary.ts';
import { coldStartCheck, hardwareCheck } from './temporary-checks.ts';
import { hardwareRun } from './temporary-rows.ts';
import { worstCases } from './worst-case.ts';

export interface CheckSettings {
  input: Record<string, unknown>;
  runs: number;
  unitsPerAction: number;
  maxP95?: number;
  minCosine?: number;
  /** A worst-case input of the user's (--worst-input), run beside the one generated from the schema. */
  worstInput?: Record<string, unknown>;
  /** Where the cold start is measured (default `temporary`). */
  coldStart?: 'temporary' | 'deployment' | 'skip';
  /** HardwareClasses to run the same runs on, on temporary Deployments. */
  hardware?: string[];
  /** Seconds of total-time p95 the cheapest hardware must meet. */
  latencyTarget?: number;
}

export interface Target {
  namespace: string;
  /** A Deployment's name, or a Model's (its spec.deployment, else its one deployment). */
  name: string;
}

export interface Api {
  /** The gateway's API base, /v1 included. */
  base: string;
  token?: string;
}

interface Prediction {
  id: string;
  status: string;
  output?: unknown;
  error?: unknown;
  metrics?: Record<string, unknown>;
  urls?: { get?: string };
}

type Obj = {
  metadata: { name: string; labels?: Record<string, string>; creationTimestamp?: string };
  spec: Record<string, unknown>;
  status?: Record<string, unknown>;
};

/** Most bytes of one output file hashed for the consistency check. */
const MAX_FILE_BYTES = 512 * 1024 * 1024;
/** How long one prediction may take, in total, before the check gives up on it. */
const PREDICTION_DEADLINE_MS = 10 * 60 * 1000;

export class Gateway {
  private readonly api: Api;
  constructor(api: Api) {
    this.api = api;
  }

  private headers(extra: Record<string, string> = {}): Record<string, string> {
    return {
      'content-type': 'application/json',
      ...(this.api.token ? { authorization: `Bearer ${this.api.token}` } : {}),
      ...extra,
    };
  }

  private async json(res: Response, what: string): Promise<Prediction> {
    const body = (await res.json().catch(() => ({}))) as Prediction & { title?: string; detail?: string };
    if (!res.ok)
      throw new Error(`${what}: ${res.status} ${body.title ?? res.statusText}: ${body.detail ?? ''}`);
    return body;
  }

  /** Creates a prediction on a deployment; answers the prediction and whether it was replayed. */
  async create(
    t: Target,
    deployment: string,
    input: Record<string, unknown>,
    headers: Record<string, string> = {},
  ): Promise<{ prediction: Prediction; replayed: boolean }> {
    const url = `${this.api.base}/deployments/${encodeURIComponent(t.namespace)}/${encodeURIComponent(deployment)}/predictions`;
    const res = await fetch(url, {
      method: 'POST',
      headers: this.headers({ prefer: 'wait=60', ...headers }),
      body: JSON.stringify({ input }),
    });
    const prediction = await this.json(res, `POST ${url}`);
    return { prediction, replayed: res.headers.get('idempotent-replayed') === 'true' };
  }

  /** Polls a prediction until it ends (or the deadline passes). */
  async settle(p: Prediction, deadline: number): Promise<Prediction> {
    let cur = p;
    let delay = 100;
    while (!isTerminal(cur.status as never)) {
      if (Date.now() > deadline)
        throw new Error(`prediction ${cur.id} did not end in time (status ${cur.status})`);
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 2000);
      const url = cur.urls?.get ?? `${this.api.base}/predictions/${cur.id}`;
      cur = await this.json(await fetch(url, { headers: this.headers() }), `GET ${url}`);
    }
    return cur;
  }

  /** Runs one prediction to its end; answers it and the seconds the client waited. */
  async run(
    t: Target,
    deployment: string,
    input: Record<string, unknown>,
    headers?: Record<string, string>,
    deadlineMs = PREDICTION_DEADLINE_MS,
  ) {
    const start = performance.now();
    const { prediction } = await this.create(t, deployment, input, headers);
    const done = await this.settle(prediction, Date.now() + deadlineMs);
    return { prediction: done, totalTime: (performance.now() - start) / 1000 };
  }

  /** The sha256 of a file URL's content, when it is on the gateway's own origin (no other host is fetched). */
  async hash(url: string): Promise<string | undefined> {
    if (new URL(url).origin !== new URL(this.api.base).origin) return undefined;
    const res = await fetch(url, { headers: this.headers() });
    if (!res.ok || !res.body) throw new Error(`GET ${url}: ${res.status}`);
    const h = createHash('sha256');
    let bytes = 0;
    for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
      bytes += chunk.byteLength;
      if (bytes > MAX_FILE_BYTES) throw new Error(`${url} is over ${MAX_FILE_BYTES} bytes`);
      h.update(chunk);
    }
    return h.digest('hex');
  }
}

function urlsIn(v: unknown, out: Set<string>): Set<string> {
  if (typeof v === 'string' && /^https?:\/\//.test(v)) out.add(v);
  else if (Array.isArray(v)) for (const x of v) urlsIn(x, out);
  else if (v && typeof v === 'object') for (const x of Object.values(v)) urlsIn(x, out);
  return out;
}

export class Cluster {
  private readonly api: CustomObjectsApi;
  readonly kc: KubeConfig;
  constructor(kc: KubeConfig) {
    this.kc = kc;
    this.api = kc.makeApiClient(CustomObjectsApi);
  }
  async get(namespace: string, plural: string, name: string): Promise<Obj | undefined> {
    try {
      return (await this.api.getNamespacedCustomObject({
        group: GROUP,
        version: VERSION,
        namespace,
        plural,
        name,
      })) as Obj;
    } catch (err) {
      if ((err as { code?: number }).code === 404) return undefined;
      throw err;
    }
  }
  async hardware(name: string): Promise<Obj> {
    return (await this.api.getClusterCustomObject({
      group: GROUP,
      version: VERSION,
      plural: PLURAL.HardwareClass,
      name,
    })) as Obj;
  }
  async versions(namespace: string): Promise<Obj[]> {
    const list = (await this.api.listNamespacedCustomObject({
      group: GROUP,
      version: VERSION,
      namespace,
      plural: PLURAL.ModelVersion,
    })) as { items: Obj[] };
    return list.items;
  }
}

/** The deployment a target names: a Deployment, or a Model's serving one. */
async function resolve(cluster: Cluster, t: Target): Promise<{ deployment: Obj; model: Obj | undefined }> {
  const deployment = await cluster.get(t.namespace, PLURAL.Deployment, t.name);
  if (deployment)
    return {
      deployment,
      model: await cluster.get(t.namespace, PLURAL.Model, deployment.spec.model as string),
    };
  const model = await cluster.get(t.namespace, PLURAL.Model, t.name);
  if (!model) throw new Error(`no Deployment or Model "${t.name}" in namespace "${t.namespace}"`);
  const names =
    (model.spec.deployment as string | undefined) ?? (model.status?.deployments as string[] | undefined)?.[0];
  if (!names)
    throw new Error(`Model ${t.namespace}/${t.name} has no deployment to check (set spec.deployment)`);
  const d = await cluster.get(t.namespace, PLURAL.Deployment, names);
  if (!d) throw new Error(`Model ${t.namespace}/${t.name} names Deployment "${names}", which does not exist`);
  return { deployment: d, model };
}

/** Gathers everything and answers the rows, in the order of the checklist. */
export async function check(
  t: Target,
  s: CheckSettings,
  gateway: Gateway,
  cluster: Cluster,
  log: (line: string) => void = () => {},
  temps: Temporaries = new Temporaries(cluster.kc),
): Promise<Report> {
  const startedAt = new Date().toISOString();
  const { deployment, model } = await resolve(cluster, t);
  const depName = deployment.metadata.name;
  const versionName = deployment.spec.version as string;
  const version = await cluster.get(t.namespace, PLURAL.ModelVersion, versionName);
  if (!version)
    throw new Error(
      `Deployment ${t.namespace}/${depName} runs ModelVersion "${versionName}", which does not exist`,
    );
  const hw = await cluster.hardware(deployment.spec.hardware as string);
  const openapi = version.spec.openapiSchema ?? version.status?.openapiSchema;
  const rows: c.Row[] = [];
  let report: Report;
  let leftover: string[] = [];
  const tctx = { t, deployment, version, input: s.input, gateway, temps, log };
  try {
    // 2: first, while a deployment measured itself still has no instance.
    const coldStart = await coldStartCheck(tctx, s.coldStart ?? 'temporary');

    // 1 and 3: the same input N times, one at a time.
    log(`running ${s.runs} predictions of the same input on ${t.namespace}/${depName}`);
    const sequential: Array<{ prediction: Prediction; totalTime: number }> = [];
    for (let i = 0; i < s.runs; i++) sequential.push(await gateway.run(t, depName, s.input));
    const ok = sequential.filter((r) => r.prediction.status === 'succeeded');
    const hashes = new Map<string, string>();
    for (const r of ok)
      for (const url of urlsIn(r.prediction.output, new Set())) {
        const h = await gateway.hash(url);
        if (h) hashes.set(url, h);
      }
    const failedNote = sequential.length - ok.length;
    const consistencyRow = c.consistency(
      ok.map((r) => c.withFileHashes(r.prediction.output, hashes)),
      {
        ...(s.minCosine !== undefined ? { minCosine: s.minCosine } : {}),
        seedInput: c.hasSeedInput(openapi),
        seedGiven: 'seed' in s.input,
      },
    );
    if (failedNote > 0) {
      const firstError = sequential.find((r) => r.prediction.status !== 'succeeded')?.prediction;
      rows.push({
        check: 'consistency',
        verdict: 'fail',
        figure: `${failedNote}/${sequential.length} did not succeed`,
        detail: `${firstError?.id} ended ${firstError?.status}: ${String(firstError?.error ?? '')}`,
      });
    } else rows.push(consistencyRow);
    const timings = ok.map((r) => ({
      predictTime: Number(r.prediction.metrics?.predict_time ?? Number.NaN),
      totalTime: r.totalTime,
    }));
    rows.push(c.runtime(timings, s.maxP95));

    // Throughput at the deployment's concurrency: instances × the version's maxConcurrency.
    const instances = Math.max(
      1,
      Number(deployment.status?.readyInstances ?? deployment.spec.minInstances ?? 1),
    );
    const concurrency = instances * Math.max(1, Number(version.spec.maxConcurrency ?? 1));
    const count = Math.max(s.runs, concurrency * 2);
    log(`running ${count} predictions ${concurrency} at a time`);
    const start = performance.now();
    let next = 0;
    let failed = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) {
          next++;
          const r = await gateway.run(t, depName, s.input);
          if (r.prediction.status !== 'succeeded') failed++;
        }
      }),
    );
    rows.push(c.throughput(count - failed, concurrency, (performance.now() - start) / 1000, failed));

    // 4: the worst-case inputs, each within the version's predict timeout.
    const worst = await worstCases({
      ...(s.worstInput ? { given: s.worstInput } : {}),
      openapi,
      timeoutSeconds: Number(version.spec.predictTimeoutSeconds ?? 1800),
      // Waited on for its timeout and 2 minutes more (a queue, a cold start), at least the usual 10.
      run: (input) =>
        gateway.run(
          t,
          depName,
          input,
          {},
          Math.max(PREDICTION_DEADLINE_MS, (Number(version.spec.predictTimeoutSeconds ?? 1800) + 120) * 1000),
        ),
      log,
    });
    rows.push(...worst.rows);

    // 6: Cancel-After only when the model runs long enough to be canceled mid-way.
    const p50 = c.percentile(
      timings.map((x) => x.predictTime),
      50,
    );
    if (!(p50 > c.MIN_CANCEL_AFTER_S * 2))
      rows.push(
        c.cancelAfter({
          skipped: `predict p50 ${c.formatSeconds(p50)} is under ${c.MIN_CANCEL_AFTER_S * 2}s: the shortest Cancel-After (${c.MIN_CANCEL_AFTER_S}s) would not interrupt it`,
        }),
      );
    else {
      log(`checking Cancel-After: ${c.MIN_CANCEL_AFTER_S}s`);
      const r = await gateway.run(t, depName, s.input, { 'cancel-after': `${c.MIN_CANCEL_AFTER_S}s` });
      rows.push(c.cancelAfter(r.prediction));
    }
    const key = `modelplane-check-${randomUUID()}`;
    const first = await gateway.create(t, depName, s.input, { 'idempotency-key': key });
    const second = await gateway.create(t, depName, s.input, { 'idempotency-key': key });
    rows.push(c.idempotency(first.prediction.id, second.prediction.id, second.replayed));
    await gateway.settle(first.prediction, Date.now() + PREDICTION_DEADLINE_MS);
    rows.push(c.clientTimeout(timings.map((x) => x.totalTime)));

    // 7: cost.
    rows.push(
      ...c.cost({
        pricing: version.spec.pricing as never,
        pricePerSecond: String(hw.spec.pricePerSecond ?? '0'),
        predictions: ok.map((r) => ({
          predictTime: Number(r.prediction.metrics?.predict_time ?? 0),
          metrics: r.prediction.metrics,
        })),
        unitsPerAction: s.unitsPerAction,
        minInstances: Number(deployment.spec.minInstances ?? 0),
      }),
    );

    // 5: the same runs on other hardware.
    const hardware = s.hardware?.length
      ? await hardwareCheck(
          tctx,
          hardwareRun({
            hardware: deployment.spec.hardware as string,
            temporary: false,
            pricing: version.spec.pricing as never,
            pricePerSecond: String(hw.spec.pricePerSecond ?? '0'),
            predictions: ok.map((r, i) => ({
              predictTime: timings[i]!.predictTime,
              totalTime: r.totalTime,
              ...(r.prediction.metrics ? { metrics: r.prediction.metrics } : {}),
            })),
            unitsPerAction: s.unitsPerAction,
            minInstances: Number(deployment.spec.minInstances ?? 0),
            ...(s.latencyTarget !== undefined ? { latencyTarget: s.latencyTarget } : {}),
          }),
          await Promise.all(
            s.hardware.map(async (name) => ({
              name,
              pricePerSecond: String((await cluster.hardware(name)).spec.pricePerSecond ?? '0'),
            })),
          ),
          {
            runs: s.runs,
            unitsPerAction: s.unitsPerAction,
            ...(s.latencyTarget !== undefined ? { latencyTarget: s.latencyTarget } : {}),
          },
        )
      : undefined;
    if (hardware) rows.push(hardware.row);
    rows.splice(1, 0, coldStart.row);

    // 8 and 9.
    rows.push(c.license(model?.spec.licenseUrl as string | undefined));
    rows.push(c.imagePinned(version.spec.image as string));
    const previous = (await cluster.versions(t.namespace))
      .filter((v) => v.spec.model === version.spec.model && v.metadata.name !== versionName)
      .filter((v) => (v.metadata.creationTimestamp ?? '') <= (version.metadata.creationTimestamp ?? ''))
      .sort((a, b) => (a.metadata.creationTimestamp ?? '').localeCompare(b.metadata.creationTimestamp ?? ''))
      .pop();
    rows.push(
      c.schemaStability(
        previous?.metadata.name,
        previous
          ? c.diffSchemas(previous.spec.openapiSchema ?? previous.status?.openapiSchema, openapi)
          : undefined,
      ),
    );
    rows.push(c.official(model?.metadata.labels, LABEL.official));
    rows.push(c.keptWarm(Number(deployment.spec.minInstances ?? 0)));
    report = {
      target: `${t.namespace}/${t.name}`,
      deployment: depName,
      version: versionName,
      startedAt,
      rows,
      data: {
        latencies: {
          predictTimes: timings.map((x) => x.predictTime),
          totalTimes: timings.map((x) => x.totalTime),
        },
        ...(coldStart.data ? { coldStart: coldStart.data } : {}),
        ...(hardware ? { hardware: hardware.data } : {}),
        worstCase: worst.runs,
      },
    };
  } finally {
    // Whatever happened, no temporary Deployment stays (a failed removal fails the check).
    leftover = await temps.removeAll();
  }
  if (leftover.length) throw new Error(`temporary Deployments not removed: ${leftover.join('; ')}`);
  if (temps.removed.length) report.data.temporaries = { removed: [...temps.removed], notRemoved: [] };
  return report;
}
