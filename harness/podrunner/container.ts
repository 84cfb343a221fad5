/**
 * One container of a pod run as a process group on the pod's address: started from its image
 * (see commands.ts), probed, restarted with the kubelet's back-off, stopped with its preStop
 * hook and grace period, and reported as a container status.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { IContainer } from 'kubernetes-models/v1/Container';
import type { IContainerStateTerminated } from 'kubernetes-models/v1/ContainerStateTerminated';
import type { ILifecycleHandler } from 'kubernetes-models/v1/LifecycleHandler';
import type { IPodSpec } from 'kubernetes-models/v1/PodSpec';
import type { IProbe } from 'kubernetes-models/v1/Probe';
import type { Logger } from '../../operator/runtime/index.ts';
import { GroupProcess, groupAlive } from '../processes.ts';
import { awaitsExplicitShutdown, containerLaunch, type Launch } from './commands.ts';
import { EnvConfigError, type PodFields, resolveEnv } from './env.ts';
import { type ImagePlan, type ImageRules, resolveImage } from './images.ts';
import { ProbeResult, probeTiming, resolvePort, runProbe } from './probes.ts';
import {
  type ContainerState,
  type ContainerView,
  exitCodeOf,
  kubeTime,
  restartDelay,
  shouldRestart,
  terminationReason,
} from './status.ts';

/** What a container needs from the runner: its settings, and the Secrets and ConfigMaps it reads. */
export interface ContainerHost {
  readonly imageRules: ImageRules;
  readonly opts: { readonly restartBackoff: { initialMs: number; maxMs: number } };
  readData(
    kind: 'Secret' | 'ConfigMap',
    name: string,
    namespace: string,
  ): Promise<Record<string, string> | undefined>;
  /** The venv of the Cog server; throws with what to install when it is missing. */
  pythonDir(): string;
}

/** What a container needs from its pod. */
export interface ContainerPod {
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly ip: string | undefined;
  readonly spec: IPodSpec;
  readonly log: Logger;
  /** Where the pod's container logs go. */
  readonly logDir: string;
  readonly isTerminating: boolean;
  readonly host: ContainerHost;
  /** WEBHOOK_AUTH_TOKEN of its containers when they set none (see PodWorker). */
  readonly loopbackToken: string;
  fields(): PodFields;
  /** Asks the pod for a sync (its status, a restart that is due). */
  poke(): void;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface Running {
  proc: GroupProcess;
  startedAt: string;
  containerID: string;
  exit: Promise<void>;
}

/** One container as processes: started, probed, restarted with back-off, stopped. */
export class ContainerRunner {
  private readonly pod: ContainerPod;
  private readonly spec: IContainer;
  private state: ContainerState = { waiting: { reason: 'ContainerCreating' } };
  private lastTerminated: IContainerStateTerminated | undefined;
  private restartCount: number;
  private running: Running | undefined;
  private plan: ImagePlan | undefined;
  private failures = 0;
  private nextStartAt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopping = false;
  private readiness: ProbeResult | undefined;
  private probeTimers: NodeJS.Timeout[] = [];
  private ranBefore = false;

  constructor(pod: ContainerPod, spec: IContainer, restartCount: number) {
    this.pod = pod;
    this.spec = spec;
    this.restartCount = restartCount;
  }

  private get runner(): ContainerHost {
    return this.pod.host;
  }

  processGroup(): number[] {
    const r = this.running;
    return r && groupAlive(r.proc.pid) ? [r.proc.pid] : [];
  }

  view(): ContainerView {
    const ready =
      this.running !== undefined && 'running' in this.state && (this.readiness ? this.readiness.ok : true);
    return {
      name: this.spec.name,
      image: this.spec.image ?? '',
      // No registry, no digest: the image reference stands for itself once it could run.
      imageID: this.plan && this.plan.kind !== 'unknown' ? (this.spec.image ?? '') : '',
      ...(this.running ? { containerID: this.running.containerID } : {}),
      state: this.state,
      ...(this.lastTerminated ? { lastState: { terminated: this.lastTerminated } } : {}),
      restartCount: this.restartCount,
      ready,
    };
  }

  /** Reports a container the runner will not start. */
  refuse(reason: string, message: string): void {
    this.state = { waiting: { reason, message } };
  }

  /** Starts the container when it is due: not running, allowed to (re)start, back-off over. */
  async ensure(): Promise<void> {
    if (this.running || this.stopping) return;
    if ('terminated' in this.state) {
      const t = this.state.terminated;
      if (!shouldRestart(this.pod.spec.restartPolicy ?? 'Always', t.exitCode)) return;
    }
    const now = Date.now();
    if (now < this.nextStartAt) {
      this.scheduleRetry(this.nextStartAt - now);
      return;
    }
    await this.start();
  }

  private scheduleRetry(ms: number): void {
    if (this.retryTimer) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      this.pod.poke();
    }, ms);
  }

  private backOff(reason: string, message: string): void {
    this.failures++;
    const delay = restartDelay(this.failures, this.runner.opts.restartBackoff);
    this.nextStartAt = Date.now() + delay;
    this.scheduleRetry(delay);
    this.state = { waiting: { reason, message } };
  }

  private async start(): Promise<void> {
    const c = this.spec;
    const wasPullFailure = 'waiting' in this.state && /ImagePull/.test(this.state.waiting.reason ?? '');
    this.plan = resolveImage(c.image, this.runner.imageRules);
    if (this.plan.kind === 'unknown') {
      // First ErrImagePull, then ImagePullBackOff between attempts, as the kubelet shows them.
      this.backOff(wasPullFailure ? 'ImagePullBackOff' : 'ErrImagePull', this.plan.message);
      if (wasPullFailure) this.pod.log.debug({ image: c.image }, 'image still cannot run');
      else this.pod.log.warn({ container: c.name, reason: this.plan.message }, 'image cannot run');
      return;
    }
    const ip = this.pod.ip;
    if (!ip) return;
    let env: Record<string, string>;
    const cancelled = () => this.stopping || this.pod.isTerminating;
    try {
      env = await resolveEnv(c, this.pod.fields(), (kind, name) =>
        this.runner.readData(kind, name, this.pod.namespace),
      );
    } catch (err) {
      if (err instanceof EnvConfigError) {
        this.backOff('CreateContainerConfigError', err.message);
        return;
      }
      throw err;
    }
    env.WEBHOOK_AUTH_TOKEN ??= this.pod.loopbackToken;
    // The pod may have been deleted, or the runner stopped, while the env was read.
    if (cancelled()) return;
    let launch: Launch;
    try {
      launch = containerLaunch(this.plan, c, env, { ip, name: this.pod.name }, () => this.runner.pythonDir());
    } catch (err) {
      this.backOff('CreateContainerError', (err as Error).message);
      return;
    }
    const { command, args, cwd } = launch;
    const dir = join(this.pod.logDir, c.name);
    mkdirSync(dir, { recursive: true });
    const logFile = join(dir, `${this.restartCount + (this.ranBefore ? 1 : 0)}.log`);
    if (this.ranBefore) this.restartCount++;
    let proc: GroupProcess;
    try {
      proc = new GroupProcess(`${this.pod.name}/${c.name}`, command, args, { logFile, env: launch.env, cwd });
    } catch (err) {
      this.backOff('RunContainerError', (err as Error).message);
      return;
    }
    const startedAt = kubeTime(new Date());
    const containerID = `podrunner://${this.pod.uid}/${c.name}/${proc.pid}`;
    this.ranBefore = true;
    this.state = { running: { startedAt } };
    const exit = new Promise<void>((resolveExit) => {
      let settled = false;
      const done = (code: number | null, signal: NodeJS.Signals | null, message?: string) => {
        if (settled) return;
        settled = true;
        this.exited(exitCodeOf(code, signal), startedAt, containerID, message);
        resolveExit();
      };
      proc.child.once('exit', (code, signal) => done(code, signal));
      proc.child.once('error', (err) => done(128, null, err.message));
    });
    this.running = { proc, startedAt, containerID, exit };
    this.pod.log.info(
      {
        container: c.name,
        pid: proc.pid,
        podIP: ip,
        log: logFile,
        ...(this.plan.kind === 'cog'
          ? { predictor: this.plan.dir, awaitExplicitShutdown: awaitsExplicitShutdown(args) }
          : { modelplane: args.slice(1) }),
      },
      'container started',
    );
    this.startProbes();
  }

  private exited(exitCode: number, startedAt: string, containerID: string, message?: string): void {
    const r = this.running;
    this.running = undefined;
    this.stopProbes();
    // As the container runtime does when a container's main process ends: nothing of it stays.
    if (r) {
      try {
        process.kill(-r.proc.pid, 'SIGKILL');
      } catch {}
    }
    const finishedAt = kubeTime(new Date());
    const terminated: IContainerStateTerminated = {
      exitCode,
      reason: message ? 'StartError' : terminationReason(exitCode),
      ...(message ? { message } : {}),
      startedAt,
      finishedAt,
      containerID,
    };
    this.pod.log.info({ container: this.spec.name, exitCode }, 'container exited');
    const restart =
      !this.stopping &&
      !this.pod.isTerminating &&
      shouldRestart(this.pod.spec.restartPolicy ?? 'Always', exitCode);
    if (restart) {
      // A container that ran ten minutes starts its back-off afresh.
      const ranMs = Date.parse(finishedAt) - Date.parse(startedAt);
      if (ranMs > 600_000) this.failures = 0;
      this.lastTerminated = terminated;
      const delay = restartDelay(this.failures + 1, this.runner.opts.restartBackoff);
      this.backOff(
        'CrashLoopBackOff',
        `back-off ${Math.round(delay / 1000)}s restarting failed container=${this.spec.name} pod=${this.pod.name}_${this.pod.namespace}(${this.pod.uid})`,
      );
    } else {
      this.state = { terminated };
    }
    this.pod.poke();
  }

  // --- probes ---

  private startProbes(): void {
    this.readiness = undefined;
    const ready = this.spec.readinessProbe;
    const live = this.spec.livenessProbe;
    if (ready) {
      const t = probeTiming(ready);
      const result = new ProbeResult(t.successThreshold, t.failureThreshold, false);
      this.readiness = result;
      this.loopProbe(ready, t, (ok, msg) => {
        if (result.record(ok, msg)) {
          this.pod.log.info(
            { container: this.spec.name, ready: result.ok, message: msg || undefined },
            'readiness changed',
          );
          this.pod.poke();
        }
      });
    }
    if (live) {
      const t = probeTiming(live);
      const result = new ProbeResult(t.successThreshold, t.failureThreshold, true);
      this.loopProbe(live, t, (ok, msg) => {
        if (result.record(ok, msg) && !result.ok) {
          this.pod.log.warn(
            { container: this.spec.name, message: msg },
            'liveness probe failed; restarting the container',
          );
          const grace = (this.pod.spec.terminationGracePeriodSeconds ?? 30) * 1000;
          void this.kill(grace);
        }
      });
    }
  }

  private loopProbe(
    probe: IProbe,
    t: ReturnType<typeof probeTiming>,
    onResult: (ok: boolean, message: string) => void,
  ): void {
    const run = this.running;
    const tick = async () => {
      if (this.running !== run || !run) return;
      const ip = this.pod.ip;
      const { ok, message } = ip ? await runProbe(probe, this.spec, ip) : { ok: false, message: 'no pod IP' };
      if (this.running !== run) return;
      onResult(ok, message);
      this.probeTimers.push(setTimeout(tick, t.periodMs));
    };
    this.probeTimers.push(setTimeout(tick, t.initialDelayMs));
  }

  private stopProbes(): void {
    for (const t of this.probeTimers) clearTimeout(t);
    this.probeTimers = [];
  }

  // --- stopping ---

  /** preStop hook, then SIGTERM to the main process, SIGKILL to the group at `deadline`. */
  async terminate(deadline: number): Promise<void> {
    this.stopping = true;
    this.cancelRetry();
    const r = this.running;
    if (!r) return;
    const preStop = this.spec.lifecycle?.preStop;
    if (preStop) {
      const left = deadline - Date.now();
      this.pod.log.info({ container: this.spec.name }, 'running the preStop hook');
      await Promise.race([this.runPreStop(preStop), sleep(Math.max(0, left)), r.exit]);
    }
    await this.signalAndWait(r, deadline);
  }

  private async runPreStop(hook: ILifecycleHandler): Promise<void> {
    try {
      if (hook.sleep) await sleep(hook.sleep.seconds * 1000);
      else if (hook.httpGet) {
        const ip = this.pod.ip;
        const port = resolvePort(hook.httpGet.port, this.spec);
        const path = hook.httpGet.path ?? '/';
        if (!ip || (hook.httpGet.host && !/^(127\.\d+\.\d+\.\d+|localhost)$/.test(hook.httpGet.host)))
          throw new Error(
            `preStop httpGet to ${hook.httpGet.host}: the local pod runner dials loopback only`,
          );
        const res = await fetch(
          `http://${hook.httpGet.host ?? ip}:${port}${path.startsWith('/') ? path : `/${path}`}`,
        );
        await res.body?.cancel();
      } else if (hook.exec) {
        this.pod.log.warn(
          { container: this.spec.name },
          'exec preStop hooks do not run on the local pod runner',
        );
      }
    } catch (err) {
      this.pod.log.warn({ container: this.spec.name, err }, 'preStop hook failed');
    }
  }

  private async signalAndWait(r: Running, deadline: number): Promise<void> {
    try {
      // A container runtime signals the container's first process, not everything in it.
      process.kill(r.proc.pid, 'SIGTERM');
    } catch {}
    const left = deadline - Date.now();
    const timedOut = await Promise.race([
      r.exit.then(() => false),
      sleep(Math.max(0, left)).then(() => true),
    ]);
    if (timedOut) {
      this.pod.log.warn({ container: this.spec.name }, 'grace period over; SIGKILL');
      try {
        process.kill(-r.proc.pid, 'SIGKILL');
      } catch {}
      await r.exit;
    }
    // The main process is gone and the rest of its group was sent SIGKILL: wait for them too.
    const until = Date.now() + 5_000;
    while (groupAlive(r.proc.pid) && Date.now() < until) await sleep(20);
  }

  /** Stops the container within `graceMs` (SIGTERM, then SIGKILL); no preStop hook. */
  async kill(graceMs: number): Promise<void> {
    const r = this.running;
    if (!r) return;
    await this.signalAndWait(r, Date.now() + graceMs);
  }

  /** Stops the container for good (the pod is gone, or the runner stops). */
  async stop(graceMs: number): Promise<void> {
    this.stopping = true;
    this.cancelRetry();
    await this.kill(graceMs);
  }

  private cancelRetry(): void {
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
  }

  dispose(): void {
    this.stopping = true;
    this.cancelRetry();
    this.stopProbes();
  }
}
