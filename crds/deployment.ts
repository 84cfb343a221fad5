import { z } from 'zod';
import { API_VERSION, KIND } from './constants.ts';
import {
  column,
  conditions,
  intOrPercent,
  labelNamedMetadata,
  objectName,
  observedGeneration,
  PATTERN,
  RFC3339,
  rules,
  selectable,
} from './schema.ts';

export const ScalingSchema = rules(
  z
    .object({
      targetPerInstance: z
        .int32()
        .min(1)
        .max(1024)
        .optional()
        .describe(
          "Predictions (queued plus running) each instance should carry: desired instances = ceil(demand / targetPerInstance). Defaults to the version's maxConcurrency.",
        ),
      stableWindowSeconds: z
        .int32()
        .min(6)
        .max(3600)
        .default(60)
        .describe('Seconds of demand averaged for ordinary scaling decisions.'),
      panicWindowSeconds: z
        .int32()
        .min(1)
        .max(3600)
        .default(6)
        .describe(
          'Seconds of demand averaged to detect a burst. At most stableWindowSeconds. While panicking the deployment scales up on this short window and never scales down.',
        ),
      panicThresholdPercent: z
        .int32()
        .min(110)
        .max(1000)
        .default(200)
        .describe(
          'Demand over the panic window, as a percentage of current capacity, that starts panic mode.',
        ),
      scaleDownDelaySeconds: z
        .int32()
        .min(0)
        .max(3600)
        .default(60)
        .describe('Seconds a lower instance count must stay wanted before instances are removed.'),
      scaleToZeroAfterSeconds: z
        .int32()
        .min(0)
        .max(86400)
        .default(300)
        .describe(
          'Seconds without any prediction before a deployment with minInstances 0 drops its last instance.',
        ),
    })
    .describe(
      'How the autoscaler sizes the deployment from its queue: demand is queued plus running predictions, sampled from every gateway replica.',
    ),
  {
    // Guarded with has(): the API server also checks this rule against the `{}` default.
    rule: '!has(self.panicWindowSeconds) || !has(self.stableWindowSeconds) || self.panicWindowSeconds <= self.stableWindowSeconds',
    message: 'spec.scaling.panicWindowSeconds must be at most spec.scaling.stableWindowSeconds',
    fieldPath: '.panicWindowSeconds',
    check: (s) => s.panicWindowSeconds <= s.stableWindowSeconds,
  },
);
export type Scaling = z.output<typeof ScalingSchema>;

export const RolloutSchema = z
  .object({
    strategy: z
      .enum(['RollingUpdate', 'Recreate'])
      .default('RollingUpdate')
      .describe(
        'RollingUpdate starts new instances before stopping old ones; Recreate stops the old instances first (for hardware too scarce to run both).',
      ),
    maxSurge: intOrPercent('spec.rollout.maxSurge')
      .default(1)
      .describe('RollingUpdate: instances (or percentage) started above the desired count during a rollout.'),
    maxUnavailable: intOrPercent('spec.rollout.maxUnavailable')
      .default(0)
      .describe('RollingUpdate: instances (or percentage) that may be unavailable during a rollout.'),
    progressDeadlineSeconds: z
      .int32()
      .min(1)
      .max(86400)
      .default(1800)
      .describe(
        'Seconds a release may take to become ready (image pull, model setup) before the deployment reports Progressing=False.',
      ),
  })
  .describe('How a new release replaces the instances of the previous one.');
export type Rollout = z.output<typeof RolloutSchema>;

export const QueueSchema = z
  .object({
    maxLength: z
      .int32()
      .min(1)
      .max(1_000_000)
      .default(1000)
      .describe(
        'Predictions the gateway holds for this deployment beyond those running; more are refused with 429.',
      ),
    maxWaitSeconds: z
      .int32()
      .min(1)
      .max(3600)
      .default(300)
      .describe(
        'Seconds a prediction may wait for a ready instance (for example while scaling from zero) before it fails with the reason.',
      ),
  })
  .describe('The queue the gateway keeps in front of the deployment.');
export type Queue = z.output<typeof QueueSchema>;

export const DeploymentSpecSchema = rules(
  z
    .object({
      model: column(
        selectable(
          objectName('spec.model', 'Model').describe('Name of the Model (in this namespace) deployed.'),
        ),
        { name: 'Model' },
      ),
      version: column(
        selectable(
          objectName('spec.version', 'ModelVersion').describe(
            'Name of the ModelVersion (in this namespace, a version of spec.model) to run.',
          ),
        ),
        { name: 'Version' },
      ),
      hardware: column(
        selectable(
          objectName('spec.hardware', 'HardwareClass').describe(
            'Name of the HardwareClass instances run on.',
          ),
        ),
        { name: 'Hardware' },
      ),
      minInstances: column(
        z
          .int32()
          .min(0)
          .max(1000)
          .default(0)
          .describe('Instances kept running at all times. 0 scales to zero when idle.'),
        { name: 'Min' },
      ),
      maxInstances: column(
        rules(z.int32().min(0).max(1000), {
          rule: 'self >= 1',
          message: 'spec.maxInstances must be at least 1 (use minInstances: 0 to scale to zero)',
          check: (v) => v >= 1,
        })
          .default(1)
          .describe('Most instances the autoscaler may run. At least 1 and at least minInstances.'),
        { name: 'Max' },
      ),
      scaling: ScalingSchema.prefault({}),
      rollout: RolloutSchema.prefault({}),
      queue: QueueSchema.prefault({}),
    })
    .describe(
      'Which version runs, on which hardware, between how many instances. Every change to the spec is a new release.',
    ),
  {
    rule: 'self.minInstances <= self.maxInstances',
    message: 'spec.minInstances must be at most spec.maxInstances',
    fieldPath: '.minInstances',
    check: (s) => s.minInstances <= s.maxInstances,
  },
);

const cost = (what: string) =>
  z.string().max(40).describe(`${what}, in US dollars, as an exact decimal string.`);
const seconds = (what: string) => z.number().min(0).describe(`Seconds instances spent ${what}.`);

export const UsageWindowSchema = z
  .object({
    instances: z.int32().min(0).describe('Instances that ran in the window, including ones since removed.'),
    setupSeconds: seconds('in setup (starting, loading the model)'),
    idleSeconds: seconds('ready with nothing to run'),
    busySeconds: seconds('running predictions'),
    downSeconds: seconds('with the model server down after setup'),
    utilization: z.number().min(0).max(1).describe('busySeconds ÷ all seconds instances ran (0 to 1).'),
    predictions: z.int32().min(0).describe('Predictions the instances ended.'),
    predictionCost: cost('What the predictions were charged (their cost, summed)'),
    instanceCost: cost("What the instances' time cost: every second they ran × the hardware price"),
    idleCost: cost('What time that served nothing cost: (setup + idle + down) seconds × the hardware price'),
    costPerPrediction: cost('instanceCost ÷ predictions (idle time included)').optional(),
  })
  .describe("A deployment's usage over a window of time.");

export const DeploymentStatusSchema = z
  .object({
    observedGeneration: observedGeneration().optional(),
    conditions: conditions('Deployment').optional(),
    instances: z.int32().min(0).optional().describe('Instances (pods) that exist, ready or not.'),
    readyInstances: column(z.int32().min(0).optional().describe('Instances ready to take predictions.'), {
      name: 'Ready',
    }),
    desiredInstances: column(
      z
        .int32()
        .min(0)
        .optional()
        .describe('Instances the autoscaler wants now, within [minInstances, maxInstances].'),
      { name: 'Desired' },
    ),
    queued: column(
      z
        .int32()
        .min(0)
        .optional()
        .describe('Predictions waiting for an instance, summed over gateway replicas.'),
      { name: 'Queue' },
    ),
    running: z.int32().min(0).optional().describe('Predictions running on instances now.'),
    release: column(
      z
        .int32()
        .min(0)
        .optional()
        .describe('Release number: 1 for the first spec, one more for every change of the spec.'),
      { name: 'Release', priority: 1 },
    ),
    releasedAt: RFC3339().optional().describe('When the current release was cut.'),
    versionId: z
      .string()
      .regex(new RegExp(PATTERN.hex64))
      .optional()
      .describe('The 64-hex id of the ModelVersion the current release runs.'),
    lastScaleTime: RFC3339().optional().describe('When the autoscaler last changed the instance count.'),
    usage: z
      .object({
        lastHour: UsageWindowSchema.optional(),
        lastDay: UsageWindowSchema.optional(),
        updatedAt: RFC3339()
          .optional()
          .describe('When these figures were computed (at most about once a minute).'),
      })
      .optional()
      .describe(
        "What this deployment's instances (including ones since removed) spent their time on and cost, over the last hour and day, from the operator's usage records. `modelplane usage` reports any period.",
      ),
  })
  .describe('The release, its instances and its queue, as the operator and the autoscaler observe them.');

export const DeploymentSchema = z
  .object({
    apiVersion: z.literal(API_VERSION).describe('modelplane.dev/v1alpha1'),
    kind: z.literal(KIND.Deployment).describe('Deployment'),
    metadata: labelNamedMetadata(KIND.Deployment),
    spec: DeploymentSpecSchema,
    status: DeploymentStatusSchema.optional(),
  })
  .describe(
    'Runs one ModelVersion on one HardwareClass between minInstances and maxInstances, scaled on its prediction queue. Not to be confused with apps/v1 Deployment: use deployments.modelplane.dev or the short name mpdeploy with kubectl.',
  );

export type Deployment = z.output<typeof DeploymentSchema>;
export type DeploymentInput = z.input<typeof DeploymentSchema>;
export type DeploymentSpec = z.output<typeof DeploymentSpecSchema>;
export type DeploymentStatus = z.output<typeof DeploymentStatusSchema>;
