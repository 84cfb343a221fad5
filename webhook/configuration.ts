/**
 * The ValidatingWebhookConfiguration that registers the webhook: two webhooks, one per
 * failure policy.
 *
 * - `objects.validate.modelplane.dev` (Models, ModelVersions, Deployments, Predictions):
 *   `failurePolicy: Fail`. While no operator replica answers, creating or changing the spec
 *   of these objects is refused with the API server's "failed calling webhook" error and can
 *   be applied again once a replica is back (nothing would act on them meanwhile anyway).
 * - `hardwareclasses.validate.modelplane.dev`: `failurePolicy: Ignore`, so the hardware
 *   catalogue installs together with the operator (the chart applies both at once); only the
 *   alias rule is skipped while no replica answers.
 *
 * Both time out after `TIMEOUT_SECONDS`. Their match conditions send only what a rule reads
 * (CREATE, or an UPDATE that changes the spec, and never a Prediction's update: only
 * spec.cancel may change): an object being deleted, or a metadata-only change (labels,
 * finalizers, owner references from the garbage collector) never waits on the webhook, so
 * even with every replica down nothing is stuck in deletion. Status is a subresource and is
 * not matched at all.
 */
import { GROUP, PLURAL, VERSION } from '../crds/index.ts';

export const WEBHOOK_PATH = '/validate';
export const TIMEOUT_SECONDS = 5;

export const WEBHOOK_NAMES = {
  objects: `objects.validate.${GROUP}`,
  hardwareClasses: `hardwareclasses.validate.${GROUP}`,
} as const;

/** How the API server reaches the webhook: a Service in a cluster, a URL in tests and dev. */
export type ClientTarget = { service: { namespace: string; name: string; port: number } } | { url: string };

export interface WebhookConfigurationOptions {
  name: string;
  target: ClientTarget;
  /** PEM; leave out where someone else (the operator, cert-manager's CA injector) fills it. */
  caBundle?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

/** CREATE, or an UPDATE that changes the spec of an object not being deleted. */
export const MATCH_CONDITIONS = [
  { name: 'not-being-deleted', expression: '!has(object.metadata.deletionTimestamp)' },
  {
    name: 'spec-changed',
    expression:
      "request.operation == 'CREATE' || (request.kind.kind != 'Prediction' && (!has(oldObject.spec) || !has(object.spec) || object.spec != oldObject.spec))",
  },
];

function clientConfig(target: ClientTarget, caBundle: string | undefined): Record<string, unknown> {
  const where =
    'url' in target
      ? { url: `${target.url.replace(/\/+$/, '')}${WEBHOOK_PATH}` }
      : { service: { ...target.service, path: WEBHOOK_PATH } };
  return caBundle ? { ...where, caBundle: Buffer.from(caBundle).toString('base64') } : where;
}

function webhook(
  name: string,
  plurals: string[],
  failurePolicy: 'Fail' | 'Ignore',
  opts: WebhookConfigurationOptions,
) {
  return {
    name,
    admissionReviewVersions: ['v1'],
    sideEffects: 'None',
    failurePolicy,
    matchPolicy: 'Equivalent',
    timeoutSeconds: TIMEOUT_SECONDS,
    clientConfig: clientConfig(opts.target, opts.caBundle),
    rules: [
      {
        apiGroups: [GROUP],
        apiVersions: [VERSION],
        operations: ['CREATE', 'UPDATE'],
        resources: plurals,
        scope: '*',
      },
    ],
    matchConditions: MATCH_CONDITIONS,
  };
}

/** The ValidatingWebhookConfiguration (the chart's template writes the same). */
export function webhookConfiguration(opts: WebhookConfigurationOptions) {
  return {
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'ValidatingWebhookConfiguration',
    metadata: {
      name: opts.name,
      ...(opts.labels ? { labels: opts.labels } : {}),
      ...(opts.annotations ? { annotations: opts.annotations } : {}),
    },
    webhooks: [
      webhook(
        WEBHOOK_NAMES.objects,
        [PLURAL.Model, PLURAL.ModelVersion, PLURAL.Deployment, PLURAL.Prediction],
        'Fail',
        opts,
      ),
      webhook(WEBHOOK_NAMES.hardwareClasses, [PLURAL.HardwareClass], 'Ignore', opts),
    ],
  };
}
