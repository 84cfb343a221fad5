/** The autoscaler, registered on a manager: see autoscaler.ts and docs/autoscaler.md. */
import { caches } from '../controllers/caches.ts';
import type { DemandSource } from '../predictions/demand.ts';
import type { Clock, Manager } from '../runtime/index.ts';
import { Autoscaler, REPORTING_CONTROLLER } from './autoscaler.ts';
import { LocalDemand } from './local.ts';
import { DEMAND_PATH, demandHandler, PeerScraper, POKE_PATH, PokeForwarder, pokeHandler } from './peers.ts';

export type { DemandSource, DeploymentDemand } from '../predictions/demand.ts';
export { Autoscaler, FIELD_MANAGER, STATE_ANNOTATION } from './autoscaler.ts';
export { LocalDemand } from './local.ts';
export {
  DEFAULT_PEER_SELECTOR,
  DEMAND_PATH,
  fileToken,
  PeerScraper,
  POKE_PATH,
  PokeForwarder,
  SA_TOKEN_FILE,
  TokenReviewAuthenticator,
  tokenSubject,
} from './peers.ts';

export interface PeerOptions {
  /** The operator's namespace, where its pods are. */
  namespace: string;
  /** Selects the operator's pods. */
  labelSelector: string;
  /** This replica's pod name (skipped). */
  selfPod: string | undefined;
  /** The peers' health and metrics port (a container port named `metrics` wins). */
  port: number;
  /** The bearer token this replica sends. */
  token: () => string;
}

export interface AutoscalerSetup {
  /** Time between ticks (default 1 s). */
  tickMs?: number;
  /** Mark busy pods with their deletion cost before a scale-down (needs patch on pods). */
  podDeletionCost?: boolean;
  /** Least time between status writes that change only the queue figures (default 5 s). */
  statusIntervalMs?: number;
  /** Least time between state annotation writes that only move a timestamp (default 30 s). */
  stateIntervalMs?: number;
  /** Scrape (and serve) demand across replicas; leave out for a single replica. */
  peers?: PeerOptions;
  /** This process's demand sources (default: a new, empty registry); add the gateway's to it. */
  local?: LocalDemand;
  clock?: Clock;
}

/**
 * Adds the autoscaler to `manager`: it runs while the manager leads. Returns the local
 * demand registry (add the gateway's DemandSource to it) and the autoscaler. Serving this
 * replica's demand to the leader is `serveDemand`, on every replica.
 */
export function addAutoscaler(
  manager: Manager,
  setup: AutoscalerSetup = {},
): { local: LocalDemand; autoscaler: Autoscaler } {
  const local =
    setup.local ?? new LocalDemand({ onError: (err) => manager.log.warn({ err }, 'a demand source failed') });
  const c = caches(manager);
  const peers = setup.peers
    ? new PeerScraper({
        client: manager.client,
        namespace: setup.peers.namespace,
        labelSelector: setup.peers.labelSelector,
        selfPod: setup.peers.selfPod,
        port: setup.peers.port,
        token: setup.peers.token,
        log: manager.log,
      })
    : undefined;
  const autoscaler = new Autoscaler({
    // Fenced: replica counts are written only while this replica surely holds the Lease.
    client: manager.leaderClient,
    caches: c,
    events: manager.eventRecorder(REPORTING_CONTROLLER),
    registry: manager.metrics.registry,
    log: manager.log,
    local,
    peers,
    tickMs: setup.tickMs,
    podDeletionCost: setup.podDeletionCost,
    statusIntervalMs: setup.statusIntervalMs,
    stateIntervalMs: setup.stateIntervalMs,
    clock: setup.clock,
  });
  manager.addLeaderRunnable({ name: 'autoscaler', run: (signal) => autoscaler.run(signal) });
  return { local, autoscaler };
}

/** Serves this replica's demand at `/autoscaler/demand` to peers that authenticate. */
export function serveDemand(
  manager: Manager,
  local: DemandSource,
  authenticate: (token: string) => Promise<boolean>,
): void {
  manager.addHttpHandler(
    DEMAND_PATH,
    demandHandler({
      demand: () => local.demand(),
      authenticate,
      identity: manager.identity,
      registry: manager.metrics.registry,
    }),
  );
}

/**
 * Serves `POST /autoscaler/poke`, so the other replicas' gateways reach this replica's
 * autoscaler when it leads.
 */
export function servePokes(
  manager: Manager,
  autoscaler: Autoscaler,
  authenticate: (token: string) => Promise<boolean>,
): void {
  manager.addHttpHandler(
    POKE_PATH,
    pokeHandler({
      poke: (namespace, name) => autoscaler.poke(namespace, name),
      authenticate,
      registry: manager.metrics.registry,
    }),
  );
}

/** Passes this replica's pokes to the leader while another replica leads. */
export function forwardPokes(
  manager: Manager,
  local: LocalDemand,
  opts: { namespace: string; port: number; token: () => string },
): PokeForwarder {
  const forwarder = new PokeForwarder({
    client: manager.client,
    namespace: opts.namespace,
    leader: () => manager.leaderIdentity,
    isLeader: () => manager.isLeader,
    port: opts.port,
    token: opts.token,
    log: manager.log,
  });
  local.onPoke((namespace, name) => void forwarder.forward(namespace, name));
  return forwarder;
}
