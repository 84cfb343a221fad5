/**
 * The prediction engine and its routes as the operator runs them: deployments, models and
 * versions from informers, instances from a watch on model Pods, stream URLs signed here.
 */
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import {
  type CatalogInformers,
  InformerCatalog,
  PodEndpoints,
  type PodLike,
  PredictionEngine,
  type PredictionStore,
} from '../../predictions/index.ts';
import type { Informer } from '../../runtime/index.ts';
import type { Routes } from '../types.ts';
import { predictionRoutes } from './routes.ts';
import { StreamTokens } from './stream-token.ts';

export interface PredictionServiceOptions extends CatalogInformers {
  /** Pods labelled `modelplane.dev/deployment` (every namespace). */
  pods: Informer<PodLike>;
  log: Logger;
  registry?: Registry;
  /** The webhook signing secret (`whsec_...`) of a namespace. */
  secretFor?: (namespace: string) => string | Promise<string>;
  store?: PredictionStore;
  /** HMAC key of stream URL tokens: the same on every replica lets any of them serve a stream. */
  streamKey?: Buffer;
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
  const endpoints = new PodEndpoints(opts.pods);
  const tokens = new StreamTokens(opts.streamKey);
  const engine = new PredictionEngine({
    catalog,
    endpoints,
    log: opts.log,
    registry: opts.registry,
    secretFor: opts.secretFor,
    store: opts.store,
    streamUrl: (rec) => tokens.url(rec),
  });
  return { engine, catalog, endpoints, routes: predictionRoutes({ engine, catalog, tokens }) };
}
