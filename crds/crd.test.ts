import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { CATEGORY, GROUP, KIND, PLURAL, RESOURCE, VERSION } from './constants.ts';
import { type CustomResourceDefinition, crds, generatedFiles } from './crd.ts';
import { drift, generatedDir, writeGenerated } from './generate.ts';
import type { JsonSchema } from './structural.ts';

const all = crds();
const byKind = new Map(all.map((c) => [c.spec.names.kind, c]));
const version = (c: CustomResourceDefinition) => c.spec.versions[0]!;
const schemaOf = (c: CustomResourceDefinition) => version(c).schema.openAPIV3Schema;
const at = (s: JsonSchema, ...path: string[]): JsonSchema => {
  let node = s;
  for (const p of path) node = (node.properties as Record<string, JsonSchema>)[p]!;
  return node;
};

describe('the committed CRDs', () => {
  it('are what the zod schemas generate (run `make crds` after changing crds/*.ts)', () => {
    const want = generatedFiles();
    expect(drift(generatedDir, want)).toEqual([]);
    for (const [name, text] of want) expect(readFileSync(join(generatedDir, name), 'utf8')).toBe(text);
  });

  it('parse back to the CRD objects, one file per kind', () => {
    const files = readdirSync(generatedDir).filter((f) => f.endsWith('.yaml'));
    expect(files.sort()).toEqual(
      Object.values(RESOURCE)
        .map((r) => `${r}.yaml`)
        .sort(),
    );
    for (const crd of all) {
      expect(parse(readFileSync(join(generatedDir, `${crd.metadata.name}.yaml`), 'utf8'))).toEqual(crd);
    }
  });
});

describe('drift detection', () => {
  let dir = '';
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('reports missing, changed and extra files, and writeGenerated fixes them', () => {
    dir = mkdtempSync(join(tmpdir(), 'crds-'));
    const want = new Map([
      ['a.yaml', 'a: 1\n'],
      ['b.yaml', 'b: 1\n'],
    ]);
    writeFileSync(join(dir, 'b.yaml'), 'b: 2\n');
    writeFileSync(join(dir, 'old.yaml'), 'old: 1\n');
    expect(drift(dir, want)).toEqual([
      'a.yaml (missing)',
      'b.yaml (differs)',
      'old.yaml (no longer generated)',
    ]);
    expect(writeGenerated(dir, want).sort()).toEqual(['a.yaml', 'b.yaml']);
    expect(drift(dir, want)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(['a.yaml', 'b.yaml']);
    expect(writeGenerated(dir, want)).toEqual([]);
  });
});

describe('every CRD', () => {
  it.each(all.map((c) => [c.spec.names.kind, c] as const))(
    '%s: names, category, status subresource',
    (kind, crd) => {
      expect(crd.metadata.name).toBe(RESOURCE[kind as keyof typeof RESOURCE]);
      expect(crd.spec.group).toBe(GROUP);
      expect(crd.spec.names.plural).toBe(PLURAL[kind as keyof typeof PLURAL]);
      expect(crd.spec.names.categories).toEqual([CATEGORY]);
      expect(crd.spec.names.shortNames.length).toBeGreaterThan(0);
      expect(crd.spec.versions).toHaveLength(1);
      expect(version(crd)).toMatchObject({
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
      });
      expect(crd.spec.scope).toBe(kind === KIND.HardwareClass ? 'Cluster' : 'Namespaced');
    },
  );

  it.each(all.map((c) => [c.spec.names.kind, c] as const))(
    '%s: conditions as a map list keyed by type, and observedGeneration',
    (_kind, crd) => {
      const status = at(schemaOf(crd), 'status');
      const conditions = at(status, 'conditions');
      expect(conditions['x-kubernetes-list-type']).toBe('map');
      expect(conditions['x-kubernetes-list-map-keys']).toEqual(['type']);
      const item = conditions.items as JsonSchema;
      expect(item.required).toEqual(['type', 'status', 'lastTransitionTime', 'reason', 'message']);
      expect(at(item, 'lastTransitionTime')).toMatchObject({ type: 'string', format: 'date-time' });
      expect(at(status, 'observedGeneration')).toMatchObject({
        type: 'integer',
        format: 'int64',
        minimum: 0,
      });
    },
  );

  it('has no short name or plural twice, and never the short names of apps/v1', () => {
    const names = all.flatMap((c) => [
      c.spec.names.plural,
      c.spec.names.singular,
      ...c.spec.names.shortNames,
    ]);
    expect(new Set(names).size).toBe(names.length);
    for (const taken of ['deploy', 'po', 'svc', 'hpa', 'mc']) expect(names).not.toContain(taken);
  });

  it('keeps every structural rule: a type on every node, no additionalProperties beside properties, no $ref', () => {
    const visit = (node: JsonSchema, path: string) => {
      expect(JSON.stringify(node)).not.toMatch(/"\$ref"|"\$schema"|"\$defs"|"anyOf"|"propertyNames"/);
      const typed =
        typeof node.type === 'string' ||
        node['x-kubernetes-int-or-string'] === true ||
        node['x-kubernetes-preserve-unknown-fields'] === true;
      expect(typed, `${path} has a type`).toBe(true);
      if (node.properties) expect(node.additionalProperties, `${path}`).toBeUndefined();
      for (const [k, v] of Object.entries((node.properties ?? {}) as Record<string, JsonSchema>)) {
        if (path === '' && k === 'metadata') continue;
        expect(typeof v.description, `${path}.${k} has a description`).toBe('string');
        visit(v, `${path}.${k}`);
      }
      if (node.items) visit(node.items as JsonSchema, `${path}[]`);
      if (typeof node.additionalProperties === 'object')
        visit(node.additionalProperties as JsonSchema, `${path}{}`);
    };
    for (const crd of all) visit(schemaOf(crd), '');
  });

  it('only constrains metadata.name at the root', () => {
    for (const crd of all) {
      const metadata = at(schemaOf(crd), 'metadata');
      expect(Object.keys(metadata).sort()).toEqual(
        crd.spec.names.kind === KIND.Prediction ? ['type'] : ['properties', 'type'],
      );
      if (metadata.properties) expect(Object.keys(metadata.properties)).toEqual(['name']);
    }
  });
});

describe('printer columns', () => {
  const columns = (kind: string) =>
    version(byKind.get(kind)!)
      .additionalPrinterColumns.filter((c) => !c.priority)
      .map((c) => c.name);

  it('show what a platform engineer wants at a glance', () => {
    expect(columns(KIND.Deployment)).toEqual([
      'Model',
      'Version',
      'Hardware',
      'Min',
      'Max',
      'Ready',
      'Desired',
      'Queue',
      'Age',
    ]);
    expect(columns(KIND.Prediction)).toEqual(['Target', 'Status', 'Predict Time', 'Age']);
    expect(columns(KIND.HardwareClass)).toEqual(['GPU Products', 'GPUs', 'Price/s', 'Age']);
    expect(columns(KIND.Model)).toEqual(['Visibility', 'Deployment', 'Latest', 'Versions', 'Ready', 'Age']);
    expect(columns(KIND.ModelVersion)).toEqual(['Model', 'Ready', 'Age']);
  });

  it('point at fields that exist, with a matching type', () => {
    for (const crd of all) {
      for (const col of version(crd).additionalPrinterColumns) {
        if (col.jsonPath === '.metadata.creationTimestamp' || String(col.jsonPath).includes('[?(')) continue;
        const path = String(col.jsonPath).slice(1).split('.');
        const field = at(schemaOf(crd), ...path);
        expect(field, `${crd.spec.names.kind} ${col.jsonPath}`).toBeDefined();
        const want = field.format === 'date-time' ? 'date' : field.type === 'array' ? 'string' : field.type;
        expect(col.type, `${crd.spec.names.kind} ${col.jsonPath}`).toBe(want);
      }
    }
  });
});

describe('CEL rules', () => {
  const rulesIn = (s: JsonSchema): Array<{ rule: string; message: string }> => [
    ...((s['x-kubernetes-validations'] ?? []) as Array<{ rule: string; message: string }>),
    ...Object.values((s.properties ?? {}) as Record<string, JsonSchema>).flatMap(rulesIn),
    ...(s.items ? rulesIn(s.items as JsonSchema) : []),
    ...(typeof s.additionalProperties === 'object' ? rulesIn(s.additionalProperties as JsonSchema) : []),
  ];

  it('each name the field they are about in their message', () => {
    for (const crd of all) {
      for (const r of rulesIn(schemaOf(crd)))
        expect(r.message).toMatch(/(^|\s)(spec|metadata|status)(\.|\s)/);
    }
  });

  it('make ModelVersion spec immutable and Prediction spec immutable except cancel', () => {
    const mv = at(schemaOf(byKind.get(KIND.ModelVersion)!), 'spec');
    expect(mv['x-kubernetes-validations']).toContainEqual(
      expect.objectContaining({ rule: 'self == oldSelf' }),
    );
    const p = at(schemaOf(byKind.get(KIND.Prediction)!), 'spec');
    const fields = Object.keys(p.properties as object).filter((f) => f !== 'cancel');
    const transition = (p['x-kubernetes-validations'] as Array<{ rule: string; fieldPath?: string }>).filter(
      (r) => r.rule.includes('oldSelf'),
    );
    expect(transition.map((r) => r.fieldPath).sort()).toEqual(
      [...fields.map((f) => `.${f}`), '.cancel'].sort(),
    );
  });

  it('bound every string, list and map a rule reads, so the API server can price the rules', () => {
    const visit = (s: JsonSchema, path: string) => {
      if (s['x-kubernetes-validations'] && !String(path).endsWith('.spec') && path !== '') {
        if (s.type === 'string') expect(s.maxLength, path).toBeDefined();
        if (s.type === 'array') expect(s.maxItems, path).toBeDefined();
      }
      for (const [k, v] of Object.entries((s.properties ?? {}) as Record<string, JsonSchema>))
        visit(v, `${path}.${k}`);
      if (s.items) visit(s.items as JsonSchema, `${path}[]`);
    };
    for (const crd of all) visit(schemaOf(crd), '');
  });
});

describe('docs/api.md', () => {
  const docs = readFileSync(fileURLToPath(new URL('../docs/api.md', import.meta.url)), 'utf8');

  /** Spec fields, with nested objects' fields as dotted paths (lists and free-form objects stop). */
  function specFields(s: JsonSchema, prefix = ''): string[] {
    return Object.entries((s.properties ?? {}) as Record<string, JsonSchema>).flatMap(([name, field]) => {
      const path = `${prefix}${name}`;
      return field.type === 'object' && field.properties ? specFields(field, `${path}.`) : [path];
    });
  }

  it.each(all.map((c) => [c.spec.names.kind, c] as const))(
    'documents every spec field of %s',
    (kind, crd) => {
      expect(docs).toContain(`## ${kind}`);
      for (const field of specFields(at(schemaOf(crd), 'spec')))
        expect(docs, `${kind} spec.${field}`).toContain(`\`${field}\``);
    },
  );

  it('explains the apps/v1 name clash', () => {
    expect(docs).toContain('deployments.modelplane.dev');
    expect(docs).toMatch(/apps\/v1/);
  });
});
