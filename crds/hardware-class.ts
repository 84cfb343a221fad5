import { z } from 'zod';
import { API_VERSION, GPU, KIND } from './constants.ts';
import {
  column,
  conditions,
  decimalString,
  labelNamedMetadata,
  labelValue,
  objectName,
  observedGeneration,
  qualifiedName,
  quantity,
  rules,
  setList,
} from './schema.ts';

export const TolerationSchema = rules(
  z
    .object({
      key: qualifiedName('spec.tolerations[].key')
        .optional()
        .describe('Taint key the toleration applies to; empty with operator Exists matches every taint.'),
      operator: z
        .enum(['Exists', 'Equal'])
        .default('Equal')
        .describe('Exists matches any value of the key; Equal matches only value.'),
      value: labelValue('spec.tolerations[].value')
        .optional()
        .describe('Taint value to match when operator is Equal.'),
      effect: z
        .enum(['NoSchedule', 'PreferNoSchedule', 'NoExecute'])
        .optional()
        .describe('Taint effect to match; empty matches every effect.'),
      tolerationSeconds: z
        .int()
        .min(0)
        .optional()
        .describe('For NoExecute: how long a pod stays bound after the taint appears; unset is forever.'),
    })
    .describe('A toleration, as in a pod spec.'),
  {
    rule: "self.operator != 'Exists' || !has(self.value) || self.value == ''",
    message: 'spec.tolerations[].value must be empty when operator is Exists',
    fieldPath: '.value',
    check: (t) => t.operator !== 'Exists' || !t.value,
  },
);
export type Toleration = z.output<typeof TolerationSchema>;

export const GpuSchema = z
  .object({
    resourceName: qualifiedName('spec.gpu.resourceName')
      .default(GPU.resource)
      .describe(
        'The extended resource a GPU is requested by: nvidia.com/gpu, or a MIG slice such as nvidia.com/mig-1g.10gb.',
      ),
    products: column(
      setList(
        z
          .array(labelValue('spec.gpu.products[]').min(1))
          .min(1)
          .max(16)
          .describe(
            'Accepted values of the node label nvidia.com/gpu.product (GPU Feature Discovery), e.g. NVIDIA-A100-SXM4-80GB. Pods get a required node affinity `In` these values.',
          ),
      ),
      { name: 'GPU Products' },
    ),
    count: column(
      z
        .int32()
        .min(1)
        .max(16)
        .describe('GPUs per instance: the limit (and request) of resourceName on the model container.'),
      { name: 'GPUs' },
    ),
  })
  .describe('The GPUs each instance gets. Leave out for CPU-only hardware.');

export const HardwareResourcesSchema = z
  .object({
    cpu: column(
      quantity('spec.resources.cpu', '"4" or "500m"').describe(
        'CPU requested by the model container of each instance (also its limit).',
      ),
      { name: 'CPU', priority: 1 },
    ),
    memory: column(
      quantity('spec.resources.memory', '"16Gi"').describe(
        'Memory requested by the model container of each instance (also its limit).',
      ),
      { name: 'Memory', priority: 1 },
    ),
  })
  .describe('CPU and memory of each instance, beside its GPUs.');

export const HardwareClassSpecSchema = z
  .object({
    displayName: z
      .string()
      .min(1)
      .max(128)
      .describe('The human name the prediction API lists for this hardware, e.g. "Nvidia A100 (80GB) GPU".'),
    aliases: setList(
      z
        .array(objectName('spec.aliases[]', 'hardware SKU'))
        .max(8)
        .describe('Other SKU names the prediction API accepts for this class, e.g. gpu-a100-large.'),
    ).optional(),
    gpu: GpuSchema.optional(),
    nodeSelector: z
      .record(z.string(), labelValue('spec.nodeSelector values'))
      .refine((m) => Object.keys(m).length <= 16, {
        message: 'spec.nodeSelector may have at most 16 entries',
      })
      .meta({ maxProperties: 16 })
      .optional()
      .describe('Extra node labels an instance requires (node selector), e.g. a node pool or instance type.'),
    tolerations: z
      .array(TolerationSchema)
      .max(16)
      .optional()
      .describe('Taints instances tolerate. GPU nodes are usually tainted nvidia.com/gpu (operator Exists).'),
    resources: HardwareResourcesSchema,
    pricePerSecond: column(
      decimalString('spec.pricePerSecond', '0.001400').describe(
        'Price of one instance per second, in US dollars, as a decimal string (no float rounding), e.g. "0.001400".',
      ),
      { name: 'Price/s' },
    ),
  })
  .describe('What an instance of this hardware gets, where it may run, and what a second of it costs.');

export const HardwareClassStatusSchema = z
  .object({
    observedGeneration: observedGeneration().optional(),
    conditions: conditions('HardwareClass').optional(),
    nodes: column(
      z.int32().min(0).describe('Nodes that match this class (GPU product, node selector, taints).'),
      {
        name: 'Nodes',
        priority: 1,
      },
    ).optional(),
    allocatableGpus: z
      .int32()
      .min(0)
      .optional()
      .describe('GPUs of resourceName allocatable on the matching nodes, in total.'),
    maxInstancesPerNode: z
      .int32()
      .min(0)
      .optional()
      .describe('How many instances of this class fit on the largest matching node.'),
  })
  .describe('What the operator observes about the nodes this class can use.');

export const HardwareClassSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).describe('modelplane.dev/v1alpha1'),
    kind: z.literal(KIND.HardwareClass).describe('HardwareClass'),
    metadata: labelNamedMetadata(KIND.HardwareClass),
    spec: HardwareClassSpecSchema,
    status: HardwareClassStatusSchema.optional(),
  })
  .describe(
    'A hardware SKU that model Deployments run on: GPU resource and count, accepted GPU products, node selector, tolerations, CPU and memory, and a price per second. Cluster-scoped; its name is the SKU (gpu-a100-80gb).',
  );

export type HardwareClass = z.output<typeof HardwareClassSchema>;
export type HardwareClassInput = z.input<typeof HardwareClassSchema>;
export type HardwareClassSpec = z.output<typeof HardwareClassSpecSchema>;
export type HardwareClassStatus = z.output<typeof HardwareClassStatusSchema>;
