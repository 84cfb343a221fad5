import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../harness/cluster/paths.ts';
import { validateInput } from '../../lib/openapi-input.ts';
import {
  png,
  UNBOUNDED_ARRAY_ITEMS,
  UNBOUNDED_NUMBER,
  UNBOUNDED_STRING_LENGTH,
  worstCaseInput,
  worstCaseRow,
  worstCases,
} from './worst-case.ts';

const cogSchema = (model: string): unknown =>
  JSON.parse(
    readFileSync(join(repoRoot, 'examples', 'models', model, '.cog', 'openapi_schema.json'), 'utf8'),
  );

const doc = (input: Record<string, unknown>, more: Record<string, unknown> = {}) => ({
  openapi: '3.0.2',
  components: { schemas: { Input: { type: 'object', ...input }, ...more } },
});

describe('worstCaseInput', () => {
  it('fills every input of the example models with the largest value their schema allows, and it validates', () => {
    const echo = worstCaseInput(cogSchema('echo'))!;
    expect(echo.input.repeat).toBe(100);
    expect((echo.input.text as string).length).toBe(UNBOUNDED_STRING_LENGTH);
    expect(echo.notes).toContain(`text: no maxLength, ${UNBOUNDED_STRING_LENGTH} characters`);
    expect(worstCaseInput(cogSchema('sleep'))!.input).toEqual({ seconds: 3600 });
    const upscale = worstCaseInput(cogSchema('upscale'))!;
    expect(upscale.input.scale).toBe(8);
    expect(upscale.input.image).toMatch(/^data:image\/png;base64,/);
    for (const model of ['echo', 'sleep', 'fail', 'stream', 'embed', 'upscale', 'tokens', 'noise']) {
      const openapi = cogSchema(model);
      const w = worstCaseInput(openapi)!;
      expect(validateInput(w.input, openapi), model).toEqual([]);
    }
  });

  it('reads maxLength, maximum, exclusiveMaximum (both forms), multipleOf, maxItems, enums and booleans', () => {
    const openapi = doc(
      {
        properties: {
          name: { type: 'string', minLength: 2, maxLength: 7 },
          n: { type: 'integer', maximum: 10 },
          below: { type: 'integer', exclusiveMaximum: 10 },
          below30: { type: 'integer', maximum: 10, exclusiveMaximum: true },
          f: { type: 'number', exclusiveMaximum: 1 },
          step: { type: 'number', maximum: 1, multipleOf: 0.25 },
          free: { type: 'integer', minimum: 0 },
          big: { type: 'integer', minimum: 5000 },
          tags: { type: 'array', items: { type: 'string', maxLength: 3 }, maxItems: 4 },
          many: { type: 'array', items: { type: 'integer', maximum: 2 } },
          flag: { type: 'boolean', default: false },
          size: { allOf: [{ $ref: '#/components/schemas/size' }], default: 'small' },
          maybe: { type: 'integer', maximum: 3, nullable: true },
        },
        required: ['name'],
      },
      { size: { title: 'size', type: 'string', enum: ['small', 'medium', 'large'] } },
    );
    const { input, notes } = worstCaseInput(openapi)!;
    expect(input).toEqual({
      name: 'the qui',
      n: 10,
      below: 9,
      below30: 9,
      f: 0.9999999999999999,
      step: 1,
      free: UNBOUNDED_NUMBER,
      big: 5000,
      tags: ['the', 'the', 'the', 'the'],
      many: Array(UNBOUNDED_ARRAY_ITEMS).fill(2),
      flag: true,
      size: 'medium',
      maybe: 3,
    });
    expect(notes).toEqual(
      expect.arrayContaining([
        `free: no maximum, ${UNBOUNDED_NUMBER}`,
        `many: no maxItems, ${UNBOUNDED_ARRAY_ITEMS} items`,
      ]),
    );
    expect(validateInput(input, openapi)).toEqual([]);
  });

  it('makes the biggest file a bounded uri allows, and a real PNG for an unbounded one', () => {
    const openapi = doc({ properties: { f: { type: 'string', format: 'uri', maxLength: 1000 } } });
    const f = worstCaseInput(openapi)!.input.f as string;
    expect(f.length).toBeLessThanOrEqual(1000);
    expect(f.length).toBeGreaterThan(996);
    expect(f).toMatch(/^data:application\/octet-stream;base64,/);
    const image = png(16);
    expect(image.subarray(1, 4).toString('ascii')).toBe('PNG');
    expect(image.readUInt32BE(16)).toBe(16); // IHDR width
  });

  it('falls back to the default, or leaves an optional input out, when the generated value is refused', () => {
    const openapi = doc({
      properties: {
        code: { type: 'string', pattern: '^[0-9]+$', default: '42' },
        opt: { type: 'string', pattern: '^[0-9]+$' },
        text: { type: 'string', maxLength: 5 },
      },
      required: ['text'],
    });
    const w = worstCaseInput(openapi)!;
    expect(w.input).toEqual({ code: '42', text: 'the q' });
    expect(w.notes.some((n) => n.startsWith('code: its default'))).toBe(true);
    expect(w.notes.some((n) => n.startsWith('opt: left out'))).toBe(true);
    expect(validateInput(w.input, openapi)).toEqual([]);
  });

  it('throws naming the input when a required one cannot be made valid, and answers undefined with no schema', () => {
    const openapi = doc({
      properties: { code: { type: 'string', pattern: '^[0-9]+$' } },
      required: ['code'],
    });
    expect(() => worstCaseInput(openapi)).toThrow('input.code must match');
    expect(worstCaseInput(undefined)).toBeUndefined();
    expect(worstCaseInput({})).toBeUndefined();
  });
});

describe('worstCaseRow', () => {
  it('passes a success and says how a failure ended', () => {
    expect(
      worstCaseRow({ source: 'generated', status: 'succeeded', totalTime: 0.5, predictTime: 0.2 }, 60),
    ).toMatchObject({
      verdict: 'pass',
      figure: 'generated: succeeded in 0.200s (timeout 60s)',
    });
    const timedOut = worstCaseRow(
      {
        source: 'generated',
        status: 'failed',
        totalTime: 3.2,
        error: 'prediction timed out: it ran longer than the predict timeout of 3 s and was canceled',
      },
      3,
    );
    expect(timedOut).toMatchObject({
      verdict: 'fail',
      figure: 'generated: timed out after 3.200s (timeout 3s)',
    });
    expect(timedOut.detail).toContain('predict timeout of 3 s');
    expect(worstCaseRow({ source: 'given', status: 'failed', totalTime: 1, error: 'boom' }, 3)).toMatchObject(
      {
        verdict: 'fail',
        figure: 'given: ended failed after 1.000s (timeout 3s)',
        detail: 'the given worst-case input ended failed: boom',
      },
    );
    expect(
      worstCaseRow(
        { source: 'given', status: 'error', totalTime: 0.1, error: 'POST …: 422 Unprocessable Entity' },
        3,
      ),
    ).toMatchObject({ verdict: 'fail', figure: 'given: could not run after 0.100s (timeout 3s)' });
    expect(worstCaseRow({ source: 'given', status: 'canceled', totalTime: 1 }, 3).figure).toBe(
      'given: canceled after 1.000s (timeout 3s)',
    );
  });

  it('runs the given input, then the generated one; skips the generated one with no schema', async () => {
    const seen: Array<Record<string, unknown>> = [];
    const run = async (input: Record<string, unknown>) => {
      seen.push(input);
      return { prediction: { status: 'succeeded', metrics: { predict_time: 0.1 } }, totalTime: 0.2 };
    };
    const r = await worstCases({
      given: { seconds: 1 },
      openapi: cogSchema('sleep'),
      timeoutSeconds: 5,
      run,
    });
    expect(seen).toEqual([{ seconds: 1 }, { seconds: 3600 }]);
    expect(r.rows.map((x) => [x.verdict, x.figure])).toEqual([
      ['pass', 'given: succeeded in 0.100s (timeout 5s)'],
      ['pass', 'generated: succeeded in 0.100s (timeout 5s)'],
    ]);
    const refused = await worstCases({
      given: { seconds: -1 },
      openapi: undefined,
      timeoutSeconds: 5,
      run: async () => {
        throw new Error('POST …: 422 Unprocessable Entity: input.seconds must be at least 0');
      },
    });
    expect(refused.rows[0]).toMatchObject({
      verdict: 'fail',
      detail:
        'the given worst-case input could not run: POST …: 422 Unprocessable Entity: input.seconds must be at least 0',
    });
    expect(refused.runs[0]).toMatchObject({ source: 'given', status: 'error' });
    const none = await worstCases({ openapi: undefined, timeoutSeconds: 5, run });
    expect(none.rows).toEqual([
      expect.objectContaining({ check: 'worst case', verdict: 'skip', figure: 'generated: not run' }),
    ]);
  });
});
