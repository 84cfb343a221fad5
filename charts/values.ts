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

const secretName = (description: string) =>
  z
    .string()
    .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$/)
    .max(253)
    .describe(description);
const secretKey = (description: string) =>
  z
    .string()
    .regex(/^[-._a-zA-Z0-9]+$/)
    .max(253)
    .describe(description);
/** A Kubernetes quantity of bytes, e.g. 10Gi or 500M. */
const quantity = (description: string) =>
  z
    .string()
    .regex(/^[0-9]+(\.[0-9]+)?([EPTGMk]i?|[EPTGM]|e[0-9]+)?$/)
    .describe(description);

/** A size in bytes as the operator's flags take it: 268435456, 256Mi, 1Gi. */
const byteSize = (description: string) =>
  z
    .string()
    .regex(/^[1-9][0-9]*(Ki|Mi|Gi|Ti)?$/)
    .describe(description);

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

export const STORE_KINDS = ['embedded', 'postgres'] as const;

export const StoreSchema = z
  .object({
    kind: z
      .enum(STORE_KINDS)
      .describe(
        'embedded: PostgreSQL inside the operator (PGlite) on a PersistentVolumeClaim, replicaCount 1; postgres: a server of yours, any number of replicas.',
      ),
    embedded: z
      .object({
        size: quantity('Size of the PersistentVolumeClaim the embedded store is kept on.'),
        storageClass: str("storageClassName of the claim; empty: the cluster's default class."),
        existingClaim: z
          .string()
          .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$/)
          .describe('A PersistentVolumeClaim of yours to keep the store on; empty: the chart makes one.'),
      })
      .strict(),
    postgres: z
      .object({
        existingSecret: secretName(
          'The Secret (release namespace) holding the database URL; required with kind postgres.',
        ),
        secretKey: secretKey('The key of that Secret holding postgres://user:password@host:5432/db.'),
      })
      .strict(),
    dataRetentionSeconds: z
      .int()
      .min(1)
      .describe('How long a finished prediction keeps its input, output and logs (then data_removed: true).'),
    recordRetentionSeconds: z
      .int()
      .min(1)
      .describe('How long the record of a finished prediction (status, times, metrics, cost) is kept.'),
    usageRetentionSeconds: z
      .int()
      .min(1)
      .describe(
        'How long usage (instance time by state, predictions, cost; five-minute buckets) is kept for modelplane usage.',
      ),
  })
  .strict()
  .describe('Where predictions are kept.');

export const FILE_BACKENDS = ['directory', 's3'] as const;

export const FilesSchema = z
  .object({
    kind: z
      .enum(FILE_BACKENDS)
      .describe(
        'directory: files on a PersistentVolumeClaim the gateway serves (one replica, or a ReadWriteMany claim of yours); s3: any S3-compatible store.',
      ),
    maxSizeBytes: z
      .int()
      .min(1)
      .describe('Largest file accepted (uploads and outputs); larger ones get 413.'),
    uploadTtlSeconds: z
      .int()
      .min(1)
      .describe('How long an uploaded file is kept; outputs go with their prediction.'),
    internalUrl: z
      .string()
      .regex(/^(https?:\/\/[^\s?#]+)?$/)
      .describe(
        "Base URL, without /v1, at which model pods reach the gateway to upload output files; empty: the gateway Service's in-cluster URL.",
      ),
    directory: z
      .object({
        size: quantity('Size of the PersistentVolumeClaim the files are kept on.'),
        storageClass: str("storageClassName of the claim; empty: the cluster's default class."),
        existingClaim: z
          .string()
          .regex(/^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*)?$/)
          .describe(
            'A PersistentVolumeClaim of yours (ReadWriteMany for several replicas); empty: the chart makes one.',
          ),
      })
      .strict(),
    s3: z
      .object({
        endpoint: z
          .string()
          .regex(/^(https?:\/\/[^\s?#]+)?$/)
          .describe("The S3-compatible endpoint, e.g. http://minio.storage:9000; empty: AWS's."),
        region: z.string().min(1).describe("The bucket's region."),
        bucket: z.string().describe('The bucket; required with kind s3.'),
        prefix: z.string().describe('Prefix of every key in the bucket.'),
        existingSecret: secretName(
          "A Secret (release namespace) with the access key id and secret; empty: the SDK's other sources (e.g. IAM roles for service accounts).",
        ),
        accessKeyIdKey: secretKey('The key of that Secret holding the access key id.'),
        secretAccessKeyKey: secretKey('The key of that Secret holding the secret access key.'),
      })
      .strict(),
  })
  .strict()
  .describe('Where files (uploads and prediction outputs) are kept.');

/**
 * The rules across keys, for values.schema.json (JSON Schema `if`/`then`; Helm merges
 * values.yaml first, so store.kind is always there). `storeProblems` states the same rules
 * for the zod schema.
 */
const storeKind = (kind: string) => ({
  required: ['store'],
  properties: { store: { required: ['kind'], properties: { kind: { const: kind } } } },
});
const STORE_RULES = [
  {
    description: 'The embedded store is opened by one process: replicaCount must be 1.',
    if: storeKind('embedded'),
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's keyword
    then: { properties: { replicaCount: { const: 1 } } },
  },
  {
    // The same rule seen from the other key, so that helm's message names both ways out.
    description: 'Several replicas share a PostgreSQL server: store.kind must be postgres.',
    if: { required: ['replicaCount'], properties: { replicaCount: { minimum: 2 } } },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's keyword
    then: { properties: { store: { properties: { kind: { const: 'postgres' } } } } },
  },
  {
    description:
      'The postgres store reads its URL from a Secret: store.postgres.existingSecret must name it.',
    if: storeKind('postgres'),
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's keyword
    then: {
      properties: {
        store: { properties: { postgres: { properties: { existingSecret: { minLength: 1 } } } } },
      },
    },
  },
  {
    description:
      "The chart's files claim is ReadWriteOnce: several replicas on the directory backend need files.directory.existingClaim (ReadWriteMany) or files.kind s3.",
    if: {
      required: ['replicaCount', 'files'],
      properties: {
        replicaCount: { minimum: 2 },
        files: { required: ['kind'], properties: { kind: { const: 'directory' } } },
      },
    },
    // biome-ignore lint/suspicious/noThenProperty: JSON Schema's keyword
    then: {
      properties: {
        files: { properties: { directory: { properties: { existingClaim: { minLength: 1 } } } } },
      },
    },
  },
];

/** What the values break of the rules across keys (empty: none), as the zod schema reports it. */
function storeProblems(
  v: { replicaCount: number; store: z.output<typeof StoreSchema>; files: z.output<typeof FilesSchema> },
  ctx: z.RefinementCtx,
) {
  if (v.store.kind === 'embedded' && v.replicaCount !== 1)
    ctx.addIssue({
      code: 'custom',
      path: ['replicaCount'],
      message: 'the embedded store is opened by one process: replicaCount must be 1 (or store.kind postgres)',
    });
  if (v.store.kind === 'postgres' && !v.store.postgres.existingSecret)
    ctx.addIssue({
      code: 'custom',
      path: ['store', 'postgres', 'existingSecret'],
      message: 'store.kind postgres needs the Secret holding the database URL',
    });
  if (v.files.kind === 'directory' && v.replicaCount > 1 && !v.files.directory.existingClaim)
    ctx.addIssue({
      code: 'custom',
      path: ['files', 'directory', 'existingClaim'],
      message:
        "the chart's files claim is ReadWriteOnce: several replicas need a ReadWriteMany claim of yours (files.directory.existingClaim) or files.kind s3",
    });
}

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
      .describe(
        'Operator replicas. All serve the gateway; the Lease holder runs the controllers. 1 with the embedded store.',
      ),
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
            podDeletionCost: bool(
              'Mark busy model pods with their deletion cost so a scale-down removes idle ones first; binds a ClusterRole with patch on every pod.',
            ),
            peers: z
              .enum(['auto', 'off'])
              .describe(
                'auto: the leader reads the demand of every replica of this release; off: its own only.',
              ),
          })
          .strict(),
        extraArgs: z.array(z.string()).describe('More `modelplane operator` flags.'),
        extraEnv: objectList('More environment variables of the operator container (EnvVar objects).'),
        extraVolumes: objectList('More volumes of the operator pods (Volume objects), e.g. a CA bundle.'),
        extraVolumeMounts: objectList('Where the operator container mounts them (VolumeMount objects).'),
      })
      .strict(),
    store: StoreSchema,
    files: FilesSchema,
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
        webhookAllowCidrs: z
          .array(z.string().min(1))
          .describe(
            'Address ranges (CIDRs) prediction webhooks may reach besides public addresses, e.g. 10.20.0.0/16; empty: loopback, private, link-local and other special addresses are refused.',
          ),
        streamKey: z
          .object({
            generate: bool(
              'Without existingSecret: make a Secret with a random key on install and keep it on upgrades (false: the key kept in the store).',
            ),
            existingSecret: secretName('A Secret of yours holding the key; empty: see generate.'),
            secretKey: secretKey('The key of that Secret holding the stream key.'),
          })
          .strict()
          .describe('The key that signs stream URLs, the same for every replica.'),
        limits: z
          .object({
            queueBytesPerDeployment: byteSize(
              "The most bytes of inputs one replica holds for one deployment's predictions, queued or running; past it new ones get 429 with Retry-After.",
            ),
            queueBytesPerReplica: byteSize(
              'The most bytes of inputs one replica holds for all deployments together.',
            ),
            maxOutputBytes: byteSize(
              'The most bytes of output (its JSON) a prediction may bring from its instance; past it the prediction fails. Model pods get the same cap (at least 1Ki).',
            ),
          })
          .strict()
          .describe('Memory bounds of the gateway, in bytes (docs/security.md).'),
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
    grafanaDashboard: z
      .object({
        enabled: bool(
          'Make a ConfigMap with the modelplane Grafana dashboard, labelled grafana_dashboard: "1" for the Grafana sidecar.',
        ),
        namespace: str(
          "Namespace of the ConfigMap (the one Grafana's sidecar watches); empty: the release's.",
        ),
        labels: stringMap('Extra labels of the ConfigMap.'),
        annotations: stringMap('Annotations of the ConfigMap, e.g. grafana_folder for the sidecar.'),
      })
      .strict(),
    networkPolicy: z
      .object({
        namespaces: z
          .array(
            z
              .string()
              .regex(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/)
              .max(63),
          )
          .describe(
            "Namespaces of model pods: each gets a NetworkPolicy that admits only this release's operator pods to the sidecars' API port.",
          ),
        metricsFrom: objectList(
          "NetworkPolicyPeers that may scrape the sidecars' metrics port (9090); empty: any.",
        ),
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
  .strict()
  .superRefine(storeProblems);

export type Values = z.input<typeof ValuesSchema>;

/** The JSON schema Helm checks values against (`helm install`, `helm template`, `helm lint`). */
export function valuesJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(ValuesSchema, {
    io: 'input',
    unrepresentable: 'any',
    target: 'draft-7',
  }) as Record<string, unknown>;
  return { ...schema, title: 'modelplane chart values', allOf: STORE_RULES };
}
