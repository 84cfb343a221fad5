/**
 * The worst-case input of `modelplane check`: the largest input a version's OpenAPI `Input`
 * schema allows, every input filled, required or optional — the longest strings, the largest
 * numbers, the longest arrays, the longest enum value, `true`, and files. The generated input
 * is checked against the same schema by lib/openapi-input.ts (ajv), as the gateway and the
 * sidecar check inputs; a field whose generated value does not pass (a `pattern` this cannot
 * satisfy, say) falls back to its default, or is left out when optional. And the row: the
 * input ran to its end within the version's `predictTimeoutSeconds`, or how it failed.
 */
import { deflateSync } from 'node:zlib';
import { inputSchema, validateInput } from '../../lib/openapi-input.ts';
import { formatSeconds, type Row } from './checks.ts';

/** Characters of a string input with no `maxLength`. */
export const UNBOUNDED_STRING_LENGTH = 4096;
/** Items of an array input with no `maxItems`. */
export const UNBOUNDED_ARRAY_ITEMS = 16;
/** A number input with no `maximum`: this, or its minimum when that is larger. */
export const UNBOUNDED_NUMBER = 1000;
/** Sides in pixels of the PNG sent for a file input (`format: uri`) the schema does not bound. */
export const FILE_IMAGE_SIDE = 256;

type Schema = Record<string, unknown>;

const TEXT = 'the quick brown fox jumps over the lazy dog; ';

function isObject(v: unknown): v is Schema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function crc32(buf: Buffer): number {
  let c = ~0;
  for (const byte of buf) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** An RGB PNG of side × side pixels (a gradient: a real image any image model reads). */
export function png(side: number): Buffer {
  const header = Buffer.alloc(13);
  header.writeUInt32BE(side, 0);
  header.writeUInt32BE(side, 4);
  header[8] = 8; // bit depth
  header[9] = 2; // RGB
  const raw = Buffer.alloc(side * (1 + side * 3));
  for (let y = 0; y < side; y++) {
    const row = y * (1 + side * 3);
    for (let x = 0; x < side; x++) {
      raw[row + 1 + x * 3] = (x * 255) / side;
      raw[row + 2 + x * 3] = (y * 255) / side;
      raw[row + 3 + x * 3] = ((x ^ y) * 7) & 255;
    }
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', header),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The largest double below x. */
function below(x: number): number {
  if (x === 0) return -Number.MIN_VALUE;
  const f = new Float64Array([x]);
  const b = new BigInt64Array(f.buffer);
  b[0] = b[0]! + (x > 0 ? -1n : 1n);
  return f[0]!;
}

class Generator {
  private readonly components: Schema;
  /** What was bounded by a documented cap rather than the schema, for the row's detail. */
  readonly notes: string[] = [];
  constructor(openapi: unknown) {
    const c = (openapi as { components?: { schemas?: unknown } }).components?.schemas;
    this.components = isObject(c) ? c : {};
  }

  /** Follows `$ref`s and a one-member `allOf` (how Cog writes enums) to the schema meant. */
  private resolve(s: Schema, depth = 0): Schema {
    if (depth > 16) return s;
    if (typeof s.$ref === 'string') {
      const target = this.components[s.$ref.split('/').pop()!];
      return isObject(target) ? this.resolve({ ...target, ...omit(s, '$ref') }, depth + 1) : s;
    }
    if (Array.isArray(s.allOf) && s.allOf.length === 1 && isObject(s.allOf[0]))
      return this.resolve({ ...omit(s, 'allOf'), ...s.allOf[0] }, depth + 1);
    const alt = (s.anyOf ?? s.oneOf) as unknown;
    if (Array.isArray(alt)) {
      const branch = alt.find((b) => isObject(b) && b.type !== 'null');
      if (isObject(branch)) return this.resolve({ ...omit(s, 'anyOf', 'oneOf'), ...branch }, depth + 1);
    }
    return s;
  }

  value(raw: unknown, where: string, depth = 0): unknown {
    const s = this.resolve(isObject(raw) ? raw : {});
    if ('const' in s) return s.const;
    if (Array.isArray(s.enum) && s.enum.length > 0) {
      // The longest value (by its JSON), the last one among equals.
      let best = s.enum[0];
      for (const v of s.enum) if (JSON.stringify(v).length >= JSON.stringify(best).length) best = v;
      return best;
    }
    const type = Array.isArray(s.type) ? s.type.find((t) => t !== 'null') : s.type;
    switch (type) {
      case 'string':
        return s.format === 'uri' ? this.file(s, where) : this.string(s, where);
      case 'integer':
      case 'number':
        return this.number(s, type === 'integer', where);
      case 'boolean':
        return true;
      case 'array': {
        const min = typeof s.minItems === 'number' ? s.minItems : 0;
        let n = typeof s.maxItems === 'number' ? s.maxItems : Math.max(min, UNBOUNDED_ARRAY_ITEMS);
        if (typeof s.maxItems !== 'number') this.notes.push(`${where}: no maxItems, ${n} items`);
        if (depth > 4) n = min;
        return Array.from({ length: n }, (_, i) => this.value(s.items, `${where}[${i}]`, depth + 1));
      }
      case 'object': {
        const props = isObject(s.properties) ? s.properties : {};
        return Object.fromEntries(
          Object.entries(props).map(([k, v]) => [k, this.value(v, `${where}.${k}`, depth + 1)]),
        );
      }
      default:
        return 'default' in s ? s.default : TEXT.trim();
    }
  }

  private string(s: Schema, where: string): string {
    const min = typeof s.minLength === 'number' ? s.minLength : 0;
    let n = typeof s.maxLength === 'number' ? s.maxLength : Math.max(min, UNBOUNDED_STRING_LENGTH);
    if (typeof s.maxLength !== 'number' && !where.includes('[')) {
      this.notes.push(`${where}: no maxLength, ${n} characters`);
    }
    n = Math.max(n, min);
    return TEXT.repeat(Math.ceil(n / TEXT.length)).slice(0, n);
  }

  private number(s: Schema, integer: boolean, where: string): number {
    let max: number | undefined;
    let exclusive = false;
    if (typeof s.maximum === 'number') {
      max = s.maximum;
      exclusive = s.exclusiveMaximum === true; // OpenAPI 3.0's boolean form
    }
    if (typeof s.exclusiveMaximum === 'number' && (max === undefined || s.exclusiveMaximum <= max)) {
      max = s.exclusiveMaximum;
      exclusive = true;
    }
    if (max === undefined) {
      const min = typeof s.minimum === 'number' ? s.minimum : -Infinity;
      max = Math.max(UNBOUNDED_NUMBER, min);
      exclusive = false;
      this.notes.push(`${where}: no maximum, ${max}`);
    }
    let v: number;
    if (integer) v = exclusive ? Math.ceil(max) - 1 : Math.floor(max);
    else v = exclusive ? below(max) : max;
    const step = typeof s.multipleOf === 'number' && s.multipleOf > 0 ? s.multipleOf : undefined;
    if (step !== undefined) {
      v = Math.floor(v / step) * step;
      if (exclusive && v >= max) v -= step;
    }
    return v;
  }

  /**
   * A file: Cog takes a URL or a `data:` URI. With a `maxLength`, a data URI of that many
   * characters (the biggest file the schema allows); without, a PNG of FILE_IMAGE_SIDE² pixels.
   */
  private file(s: Schema, where: string): string {
    const image = png(FILE_IMAGE_SIDE);
    const uri = `data:image/png;base64,${image.toString('base64')}`;
    if (typeof s.maxLength !== 'number') {
      this.notes.push(`${where}: a file with no bound, a ${FILE_IMAGE_SIDE}×${FILE_IMAGE_SIDE} PNG`);
      return uri;
    }
    const prefix = 'data:application/octet-stream;base64,';
    const chars = Math.floor((s.maxLength - prefix.length) / 4) * 4;
    if (chars <= 0) return uri.length <= s.maxLength ? uri : prefix;
    const bytes = Buffer.alloc((chars / 4) * 3);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 255;
    return prefix + bytes.toString('base64');
  }
}

function omit(s: Schema, ...keys: string[]): Schema {
  const out = { ...s };
  for (const k of keys) delete out[k];
  return out;
}

export interface WorstCase {
  input: Record<string, unknown>;
  /** Inputs bounded by a documented cap (the schema has no bound), or left at their default. */
  notes: string[];
}

/**
 * The worst-case input of an OpenAPI document (components.schemas.Input), valid against it;
 * undefined when it has no Input schema. Throws when no valid input can be made (a required
 * input whose every value this tried the schema refuses), naming the input.
 */
export function worstCaseInput(openapi: unknown): WorstCase | undefined {
  const schema = inputSchema(openapi);
  if (!schema) return undefined;
  const gen = new Generator(openapi);
  const props = isObject(schema.properties) ? schema.properties : {};
  const required = new Set(Array.isArray(schema.required) ? (schema.required as string[]) : []);
  const input: Record<string, unknown> = {};
  for (const [name, s] of Object.entries(props)) input[name] = gen.value(s, name);
  // Whatever the schema refuses (a pattern, uniqueItems, a bound this does not read) goes
  // back to its default, or out when it is optional.
  for (const problem of validateInput(input, openapi)) {
    const name = problem.field.replace(/^input\./, '').split(/[.[]/)[0]!;
    if (!(name in input)) continue;
    const s = isObject(props[name]) ? (props[name] as Schema) : {};
    if ('default' in s && s.default !== null) {
      input[name] = s.default;
      gen.notes.push(`${name}: its default (${problem.description})`);
    } else if (!required.has(name)) {
      delete input[name];
      gen.notes.push(`${name}: left out (${problem.description})`);
    }
  }
  const left = validateInput(input, openapi);
  if (left.length > 0)
    throw new Error(`cannot make a valid worst-case input: ${left.map((p) => p.description).join('; ')}`);
  return { input, notes: [...new Set(gen.notes)] };
}

/** How one worst-case input ended. */
export interface WorstCaseRun {
  /** `given` (--worst-input) or `generated` (from the schema). */
  source: 'given' | 'generated';
  /** The prediction's final status; `error` when it could not be created or did not end in time. */
  status: string;
  /** Seconds the client waited, create to end. */
  totalTime: number;
  /** metrics.predict_time, when the model ran it. */
  predictTime?: number;
  error?: string;
}

/** A `worst case` row: the input ended `succeeded` within the version's predict timeout. */
export function worstCaseRow(
  run: WorstCaseRun | { source: WorstCaseRun['source']; skipped: string },
  timeoutSeconds: number,
): Row {
  const check = 'worst case';
  if ('skipped' in run)
    return { check, verdict: 'skip', figure: `${run.source}: not run`, detail: run.skipped };
  const took = formatSeconds(run.predictTime ?? run.totalTime);
  const limit = `timeout ${timeoutSeconds}s`;
  if (run.status === 'succeeded')
    return { check, verdict: 'pass', figure: `${run.source}: succeeded in ${took} (${limit})` };
  const timedOut = /timed out/i.test(run.error ?? '');
  const how = timedOut
    ? 'timed out'
    : run.status === 'canceled'
      ? 'canceled'
      : run.status === 'error'
        ? 'could not run'
        : `ended ${run.status}`;
  return {
    check,
    verdict: 'fail',
    figure: `${run.source}: ${how} after ${formatSeconds(run.totalTime)} (${limit})`,
    detail: `the ${run.source} worst-case input ${how}${run.error ? `: ${run.error}` : ''}`,
  };
}

/** Runs one prediction to its end (the runner's Gateway.run). */
export type RunPrediction = (input: Record<string, unknown>) => Promise<{
  prediction: { status: string; error?: unknown; metrics?: Record<string, unknown> };
  totalTime: number;
}>;

/**
 * The worst-case rows: the input the user gave (when one was), then the one generated from
 * the schema (skipped, saying why, when the version has no schema or none can be made).
 */
export async function worstCases(o: {
  given?: Record<string, unknown>;
  openapi: unknown;
  timeoutSeconds: number;
  run: RunPrediction;
  log?: (line: string) => void;
}): Promise<{ rows: Row[]; runs: WorstCaseRun[] }> {
  const rows: Row[] = [];
  const runs: WorstCaseRun[] = [];
  const attempt = async (source: WorstCaseRun['source'], input: Record<string, unknown>, notes: string[]) => {
    o.log?.(`running the ${source} worst-case input (predict timeout ${o.timeoutSeconds}s)`);
    const start = performance.now();
    let r: WorstCaseRun;
    try {
      const { prediction, totalTime } = await o.run(input);
      const predictTime = Number(prediction.metrics?.predict_time);
      r = {
        source,
        status: prediction.status,
        totalTime,
        ...(Number.isFinite(predictTime) ? { predictTime } : {}),
        ...(prediction.error ? { error: String(prediction.error) } : {}),
      };
    } catch (err) {
      r = {
        source,
        status: 'error',
        totalTime: (performance.now() - start) / 1000,
        error: (err as Error).message,
      };
    }
    runs.push(r);
    const row = worstCaseRow(r, o.timeoutSeconds);
    if (notes.length && row.verdict === 'pass') row.detail = notes.join('; ');
    rows.push(row);
  };
  if (o.given) await attempt('given', o.given, []);
  let generated: WorstCase | undefined;
  try {
    generated = worstCaseInput(o.openapi);
  } catch (err) {
    rows.push(worstCaseRow({ source: 'generated', skipped: (err as Error).message }, o.timeoutSeconds));
    return { rows, runs };
  }
  if (!generated)
    rows.push(
      worstCaseRow(
        {
          source: 'generated',
          skipped:
            "the version has no OpenAPI schema yet (the operator reads it once a pod of it is Ready; or set the ModelVersion's spec.openapiSchema)",
        },
        o.timeoutSeconds,
      ),
    );
  else await attempt('generated', generated.input, generated.notes);
  return { rows, runs };
}
