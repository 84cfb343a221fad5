/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules:
 *
 * - The holder renews `spec.renewTime` every `retryPeriod`. If it cannot renew for
 *   `renewDeadline`, or sees another holder, it has lost the lease and must stop working.
 * - A candidate takes the lease when it is free (no holder) or when the record has not
 *   changed for the holder's `leaseDurationSeconds`, measured on the candidate's own clock
 *   from when it first saw that record, so clock skew between machines does not matter.
 * - Every write is a PUT carrying the resourceVersion that was read: of two candidates
 *   racing, one gets 409 Conflict and stays a candidate.
 * - On shutdown the holder releases the lease (clears `holderIdentity`), so a successor
 *   takes over at its next retry instead of waiting for the lease to expire.
 * - Fencing: the holder's term (a `Fence`) lasts until the send time of its last successful
 *   write of the Lease plus `renewDeadline`, on its own clock. A successor starts its
 *   `leaseDuration` no earlier than that write, so the term ends at least
 *   `leaseDuration - renewDeadline` before anyone may take over, whatever the successor
 *   sees, and even when this process was paused and has not yet seen that it lost.
 */

import type { ILease } from 'kubernetes-models/coordination.k8s.io/v1/Lease';
import type { ILeaseSpec } from 'kubernetes-models/coordination.k8s.io/v1/LeaseSpec';
import { sleep } from '../../lib/clock.ts';
import {
  isConflict,
  isNotFound,
  type KubeClient,
  type Listed,
  resourcePath,
  resourceType,
} from './client.ts';
import { Fence } from './fence.ts';
import { type Logger, silentLogger } from './log.ts';
import type { RuntimeMetrics } from './metrics.ts';

export type LeaseSpec = ILeaseSpec;
export type Lease = Listed<ILease>;

export const Leases = resourceType<Lease>({
  apiVersion: 'coordination.k8s.io/v1',
  kind: 'Lease',
  plural: 'leases',
  namespaced: true,
});

export interface LeaderElectionTiming {
  /** How long a lease holds without renewal (default 15 s). */
  leaseDurationMs: number;
  /** How long the holder keeps trying to renew before it gives up (default 10 s). */
  renewDeadlineMs: number;
  /** The pause between attempts to acquire or renew (default 2 s). */
  retryPeriodMs: number;
}

export const DEFAULT_TIMING: LeaderElectionTiming = {
  leaseDurationMs: 15_000,
  renewDeadlineMs: 10_000,
  retryPeriodMs: 2_000,
};

export interface LeaderElectorOptions extends Partial<LeaderElectionTiming> {
  client: KubeClient;
  /** Where the Lease lives. */
  namespace: string;
  /** The Lease's name. */
  name: string;
  /** This candidate's name, unique among candidates (pod name and a random suffix, say). */
  identity: string;
  /**
   * Called on becoming leader. `signal` aborts when leadership ends (lost, or shutdown);
   * the returned promise must settle only once the work it started has stopped: the lease
   * is released after it settles.
   */
  onStartedLeading: (signal: AbortSignal) => Promise<void>;
  onStoppedLeading?: () => void;
  /** Called when the holder changes (including to this candidate). */
  onNewLeader?: (identity: string) => void;
  log?: Logger;
  metrics?: RuntimeMetrics;
  /** The fence whose terms follow this candidate's leadership (default: a new one). */
  fence?: Fence;
}

export type LeaseDecision = 'create' | 'renew' | 'acquire' | 'held';

/**
 * What `identity` may do with the lease `spec` now: create it (none exists), renew it (it
 * holds it), acquire it (free or expired), or nothing (another holder's lease is valid).
 * `observedAt` is when this candidate first saw the current record, on its own clock.
 */
export function decide(
  identity: string,
  spec: LeaseSpec | undefined,
  observedAt: number,
  now: number,
): LeaseDecision {
  if (!spec) return 'create';
  const holder = spec.holderIdentity;
  if (holder === identity) return 'renew';
  if (!holder) return 'acquire';
  const durationMs = (spec.leaseDurationSeconds ?? 0) * 1000;
  return now < observedAt + durationMs ? 'held' : 'acquire';
}

/** The spec to write after `decision` ('create', 'renew' or 'acquire'). */
export function nextSpec(
  identity: string,
  prev: LeaseSpec | undefined,
  decision: Exclude<LeaseDecision, 'held'>,
  now: number,
  leaseDurationMs: number,
): LeaseSpec {
  const leaseDurationSeconds = Math.max(1, Math.ceil(leaseDurationMs / 1000));
  const time = microTime(now);
  if (decision === 'renew')
    return { ...prev, holderIdentity: identity, leaseDurationSeconds, renewTime: time };
  return {
    holderIdentity: identity,
    leaseDurationSeconds,
    acquireTime: time,
    renewTime: time,
    leaseTransitions: decision === 'create' ? 0 : (prev?.leaseTransitions ?? 0) + 1,
  };
}

/** The spec that gives the lease up: no holder, so the next candidate acquires it at once. */
export function releasedSpec(prev: LeaseSpec | undefined, now: number): LeaseSpec {
  const time = microTime(now);
  return {
    leaseDurationSeconds: 1,
    acquireTime: time,
    renewTime: time,
    leaseTransitions: prev?.leaseTransitions ?? 0,
  };
}

/** A MicroTime: RFC 3339 with exactly six fractional digits, as the API server parses it. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}

/** Checks the timing the way client-go does. */
export function validateTiming(t: LeaderElectionTiming): void {
  if (!(t.leaseDurationMs > t.renewDeadlineMs))
    throw new Error('leaseDuration must be greater than renewDeadline');
  if (!(t.renewDeadlineMs > 1.2 * t.retryPeriodMs))
    throw new Error('renewDeadline must be greater than 1.2 × retryPeriod');
  if (!(t.retryPeriodMs > 0)) throw new Error('retryPeriod must be positive');
}

export class LeaderElector {
  readonly identity: string;
  readonly timing: LeaderElectionTiming;
  /** Open while this candidate leads and its lease cannot have expired (see fence.ts). */
  readonly fence: Fence;
  private readonly opts: LeaderElectorOptions;
  private readonly log: Logger;
  private readonly path: string;
  private observedVersion: string | undefined;
  private observedAt = 0;
  private observedHolder: string | undefined;
  private lastLease: Lease | undefined;
  private leading = false;
  /** When the last write of the Lease that succeeded was sent, on this process's clock. */
  private writtenAt = 0;

  constructor(opts: LeaderElectorOptions) {
    this.opts = opts;
    this.identity = opts.identity;
    this.fence = opts.fence ?? new Fence();
    this.timing = {
      leaseDurationMs: opts.leaseDurationMs ?? DEFAULT_TIMING.leaseDurationMs,
      renewDeadlineMs: opts.renewDeadlineMs ?? DEFAULT_TIMING.renewDeadlineMs,
      retryPeriodMs: opts.retryPeriodMs ?? DEFAULT_TIMING.retryPeriodMs,
    };
    validateTiming(this.timing);
    this.log = (opts.log ?? silentLogger).child({
      lease: `${opts.namespace}/${opts.name}`,
      identity: opts.identity,
    });
    this.path = resourcePath(Leases, { namespace: opts.namespace, name: opts.name });
    opts.metrics?.leaderStatus.set({ name: opts.name }, 0);
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /** The holder as last seen (undefined when none, or not looked yet). */
  get leader(): string | undefined {
    return this.observedHolder;
  }

  /**
   * Campaigns until `signal` aborts: acquires the lease, leads while it renews, and after
   * losing it campaigns again. Resolves after `signal` aborted, with the lease released.
   */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (!(await this.acquire(signal))) break;
      const term = this.fence.begin(this.writtenAt + this.timing.renewDeadlineMs);
      this.setLeading(true);
      this.log.info('became leader');
      const work = this.opts
        .onStartedLeading(term)
        .catch((err) => this.log.error({ err }, 'the leader’s work failed'));
      await this.keepRenewing(signal, term);
      const lost = !signal.aborted;
      if (lost) this.log.warn('lost the lease; stopping leader work');
      this.fence.end(lost ? 'lost the lease' : 'shutting down');
      await work;
      if (!lost) await this.release();
      this.setLeading(false);
      this.opts.onStoppedLeading?.();
    }
  }

  /** Retries until the lease is ours (true) or `signal` aborts (false). */
  private async acquire(signal: AbortSignal): Promise<boolean> {
    this.log.info('waiting to acquire the lease');
    while (!signal.aborted) {
      if (await this.attempt(this.timing.renewDeadlineMs)) return true;
      await sleep(this.timing.retryPeriodMs * (1 + 0.2 * Math.random()), signal);
    }
    return false;
  }

  /**
   * Renews every retryPeriod, extending the fence's term; returns when the lease is lost,
   * the term ended (its deadline passed unrenewed) or `signal` aborts.
   */
  private async keepRenewing(signal: AbortSignal, term: AbortSignal): Promise<void> {
    const either = AbortSignal.any([signal, term]);
    while (!either.aborted) {
      await sleep(this.timing.retryPeriodMs, either);
      if (either.aborted || !this.fence.open) return;
      const left = this.writtenAt + this.timing.renewDeadlineMs - Date.now();
      if (left > 0 && (await this.attempt(left))) {
        this.fence.extend(this.writtenAt + this.timing.renewDeadlineMs);
        continue;
      }
      if (this.observedHolder !== this.identity) return; // someone else holds it now
      if (Date.now() - this.writtenAt >= this.timing.renewDeadlineMs) return;
    }
  }

  /** One read and, when allowed, one write of the lease; true when it is ours afterwards. */
  private async attempt(timeoutMs: number): Promise<boolean> {
    const client = this.opts.client;
    const timeout = Math.max(1, Math.round(timeoutMs));
    try {
      let lease: Lease | undefined;
      try {
        lease = await client.request<Lease>('GET', this.path, { timeoutMs: timeout });
      } catch (err) {
        if (!isNotFound(err)) throw err;
      }
      const now = Date.now();
      if (lease) this.observe(lease, now);
      const decision = decide(this.identity, lease?.spec, this.observedAt, now);
      if (decision === 'held') return false;
      const spec = nextSpec(this.identity, lease?.spec, decision, now, this.timing.leaseDurationMs);
      // A successor's lease duration starts no earlier than this write reaches the server.
      const sentAt = Date.now();
      const written = !lease
        ? await client.request<Lease>('POST', resourcePath(Leases, { namespace: this.opts.namespace }), {
            body: {
              apiVersion: Leases.apiVersion,
              kind: Leases.kind,
              metadata: { name: this.opts.name, namespace: this.opts.namespace },
              spec,
            },
            timeoutMs: timeout,
          })
        : await client.request<Lease>('PUT', this.path, { body: { ...lease, spec }, timeoutMs: timeout });
      this.observe(written, Date.now());
      this.writtenAt = sentAt;
      return true;
    } catch (err) {
      // 409: another candidate wrote first (or created it); AlreadyExists is a 409 too.
      if (!isConflict(err)) this.log.warn({ err }, 'could not read or write the lease');
      return false;
    }
  }

  private observe(lease: Lease, now: number): void {
    this.lastLease = lease;
    if (lease.metadata?.resourceVersion !== this.observedVersion) {
      this.observedVersion = lease.metadata?.resourceVersion;
      this.observedAt = now;
    }
    const holder = lease.spec?.holderIdentity || undefined;
    if (holder !== this.observedHolder) {
      this.observedHolder = holder;
      if (holder) {
        this.log.info({ leader: holder }, 'new leader');
        this.opts.onNewLeader?.(holder);
      }
    }
  }

  /** Gives the lease up if this candidate still holds it (one attempt, best effort). */
  private async release(): Promise<void> {
    const lease = this.lastLease;
    if (!lease || lease.spec?.holderIdentity !== this.identity) return;
    try {
      const released = await this.opts.client.request<Lease>('PUT', this.path, {
        body: { ...lease, spec: releasedSpec(lease.spec, Date.now()) },
        timeoutMs: this.timing.renewDeadlineMs,
      });
      this.observe(released, Date.now());
      this.log.info('released the lease');
    } catch (err) {
      this.log.warn({ err }, 'could not release the lease; it expires on its own');
    }
  }

  private setLeading(leading: boolean): void {
    this.leading = leading;
    this.opts.metrics?.leaderStatus.set({ name: this.opts.name }, leading ? 1 : 0);
  }
}
