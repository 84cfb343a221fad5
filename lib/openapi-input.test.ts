import { describe, expect, it } from 'vitest';
import { fromCogDetail, validateInput } from './openapi-input.ts';

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
});
