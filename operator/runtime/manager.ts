/**
 * The manager runs a process's controllers:
 *
 * - informers and controllers run only while this process holds the Lease (or always,
 *   when leader election is off); losing the Lease stops them, and they start afresh when
 *   the Lease is won again;
 * - informers asked for with `everyReplica` and runnables (`addRunnable`: servers such as the
 *   gateway) run on every replica, from `start` to `stop`, leader or not;
 * - an HTTP server answers `/healthz` (the process is up), `/readyz` (every running
 *   informer has synced, and every added check passes) and `/metrics` (Prometheus);
 * - `stop` (and SIGTERM/SIGINT after `stopOnSignals`) shuts down gracefully: no new work,
 *   in-flight reconciles get `shutdownTimeoutMs` to finish, the Lease is released, the HTTP
 *   server closes.
 * - fencing: controllers and leader runnables write through `leaderClient`, whose writes pass
 *   only during this replica's term (fence.ts). Losing the Lease, or its renewal going
 *   unconfirmed for the renew deadline on this process's own clock, ends the term at once:
 *   writes in flight are aborted, later ones refused, reconciles see their `signal` abort.
 *   If the leader's work has not stopped `lostLeaseStopMs` later, the process exits.
 *
 * Register informers and controllers before `start`.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { KubeConfig } from '@kubernetes/client-node';
import { Registry } from 'prom-client';
import { KubeClient, type KubeObject, type ResourceType } from './client.ts';
import { Controller, type ControllerOptions } from './controller.ts';
import { EventRecorder } from './events.ts';
import { Fence } from './fence.ts';
import { Informer, type InformerOptions } from './informer.ts';
import { type LeaderElectionTiming, LeaderElector } from './leader-election.ts';
import { createLogger, type Logger } from './log.ts';
import { RuntimeMetrics } from './metrics.ts';

export interface LeaderElectionOptions extends Partial<LeaderElectionTiming> {
  /** The Lease's namespace (the operator's own). */
  namespace: string;
  /** The Lease's name (default: the manager's name). */
  name?: string;
}

export interface ManagerOptions {
  /** Names the manager in logs, and its Lease by default. */
  name: string;
  /** Where the API server is (default: $KUBECONFIG, ~/.kube/config, or in-cluster). */
  kubeConfig?: KubeConfig;
  /** This process among the candidates for the Lease (default: hostname and a random suffix). */
  identity?: string;
  /** The Lease to hold before running controllers; `false` runs them at once (one replica only). */
  leaderElection: LeaderElectionOptions | false;
  /** Health and metrics server (`port: 0` picks a free port); `false` for none. */
  http?: { port: number; host?: string } | false;
  /** How long in-flight reconciles may run on after a stop (default 30 s). */
  shutdownTimeoutMs?: number;
  /**
   * How long the leader's work may take to stop after the Lease was lost (default: lease
   * duration minus renew deadline, at least 1 s); past it `onStuck` runs.
   */
  lostLeaseStopMs?: number;
  /** Called when the leader's work did not stop in time after losing the Lease (default: exit 1). */
  onStuck?: () => void;
  log?: Logger;
  registry?: Registry;
}

export type InformerSpec = Omit<InformerOptions, 'log' | 'backoff'>;

/** A loop run beside the controllers on the Lease holder: runs until `signal` aborts. */
export interface LeaderRunnable {
  name: string;
  run(signal: AbortSignal): Promise<void>;
}

/** Answers one path on the manager's HTTP server. */
export type HttpHandler = (req: IncomingMessage, res: ServerResponse) => void | Promise<void>;

/** Something that runs on every replica from `start` to `stop` (a server, say). */
export interface Runnable {
  name: string;
  start(): Promise<void>;
  /** Graceful stop; given the manager's shutdown timeout. */
  stop(timeoutMs: number): Promise<void>;
}

export class Manager {
  readonly name: string;
  readonly identity: string;
  readonly client: KubeClient;
  readonly log: Logger;
  readonly metrics: RuntimeMetrics;
  /** Open while this replica leads and its Lease cannot have expired. */
  readonly fence: Fence;
  /**
   * `client`, with its writes fenced: for controllers and leader runnables. Its writes fail
   * with FencedError once this replica no longer (surely) leads.
   */
  readonly leaderClient: KubeClient;
  private readonly opts: ManagerOptions;
  private readonly informers = new Map<string, Informer>();
  /** Informers that run on every replica, not only on the leader. */
  private readonly everyReplica = new Set<Informer>();
  private readonly runnables: Runnable[] = [];
  private readonly controllers: Controller[] = [];
  private readonly leaderRunnables: LeaderRunnable[] = [];
  private readonly routes = new Map<string, HttpHandler>();
  private readonly recorders: EventRecorder[] = [];
  private readonly readyChecks = new Map<string, () => boolean | string>();
  private readonly abort = new AbortController();
  private readonly elector: LeaderElector | undefined;
  private server: Server | undefined;
  private running: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private leading = false;

  constructor(opts: ManagerOptions) {
    this.opts = opts;
    this.name = opts.name;
    this.identity = opts.identity ?? `${hostname()}_${randomUUID()}`;
    this.log = (opts.log ?? createLogger()).child({ manager: opts.name });
    this.metrics = new RuntimeMetrics(opts.registry ?? new Registry());
    let kc = opts.kubeConfig;
    if (!kc) {
      kc = new KubeConfig();
      kc.loadFromDefault();
    }
    const host = new URL(kc.getCurrentCluster()?.server ?? 'https://unknown').host;
    this.client = new KubeClient(kc, { onResponse: this.metrics.restClientHook(host) });
    this.fence = new Fence();
    this.leaderClient = this.client.fenced(this.fence);
    const le = opts.leaderElection;
    if (le) {
      this.elector = new LeaderElector({
        ...le,
        name: le.name ?? opts.name,
        client: this.client,
        identity: this.identity,
        log: this.log,
        metrics: this.metrics,
        fence: this.fence,
        onStartedLeading: (signal) => this.lead(signal),
      });
    }
  }

  /** How long the leader's work may take to stop after losing the Lease. */
  get lostLeaseStopMs(): number {
    if (this.opts.lostLeaseStopMs !== undefined) return this.opts.lostLeaseStopMs;
    const t = this.elector?.timing;
    return t ? Math.max(1_000, t.leaseDurationMs - t.renewDeadlineMs) : 1_000;
  }

  /** True while this process runs the controllers. */
  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * The identity of the Lease holder as last seen: this process's own while it leads;
   * undefined when there is none or leader election is off.
   */
  get leaderIdentity(): string | undefined {
    return this.elector?.leader;
  }

  /** The HTTP server's address, once started. */
  get address(): AddressInfo | undefined {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? addr : undefined;
  }

  /**
   * The informer for `type` with these options, made once and shared by every controller.
   * With `everyReplica`, it runs on every replica from `start` to `stop` (a gateway's cache),
   * not only while this replica leads; once asked for so, it stays so.
   */
  informer<T extends KubeObject>(
    type: ResourceType<T>,
    spec: InformerSpec = {},
    opts: { everyReplica?: boolean } = {},
  ): Informer<T> {
    const key = JSON.stringify([
      type.apiVersion,
      type.plural,
      spec.namespace,
      spec.labelSelector,
      spec.fieldSelector,
      spec.managedFieldsDepth,
    ]);
    let informer = this.informers.get(key);
    if (!informer) {
      informer = new Informer(this.client, type as ResourceType, { ...spec, log: this.log });
      this.informers.set(key, informer);
    }
    if (opts.everyReplica) {
      if (this.running && !this.everyReplica.has(informer)) informer.start();
      this.everyReplica.add(informer);
    }
    return informer as unknown as Informer<T>;
  }

  addController<T extends KubeObject>(opts: Omit<ControllerOptions<T>, 'log' | 'metrics'>): Controller<T> {
    const controller = new Controller<T>({ ...opts, log: this.log, metrics: this.metrics });
    this.controllers.push(controller as unknown as Controller);
    return controller;
  }

  /**
   * Runs `runnable` while this process leads (with the controllers, after the informers
   * started); it must return soon after its signal aborts.
   */
  addLeaderRunnable(runnable: LeaderRunnable): void {
    this.leaderRunnables.push(runnable);
  }

  /** Serves `path` (exact match) on the health and metrics server. */
  addHttpHandler(path: string, handler: HttpHandler): void {
    if (['/healthz', '/livez', '/readyz', '/metrics'].includes(path))
      throw new Error(`${path} is the manager's own`);
    this.routes.set(path, handler);
  }

  /** An Event recorder reporting as `reportingController` from this process. */
  eventRecorder(reportingController: string): EventRecorder {
    const recorder = new EventRecorder({
      client: this.client,
      reportingController,
      reportingInstance: this.identity,
      log: this.log,
    });
    this.recorders.push(recorder);
    return recorder;
  }

  /** Runs `runnable` on every replica: started by `start`, stopped (gracefully) by `stop`. */
  addRunnable(runnable: Runnable): void {
    if (this.running) throw new Error(`add ${runnable.name} before starting the manager`);
    this.runnables.push(runnable);
  }

  /** Adds a condition to `/readyz`: true when ready, false or the reason when not. */
  addReadyCheck(name: string, check: () => boolean | string): void {
    this.readyChecks.set(name, check);
  }

  /** Why the manager is not ready (empty when it is). */
  notReady(): string[] {
    if (!this.running) return ['not started'];
    if (this.stopping) return ['shutting down'];
    const reasons: string[] = [];
    for (const informer of this.informers.values()) {
      if (informer.isRunning && !informer.hasSynced()) reasons.push(`${informer.type.plural} not synced`);
    }
    for (const [name, check] of this.readyChecks) {
      const ready = check();
      if (typeof ready === 'string') reasons.push(`${name}: ${ready}`);
      else if (!ready) reasons.push(`${name} not ready`);
    }
    return reasons;
  }

  /** Starts the HTTP server, then campaigns for the Lease (or leads at once) in the background. */
  async start(): Promise<void> {
    if (this.running) throw new Error('the manager was started already');
    if (this.opts.http) await this.listen(this.opts.http.port, this.opts.http.host);
    for (const informer of this.everyReplica) informer.start();
    const started: Runnable[] = [];
    try {
      for (const r of this.runnables) {
        await r.start();
        started.push(r);
      }
    } catch (err) {
      const timeoutMs = this.opts.shutdownTimeoutMs ?? 30_000;
      await Promise.all(started.map((r) => r.stop(timeoutMs)));
      await Promise.all([...this.everyReplica].map((i) => i.stop()));
      await this.close();
      throw err;
    }
    const signal = this.abort.signal;
    this.running = (this.elector ? this.elector.run(signal) : this.leadAlone(signal)).catch((err) =>
      this.log.error({ err }, 'the manager stopped on an error'),
    );
    this.log.info({ identity: this.identity, http: this.address }, 'manager started');
  }

  /** Graceful shutdown; safe to call more than once. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('shutting down');
      this.abort.abort();
      const timeoutMs = this.opts.shutdownTimeoutMs ?? 30_000;
      await Promise.all([
        this.running,
        ...this.runnables.map((r) =>
          r.stop(timeoutMs).catch((err) => this.log.error({ err, runnable: r.name }, 'stop failed')),
        ),
      ]);
      await Promise.all([...this.everyReplica].map((i) => i.stop()));
      await Promise.all(this.recorders.map((r) => r.flush()));
      await this.close();
      this.log.info('stopped');
    })();
    return this.stopping;
  }

  /** On SIGTERM or SIGINT: stop, then exit 0. A second signal exits 1 at once. */
  stopOnSignals(signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT']): void {
    let received = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (received) process.exit(1);
      received = true;
      this.log.info({ signal }, 'signal received');
      void this.stop().then(() => process.exit(0));
    };
    for (const s of signals) process.on(s, onSignal);
  }

  /** Without leader election: one term, from start to stop. */
  private async leadAlone(signal: AbortSignal): Promise<void> {
    const term = this.fence.begin(Number.POSITIVE_INFINITY);
    const end = () => this.fence.end('shutting down');
    signal.addEventListener('abort', end, { once: true });
    if (signal.aborted) end();
    await this.lead(term);
  }

  /** Runs informers and controllers until `signal` (the term) aborts, then stops them. */
  private async lead(signal: AbortSignal): Promise<void> {
    this.leading = true;
    let runnables: Promise<void>[] = [];
    // Stops the leader loops with the controllers, and also when leading ends on an error.
    const loops = new AbortController();
    const stopLoops = () => loops.abort();
    signal.addEventListener('abort', stopLoops, { once: true });
    try {
      for (const informer of this.informers.values()) informer.start();
      runnables = this.leaderRunnables.map((r) =>
        r
          .run(loops.signal)
          .catch((err) => this.log.error({ err, runnable: r.name }, 'a leader loop stopped on an error')),
      );
      await Promise.all(this.controllers.map((c) => c.start(signal))).catch((err) => {
        if (!signal.aborted) throw err;
      });
      if (!signal.aborted)
        await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    } finally {
      signal.removeEventListener('abort', stopLoops);
      loops.abort();
      // Lost rather than given up: writes are fenced already; the work must stop soon.
      const lost = !this.abort.signal.aborted;
      const timeoutMs = lost ? this.lostLeaseStopMs : (this.opts.shutdownTimeoutMs ?? 30_000);
      const stopped = Promise.all([
        Promise.all(runnables),
        Promise.all(this.controllers.map((c) => c.stop(timeoutMs))),
      ]).then(([, drained]) => drained.every(Boolean));
      if (lost) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const late = new Promise<false>((resolve) => {
          timer = setTimeout(() => resolve(false), timeoutMs + 100);
        });
        const inTime = await Promise.race([stopped, late]);
        clearTimeout(timer);
        if (!inTime) {
          this.log.fatal({ timeoutMs }, 'the leader’s work did not stop after losing the Lease; exiting');
          (this.opts.onStuck ?? (() => process.exit(1)))();
        }
      }
      await stopped;
      await Promise.all(
        [...this.informers.values()].filter((i) => !this.everyReplica.has(i)).map((i) => i.stop()),
      );
      this.leading = false;
    }
  }

  private listen(port: number, host = '0.0.0.0'): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0] ?? '/';
      if (path === '/healthz' || path === '/livez') {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
      } else if (path === '/readyz') {
        const reasons = this.notReady();
        res
          .writeHead(reasons.length ? 503 : 200, { 'content-type': 'text/plain' })
          .end(reasons.length ? `${reasons.join('\n')}\n` : 'ok');
      } else if (path === '/metrics') {
        this.metrics.registry.metrics().then(
          (text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text),
          (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(err.message),
        );
      } else if (this.routes.has(path)) {
        const handler = this.routes.get(path) as HttpHandler;
        Promise.resolve()
          .then(() => handler(req, res))
          .catch((err: Error) => {
            this.log.error({ err, path }, 'an HTTP handler failed');
            if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
            res.end('internal error');
          });
      } else {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found');
      }
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  }

  private close(): Promise<void> {
    const server = this.server;
    if (!server) return Promise.resolve();
    return new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }
}
