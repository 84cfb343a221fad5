/**
 * The prediction engine and its routes as the operator runs them: deployments, models and
 * versions from informers, instances from a watch on model Pods, stream URLs signed here.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { EgressPolicy } from '../../../lib/egress.ts';
import {
  type AdoptionTiming,
  type CatalogInformers,
  InformerCatalog,
  type InputBudgetLimits,
  PodEndpoints,
  type PodLike,
  PredictionEngine,
  type PredictionStore,
  type ReplicaSetLike,
  type Retention,
} from '../../predictions/index.ts';
import type { Informer } from '../../runtime/index.ts';
import type { Routes } from '../types.ts';
import { type PredictionRoutesOptions, predictionRoutes } from './routes.ts';
import { StreamTokens } from './stream-token.ts';

export interface PredictionServiceOptions extends CatalogInformers {
  /** Pods labelled `modelplane.dev/deployment` (every namespace). */
  pods: Informer<PodLike>;
  /** ReplicaSets labelled `modelplane.dev/deployment`: only their pods are instances. */
  replicaSets?: Informer<ReplicaSetLike>;
  log: Logger;
  registry?: Registry;
  /** The webhook signing secret (`whsec_...`) of a namespace. */
  secretFor?: (namespace: string) => string | Promise<string>;
  /** An open store (default: memory, unless `openStore`). */
  store?: PredictionStore;
  /** Opens the store when the engine starts; a store that keeps a stream key shares it. */
  openStore?: () => Promise<PredictionStore & { streamKey?(): Promise<Buffer> }>;
  /** This replica's name in the store. */
  replica?: string;
  retention?: Partial<Retention>;
  adoption?: Partial<AdoptionTiming>;
  /**
   * HMAC key of stream URL tokens: the same on every replica lets any of them serve a stream
   * (default: the store's, else one of this process's own).
   */
  streamKey?: Buffer;
  /** Which addresses webhooks may reach (default: public ones only). */
  egress?: EgressPolicy;
  /** Byte budgets of the inputs this replica holds (default: DEFAULT_INPUT_BUDGET). */
  inputBudget?: Partial<InputBudgetLimits>;
  /** The most bytes of output a prediction may bring from its instance (default 16 MiB). */
  maxOutputBytes?: number;
  /** The `Authorization` header of calls to the sidecar at `base` (operator/sidecar-key.ts). */
  sidecarAuthorization?: (base: string) => Promise<string>;
  /** Where an instance uploads a prediction's output files. */
  uploadUrl?: (rec: { id: string; baseUrl: string }) => string | undefined;
  /** The input as the model server gets it (file references resolved). */
  resolveInput?: PredictionRoutesOptions['resolveInput'];
  /** Told the shared key once the store is open (the files' URLs are signed with it too). */
  onKey?: (key: Buffer) => void;
}

export interface PredictionService {
  engine: PredictionEngine;
  catalog: InformerCatalog;
  endpoints: PodEndpoints;
  /** The prediction endpoints, to mount on the gateway. */
  routes: Routes;
}

export function predictionService(opts: PredictionServiceOptions): PredictionService {
  const catalog = new InformerCatalog(opts);
  const endpoints = new PodEndpoints(opts.pods, opts.replicaSets);
  const tokens = new StreamTokens({ key: opts.streamKey });
  const open = opts.openStore;
  const engine = new PredictionEngine({
    catalog,
    endpoints,
    log: opts.log,
    registry: opts.registry,
    secretFor: opts.secretFor,
    store: opts.store,
    openStore: open
      ? async () => {
          const store = await open();
          if (!opts.streamKey && store.streamKey) {
            const key = await store.streamKey();
            tokens.setKey(key);
            opts.onKey?.(key);
          }
          return store;
        }
      : undefined,
    replica: opts.replica,
    retention: opts.retention,
    adoption: opts.adoption,
    streamUrl: (rec) => tokens.url(rec),
    uploadUrl: opts.uploadUrl,
    webhookOptions: opts.egress ? { egress: opts.egress } : undefined,
    inputBudget: opts.inputBudget,
    maxOutputBytes: opts.maxOutputBytes,
    sidecarAuthorization: opts.sidecarAuthorization,
  });
  return {
    engine,
    catalog,
    endpoints,
    routes: predictionRoutes({ engine, catalog, tokens, resolveInput: opts.resolveInput }),
  };
}
