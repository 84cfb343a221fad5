import { z } from 'zod';
import { API_VERSION, KIND, VISIBILITIES } from './constants.ts';
import {
  column,
  conditions,
  httpUrl,
  labelNamedMetadata,
  objectName,
  observedGeneration,
  PATTERN,
  setList,
} from './schema.ts';

export const ModelSpecSchema = z
  .object({
    description: z.string().max(2048).optional().describe('What the model does, in a sentence or two.'),
    visibility: column(
      z
        .enum(VISIBILITIES)
        .default('private')
        .describe(
          'Who sees the model in the prediction API: public (every caller) or private (callers with access to this namespace).',
        ),
      { name: 'Visibility' },
    ),
    licenseUrl: httpUrl('spec.licenseUrl').optional().describe("URL of the model's license."),
    githubUrl: httpUrl('spec.githubUrl').optional().describe("URL of the model's source code."),
    paperUrl: httpUrl('spec.paperUrl').optional().describe('URL of the paper that describes the model.'),
    coverImageUrl: httpUrl('spec.coverImageUrl')
      .optional()
      .describe('URL of an image shown beside the model.'),
    defaultHardware: objectName('spec.defaultHardware', 'HardwareClass')
      .optional()
      .describe('HardwareClass suggested for new Deployments of this model, e.g. gpu-a100-80gb.'),
    deployment: column(
      objectName('spec.deployment', 'Deployment')
        .optional()
        .describe(
          'The Deployment (in this namespace) that serves predictions for the model itself: POST /v1/models/{namespace}/{name}/predictions.',
        ),
      { name: 'Deployment' },
    ),
  })
  .describe('A model: what it is, who may see it, and which Deployment serves it.');

export const ModelStatusSchema = z
  .object({
    observedGeneration: observedGeneration().optional(),
    conditions: conditions('Model').optional(),
    latestVersion: column(
      z.string().max(253).optional().describe('Name of the newest ModelVersion of this model.'),
      { name: 'Latest' },
    ),
    latestVersionId: z
      .string()
      .regex(new RegExp(PATTERN.hex64))
      .optional()
      .describe('The 64-hex id of the newest ModelVersion.'),
    versionCount: column(z.int32().min(0).optional().describe('How many ModelVersions this model has.'), {
      name: 'Versions',
    }),
    deployments: setList(z.array(z.string().max(253)))
      .optional()
      .describe('Names of the Deployments in this namespace that run a version of this model.'),
  })
  .describe("What the operator observes about the model's versions and deployments.");

export const ModelSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).describe('modelplane.dev/v1alpha1'),
    kind: z.literal(KIND.Model).describe('Model'),
    metadata: labelNamedMetadata(KIND.Model),
    spec: ModelSpecSchema.prefault({}),
    status: ModelStatusSchema.optional(),
  })
  .describe(
    'A model, named owner/name in the prediction API where the owner is the namespace. Its immutable ModelVersions point at it by name.',
  );

export type Model = z.output<typeof ModelSchema>;
export type ModelInput = z.input<typeof ModelSchema>;
export type ModelSpec = z.output<typeof ModelSpecSchema>;
export type ModelStatus = z.output<typeof ModelStatusSchema>;
