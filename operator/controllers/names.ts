/** Field managers and Event sources of the controllers: one per controller. */
export const CONTROLLER = {
  hardwareClass: 'hardwareclass',
  model: 'model',
  modelVersion: 'modelversion',
  deployment: 'deployment',
  prediction: 'prediction',
} as const;
export type ControllerName = (typeof CONTROLLER)[keyof typeof CONTROLLER];

/** The server-side apply field manager of a controller. */
export function fieldManager(controller: ControllerName): string {
  return `modelplane-${controller}-controller`;
}

/** The `reportingController` of a controller's Events. */
export function reportingController(controller: ControllerName): string {
  return `modelplane.dev/${controller}-controller`;
}

/**
 * The field manager of the autoscaler: it owns the workloads' `spec.replicas`, the
 * Deployments' scaling status and the pods' deletion cost.
 */
export const AUTOSCALER_FIELD_MANAGER = 'modelplane-autoscaler';
