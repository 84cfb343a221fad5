/**
 * The Helm chart's values, as a zod schema: the one source of `charts/modelplane/values.schema.json`
 * (written by `make chart`, checked for drift by charts/chart.test.ts). Every key of
 * values.yaml is here, with the description `helm show values` readers see in values.yaml.
 */
import { z } from 'zod';
import { HardwareClassSpecSchema } from '../crds/hardware-class.ts';

const str = (description: string) => z.string().describe(description);
const bool = (description: string) => z.boolean().describe(description);
const stringMap = (description: string) => z.record(z.string(), z.string()).describe(description);
const freeObject = (description: string) => z.record(z.string(), z.unknown()).describe(description);
const objectList = (description: string) => z.array(z.record(z.string(), z.unknown())).describe(description);
const seconds = (description: string, min = 0) => z.number().min(min).describe(description);

const IMAGE_PULL_POLICY = z.enum(['Always', 'IfNotPresent', 'Never']);

export const HardwareClassItemSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
      .max(63)
      .describe('The HardwareClass name: the hardware SKU callers name, e.g. gpu-t4.'),
    labels: stringMap('Extra labels of this HardwareClass.').optional(),
    annotations: stringMap('Extra annotations of this HardwareClass.').optional(),
    spec: HardwareClassSpecSchema.describe(
      'The HardwareClass spec (see `kubectl explain hardwareclass.spec`).',
    ),
  })
  .strict();

export const ValuesSchema = z
  .object({
    nameOverride: str(
      'Replaces "modelplane" in the names of the objects made (not in the app.kubernetes.io/name label).',
    ),
    fullnameOverride: str('The full prefix of the names of the objects made.'),
    image: z
      .object({
        repository: str(
          'Image of the operator, and of the sidecar in model pods unless operator.sidecarImage is set.',
        ).min(1),
        tag: str('Image tag; empty: the chart appVersion.'),
        digest: z
          .string()
          .regex(/^(sha256:[a-f0-9]{64})?$/)
          .describe('Image digest (sha256:...); when set it is used instead of the tag.'),
        pullPolicy: IMAGE_PULL_POLICY.describe('imagePullPolicy of the operator container.'),
      })
      .strict(),
    imagePullSecrets: z
      .array(z.object({ name: z.string().min(1) }).strict())
      .describe('Secrets to pull the image with, e.g. [{name: regcred}].'),
    replicaCount: z
      .int()
      .min(1)
      .describe('Operator replicas. All serve the gateway; the Lease holder runs the controllers.'),
    crds: z
      .object({
        install: bool(
          'Install the CRDs with the chart. They carry helm.sh/resource-policy: keep: uninstall leaves them and your objects.',
        ),
      })
      .strict(),
    hardwareClasses: z
      .object({
        install: bool('Install the HardwareClasses listed in items.'),
        items: z
          .array(HardwareClassItemSchema)
          .describe('The HardwareClasses to install (default: examples/hardware-classes.yaml).'),
      })
      .strict(),
    operator: z
      .object({
        roles: z
          .array(z.enum(['controllers', 'gateway', 'webhook']))
          .min(1)
          .describe(
            'What the operator runs: controllers (on the Lease holder, with the autoscaler), gateway and webhook (every replica).',
          ),
        leaderElect: bool('Hold a Lease before running the controllers; false only with replicaCount 1.'),
        logLevel: z.enum(['trace', 'debug', 'info', 'warn', 'error']).describe('Log level.'),
        workers: z.int().min(1).max(64).describe('Concurrent reconciles per controller.'),
        resyncPeriodSeconds: seconds('Reconcile every object this often even without a change; 0 = never.'),
        shutdownTimeoutSeconds: seconds('How long running reconciles and requests may finish after SIGTERM.'),
        sidecarImage: str('Image of the sidecar in model pods; empty: the operator image.'),
        autoscaler: z
          .object({
            tickSeconds: seconds('Time between scaling decisions.', 0.05),
            peers: z
              .enum(['auto', 'off'])
              .describe(
                'auto: the leader reads the demand of every replica of this release; off: its own only.',
              ),
          })
          .strict(),
        extraArgs: z.array(z.string()).describe('More `modelplane operator` flags.'),
        extraEnv: objectList('More environment variables of the operator container (EnvVar objects).'),
      })
      .strict(),
    gateway: z
      .object({
        publicUrl: z
          .string()
          .regex(/^(https?:\/\/[^\s?#]+)?$/)
          .describe(
            'Base URL callers reach the API at, without /v1 (e.g. https://models.example.com); empty: from each request.',
          ),
        trustForwardedHeaders: bool(
          'Build URLs from X-Forwarded-Proto/-Host: only behind a proxy that sets them.',
        ),
        allowAnonymous: z.array(z.string().min(1)).describe('Namespaces callers without a token may act in.'),
        tokenReviewAudiences: z
          .array(z.string().min(1))
          .describe("Audiences Kubernetes tokens must be for; empty: the API server's."),
      })
      .strict(),
    webhook: z
      .object({
        certManager: z
          .object({
            enabled: bool(
              "Let cert-manager issue the webhook's serving certificate (a self-signed Issuer) and inject its CA; default: the operator's own CA.",
            ),
          })
          .strict(),
      })
      .strict(),
    serviceAccount: z
      .object({
        create: bool("Create the operator's ServiceAccount."),
        name: str('Its name; empty: the full name with -operator.'),
        annotations: stringMap('Annotations of the ServiceAccount.'),
      })
      .strict(),
    rbac: z
      .object({ create: bool('Create the ClusterRole, the Role for Secrets and their bindings.') })
      .strict(),
    service: z
      .object({
        type: z.enum(['ClusterIP', 'NodePort', 'LoadBalancer']).describe('Type of the gateway Service.'),
        port: z.int().min(1).max(65535).describe('Port of the gateway Service.'),
        sessionAffinity: z
          .enum(['ClientIP', 'None'])
          .describe('ClientIP: a caller keeps to one replica, which holds the predictions it created.'),
        nodePort: z
          .int()
          .min(0)
          .max(65535)
          .describe('nodePort with type NodePort or LoadBalancer; 0: chosen by Kubernetes.'),
        annotations: stringMap('Annotations of the gateway Service.'),
        labels: stringMap('Extra labels of the gateway Service.'),
        loadBalancerSourceRanges: z.array(z.string()).describe('CIDRs allowed to reach a LoadBalancer.'),
      })
      .strict(),
    ingress: z
      .object({
        enabled: bool('Make an Ingress for the gateway.'),
        className: str('ingressClassName; empty: the cluster default.'),
        annotations: stringMap('Annotations of the Ingress.'),
        hosts: z
          .array(
            z
              .object({
                host: z.string().min(1),
                paths: z
                  .array(
                    z
                      .object({
                        path: z.string().startsWith('/'),
                        pathType: z.enum(['Prefix', 'Exact', 'ImplementationSpecific']),
                      })
                      .strict(),
                  )
                  .min(1),
              })
              .strict(),
          )
          .describe('Hosts and paths routed to the gateway.'),
        tls: objectList('IngressTLS entries ({hosts, secretName}).'),
      })
      .strict(),
    serviceMonitor: z
      .object({
        enabled: bool('Make a Prometheus Operator ServiceMonitor for /metrics (needs its CRD).'),
        interval: str("Scrape interval; empty: Prometheus's."),
        labels: stringMap('Extra labels, e.g. the ones your Prometheus selects.'),
      })
      .strict(),
    podDisruptionBudget: z
      .object({
        enabled: bool('Make a PodDisruptionBudget for the operator pods.'),
        maxUnavailable: z
          .union([z.int().min(0), z.string().regex(/^\d+%$/)])
          .describe('maxUnavailable of the PodDisruptionBudget.'),
      })
      .strict(),
    resources: freeObject('Resources of the operator container.'),
    podAnnotations: stringMap('Annotations of the operator pods.'),
    podLabels: stringMap('Extra labels of the operator pods.'),
    nodeSelector: stringMap('nodeSelector of the operator pods.'),
    tolerations: objectList('Tolerations of the operator pods.'),
    affinity: freeObject('Affinity of the operator pods; empty: prefer one replica per node.'),
    topologySpreadConstraints: objectList(
      'Topology spread of the operator pods; empty: spread across nodes when possible.',
    ),
    priorityClassName: str('priorityClassName of the operator pods.'),
    terminationGracePeriodSeconds: z
      .int()
      .min(0)
      .describe('Grace period of the operator pods; 0: operator.shutdownTimeoutSeconds + 15.'),
  })
  .strict();

export type Values = z.input<typeof ValuesSchema>;

/** The JSON schema Helm checks values against (`helm install`, `helm template`, `helm lint`). */
export function valuesJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(ValuesSchema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-7',
  }) as Record<string, unknown>;
  return { ...schema, title: 'modelplane chart values' };
}
