/** Predictions in the gateway: the engine (queue, dispatch, store, webhooks) and its routes. */
export { type Catalog, type DeploymentView, InformerCatalog, StaticCatalog } from './catalog.ts';
export {
  type Endpoint,
  type EndpointSource,
  POD_SELECTOR,
  PodEndpoints,
  PodResource,
  StaticEndpoints,
} from './endpoints.ts';
export { type CreateRequest, type EngineOptions, PredictionEngine } from './engine.ts';
export { type PredictionRecord, type PredictionView, toView } from './record.ts';
export { predictionRoutes } from './routes.ts';
export { type PredictionService, type PredictionServiceOptions, predictionService } from './service.ts';
export { MemoryStore, type PredictionStore } from './store.ts';
export { sign, signedHeaders, WebhookSender } from './webhooks.ts';
