/**
 * Objects for the API's tests: one valid object of each kind, and a corpus of invalid ones,
 * each with the field the API server names in its error and what the message says. The
 * cluster test sends every invalid object to a real API server; the unit test parses the
 * same objects with the zod schemas, which must refuse them at the same field.
 */
import { API_VERSION, KIND, type Kind } from '../constants.ts';

export type Obj = { [key: string]: unknown };

/** JSON merge patch (RFC 7386): objects merge, `null` removes a key, anything else replaces. */
export function mergePatch(target: unknown, patch: unknown): unknown {
  if (typeof patch !== 'object' || patch === null || Array.isArray(patch)) return structuredClone(patch);
  const out: Obj =
    typeof target === 'object' && target !== null && !Array.isArray(target)
      ? structuredClone(target as Obj)
      : {};
  for (const [k, v] of Object.entries(patch as Obj)) {
    if (v === null) delete out[k];
    else out[k] = mergePatch(out[k], v);
  }
  return out;
}

function object(kind: Kind, name: string, spec: Obj): Obj {
  return { apiVersion: API_VERSION, kind, metadata: { name }, spec };
}

/** One valid object of each kind; names start with `corpus-` to stay clear of examples. */
export const valid = {
  hardwareClass: (name = 'corpus-gpu-t4'): Obj =>
    object(KIND.HardwareClass, name, {
      displayName: 'Corpus T4',
      gpu: { resourceName: 'nvidia.com/gpu', count: 1, products: ['Tesla-T4'] },
      nodeSelector: { 'modelplane.dev/pool': 'gpu-t4' },
      tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', effect: 'NoSchedule' }],
      resources: { cpu: '3', memory: '14Gi' },
      pricePerSecond: '0.000225',
    }),
  model: (name = 'corpus-model'): Obj =>
    object(KIND.Model, name, {
      description: 'A model for the corpus.',
      visibility: 'private',
      licenseUrl: 'https://www.apache.org/licenses/LICENSE-2.0',
      defaultHardware: 'gpu-t4',
      deployment: 'corpus-deployment',
    }),
  modelVersion: (name = 'corpus-model-v1'): Obj =>
    object(KIND.ModelVersion, name, {
      model: 'corpus-model',
      image: 'registry.example.com/corpus/model:1.0.0',
      maxConcurrency: 2,
      env: [
        { name: 'LOG_LEVEL', value: 'info' },
        { name: 'HF_TOKEN', valueFrom: { secretKeyRef: { name: 'huggingface', key: 'token' } } },
      ],
      openapiSchema: { openapi: '3.0.2', components: { schemas: { Input: { type: 'object' } } } },
    }),
  deployment: (name = 'corpus-deployment'): Obj =>
    object(KIND.Deployment, name, {
      model: 'corpus-model',
      version: 'corpus-model-v1',
      hardware: 'gpu-t4',
      minInstances: 0,
      maxInstances: 2,
      scaling: { targetPerInstance: 4 },
    }),
  prediction: (name = 'corpus-prediction'): Obj =>
    object(KIND.Prediction, name, {
      deployment: 'corpus-deployment',
      input: { prompt: 'hello' },
      webhook: 'https://hooks.example.com/predictions',
      webhookEventsFilter: ['completed'],
    }),
};

const validOf: Record<Kind, () => Obj> = {
  HardwareClass: () => valid.hardwareClass(),
  Model: () => valid.model(),
  ModelVersion: () => valid.modelVersion(),
  Deployment: () => valid.deployment(),
  Prediction: () => valid.prediction(),
};

export interface InvalidCase {
  /** What is wrong, in words. */
  name: string;
  kind: Kind;
  /**
   * Created as it is: the object with the mistake. For an update, the valid object that is
   * created first.
   */
  object: Obj;
  /** For an update: the JSON merge patch that makes it invalid. */
  update?: Obj;
  /** The field the API server names, as it writes it (`spec.env[0].name`). */
  field: string;
  /** What the message says about it. */
  message: RegExp;
  /**
   * The path zod reports (defaults to `field`); `false` when only the API server can tell
   * (unknown fields, which zod drops; updates, which need the stored object).
   */
  zodPath?: (string | number)[] | false;
}

/** `kind`'s valid object with a merge patch applied. */
function broken(kind: Kind, patch: Obj): Obj {
  return mergePatch(validOf[kind](), patch) as Obj;
}

const spec = (s: Obj) => ({ spec: s });

export const invalid: InvalidCase[] = [
  // HardwareClass
  {
    name: 'a price that is not a decimal string',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ pricePerSecond: '0.0014 USD' })),
    field: 'spec.pricePerSecond',
    message: /spec\.pricePerSecond must be a non-negative decimal number written as a string/,
  },
  {
    name: 'a price written as a number',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ pricePerSecond: 0.0014 })),
    field: 'spec.pricePerSecond',
    message: /must be of type string/,
  },
  {
    name: 'zero GPUs per instance',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ gpu: { count: 0 } })),
    field: 'spec.gpu.count',
    message: /should be greater than or equal to 1/,
  },
  {
    name: 'no accepted GPU products',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ gpu: { products: [] } })),
    field: 'spec.gpu.products',
    message: /should have at least 1 items/,
  },
  {
    name: 'a GPU product that is not a label value',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ gpu: { products: ['NVIDIA A100 80GB'] } })),
    field: 'spec.gpu.products[0]',
    message: /spec\.gpu\.products\[\] must be a valid label value/,
  },
  {
    name: 'a GPU resource name that is not a qualified name',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ gpu: { resourceName: 'nvidia.com/' } })),
    field: 'spec.gpu.resourceName',
    message: /spec\.gpu\.resourceName must be a qualified name/,
  },
  {
    name: 'a node selector value that is not a label value',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ nodeSelector: { 'modelplane.dev/pool': 'gpu pool' } })),
    field: 'spec.nodeSelector[modelplane.dev/pool]',
    message: /spec\.nodeSelector values must be a valid label value/,
    zodPath: ['spec', 'nodeSelector', 'modelplane.dev/pool'],
  },
  {
    name: 'a CPU amount that is not a quantity',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ resources: { cpu: 'lots' } })),
    field: 'spec.resources.cpu',
    message: /spec\.resources\.cpu must be a positive Kubernetes quantity/,
  },
  {
    name: 'a negative memory amount',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ resources: { memory: '-16Gi' } })),
    field: 'spec.resources.memory',
    message: /spec\.resources\.memory must be a positive Kubernetes quantity/,
  },
  {
    name: 'an unknown toleration operator',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ tolerations: [{ key: 'nvidia.com/gpu', operator: 'Maybe' }] })),
    field: 'spec.tolerations[0].operator',
    message: /Unsupported value: "Maybe": supported values: "Exists", "Equal"/,
  },
  {
    name: 'a value on an Exists toleration',
    kind: KIND.HardwareClass,
    object: broken(
      KIND.HardwareClass,
      spec({ tolerations: [{ key: 'nvidia.com/gpu', operator: 'Exists', value: 'present' }] }),
    ),
    field: 'spec.tolerations[0].value',
    message: /spec\.tolerations\[\]\.value must be empty when operator is Exists/,
  },
  {
    name: 'no resources',
    kind: KIND.HardwareClass,
    object: broken(KIND.HardwareClass, spec({ resources: null })),
    field: 'spec.resources',
    message: /Required value/,
  },
  {
    name: 'a name that is not a DNS label',
    kind: KIND.HardwareClass,
    object: valid.hardwareClass('corpus.gpu.t4'),
    field: 'metadata.name',
    message: /metadata\.name of a HardwareClass must be a DNS-1123 label/,
  },
  // Model
  {
    name: 'an unknown visibility',
    kind: KIND.Model,
    object: broken(KIND.Model, spec({ visibility: 'secret' })),
    field: 'spec.visibility',
    message: /Unsupported value: "secret": supported values: "public", "private"/,
  },
  {
    name: 'a license URL that is not http(s)',
    kind: KIND.Model,
    object: broken(KIND.Model, spec({ licenseUrl: 'ftp://example.com/LICENSE' })),
    field: 'spec.licenseUrl',
    message: /spec\.licenseUrl must be an absolute http:\/\/ or https:\/\/ URL/,
  },
  {
    name: 'a default hardware that is not a name',
    kind: KIND.Model,
    object: broken(KIND.Model, spec({ defaultHardware: 'GPU_A100' })),
    field: 'spec.defaultHardware',
    message: /spec\.defaultHardware must be the name of a HardwareClass/,
  },
  // ModelVersion
  {
    name: 'no model',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, spec({ model: null })),
    field: 'spec.model',
    message: /Required value/,
  },
  {
    name: 'an image that is not an image reference',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, spec({ image: 'My Model Image' })),
    field: 'spec.image',
    message: /spec\.image must be a container image reference/,
  },
  {
    name: 'a concurrency of zero',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, spec({ maxConcurrency: 0 })),
    field: 'spec.maxConcurrency',
    message: /should be greater than or equal to 1/,
  },
  {
    name: 'a negative predict timeout',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, spec({ predictTimeoutSeconds: -5 })),
    field: 'spec.predictTimeoutSeconds',
    message: /should be greater than or equal to 1/,
  },
  {
    name: 'an environment variable with both value and valueFrom',
    kind: KIND.ModelVersion,
    object: broken(
      KIND.ModelVersion,
      spec({ env: [{ name: 'TOKEN', value: 'x', valueFrom: { secretKeyRef: { name: 's', key: 'k' } } }] }),
    ),
    field: 'spec.env[0].valueFrom',
    message: /spec\.env\[\] may set value or valueFrom, not both/,
  },
  {
    name: 'an environment variable name starting with a digit',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, spec({ env: [{ name: '1TOKEN', value: 'x' }] })),
    field: 'spec.env[0].name',
    message: /spec\.env\[\]\.name must be an environment variable name/,
  },
  {
    name: 'the same environment variable twice',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, {
      spec: {
        env: [
          { name: 'TOKEN', value: 'a' },
          { name: 'TOKEN', value: 'b' },
        ],
      },
    }),
    field: 'spec.env[1]',
    message: /Duplicate value/,
    zodPath: ['spec', 'env'],
  },
  {
    name: 'an OpenAPI schema that is not an object',
    kind: KIND.ModelVersion,
    object: broken(KIND.ModelVersion, spec({ openapiSchema: 'see /openapi.json' })),
    field: 'spec.openapiSchema',
    message: /must be of type object/,
  },
  {
    name: 'a changed image (versions are immutable)',
    kind: KIND.ModelVersion,
    object: valid.modelVersion('corpus-immutable-v1'),
    update: spec({ image: 'registry.example.com/corpus/model:2.0.0' }),
    field: 'spec',
    message: /spec is immutable: a ModelVersion never changes; create a new ModelVersion instead/,
    zodPath: false,
  },
  // Deployment
  {
    name: 'minInstances above maxInstances',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ minInstances: 3, maxInstances: 2 })),
    field: 'spec.minInstances',
    message: /spec\.minInstances must be at most spec\.maxInstances/,
  },
  {
    name: 'maxInstances of zero',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ minInstances: 0, maxInstances: 0 })),
    field: 'spec.maxInstances',
    message: /spec\.maxInstances must be at least 1 \(use minInstances: 0 to scale to zero\)/,
  },
  {
    name: 'negative minInstances',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ minInstances: -1 })),
    field: 'spec.minInstances',
    message: /should be greater than or equal to 0/,
  },
  {
    name: 'a hardware name with capitals and punctuation',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ hardware: 'A100!' })),
    field: 'spec.hardware',
    message: /spec\.hardware must be the name of a HardwareClass: lowercase letters, digits and '-'/,
  },
  {
    name: 'a version name longer than 63 characters',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ version: `v${'1'.repeat(63)}` })),
    field: 'spec.version',
    message: /may not be longer than 63|must have at most 63 bytes|Too long/,
  },
  {
    name: 'a panic window longer than the stable window',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ scaling: { stableWindowSeconds: 30, panicWindowSeconds: 60 } })),
    field: 'spec.scaling.panicWindowSeconds',
    message: /spec\.scaling\.panicWindowSeconds must be at most spec\.scaling\.stableWindowSeconds/,
  },
  {
    name: 'a surge that is neither a number nor a percentage',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ rollout: { maxSurge: 'lots' } })),
    field: 'spec.rollout.maxSurge',
    message: /spec\.rollout\.maxSurge must be a whole number of instances or a percentage such as "25%"/,
  },
  {
    name: 'an unknown rollout strategy',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ rollout: { strategy: 'BlueGreen' } })),
    field: 'spec.rollout.strategy',
    message: /Unsupported value: "BlueGreen": supported values: "RollingUpdate", "Recreate"/,
  },
  {
    name: 'an apps/v1 field (replicas) in a modelplane Deployment',
    kind: KIND.Deployment,
    object: broken(KIND.Deployment, spec({ replicas: 3 })),
    field: 'spec.replicas',
    message: /unknown field "spec\.replicas"/,
    zodPath: false,
  },
  {
    name: 'a name with dots (it becomes a label value)',
    kind: KIND.Deployment,
    object: valid.deployment('llama.3.70b'),
    field: 'metadata.name',
    message: /metadata\.name of a Deployment must be a DNS-1123 label/,
  },
  // Prediction
  {
    name: 'no target',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ deployment: null })),
    field: 'spec',
    message: /exactly one of spec\.deployment, spec\.model and spec\.version must be set/,
  },
  {
    name: 'two targets',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ model: 'corpus-model' })),
    field: 'spec',
    message: /exactly one of spec\.deployment, spec\.model and spec\.version must be set/,
  },
  {
    name: 'a webhook that is not http(s)',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ webhook: 'ftp://hooks.example.com/predictions' })),
    field: 'spec.webhook',
    message: /spec\.webhook must be an absolute http:\/\/ or https:\/\/ URL/,
  },
  {
    name: 'a relative webhook URL',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ webhook: '/predictions/done' })),
    field: 'spec.webhook',
    message: /spec\.webhook must be an absolute http:\/\/ or https:\/\/ URL/,
  },
  {
    name: 'an unknown webhook event',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ webhookEventsFilter: ['done'] })),
    field: 'spec.webhookEventsFilter[0]',
    message: /Unsupported value: "done": supported values: "start", "output", "logs", "completed"/,
  },
  {
    name: 'an input that is not an object',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ input: 'hello' })),
    field: 'spec.input',
    message: /must be of type object/,
  },
  {
    name: 'a negative TTL',
    kind: KIND.Prediction,
    object: broken(KIND.Prediction, spec({ ttlSecondsAfterFinished: -1 })),
    field: 'spec.ttlSecondsAfterFinished',
    message: /should be greater than or equal to 0/,
  },
  {
    name: 'a changed input',
    kind: KIND.Prediction,
    object: valid.prediction('corpus-changed-input'),
    update: spec({ input: { prompt: 'goodbye' } }),
    field: 'spec.input',
    message: /spec\.input is immutable: only spec\.cancel may change \(from false to true\)/,
    zodPath: false,
  },
  {
    name: 'a changed target',
    kind: KIND.Prediction,
    object: valid.prediction('corpus-changed-target'),
    update: spec({ deployment: 'another-deployment' }),
    field: 'spec.deployment',
    message: /spec\.deployment is immutable: only spec\.cancel may change/,
    zodPath: false,
  },
  {
    name: 'a webhook added after creation',
    kind: KIND.Prediction,
    object: mergePatch(valid.prediction('corpus-added-webhook'), spec({ webhook: null })) as Obj,
    update: spec({ webhook: 'https://hooks.example.com/late' }),
    field: 'spec.webhook',
    message: /spec\.webhook is immutable: only spec\.cancel may change/,
    zodPath: false,
  },
  {
    name: 'a cancel taken back',
    kind: KIND.Prediction,
    object: mergePatch(valid.prediction('corpus-uncancel'), spec({ cancel: true })) as Obj,
    update: spec({ cancel: false }),
    field: 'spec.cancel',
    message: /spec\.cancel can only change from false to true/,
    zodPath: false,
  },
];
