import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  fromCogDetail,
  INPUT_CACHE_SIZE,
  inputCheck,
  inputCompilations,
  validateInput,
} from './openapi-input.ts';

const schema = {
  components: {
    schemas: {
      Input: {
        type: 'object',
        required: ['text'],
        properties: {
          text: { type: 'string', minLength: 1, maxLength: 5 },
          repeat: { type: 'integer', minimum: 1, maximum: 100, default: 1 },
          ratio: { type: 'number' },
          flag: { type: 'boolean' },
          tags: { type: 'array', items: { type: 'string' } },
          color: { allOf: [{ $ref: '#/components/schemas/color' }] },
          code: { type: 'string', pattern: '^[a-z]+$' },
          maybe: { type: 'string', nullable: true },
        },
      },
      color: { title: 'color', enum: ['red', 'green'], type: 'string' },
    },
  },
};

describe('input validation against the model schema', () => {
  it('accepts valid input, unknown fields included', () => {
    expect(
      validateInput(
        {
          text: 'hi',
          repeat: 3,
          ratio: 2,
          flag: true,
          tags: ['a'],
          color: 'red',
          code: 'ab',
          maybe: null,
          x: 1,
        },
        schema,
      ),
    ).toEqual([]);
  });

  it('reports each problem with its field', () => {
    const got = validateInput(
      { repeat: 0, ratio: 'x', tags: ['a', 2], color: 'blue', code: 'AB', flag: null },
      schema,
    );
    expect(got).toEqual([
      { type: 'required', field: 'input.text', description: 'text is required' },
      { type: 'minimum', field: 'input.repeat', description: 'input.repeat must be at least 1' },
      { type: 'type', field: 'input.ratio', description: 'input.ratio must be of type number' },
      { type: 'type', field: 'input.tags[1]', description: 'input.tags[1] must be of type string' },
      { type: 'enum', field: 'input.color', description: 'input.color must be one of "red", "green"' },
      { type: 'pattern', field: 'input.code', description: 'input.code must match ^[a-z]+$' },
      { type: 'type', field: 'input.flag', description: 'input.flag must not be null' },
    ]);
    expect(validateInput({ text: 'toolong', repeat: 1.5 }, schema).map((f) => f.type)).toEqual([
      'maxLength',
      'type',
    ]);
    expect(validateInput([1], schema)).toEqual([
      { type: 'type', field: 'input', description: 'input must be a JSON object' },
    ]);
  });

  it('checks nothing without a schema', () => {
    expect(validateInput({ anything: 1 }, undefined)).toEqual([]);
  });

  it('maps the Cog server 422 detail to invalid_fields', () => {
    expect(
      fromCogDetail({
        detail: [
          { loc: ['body', 'input', 'text'], msg: 'Field required', type: 'value_error.missing' },
          { loc: ['body', 'input', 'repeat'], msg: '0 is less than the minimum of 1', type: 'value_error' },
        ],
      }),
    ).toEqual([
      { type: 'required', field: 'input.text', description: 'input.text: Field required' },
      {
        type: 'invalid',
        field: 'input.repeat',
        description: 'input.repeat: 0 is less than the minimum of 1',
      },
    ]);
    expect(fromCogDetail('garbage')).toHaveLength(1);
  });

  it('accepts Cog’s own keywords and leaves defaults to the model server', () => {
    const cog = {
      components: {
        schemas: {
          Input: {
            type: 'object',
            additionalProperties: false,
            properties: {
              prompt: { type: 'string', 'x-order': 0, title: 'Prompt' },
              image: { type: 'string', format: 'uri', 'x-order': 1 },
              token: { type: 'string', format: 'password', 'x-cog-secret': true },
              steps: { type: 'integer', default: 4, 'x-cog-array-type': 'iterator' },
            },
          },
        },
      },
    };
    const input = { prompt: 'a cat', image: 'data:image/png;base64,AAAA', token: 'x', extra: 1 };
    expect(validateInput(input, cog)).toEqual([]);
    expect(input).toEqual({ prompt: 'a cat', image: 'data:image/png;base64,AAAA', token: 'x', extra: 1 });
  });

  it('runs a pattern in linear time: ^(a+)+$ on a 40-character attack, faster than RegExp on 20', () => {
    const doc = {
      components: {
        schemas: { Input: { type: 'object', properties: { s: { type: 'string', pattern: '^(a+)+$' } } } },
      },
    };
    const attack = (n: number) => `${'a'.repeat(n)}!`;
    expect(validateInput({ s: 'aaaa' }, doc)).toEqual([]); // compiled, and a match passes
    const t0 = performance.now();
    const errors = validateInput({ s: attack(40) }, doc);
    const linear = performance.now() - t0;
    expect(errors).toEqual([
      { type: 'pattern', field: 'input.s', description: 'input.s must match ^(a+)+$' },
    ]);
    // The reference: the backtracking engine on half that length (its time doubles per character).
    const t1 = performance.now();
    expect(/^(a+)+$/u.test(attack(20))).toBe(false);
    const backtracking = performance.now() - t1;
    expect(linear).toBeLessThan(backtracking);
    expect(linear).toBeLessThan(50); // the target of the hardening issue
  });

  it('reads OpenAPI 3.0: nullable without a type, boolean exclusive bounds; odd patterns pass', () => {
    const doc = {
      components: {
        schemas: {
          Input: {
            type: 'object',
            properties: {
              shade: { allOf: [{ $ref: '#/components/schemas/color' }], nullable: true },
              ratio: { type: 'number', minimum: 0, exclusiveMinimum: true },
              odd: { type: 'string', pattern: '(?<=unclosed' },
              either: { anyOf: [{ type: 'string' }, { $ref: '#/components/schemas/color' }] },
              nested: { type: 'object', required: ['x'], properties: { x: { type: 'integer' } } },
              many: { type: 'array', maxItems: 2 },
            },
          },
          color: { enum: ['red', 'green'], type: 'string' },
        },
      },
    };
    expect(validateInput({ shade: null, ratio: 0.5, odd: 'anything', either: 'x' }, doc)).toEqual([]);
    expect(
      validateInput({ shade: 'blue', ratio: 0, either: 3, nested: { x: 'no' }, many: [1, 2, 3] }, doc),
    ).toEqual([
      { type: 'enum', field: 'input.shade', description: 'input.shade must be one of "red", "green"' },
      { type: 'exclusiveMinimum', field: 'input.ratio', description: 'input.ratio must be greater than 0' },
      { type: 'type', field: 'input.either', description: 'input.either matches none of the allowed types' },
      { type: 'type', field: 'input.nested.x', description: 'input.nested.x must be of type integer' },
      { type: 'maxItems', field: 'input.many', description: 'input.many must have at most 2 items' },
    ]);
    expect(validateInput({ nested: {}, shade: 7 }, doc)).toEqual([
      { type: 'required', field: 'input.nested.x', description: 'input.nested.x is required' },
      { type: 'type', field: 'input.shade', description: 'input.shade must be of type string' },
    ]);
  });

  it('compiles a schema once: the same document, or another with the same JSON', () => {
    const fresh = () => {
      const doc = structuredClone(schema);
      doc.components.schemas.Input.properties.text.maxLength = 7;
      return doc;
    };
    const doc = fresh();
    const before = inputCompilations();
    const check = inputCheck(doc);
    expect(check).toBeTypeOf('function');
    expect(inputCompilations()).toBe(before + 1);
    for (let i = 0; i < 3; i++) validateInput({ text: 'hi' }, doc);
    expect(inputCheck(doc)).toBe(check);
    // A watch update hands over a new object with the same schema.
    expect(inputCheck(fresh())).toBe(check);
    expect(inputCompilations()).toBe(before + 1);
    // Another schema is another compilation.
    const other = fresh();
    other.components.schemas.Input.properties.text.maxLength = 9;
    expect(inputCheck(other)).not.toBe(check);
    expect(validateInput({ text: 'toolong!' }, other)).toEqual([]);
    expect(validateInput({ text: 'toolong!' }, doc).map((f) => f.type)).toEqual(['maxLength']);
    expect(inputCompilations()).toBe(before + 2);
    // Nothing to compile without an Input schema.
    expect(inputCheck({ components: { schemas: {} } })).toBeUndefined();
    expect(inputCheck('nope')).toBeUndefined();
  });

  it('keeps a bounded number of compiled schemas', () => {
    const doc = (n: number) => ({
      components: {
        schemas: { Input: { type: 'object', properties: { n: { type: 'integer', maximum: n } } } },
      },
    });
    const first = inputCheck(doc(-1));
    const before = inputCompilations();
    for (let n = 0; n < INPUT_CACHE_SIZE; n++) inputCheck(doc(n));
    expect(inputCompilations()).toBe(before + INPUT_CACHE_SIZE);
    // The oldest was dropped: a new object with its JSON compiles again, and still works.
    const again = inputCheck(doc(-1));
    expect(again).not.toBe(first);
    expect(inputCompilations()).toBe(before + INPUT_CACHE_SIZE + 1);
    expect(again?.({ n: 0 })).toEqual([
      { type: 'maximum', field: 'input.n', description: 'input.n must be at most -1' },
    ]);
    expect(first?.({ n: 0 })).toHaveLength(1);
  });

  it('does not compile a schema ajv refuses; the model server decides', () => {
    const broken = {
      components: { schemas: { Input: { type: 'object', properties: { a: { $ref: '#/nowhere' } } } } },
    };
    expect(validateInput({ a: 1 }, broken)).toEqual([]);
  });

  it('compiles the schema of every example Cog model', () => {
    const dir = new URL('../examples/models/', import.meta.url);
    const models = readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory());
    expect(models.length).toBeGreaterThan(3);
    for (const m of models) {
      const doc = JSON.parse(readFileSync(new URL(`${m.name}/.cog/openapi_schema.json`, dir), 'utf8'));
      expect(inputCheck(doc), m.name).toBeTypeOf('function');
    }
  });
});
