import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { column, freeFormObject, intOrPercent, mapList, rules, selectable, setList } from './schema.ts';
import { type JsonSchema, StructuralError, toStructural } from './structural.ts';

/** What the generator does: zod's JSON Schema (OpenAPI 3.0, input side), then toStructural. */
function structural(schema: z.ZodType) {
  return toStructural(
    z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input', reused: 'inline' }) as JsonSchema,
  );
}

const props = (s: JsonSchema) => s.properties as Record<string, JsonSchema>;

describe('toStructural', () => {
  it('drops additionalProperties beside properties, and keeps it for maps', () => {
    const { schema } = structural(
      z.object({
        spec: z.object({ a: z.string().describe('a') }).describe('spec'),
        labels: z.record(z.string(), z.string()).describe('labels'),
      }),
    );
    expect(schema.additionalProperties).toBeUndefined();
    expect(props(schema).spec?.additionalProperties).toBeUndefined();
    expect(props(schema).labels).toEqual({
      description: 'labels',
      type: 'object',
      additionalProperties: { type: 'string' },
    });
  });

  it('marks free-form objects and values with x-kubernetes-preserve-unknown-fields and no key schema', () => {
    const { schema } = structural(z.object({ input: freeFormObject().describe('input') }));
    expect(props(schema).input).toEqual({
      description: 'input',
      type: 'object',
      'x-kubernetes-preserve-unknown-fields': true,
    });
  });

  it('turns an integer-or-string union into x-kubernetes-int-or-string', () => {
    const { schema } = structural(
      z.object({ surge: intOrPercent('spec.surge').default(1).describe('surge') }),
    );
    const surge = props(schema).surge!;
    expect(surge['x-kubernetes-int-or-string']).toBe(true);
    expect(surge.anyOf).toBeUndefined();
    expect(surge.type).toBeUndefined();
    expect(surge.default).toBe(1);
  });

  it('refuses other unions, which a structural schema cannot hold', () => {
    expect(() => structural(z.object({ u: z.union([z.string(), z.boolean()]).describe('u') }))).toThrow(
      /\.u: a union other than integer-or-string/,
    );
  });

  it('gives integers a format in place of the bounds of their type', () => {
    const { schema } = structural(
      z.object({
        small: z.int32().min(0).describe('small'),
        bounded: z.int32().min(1).max(10).describe('bounded'),
        big: z.int().describe('big'),
      }),
    );
    expect(props(schema).small).toEqual({
      description: 'small',
      type: 'integer',
      format: 'int32',
      minimum: 0,
    });
    expect(props(schema).bounded).toMatchObject({ format: 'int32', minimum: 1, maximum: 10 });
    expect(props(schema).big).toEqual({ description: 'big', type: 'integer', format: 'int64' });
  });

  it("leaves date-time checks to the API server's format, without zod's pattern", () => {
    const { schema } = structural(z.object({ at: z.iso.datetime().describe('at') }));
    expect(props(schema).at).toEqual({ description: 'at', type: 'string', format: 'date-time' });
  });

  it('writes a literal as a one-value enum', () => {
    const { schema } = toStructural({
      type: 'object',
      properties: { k: { type: 'string', const: 'x', description: 'k' } },
    });
    expect(props(schema).k).toEqual({ description: 'k', type: 'string', enum: ['x'] });
  });

  it('says a scalar default in the description, for kubectl explain', () => {
    const { schema } = structural(
      z.object({
        window: z.int32().min(1).default(60).describe('Seconds of demand averaged.'),
        told: z.int32().min(1).default(5).describe('Defaults to five.'),
      }),
    );
    expect(props(schema).window?.description).toBe('Seconds of demand averaged. Default: 60.');
    expect(props(schema).told?.description).toBe('Defaults to five.');
  });

  it('removes $schema and refuses $ref, other combinators and unknown keywords', () => {
    expect(toStructural({ $schema: 'x', type: 'object' }).schema).toEqual({ type: 'object' });
    expect(() =>
      toStructural({ type: 'object', properties: { a: { $ref: '#/x', description: 'a' } } }),
    ).toThrow(/"\$ref" cannot be expressed/);
    expect(() => toStructural({ type: 'object', allOf: [] })).toThrow(StructuralError);
    expect(() => toStructural({ type: 'string', examples: ['x'] })).toThrow(/"examples" is not a keyword/);
  });

  it('refuses a field without a description, or without a type', () => {
    expect(() => structural(z.object({ a: z.string() }))).toThrow(/\.a: every field needs a description/);
    expect(() => structural(z.object({ a: z.unknown().describe('a') }))).toThrow(
      /\.a: every field needs a type/,
    );
  });

  it('refuses constraints on map keys', () => {
    const m = { type: 'object', description: 'm', propertyNames: { type: 'string', pattern: '^[a-z]+$' } };
    expect(() => toStructural({ type: 'object', properties: { m } })).toThrow(/constraints on map keys/);
    const plain = { ...m, propertyNames: { type: 'string' }, additionalProperties: { type: 'string' } };
    expect(
      props(toStructural({ type: 'object', properties: { m: plain } }).schema).m?.propertyNames,
    ).toBeUndefined();
  });

  it('puts CEL rules from rules() in x-kubernetes-validations, merged over several calls', () => {
    const s = rules(
      rules(z.object({ a: z.int32().describe('a'), b: z.int32().describe('b') }), {
        rule: 'self.a <= self.b',
        message: 'a must be at most b',
        fieldPath: '.a',
        check: (v) => v.a <= v.b,
      }),
      { rule: 'self.a >= 0', message: 'a must not be negative', check: (v) => v.a >= 0 },
    ).describe('pair');
    expect(structural(s).schema['x-kubernetes-validations']).toEqual([
      { rule: 'self.a <= self.b', message: 'a must be at most b', fieldPath: '.a' },
      { rule: 'self.a >= 0', message: 'a must not be negative' },
    ]);
  });

  it('carries list types and map keys', () => {
    const { schema } = structural(
      z.object({
        env: mapList(z.array(z.object({ name: z.string().describe('n') }).describe('e')), ['name']).describe(
          'env',
        ),
        tags: setList(z.array(z.string())).describe('tags'),
      }),
    );
    expect(props(schema).env).toMatchObject({
      'x-kubernetes-list-type': 'map',
      'x-kubernetes-list-map-keys': ['name'],
    });
    expect(props(schema).tags).toMatchObject({ 'x-kubernetes-list-type': 'set' });
  });

  it('collects printer columns and selectable fields with their JSON paths, and removes the markers', () => {
    const out = structural(
      z.object({
        spec: z
          .object({
            model: column(selectable(z.string().describe('The model.')), { name: 'Model' }),
            min: column(z.int32().min(0).describe('Minimum.'), { name: 'Min', priority: 1 }),
            products: column(z.array(z.string()).describe('Products.'), { name: 'Products' }),
          })
          .describe('spec'),
        status: z
          .object({ at: column(z.iso.datetime().optional().describe('When.'), { name: 'At' }) })
          .describe('status'),
      }),
    );
    expect(out.printerColumns).toEqual([
      { name: 'Model', type: 'string', jsonPath: '.spec.model', description: 'The model.' },
      { name: 'Min', type: 'integer', jsonPath: '.spec.min', description: 'Minimum.', priority: 1 },
      { name: 'Products', type: 'string', jsonPath: '.spec.products', description: 'Products.' },
      { name: 'At', type: 'date', jsonPath: '.status.at', description: 'When.' },
    ]);
    expect(out.selectableFields).toEqual([{ jsonPath: '.spec.model' }]);
    expect(JSON.stringify(out.schema)).not.toContain('x-modelplane');
  });

  it('refuses a column inside a list', () => {
    expect(() =>
      structural(
        z.object({
          items: z
            .array(z.object({ n: column(z.string().describe('n'), { name: 'N' }) }).describe('i'))
            .describe('l'),
        }),
      ),
    ).toThrow(/cannot sit inside a list or map/);
  });

  it('drops an empty required list (the API server would drop it, and the stored CRD would differ)', () => {
    expect(toStructural({ type: 'object', required: [], properties: {} }).schema).toEqual({
      type: 'object',
      properties: {},
    });
  });

  it('does not change the JSON Schema it is given', () => {
    const json: JsonSchema = { type: 'object', additionalProperties: false, properties: {} };
    toStructural(json);
    expect(json.additionalProperties).toBe(false);
  });
});

describe('rules() as zod refinements', () => {
  const pair = rules(z.object({ min: z.int32(), max: z.int32() }), {
    rule: 'self.min <= self.max',
    message: 'spec.min must be at most spec.max',
    fieldPath: '.min',
    check: (v) => v.min <= v.max,
  });

  it('refuses what the CEL rule refuses, at the rule field path', () => {
    const r = pair.safeParse({ min: 3, max: 2 });
    expect(r.success).toBe(false);
    expect(r.error?.issues[0]).toMatchObject({ path: ['min'], message: 'spec.min must be at most spec.max' });
    expect(pair.safeParse({ min: 2, max: 2 }).success).toBe(true);
  });

  it('leaves transition rules (no check) to the API server', () => {
    const immutable = rules(z.string(), { rule: 'self == oldSelf', message: 'immutable' });
    expect(immutable.safeParse('anything').success).toBe(true);
  });

  it('refuses duplicates in map and set lists', () => {
    const env = mapList(z.array(z.object({ name: z.string() })), ['name']);
    expect(env.safeParse([{ name: 'A' }, { name: 'B' }]).success).toBe(true);
    expect(env.safeParse([{ name: 'A' }, { name: 'A' }]).success).toBe(false);
    const set = setList(z.array(z.string()));
    expect(set.safeParse(['a', 'a']).success).toBe(false);
  });
});
