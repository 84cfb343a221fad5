/**
 * Names shared by every modelplane component: the API group, kinds, labels, annotations,
 * condition types and reasons. Import these instead of spelling the strings again.
 */

export const GROUP = 'modelplane.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}` as const;
/** The kubectl category every modelplane kind belongs to: `kubectl get modelplane`. */
export const CATEGORY = 'modelplane';

export const KIND = {
  HardwareClass: 'HardwareClass',
  Model: 'Model',
  ModelVersion: 'ModelVersion',
  Deployment: 'Deployment',
  Prediction: 'Prediction',
} as const;
export type Kind = (typeof KIND)[keyof typeof KIND];

export const PLURAL = {
  HardwareClass: 'hardwareclasses',
  Model: 'models',
  ModelVersion: 'modelversions',
  Deployment: 'deployments',
  Prediction: 'predictions',
} as const satisfies Record<Kind, string>;

/** `<plural>.modelplane.dev`: the CRD names, and the resource names that keep kubectl unambiguous. */
export const RESOURCE = {
  HardwareClass: `${PLURAL.HardwareClass}.${GROUP}`,
  Model: `${PLURAL.Model}.${GROUP}`,
  ModelVersion: `${PLURAL.ModelVersion}.${GROUP}`,
  Deployment: `${PLURAL.Deployment}.${GROUP}`,
  Prediction: `${PLURAL.Prediction}.${GROUP}`,
} as const satisfies Record<Kind, string>;

/** Labels modelplane puts on the objects it creates (model pods, their apps/v1 Deployments). */
export const LABEL = {
  /** Name of the modelplane Deployment a pod or child object serves. */
  deployment: `${GROUP}/deployment`,
  /** Name of the ModelVersion a pod runs. */
  version: `${GROUP}/version`,
  /**
   * Release number: on the workload, the Deployment's current release; on a pod, the release
   * that last changed what its pods run (a release that changes only scaling or queue
   * settings keeps the pods it has, and their label).
   */
  release: `${GROUP}/release`,
  /** Name of the Model. */
  model: `${GROUP}/model`,
  /** Name of the HardwareClass a pod runs on. */
  hardware: `${GROUP}/hardware`,
  /** On a Model, "true" marks it official: supported by its team, with a stable schema
   *  (`modelplane check` reports it). */
  official: `${GROUP}/official`,
  /** Marks Secrets that hold gateway API tokens. */
  apiToken: `${GROUP}/api-token`,
  appName: 'app.kubernetes.io/name',
  appInstance: 'app.kubernetes.io/instance',
  appVersion: 'app.kubernetes.io/version',
  appComponent: 'app.kubernetes.io/component',
  appPartOf: 'app.kubernetes.io/part-of',
  appManagedBy: 'app.kubernetes.io/managed-by',
} as const;

export const ANNOTATION = {
  /** The 64-hex content id of the ModelVersion a pod runs. */
  versionId: `${GROUP}/version-id`,
  /** Hash of the Deployment spec a release was cut from. */
  releaseHash: `${GROUP}/release-hash`,
  /**
   * Hash of a workload's pod template, release label left out: a release whose template hash
   * is unchanged keeps the pods that run.
   */
  podTemplateHash: `${GROUP}/pod-template-hash`,
  /** Kubernetes' own hint for which pods a ReplicaSet removes first (lower goes first). */
  podDeletionCost: 'controller.kubernetes.io/pod-deletion-cost',
} as const;

/** Facts about NVIDIA GPU nodes (device plugin and GPU Feature Discovery). */
export const GPU = {
  /** The extended resource a GPU is requested by. */
  resource: 'nvidia.com/gpu',
  productLabel: 'nvidia.com/gpu.product',
  memoryLabel: 'nvidia.com/gpu.memory',
  countLabel: 'nvidia.com/gpu.count',
  familyLabel: 'nvidia.com/gpu.family',
  /** The taint GPU nodes usually carry (`NoSchedule`, any value). */
  taintKey: 'nvidia.com/gpu',
} as const;

/** Condition types, in the metav1.Condition shape under `status.conditions`. */
export const CONDITION = {
  /** The summary: the object does what it is for. */
  Ready: 'Ready',
  /** A Deployment has at least its minimum of ready instances (or may scale from zero). */
  Available: 'Available',
  /** A Deployment is rolling out a release or scaling. */
  Progressing: 'Progressing',
  /** Something needs a person: the message says what. */
  Degraded: 'Degraded',
} as const;
export type ConditionType = (typeof CONDITION)[keyof typeof CONDITION];

/** Condition reasons (CamelCase). */
export const REASON = {
  Ready: 'Ready',
  Reconciling: 'Reconciling',
  ReleaseRolledOut: 'ReleaseRolledOut',
  RollingOut: 'RollingOut',
  /** A release that keeps the running pods (only instances, scaling, queue or rollout changed). */
  Released: 'Released',
  Scaling: 'Scaling',
  ScaledToZero: 'ScaledToZero',
  MinimumInstancesReady: 'MinimumInstancesReady',
  InsufficientInstances: 'InsufficientInstances',
  InsufficientCapacity: 'InsufficientCapacity',
  ProgressDeadlineExceeded: 'ProgressDeadlineExceeded',
  HardwareClassNotFound: 'HardwareClassNotFound',
  ModelNotFound: 'ModelNotFound',
  VersionNotFound: 'VersionNotFound',
  VersionModelMismatch: 'VersionModelMismatch',
  DeploymentNotFound: 'DeploymentNotFound',
  NoDeployment: 'NoDeployment',
  NoMatchingNodes: 'NoMatchingNodes',
  NodesAvailable: 'NodesAvailable',
  SchemaUnavailable: 'SchemaUnavailable',
  SetupFailed: 'SetupFailed',
  ImagePullFailed: 'ImagePullFailed',
  Queued: 'Queued',
  Processing: 'Processing',
  Succeeded: 'Succeeded',
  Failed: 'Failed',
  Canceled: 'Canceled',
  Expired: 'Expired',
} as const;
export type Reason = (typeof REASON)[keyof typeof REASON];

/** The prediction vocabulary (statuses, webhook events) is lib/prediction.ts's. */
export {
  PREDICTION_STATUSES,
  WEBHOOK_EVENTS,
  type WebhookEvent,
} from '../lib/prediction.ts';

export const VISIBILITIES = ['public', 'private'] as const;
export type Visibility = (typeof VISIBILITIES)[number];
