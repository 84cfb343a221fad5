import { z } from 'zod';
import { METRIC_NAME } from '../lib/pricing.ts';
import { API_VERSION, KIND } from './constants.ts';
import {
  column,
  conditions,
  decimalString,
  freeFormObject,
  labelNamedMetadata,
  mapList,
  objectName,
  observedGeneration,
  PATTERN,
  rules,
  selectable,
  subdomainName,
} from './schema.ts';

const ENV_NAME = new RegExp(PATTERN.envName);
const IMAGE = new RegExp(PATTERN.image);

function keyRef(kind: 'Secret' | 'ConfigMap', field: string) {
  return z
    .object({
      name: subdomainName(`${field}.name`, kind).describe(`Name of the ${kind} in this namespace.`),
      key: z.string().min(1).max(253).describe(`Key in the ${kind}'s data.`),
      optional: z
        .boolean()
        .optional()
        .describe(`When true, a missing ${kind} or key leaves the variable unset.`),
    })
    .describe(`A key of a ${kind} in this namespace.`);
}

export const EnvVarSchema = rules(
  z
    .object({
      name: rules(z.string().min(1).max(128), {
        rule: `self.matches('${PATTERN.envName}')`,
        message:
          "spec.env[].name must be an environment variable name: letters, digits, '_', '-' and '.', not starting with a digit",
        check: (v) => ENV_NAME.test(v),
      }).describe('Name of the variable.'),
      value: z.string().max(32768).optional().describe('Value of the variable.'),
      valueFrom: z
        .object({
          secretKeyRef: keyRef('Secret', 'spec.env[].valueFrom.secretKeyRef').optional(),
          configMapKeyRef: keyRef('ConfigMap', 'spec.env[].valueFrom.configMapKeyRef').optional(),
        })
        .optional()
        .describe('Where the value comes from instead of value: one key of a Secret or a ConfigMap.'),
    })
    .describe('An environment variable of the model container.'),
  {
    rule: '!has(self.value) || !has(self.valueFrom)',
    message: 'spec.env[] may set value or valueFrom, not both',
    fieldPath: '.valueFrom',
    check: (e) => e.value === undefined || e.valueFrom === undefined,
  },
  {
    rule: '!has(self.valueFrom) || has(self.valueFrom.secretKeyRef) != has(self.valueFrom.configMapKeyRef)',
    message: 'spec.env[].valueFrom must set exactly one of secretKeyRef and configMapKeyRef',
    fieldPath: '.valueFrom',
    check: (e) =>
      !e.valueFrom ||
      (e.valueFrom.secretKeyRef === undefined) !== (e.valueFrom.configMapKeyRef === undefined),
  },
);
export type EnvVar = z.output<typeof EnvVarSchema>;

export const PricingSchema = z
  .object({
    hardwareTime: z
      .boolean()
      .optional()
      .describe(
        "Bill each prediction's predict seconds × the HardwareClass's pricePerSecond. Default: true when perUnit is empty, false when it names a metric (set true to bill both).",
      ),
    perUnit: rules(
      z.record(
        z.string().regex(METRIC_NAME, {
          message: 'spec.pricing.perUnit keys must be metric names such as output_token_count or image_count',
        }),
        decimalString('spec.pricing.perUnit values', '0.000001'),
      ),
      {
        rule: `self.all(k, k.matches('${METRIC_NAME.source}'))`,
        message: 'spec.pricing.perUnit keys must be metric names such as output_token_count or image_count',
        check: (m) => Object.keys(m).every((k) => METRIC_NAME.test(k)),
      },
    )
      .refine((m) => Object.keys(m).length <= 32, {
        message: 'spec.pricing.perUnit may have at most 32 entries',
      })
      .meta({ maxProperties: 32 })
      .optional()
      .describe(
        'Price in US dollars of one unit of a metric the model records itself (Cog\'s record_metric), by metric name, as a decimal string: e.g. image_count: "0.003", input_token_count: "0.0000005", output_token_count: "0.0000015". A prediction costs the sum of value × price over these names (a metric it did not record counts 0).',
      ),
  })
  .describe(
    'How predictions of this version are priced: by hardware time (the default), per unit of metrics the model records, or both. Exact decimal arithmetic; the cost is on every prediction (HTTP and Prediction objects).',
  );
export type PricingSpec = z.output<typeof PricingSchema>;

export const ModelVersionSpecSchema = rules(
  z
    .object({
      model: column(
        selectable(
          objectName('spec.model', 'Model').describe(
            'Name of the Model (in this namespace) this is a version of.',
          ),
        ),
        { name: 'Model' },
      ),
      image: column(
        rules(z.string().min(1).max(512), {
          rule: `self.matches('${PATTERN.image}')`,
          message:
            'spec.image must be a container image reference such as registry.example.com/team/model:1.0 or registry.example.com/team/model@sha256:<digest>',
          check: (v) => IMAGE.test(v),
        }).describe(
          'Container image of the model, serving the Cog HTTP contract on $PORT. Pin it by digest for a version that never changes.',
        ),
        { name: 'Image', priority: 1 },
      ),
      openapiSchema: freeFormObject()
        .optional()
        .describe(
          "OpenAPI document of the model's inputs and outputs (components.schemas.Input and Output), as Cog serves it at /openapi.json. When left out, the operator reads it from the running container into status.openapiSchema.",
        ),
      cogVersion: z
        .string()
        .max(64)
        .optional()
        .describe('Version of Cog the image was built with, e.g. 0.16.8.'),
      env: mapList(
        z
          .array(EnvVarSchema)
          .max(64)
          .describe(
            'Environment variables of the model container, beside those modelplane sets (PORT and the Cog settings).',
          ),
        ['name'],
      ).optional(),
      imagePullSecrets: mapList(
        z
          .array(
            z
              .object({
                name: subdomainName('spec.imagePullSecrets[].name', 'Secret').describe('Name of the Secret.'),
              })
              .describe('A Secret of type kubernetes.io/dockerconfigjson.'),
          )
          .max(8)
          .describe('Secrets (in this namespace) to pull the image with.'),
        ['name'],
      ).optional(),
      runAsRoot: z
        .boolean()
        .optional()
        .describe(
          'Let the model container run as root. By default it must run as a non-root user (runAsNonRoot), without privilege escalation, with every capability dropped and the RuntimeDefault seccomp profile; images built by `cog build` run as root unless their Dockerfile sets a USER, so set this to true for them (the other restrictions stay).',
        ),
      maxConcurrency: z
        .int32()
        .min(1)
        .max(1024)
        .default(1)
        .describe(
          'Predictions one instance runs at once (COG_MAX_CONCURRENCY); further ones queue in front of it.',
        ),
      setupTimeoutSeconds: z
        .int32()
        .min(1)
        .max(86400)
        .default(600)
        .describe(
          "Seconds the model's setup (loading weights) may take before the instance is reported as failed.",
        ),
      predictTimeoutSeconds: z
        .int32()
        .min(1)
        .max(86400)
        .default(1800)
        .describe('Seconds one prediction may run before it is canceled and fails.'),
      pricing: PricingSchema.optional(),
    })
    .describe('What defines the version. Immutable: to change anything, create a new ModelVersion.'),
  {
    rule: 'self == oldSelf',
    message: 'spec is immutable: a ModelVersion never changes; create a new ModelVersion instead',
  },
);

export const ModelVersionStatusSchema = z
  .object({
    observedGeneration: observedGeneration().optional(),
    conditions: conditions('ModelVersion').optional(),
    id: column(
      z
        .string()
        .regex(new RegExp(PATTERN.hex64))
        .optional()
        .describe(
          'The version id callers use (64 lowercase hex characters): a content hash of what defines the version.',
        ),
      { name: 'ID', priority: 1 },
    ),
    openapiSchema: freeFormObject()
      .optional()
      .describe(
        'The OpenAPI document in force: spec.openapiSchema, or the one read from the running container.',
      ),
    cogVersion: z.string().max(64).optional().describe('Version of Cog the running container reports.'),
  })
  .describe('What the operator computed and observed for the version.');

export const ModelVersionSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).describe('modelplane.dev/v1alpha1'),
    kind: z.literal(KIND.ModelVersion).describe('ModelVersion'),
    metadata: labelNamedMetadata(KIND.ModelVersion),
    spec: ModelVersionSpecSchema,
    status: ModelVersionStatusSchema.optional(),
  })
  .describe(
    'An immutable version of a Model: a container image that follows the Cog contract, the schema of its inputs and outputs, and how it runs. Its status.id is the version id the prediction API uses.',
  );

export type ModelVersion = z.output<typeof ModelVersionSchema>;
export type ModelVersionInput = z.input<typeof ModelVersionSchema>;
export type ModelVersionSpec = z.output<typeof ModelVersionSpecSchema>;
export type ModelVersionStatus = z.output<typeof ModelVersionStatusSchema>;
