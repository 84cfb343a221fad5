import { describe, expect, it } from 'vitest';
import { EgressPolicy } from '../lib/egress.ts';
import {
  type DeploymentObj,
  type HardwareClassObj,
  type Lookup,
  type ModelObj,
  type ModelVersionObj,
  type NodeInfo,
  review,
} from './rules.ts';

const t4Node = (gpus: number, extra: Partial<NodeInfo['spec']> = {}): NodeInfo => ({
  metadata: { name: `t4-${gpus}`, labels: { 'nvidia.com/gpu.product': 'Tesla-T4' } },
  spec: { taints: [{ key: 'nvidia.com/gpu', effect: 'NoSchedule' }], ...extra },
  status: { allocatable: { 'nvidia.com/gpu': String(gpus) } },
});
const toleration = [{ key: 'nvidia.com/gpu', operator: 'Exists' as const, effect: 'NoSchedule' as const }];

/** A lookup over fixed objects; `stale` are what a cache a moment behind has. */
function lookupOf(o: {
  classes?: HardwareClassObj[];
  stale?: HardwareClassObj[];
  models?: ModelObj[];
  versions?: ModelVersionObj[];
  deployments?: DeploymentObj[];
  nodes?: NodeInfo[];
}): Lookup {
  const named =
    <T extends { metadata?: { name?: string } }>(list: T[] | undefined) =>
    async (_ns: string, name: string) =>
      list?.find((x) => x.metadata?.name === name);
  return {
    hardwareClasses: async (opts) => (opts?.fresh || !o.stale ? (o.classes ?? []) : o.stale),
    model: named(o.models),
    modelVersion: named(o.versions),
    deployment: named(o.deployments),
    gpuNodes: async (products) =>
      (o.nodes ?? []).filter((n) => products.includes(n.metadata?.labels?.['nvidia.com/gpu.product'] ?? '')),
  };
}

const cls = (name: string, spec: HardwareClassObj['spec'] = {}): HardwareClassObj => ({
  metadata: { name },
  spec,
});
const dep = (spec: DeploymentObj['spec']) => ({
  kind: 'Deployment',
  operation: 'CREATE',
  namespace: 'ns',
  object: { metadata: { name: 'd' }, spec },
});
const SCHEMA = {
  components: {
    schemas: {
      Input: { type: 'object', required: ['text'], properties: { repeat: { type: 'integer', minimum: 1 } } },
    },
  },
};
const world = {
  classes: [
    cls('cpu'),
    cls('gpu-t4', {
      aliases: ['t4'],
      gpu: { products: ['Tesla-T4'], count: 1, resourceName: 'nvidia.com/gpu' },
      tolerations: toleration,
    }),
    cls('gpu-t4-8x', {
      gpu: { products: ['Tesla-T4'], count: 8, resourceName: 'nvidia.com/gpu' },
      tolerations: toleration,
    }),
    cls('gpu-h100', {
      gpu: { products: ['H100'], count: 1, resourceName: 'nvidia.com/gpu' },
      tolerations: toleration,
    }),
  ],
  models: [{ metadata: { name: 'a' }, spec: { deployment: 'd' } }],
  versions: [
    { metadata: { name: 'v-a' }, spec: { model: 'a', openapiSchema: SCHEMA } },
    { metadata: { name: 'v-b' }, spec: { model: 'b' } },
    { metadata: { name: 'v-noschema' }, spec: { model: 'a' } },
  ],
  deployments: [{ metadata: { name: 'd' }, spec: { model: 'a', version: 'v-a', hardware: 'cpu' } }],
  nodes: [t4Node(4), t4Node(4)],
};

describe('Deployment', () => {
  it('accepts a version of its own model on known hardware, with nothing to say', async () => {
    expect(await review(dep({ model: 'a', version: 'v-a', hardware: 'gpu-t4' }), lookupOf(world))).toEqual({
      refusals: [],
      warnings: [],
    });
  });

  it('refuses a version of another model, naming the field and both models', async () => {
    const v = await review(dep({ model: 'a', version: 'v-b', hardware: 'cpu' }), lookupOf(world));
    expect(v.refusals).toEqual(['spec.version: ModelVersion "v-b" belongs to Model "b", not "a"']);
  });

  it('warns of a model and a version that do not exist yet', async () => {
    const v = await review(dep({ model: 'new', version: 'new-v1', hardware: 'cpu' }), lookupOf(world));
    expect(v.refusals).toEqual([]);
    expect(v.warnings).toEqual([
      'spec.model: Model "new" does not exist in namespace "ns" yet',
      'spec.version: ModelVersion "new-v1" does not exist in namespace "ns" yet; the deployment waits for it',
    ]);
  });

  it('refuses a hardware name no class has, an alias, and warns when there is no class at all', async () => {
    expect(
      (await review(dep({ model: 'a', version: 'v-a', hardware: 'gpu-x' }), lookupOf(world))).refusals,
    ).toEqual([
      'spec.hardware: no HardwareClass is named "gpu-x"; the classes are cpu, gpu-h100, gpu-t4, gpu-t4-8x',
    ]);
    expect(
      (await review(dep({ model: 'a', version: 'v-a', hardware: 't4' }), lookupOf(world))).refusals,
    ).toEqual([
      'spec.hardware: "t4" is an alias of HardwareClass "gpu-t4"; a Deployment names the class itself',
    ]);
    const none = await review(
      dep({ model: 'a', version: 'v-a', hardware: 'gpu-x' }),
      lookupOf({ ...world, classes: [] }),
    );
    expect(none.refusals).toEqual([]);
    expect(none.warnings).toEqual([
      'spec.hardware: no HardwareClass exists yet; the deployment waits for one named "gpu-x"',
    ]);
  });

  it('looks again at the API server before refusing a class its cache does not have yet', async () => {
    const stale = world.classes.filter((c) => c.metadata?.name !== 'gpu-t4');
    const v = await review(
      dep({ model: 'a', version: 'v-a', hardware: 'gpu-t4' }),
      lookupOf({ ...world, stale }),
    );
    expect(v.refusals).toEqual([]);
  });

  it('refuses a class needing more GPUs than any matching node has; warns when no node matches', async () => {
    expect(
      (await review(dep({ model: 'a', version: 'v-a', hardware: 'gpu-t4-8x' }), lookupOf(world))).refusals,
    ).toEqual([
      'spec.hardware: HardwareClass "gpu-t4-8x" needs 8 nvidia.com/gpu per instance, but its matching nodes have at most 4',
    ]);
    const h100 = await review(dep({ model: 'a', version: 'v-a', hardware: 'gpu-h100' }), lookupOf(world));
    expect(h100.refusals).toEqual([]);
    expect(h100.warnings[0]).toMatch(/^spec\.hardware: no node matches HardwareClass "gpu-h100" now/);
    // A node the class cannot be placed on (a taint it does not tolerate) does not count.
    const tainted = {
      ...world,
      nodes: [t4Node(8, { taints: [{ key: 'dedicated', effect: 'NoSchedule' }] }), t4Node(4)],
    };
    expect(
      (await review(dep({ model: 'a', version: 'v-a', hardware: 'gpu-t4-8x' }), lookupOf(tainted))).refusals,
    ).toHaveLength(1);
    const big = { ...world, nodes: [t4Node(8), t4Node(4)] };
    expect(
      (await review(dep({ model: 'a', version: 'v-a', hardware: 'gpu-t4-8x' }), lookupOf(big))).refusals,
    ).toEqual([]);
  });

  it('on UPDATE checks only the fields that changed, and never an object being deleted', async () => {
    const old = { metadata: { name: 'd' }, spec: { model: 'a', version: 'v-b', hardware: 'gpu-x' } };
    const scaled = { metadata: { name: 'd' }, spec: { ...old.spec, maxInstances: 3 } };
    const lookup = lookupOf(world);
    expect(
      await review(
        { kind: 'Deployment', operation: 'UPDATE', namespace: 'ns', object: scaled, oldObject: old },
        lookup,
      ),
    ).toEqual({
      refusals: [],
      warnings: [],
    });
    const moved = { metadata: { name: 'd' }, spec: { ...old.spec, hardware: 'gpu-y' } };
    expect(
      (
        await review(
          { kind: 'Deployment', operation: 'UPDATE', namespace: 'ns', object: moved, oldObject: old },
          lookup,
        )
      ).refusals,
    ).toEqual([
      'spec.hardware: no HardwareClass is named "gpu-y"; the classes are cpu, gpu-h100, gpu-t4, gpu-t4-8x',
    ]);
    const deleting = { ...moved, metadata: { name: 'd', deletionTimestamp: '2026-01-01T00:00:00Z' } };
    expect(
      (
        await review(
          { kind: 'Deployment', operation: 'UPDATE', namespace: 'ns', object: deleting, oldObject: old },
          lookup,
        )
      ).refusals,
    ).toEqual([]);
  });
});

describe('HardwareClass', () => {
  const hc = (name: string, aliases: string[], operation = 'CREATE') => ({
    kind: 'HardwareClass',
    operation,
    object: cls(name, { aliases }),
    oldObject: operation === 'UPDATE' ? cls(name, {}) : undefined,
  });

  it("refuses an alias that is another class's name or alias, and a name that is another's alias", async () => {
    const lookup = lookupOf(world);
    expect((await review(hc('new', ['cpu', 'fresh']), lookup)).refusals).toEqual([
      'spec.aliases[0]: "cpu" is the name of HardwareClass "cpu"; a hardware name must resolve to one class',
    ]);
    expect((await review(hc('new', ['x', 't4'], 'UPDATE'), lookup)).refusals).toEqual([
      'spec.aliases[1]: "t4" is already an alias of HardwareClass "gpu-t4"; a hardware name must resolve to one class',
    ]);
    expect((await review(hc('t4', []), lookup)).refusals).toEqual([
      'metadata.name: "t4" is an alias of HardwareClass "gpu-t4"; a hardware name must resolve to one class',
    ]);
  });

  it('accepts its own aliases again, and a clash the API server no longer has', async () => {
    expect((await review(hc('gpu-t4', ['t4'], 'UPDATE'), lookupOf(world))).refusals).toEqual([]);
    const stale = [...world.classes, cls('gone', { aliases: ['fresh'] })];
    expect((await review(hc('new', ['fresh']), lookupOf({ ...world, stale }))).refusals).toEqual([]);
  });
});

describe('Prediction', () => {
  const pred = (spec: Record<string, unknown>, operation = 'CREATE') => ({
    kind: 'Prediction',
    operation,
    namespace: 'ns',
    object: { metadata: { name: 'p' }, spec },
    oldObject:
      operation === 'UPDATE' ? { metadata: { name: 'p' }, spec: { ...spec, cancel: false } } : undefined,
  });

  it("refuses input that breaks the version's Input schema, through any target, naming each field", async () => {
    const lookup = lookupOf(world);
    const want = [
      'spec.input.text is required by ModelVersion "v-a"',
      'spec.input.repeat must be at least 1',
    ];
    for (const target of [{ version: 'v-a' }, { deployment: 'd' }, { model: 'a' }])
      expect((await review(pred({ ...target, input: { repeat: 0 } }), lookup)).refusals).toEqual(want);
    expect(await review(pred({ version: 'v-a', input: { text: 'hi', repeat: 2 } }), lookup)).toEqual({
      refusals: [],
      warnings: [],
    });
  });

  it('refuses a webhook to a private, loopback or link-local literal host, unless allowed', async () => {
    const lookup = lookupOf(world);
    const spec = { version: 'v-a', input: { text: 'hi' } };
    for (const webhook of [
      'http://169.254.169.254/latest/meta-data/',
      'http://127.0.0.1:8080/',
      'http://[fd00::1]/',
    ])
      expect((await review(pred({ ...spec, webhook }), lookup)).refusals).toEqual([
        expect.stringMatching(/^spec\.webhook may not point at a private, loopback or link-local address: /),
      ]);
    for (const webhook of ['https://hooks.example.com/x', 'http://8.8.8.8/'])
      expect((await review(pred({ ...spec, webhook }), lookup)).refusals).toEqual([]);
    const allowed = { egress: new EgressPolicy(['127.0.0.0/8']) };
    expect(
      (await review(pred({ ...spec, webhook: 'http://127.0.0.1:8080/' }), lookup, allowed)).refusals,
    ).toEqual([]);
  });

  it('warns when the target, its version or its schema is not there yet, and never checks a cancel', async () => {
    const lookup = lookupOf(world);
    expect((await review(pred({ deployment: 'later', input: {} }), lookup)).warnings).toEqual([
      'spec.deployment: Deployment "later" does not exist in namespace "ns" yet; its input is checked when it runs',
    ]);
    expect((await review(pred({ model: 'later', input: {} }), lookup)).warnings).toEqual([
      'spec.model: Model "later" does not exist in namespace "ns" yet; its input is checked when it runs',
    ]);
    expect((await review(pred({ version: 'v-noschema', input: {} }), lookup)).warnings[0]).toMatch(
      /^spec\.input: ModelVersion "v-noschema" has no OpenAPI schema yet/,
    );
    expect(await review(pred({ version: 'v-a', input: {}, cancel: true }, 'UPDATE'), lookup)).toEqual({
      refusals: [],
      warnings: [],
    });
  });
});

describe('Model and ModelVersion', () => {
  it('warn of a deployment, a hardware class and a model that do not exist yet', async () => {
    const lookup = lookupOf(world);
    const m = await review(
      {
        kind: 'Model',
        operation: 'CREATE',
        namespace: 'ns',
        object: { metadata: { name: 'b' }, spec: { deployment: 'x', defaultHardware: 'gpu-x' } },
      },
      lookup,
    );
    expect(m.refusals).toEqual([]);
    expect(m.warnings).toEqual([
      'spec.deployment: Deployment "x" does not exist in namespace "ns" yet; the model serves no predictions until it does',
      'spec.defaultHardware: no HardwareClass is named "gpu-x" (nor has it as an alias)',
    ]);
    const v = await review(
      {
        kind: 'ModelVersion',
        operation: 'CREATE',
        namespace: 'ns',
        object: { metadata: { name: 'v' }, spec: { model: 'later' } },
      },
      lookup,
    );
    expect(v).toEqual({
      refusals: [],
      warnings: ['spec.model: Model "later" does not exist in namespace "ns" yet'],
    });
  });
});
