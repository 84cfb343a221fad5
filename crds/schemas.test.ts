import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { API_VERSION, KIND, type Kind } from './constants.ts';
import { DeploymentSchema } from './deployment.ts';
import { HardwareClassSchema } from './hardware-class.ts';
import { kindDefinition } from './kinds.ts';
import { ModelVersionSchema } from './model-version.ts';
import { PredictionSchema } from './prediction.ts';
import { PATTERN } from './schema.ts';
import { invalid, type Obj, valid } from './testdata/objects.ts';

const examplesDir = fileURLToPath(new URL('../examples', import.meta.url));

/** Every object in the top-level YAML files of examples/ (examples/models/ holds model code). */
function exampleObjects(): Array<{ file: string; object: Obj }> {
  return readdirSync(examplesDir)
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((file) =>
      parseAllDocuments(readFileSync(join(examplesDir, file), 'utf8'))
        .map((d) => d.toJS() as Obj | null)
        .filter((o): o is Obj => o !== null)
        .map((object) => ({ file, object })),
    );
}

/** `spec.env[0].name` → ['spec', 'env', 0, 'name']. */
function zodPathOf(field: string): (string | number)[] {
  return field
    .split(/\.|\[(\d+)\]/)
    .filter((p) => p !== undefined && p !== '')
    .map((p) => (/^\d+$/.test(p) ? Number(p) : p));
}

describe('the examples', () => {
  const objects = exampleObjects();

  it('hold every kind, the default hardware classes and a deployment that scales to zero', () => {
    const kinds = new Set(objects.map((o) => o.object.kind));
    expect([...kinds].sort()).toEqual(Object.values(KIND).sort());
    const hardware = objects
      .filter((o) => o.object.kind === KIND.HardwareClass)
      .map((o) => (o.object.metadata as { name: string }).name);
    for (const sku of [
      'cpu',
      'gpu-t4',
      'gpu-l40s',
      'gpu-a100-40gb',
      'gpu-a100-80gb',
      'gpu-h100',
      'gpu-h100-2x',
      'gpu-h100-8x',
    ]) {
      expect(hardware).toContain(sku);
    }
    const deployments = objects
      .filter((o) => o.object.kind === KIND.Deployment)
      .map((o) => DeploymentSchema.parse(o.object));
    expect(deployments.some((d) => d.spec.minInstances === 0)).toBe(true);
    expect(deployments.map((d) => d.spec.hardware).sort()).toEqual(['cpu', 'gpu-a100-80gb', 'gpu-h100-2x']);
  });

  it.each(
    exampleObjects().map((o) => [
      `${o.file}: ${o.object.kind} ${(o.object.metadata as { name: string }).name}`,
      o.object,
    ]),
  )('%s parses with its schema', (_name, object) => {
    expect(object.apiVersion).toBe(API_VERSION);
    const result = kindDefinition(object.kind as Kind).schema.safeParse(object);
    expect(result.error?.issues ?? []).toEqual([]);
  });

  it('price multi-GPU classes as the single-GPU price times the GPU count', () => {
    const classes = objects
      .filter((o) => o.object.kind === KIND.HardwareClass)
      .map((o) => HardwareClassSchema.parse(o.object));
    const price = (name: string) => classes.find((c) => c.metadata.name === name)?.spec.pricePerSecond;
    // Integer micro-dollars: no float rounding in the comparison.
    const micro = (p: string | undefined) => Math.round(Number(p) * 1e6);
    expect(price('cpu')).toBe('0.000100');
    expect(price('gpu-t4')).toBe('0.000225');
    expect(price('gpu-l40s')).toBe('0.000975');
    expect(price('gpu-a100-40gb')).toBe('0.001150');
    expect(price('gpu-a100-80gb')).toBe('0.001400');
    expect(price('gpu-h100')).toBe('0.001525');
    for (const c of classes) {
      const m = /^(.*)-(\d)x$/.exec(c.metadata.name ?? '');
      if (!m) continue;
      expect(micro(c.spec.pricePerSecond)).toBe(micro(price(m[1]!)) * Number(m[2]));
      expect(c.spec.gpu?.count).toBe(Number(m[2]));
    }
  });
});

describe('the valid corpus objects', () => {
  it.each(Object.entries(valid))('%s parses', (_name, make) => {
    const object = make();
    expect(kindDefinition(object.kind as Kind).schema.safeParse(object).error?.issues ?? []).toEqual([]);
  });

  it('get the defaults the API server applies', () => {
    const d = DeploymentSchema.parse(valid.deployment());
    expect(d.spec.scaling).toEqual({
      targetPerInstance: 4,
      stableWindowSeconds: 60,
      panicWindowSeconds: 6,
      panicThresholdPercent: 200,
      scaleDownDelaySeconds: 60,
      scaleToZeroAfterSeconds: 300,
    });
    expect(d.spec.rollout).toEqual({
      strategy: 'RollingUpdate',
      maxSurge: 1,
      maxUnavailable: 0,
      progressDeadlineSeconds: 1800,
    });
    expect(d.spec.queue).toEqual({ maxLength: 1000, maxWaitSeconds: 300 });
    const mv = ModelVersionSchema.parse(valid.modelVersion());
    expect(mv.spec).toMatchObject({
      maxConcurrency: 2,
      setupTimeoutSeconds: 600,
      predictTimeoutSeconds: 1800,
    });
    expect(PredictionSchema.parse(valid.prediction()).spec.cancel).toBe(false);
  });
});

describe('the invalid corpus', () => {
  it('has at least 20 objects the API server refuses', () => {
    expect(invalid.length).toBeGreaterThanOrEqual(20);
    expect(new Set(invalid.map((c) => c.name)).size).toBe(invalid.length);
  });

  it.each(invalid.filter((c) => c.zodPath !== false).map((c) => [`${c.kind}: ${c.name}`, c] as const))(
    '%s is refused by zod at the same field',
    (_name, c) => {
      const result = kindDefinition(c.kind).schema.safeParse(c.object);
      expect(result.success).toBe(false);
      const paths = result.error?.issues.map((i) => i.path) ?? [];
      expect(paths).toContainEqual(c.zodPath || zodPathOf(c.field));
    },
  );
});

describe('patterns', () => {
  const matches = (p: string, v: string) => new RegExp(p).test(v);

  it('read names, label values, quantities and decimals as Kubernetes does', () => {
    expect(matches(PATTERN.dnsLabel, 'gpu-a100-80gb')).toBe(true);
    expect(matches(PATTERN.dnsLabel, 'gpu.a100')).toBe(false);
    expect(matches(PATTERN.dnsLabel, '-gpu')).toBe(false);
    expect(matches(PATTERN.labelValue, 'NVIDIA-A100-SXM4-80GB')).toBe(true);
    expect(matches(PATTERN.labelValue, '')).toBe(true);
    expect(matches(PATTERN.labelValue, 'NVIDIA A100')).toBe(false);
    expect(matches(PATTERN.qualifiedName, 'nvidia.com/gpu')).toBe(true);
    expect(matches(PATTERN.qualifiedName, 'nvidia.com/mig-1g.10gb')).toBe(true);
    expect(matches(PATTERN.qualifiedName, 'nvidia.com/')).toBe(false);
    for (const q of ['4', '500m', '16Gi', '1.5', '1e3']) expect(matches(PATTERN.quantity, q), q).toBe(true);
    for (const q of ['lots', '16GB', '-1']) expect(matches(PATTERN.quantity, q), q).toBe(false);
    expect(matches(PATTERN.decimal, '0.001400')).toBe(true);
    expect(matches(PATTERN.decimal, '1e-3')).toBe(false);
    expect(matches(PATTERN.decimal, '.5')).toBe(false);
    expect(matches(PATTERN.image, 'registry.example.com/ml/model:1.0.0')).toBe(true);
    expect(matches(PATTERN.image, `r8.im/owner/model@sha256:${'a'.repeat(64)}`)).toBe(true);
    expect(matches(PATTERN.image, 'My Image')).toBe(false);
  });
});
