/**
 * bench/activation: the gateway's half of scaling from zero — from a model pod turning Ready
 * to the first held prediction dispatched to it. `modelplane dev`'s setup runs (a local control
 * plane, the pod runner, the operator with gateway and autoscaler as a child process); a
 * Deployment of `echo` sits at zero instances. Each repetition posts one prediction to the
 * gateway (held: no instance), the autoscaler scales up, the pod runner starts a real Cog
 * server and sidecar, the pod turns Ready. A watcher process of its own (bench/ready-watch.ts)
 * watches the Deployment's Pods and stamps the moment the Ready=True update reaches it (the
 * gateway's own Pod watch gets the same update from the API server); the prediction's arrival on the instance is the
 * sidecar's `created_at` of it (read from the sidecar), and its start the `started_at` (the
 * model server took it). All are this machine's wall clock, in milliseconds. The Deployment
 * scales back to zero before the next repetition.
 *
 * Usage: node bench/activation.ts [--repeats N]   (or `make bench-activation`)
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { kubectl, SYSTEM_NAMESPACE, startDev } from '../dev/dev.ts';
import { waitFor } from '../harness/processes.ts';
import { KubeClient } from '../operator/runtime/index.ts';
import { SidecarKey } from '../operator/sidecar-key.ts';

const { values } = parseArgs({ options: { repeats: { type: 'string', default: '8' } } });
const REPEATS = Number(values.repeats);
const NS = 'bench';
const NAME = 'echo';

const manifest = `apiVersion: modelplane.dev/v1alpha1
kind: Model
metadata: {name: ${NAME}}
spec: {visibility: private, defaultHardware: gpu-t4, deployment: ${NAME}}
---
apiVersion: modelplane.dev/v1alpha1
kind: ModelVersion
metadata: {name: ${NAME}-v1}
spec: {model: ${NAME}, image: 'modelplane.local/echo:bench', maxConcurrency: 1, setupTimeoutSeconds: 120, predictTimeoutSeconds: 60}
---
apiVersion: modelplane.dev/v1alpha1
kind: Deployment
metadata: {name: ${NAME}}
spec:
  model: ${NAME}
  version: ${NAME}-v1
  hardware: gpu-t4
  minInstances: 0
  maxInstances: 1
  queue: {maxWaitSeconds: 300}
  # Back to zero two seconds after the prediction (time to read it from the sidecar).
  scaling: {stableWindowSeconds: 6, panicWindowSeconds: 1, scaleDownDelaySeconds: 0, scaleToZeroAfterSeconds: 2}
`;
const manifestFile = join(tmpdir(), `modelplane-bench-activation-${process.pid}.yaml`);
writeFileSync(manifestFile, manifest);

const log = (l: string) => process.stderr.write(`${l}\n`);
const dev = await startDev({
  namespace: NS,
  examples: [],
  gatewayPort: 0,
  logDir: join(tmpdir(), `modelplane-bench-activation-${process.pid}`),
  log,
});
const stops: (() => void)[] = [];
try {
  kubectl(dev.kubeconfig, ['apply', '--server-side', '-n', NS, '-f', manifestFile]);

  /** Pods seen, by uid: when the Ready=True update reached the watcher, and the sidecar URL. */
  const ready = new Map<string, { name: string; at: number; url: string }>();
  const live = new Set<string>();
  const watcher = spawn(
    process.execPath,
    [join(import.meta.dirname, 'ready-watch.ts'), dev.kubeconfig, NS, NAME],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  stops.push(() => watcher.kill('SIGTERM'));
  createInterface({ input: watcher.stdout }).on('line', (text) => {
    const l = JSON.parse(text) as {
      uid: string;
      name: string;
      url?: string;
      at: number;
      type: string;
      ready: boolean;
    };
    if (l.type === 'DELETED') live.delete(l.uid);
    else live.add(l.uid);
    if (l.ready && l.url && !ready.has(l.uid)) ready.set(l.uid, { name: l.name, at: l.at, url: l.url });
  });

  const gateway = `${dev.gatewayUrl}/v1`;
  const headers = { authorization: `Bearer ${dev.token}`, 'content-type': 'application/json' };
  const kc = new KubeConfig();
  kc.loadFromFile(dev.kubeconfig);
  const sidecarKey = SidecarKey.inNamespace(new KubeClient(kc), SYSTEM_NAMESPACE);
  // The gateway knows the Deployment once its cache has it: a create answers 404 before.
  await waitFor(
    'the gateway to know the deployment',
    async () => (await fetch(`${gateway}/deployments/${NS}/${NAME}`, { headers })).ok,
    { timeoutMs: 60_000, intervalMs: 200 },
  );

  const rows: { readyToArrival: number; readyToStart: number; hold: number; pod: string }[] = [];
  for (let i = 0; i < REPEATS; i++) {
    await waitFor('no pod of the deployment left', () => live.size === 0, {
      timeoutMs: 120_000,
      intervalMs: 50,
    });
    const before = new Set(ready.keys());
    const res = await fetch(`${gateway}/deployments/${NS}/${NAME}/predictions`, {
      method: 'POST',
      headers: { ...headers, prefer: 'wait=60' },
      body: JSON.stringify({ input: { text: `activation ${i}` } }),
    });
    const p = (await res.json()) as { id: string; status: string; created_at: string; started_at: string };
    if (res.status !== 201 || p.status !== 'succeeded')
      throw new Error(`the prediction answered ${res.status}: ${JSON.stringify(p).slice(0, 300)}`);
    const fresh = [...ready.entries()].filter(([uid]) => !before.has(uid));
    if (fresh.length !== 1) throw new Error(`expected one new ready pod, saw ${fresh.length}`);
    const pod = fresh[0]![1];
    // The sidecar answers the operator only: ask with its token, from its key in its namespace.
    const authorization = await sidecarKey.authorization(pod.url);
    const onPod = (await (
      await fetch(`${pod.url}/predictions/${p.id}`, { headers: { authorization } })
    ).json()) as {
      created_at: string;
    };
    const arrival = Date.parse(onPod.created_at);
    const started = Date.parse(p.started_at);
    rows.push({
      readyToArrival: arrival - pod.at,
      readyToStart: started - pod.at,
      hold: started - Date.parse(p.created_at),
      pod: pod.name,
    });
    const r = rows.at(-1)!;
    log(
      `  ${i + 1}/${REPEATS} ${r.pod}: Ready → on the instance ${r.readyToArrival} ms, → started ${r.readyToStart} ms (held ${(r.hold / 1000).toFixed(1)} s in all)`,
    );
  }
  const stats = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    return { p50: s[Math.ceil(0.5 * s.length) - 1]!, min: s[0]!, max: s.at(-1)! };
  };
  const a = stats(rows.map((r) => r.readyToArrival));
  const s = stats(rows.map((r) => r.readyToStart));
  const h = stats(rows.map((r) => r.hold));
  process.stdout.write(
    `\nactivation: a prediction held at zero instances, ${rows.length} repetitions (echo, a real Cog server and sidecar per pod)\n`,
  );
  process.stdout.write(
    `  pod Ready (watch) → prediction on the instance (sidecar created_at): p50 ${a.p50} ms, min ${a.min} ms, max ${a.max} ms\n`,
  );
  process.stdout.write(
    `  pod Ready (watch) → prediction started (started_at):               p50 ${s.p50} ms, min ${s.min} ms, max ${s.max} ms\n`,
  );
  process.stdout.write(
    `  whole hold, created → started (scale-up, pod start, model setup):   p50 ${(h.p50 / 1000).toFixed(1)} s, max ${(h.max / 1000).toFixed(1)} s\n`,
  );
  process.stdout.write(
    `  target: Ready → dispatched ≤ 100 ms — ${a.max <= 100 ? 'met every time' : 'NOT met every time'}\n`,
  );
} finally {
  for (const stop of stops) stop();
  await dev.stop();
}
// Everything this bench started has stopped; a keep-alive handle left behind must not hold
// the process open.
process.exit(0);
