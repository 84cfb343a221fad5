/**
 * The admission webhook: the cross-object rules (rules.ts), the AdmissionReview exchange
 * (review.ts), the HTTPS server (server.ts), its own certificates (certs.ts, keeper.ts) and
 * the ValidatingWebhookConfiguration that registers it (configuration.ts). It reads and
 * writes Kubernetes only through the interfaces `Lookup` and `CertStore`, which the operator
 * implements.
 */
export {
  type CertBundle,
  type CertLifetimes,
  certNames,
  DEFAULT_LIFETIMES,
  issueServing,
  newCa,
  plan,
  servingProblem,
  splitPem,
} from './certs.ts';
export {
  type ClientTarget,
  MATCH_CONDITIONS,
  TIMEOUT_SECONDS,
  WEBHOOK_NAMES,
  WEBHOOK_PATH,
  type WebhookConfigurationOptions,
  webhookConfiguration,
} from './configuration.ts';
export { CertKeeper, type CertStore, FileCertKeeper, type ServingCert, StoreConflict } from './keeper.ts';
export { type AdmissionRequest, type AdmissionReview, answer, readReview } from './review.ts';
export {
  type DeploymentObj,
  type HardwareClassObj,
  type Lookup,
  type ModelObj,
  type ModelVersionObj,
  type NodeInfo,
  type PredictionObj,
  review,
  type Verdict,
} from './rules.ts';
export { WebhookServer, type WebhookServerOptions } from './server.ts';
