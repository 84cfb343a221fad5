import { z } from 'zod';
import { API_VERSION, KIND, PREDICTION_STATUSES, WEBHOOK_EVENTS } from './constants.ts';
import {
  anyValue,
  type CelRule,
  column,
  conditions,
  decimalString,
  freeFormObject,
  httpUrl,
  ObjectMetaSchema,
  objectName,
  observedGeneration,
  PATTERN,
  RFC3339,
  rules,
  selectable,
  setList,
} from './schema.ts';

/** The fields that name what a prediction runs on; exactly one is set. */
export const PREDICTION_TARGETS = ['deployment', 'model', 'version'] as const;
export type PredictionTarget = (typeof PREDICTION_TARGETS)[number];

const specShape = {
  deployment: selectable(
    objectName('spec.deployment', 'Deployment')
      .optional()
      .describe(
        'Run on this Deployment (in the same namespace). Exactly one of deployment, model and version.',
      ),
  ),
  model: selectable(
    objectName('spec.model', 'Model')
      .optional()
      .describe(
        'Run on the Deployment that serves this Model (its spec.deployment), in the same namespace. Exactly one of deployment, model and version.',
      ),
  ),
  version: selectable(
    objectName('spec.version', 'ModelVersion')
      .optional()
      .describe(
        'Run this ModelVersion (in the same namespace) on a Deployment that runs it. Exactly one of deployment, model and version.',
      ),
  ),
  input: freeFormObject()
    .meta({ maxProperties: 256 })
    .optional()
    .describe("The model's input, an object checked against the version's OpenAPI Input schema."),
  webhook: httpUrl('spec.webhook')
    .optional()
    .describe('URL that receives the prediction (as the prediction API returns it) when its events happen.'),
  webhookEventsFilter: setList(z.array(z.enum(WEBHOOK_EVENTS)).max(4))
    .optional()
    .describe('Events that call the webhook: start, output, logs, completed. All of them when left out.'),
  cancel: z
    .boolean()
    .default(false)
    .describe('Set to true to cancel the prediction. It can change from false to true, never back.'),
  ttlSecondsAfterFinished: z
    .int32()
    .min(0)
    .optional()
    .describe(
      'Seconds after the prediction finished before the object is deleted. Kept until deleted when left out.',
    ),
};

/** Every spec field but `cancel` is fixed once the prediction exists. */
const immutable: CelRule[] = Object.keys(specShape)
  .filter((f) => f !== 'cancel')
  .map((f) => ({
    rule: `has(self.${f}) == has(oldSelf.${f}) && (!has(self.${f}) || self.${f} == oldSelf.${f})`,
    message: `spec.${f} is immutable: only spec.cancel may change (from false to true)`,
    fieldPath: `.${f}`,
  }));

export const PredictionSpecSchema = rules(
  z
    .object(specShape)
    .describe(
      'What to run, on what, and whom to tell. Immutable except cancel, which only goes from false to true.',
    ),
  {
    rule: '[has(self.deployment), has(self.model), has(self.version)].filter(x, x).size() == 1',
    message: 'exactly one of spec.deployment, spec.model and spec.version must be set',
    check: (s) => PREDICTION_TARGETS.filter((t) => s[t] !== undefined).length === 1,
  },
  ...immutable,
  {
    rule: '!oldSelf.cancel || self.cancel',
    message: 'spec.cancel can only change from false to true',
    fieldPath: '.cancel',
  },
);

export const PredictionMetricsSchema = z
  .object({
    predictTime: column(
      z.number().min(0).optional().describe('Seconds the model ran the prediction: the billed figure.'),
      { name: 'Predict Time' },
    ),
    totalTime: z
      .number()
      .min(0)
      .optional()
      .describe('Seconds from creation to completion, queueing included.'),
    queueTime: z.number().min(0).optional().describe('Seconds the prediction waited for an instance.'),
    model: freeFormObject()
      .optional()
      .describe(
        "Metrics the model recorded itself with Cog's record_metric, by name, as the model server reported them (for example image_count, input_token_count, output_token_count); absent when it recorded none or they exceed 8 KiB as JSON.",
      ),
  })
  .describe('Timings of the prediction, and the metrics the model recorded.');

export const PredictionStatusSchema = z
  .object({
    observedGeneration: observedGeneration().optional(),
    conditions: conditions('Prediction').optional(),
    id: z
      .string()
      .max(64)
      .optional()
      .describe('The id the prediction API knows the prediction by (26 lowercase base32 characters).'),
    target: column(
      z
        .string()
        .max(320)
        .optional()
        .describe(
          'Where the prediction runs, as kind/name: deployment/llm, model/flux-schnell or version/llama-70b-v1.',
        ),
      { name: 'Target' },
    ),
    status: column(
      z
        .enum(PREDICTION_STATUSES)
        .optional()
        .describe('starting (queued or booting), processing, succeeded, failed or canceled.'),
      { name: 'Status' },
    ),
    versionId: z
      .string()
      .regex(new RegExp(PATTERN.hex64))
      .optional()
      .describe('The 64-hex id of the ModelVersion that ran the prediction.'),
    output: anyValue()
      .optional()
      .describe("The model's output, any JSON value. Left out when too large to keep here: see outputUrl."),
    outputUrl: z
      .string()
      .max(2048)
      .optional()
      .describe('Where the full output can be fetched when it is too large to keep in the object.'),
    logs: z.string().max(65536).optional().describe('The last lines the model logged while predicting.'),
    error: z.string().max(32768).optional().describe('Why the prediction failed.'),
    createdAt: RFC3339().optional().describe('When the prediction was accepted.'),
    startedAt: RFC3339().optional().describe('When the model started running it.'),
    completedAt: RFC3339().optional().describe('When it succeeded, failed or was canceled.'),
    metrics: PredictionMetricsSchema.optional(),
    cost: decimalString('status.cost', '0.002814')
      .optional()
      .describe("predictTime times the hardware's price per second, in US dollars, as a decimal string."),
  })
  .describe(
    'The prediction as the prediction API reports it: status, output, logs, error, timestamps, metrics, cost.',
  );

export const PredictionSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).describe('modelplane.dev/v1alpha1'),
    kind: z.literal(KIND.Prediction).describe('Prediction'),
    metadata: ObjectMetaSchema,
    spec: PredictionSpecSchema,
    status: PredictionStatusSchema.optional(),
  })
  .describe(
    'One run of a model: its input, its target (a Deployment, a Model or a ModelVersion), webhook and cancel flag; its status reports the outcome like the prediction API does.',
  );

export type Prediction = z.output<typeof PredictionSchema>;
export type PredictionInput = z.input<typeof PredictionSchema>;
export type PredictionSpec = z.output<typeof PredictionSpecSchema>;
export type PredictionStatus = z.output<typeof PredictionStatusSchema>;
