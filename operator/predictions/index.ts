/**
 * Predictions: one FIFO queue per deployment in front of its ready instances, following each
 * prediction on its instance to the end, with the store, webhooks to callers and drain.
 * `PredictionEngine` (engine.ts) is the facade the gateway's routes and the Prediction
 * controller use; neither reaches past it.
 */

export type { AdoptionTiming } from './adoption.ts';
export { DEFAULT_INPUT_BUDGET, InputBudget, type InputBudgetLimits, inputBytes } from './budget.ts';
export {
  type Catalog,
  type CatalogInformers,
  type DeploymentView,
  InformerCatalog,
  StaticCatalog,
} from './catalog.ts';
export {
  type Endpoint,
  type EndpointSource,
  ownPod,
  POD_SELECTOR,
  PodEndpoints,
  type PodLike,
  PodResource,
  type ReplicaSetLike,
  ReplicaSetResource,
  StaticEndpoints,
} from './endpoints.ts';
export { type CreateRequest, type EngineOptions, PredictionEngine, type Retention } from './engine.ts';
export { type PredictionRecord, type PredictionView, toView } from './record.ts';
export {
  type CreateResult,
  type GetResult,
  type InstanceClient,
  type InstancePrediction,
  SidecarClient,
  type SidecarClientOptions,
} from './sidecar-client.ts';
export {
  decodeCursor,
  type ListOptions,
  type ListPage,
  MemoryStore,
  type PredictionStore,
  type StoredPrediction,
  type StoreNotice,
  StoreUnavailableError,
} from './store.ts';
export { sign, signedHeaders, WebhookSender } from './webhooks.ts';
