/**
 * Checks a prediction's input against the model's OpenAPI `Input` schema (what the Cog server
 * serves at /openapi.json), so that input the model server would reject with 422 is refused
 * at once, even while the prediction would otherwise wait in the local queue. The model
 * server stays the authority: its own 422 is mapped to the same shape.
 *
 * The check is ajv's, compiled once per OpenAPI document and cached: by the document object
 * (a WeakMap, so a version's schema held by a cache costs one lookup per prediction), and by
 * a hash of its JSON text in a bounded LRU (a new object with the same schema, as a watch
 * update gives, reuses the compiled one). What the check keeps from the model server's ways:
 * unknown fields pass (Cog drops them), defaults are not filled in (the model server does),
 * formats are not checked (Cog's `uri` inputs take data URIs and Cog's own formats such as
 * `password` are not JSON Schema's), Cog's own keywords (`x-order`, `x-cog-*`) are ignored,
 * and OpenAPI 3.0's `nullable` and boolean `exclusiveMinimum`/`exclusiveMaximum` are read as
 * OpenAPI means them. A schema ajv cannot compile is not checked here at all.
 */
import { createHash } from 'node:crypto';
import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import type { RegExpEngine } from 'ajv/dist/types/index.js';
import { RE2JS } from 're2js';

/** One entry of a 422 problem's `invalid_fields`. */
export interface InvalidField {
  /**
   * The JSON Schema keyword that failed: `required`, `type`, `enum`, `const`, `minimum`,
   * `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `minLength`, `maxLength`,
   * `pattern`, `minItems`, `maxItems`, `uniqueItems`, `anyOf`/`oneOf` (reported as `type`), …;
   * `invalid` for a model server's own 422.
   */
  type: string;
  /** Path of the field: `input.<name>`, `input.<name>[<index>]`, `input.<name>.<key>`. */
  field: string;
  /** Names the field, e.g. `input.repeat must be at least 1`. */
  description: string;
}

type Schema = { [k: string]: unknown };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The Input schema of an OpenAPI document, as written (its `$ref`s not resolved). */
export function inputSchema(openapi: unknown): Schema | undefined {
  if (!isObject(openapi)) return undefined;
  const components = openapi.components;
  if (!isObject(components) || !isObject(components.schemas)) return undefined;
  const input = components.schemas.Input;
  return isObject(input) ? input : undefined;
}

/** Checks one input (a JSON object) against a compiled Input schema. */
export type InputCheck = (input: Record<string, unknown>) => InvalidField[];

/**
 * Schema `pattern`s are the model author's, run on callers' inputs of up to the body limit:
 * they run on RE2 (re2js, linear time in the input whatever the pattern), never on the
 * backtracking RegExp of the shared event loop. A pattern RE2 cannot compile (lookaround,
 * backreferences) is left to the model server: here it matches everything.
 */
const linearRegExp: RegExpEngine = Object.assign(
  (pattern: string, flags: string) => {
    let f = 0;
    if (flags.includes('i')) f |= RE2JS.CASE_INSENSITIVE;
    if (flags.includes('m')) f |= RE2JS.MULTILINE;
    if (flags.includes('s')) f |= RE2JS.DOTALL;
    try {
      const re = RE2JS.compile(pattern, f);
      return { test: (input: string) => re.test(input) };
    } catch {
      return { test: () => true };
    }
  },
  { code: 'linearRegExp' },
);

const ajv = new Ajv({
  strict: false, // Cog's x-order, x-cog-*, OpenAPI's title/description/example…
  allErrors: true,
  validateFormats: false,
  useDefaults: false,
  addUsedSchema: false, // a schema's $id never clashes with another version's
  code: { regExp: linearRegExp },
});

const SCHEMA_MAPS = new Set(['properties', 'patternProperties', 'definitions', '$defs', 'dependentSchemas']);
const SCHEMA_LISTS = new Set(['allOf', 'anyOf', 'oneOf', 'prefixItems']);
const SCHEMA_ONE = new Set([
  'items',
  'additionalItems',
  'additionalProperties',
  'unevaluatedItems',
  'unevaluatedProperties',
  'not',
  'if',
  'then',
  'else',
  'contains',
  'propertyNames',
]);

function mapValues(v: unknown, f: (x: unknown) => unknown): unknown {
  return isObject(v) ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, f(x)])) : v;
}

/**
 * One OpenAPI 3.0 schema as the JSON Schema ajv reads: `nullable: true` beside `type` is
 * ajv's own keyword; without a `type` beside it, null passes and other values meet the rest;
 * boolean `exclusiveMinimum`/`exclusiveMaximum` move onto `minimum`/`maximum`.
 */
function toJsonSchema(node: unknown): unknown {
  if (!isObject(node)) return node;
  const out: Schema = {};
  for (const [k, v] of Object.entries(node)) {
    if (SCHEMA_MAPS.has(k)) out[k] = mapValues(v, toJsonSchema);
    else if (SCHEMA_LISTS.has(k) && Array.isArray(v)) out[k] = v.map(toJsonSchema);
    else if (SCHEMA_ONE.has(k)) out[k] = Array.isArray(v) ? v.map(toJsonSchema) : toJsonSchema(v);
    else out[k] = v;
  }
  for (const [flag, bound] of [
    ['exclusiveMinimum', 'minimum'],
    ['exclusiveMaximum', 'maximum'],
  ] as const) {
    if (typeof out[flag] !== 'boolean') continue;
    if (out[flag] && typeof out[bound] === 'number') {
      out[flag] = out[bound];
      delete out[bound];
    } else delete out[flag];
  }
  if ('nullable' in out && out.type === undefined) {
    const nullable = out.nullable === true;
    delete out.nullable;
    if (nullable) return { if: { type: 'null' }, else: out };
  }
  return out;
}

interface Compiled {
  check: InputCheck | undefined;
  /** What ajv compiled (ajv caches it by this object until removed). */
  root: object | undefined;
}

const byDocument = new WeakMap<object, Compiled>();
const byHash = new Map<string, Compiled>();
/** How many distinct schemas stay compiled beyond the documents still referenced. */
export const INPUT_CACHE_SIZE = 256;
let compilations = 0;

function compile(openapi: Record<string, unknown>): Compiled {
  const input = inputSchema(openapi);
  if (!input) return { check: undefined, root: undefined };
  const schemas = (openapi.components as { schemas: Record<string, unknown> }).schemas;
  // Unknown fields pass, as the Cog server drops them.
  const top = { ...input };
  delete top.additionalProperties;
  delete top.unevaluatedProperties;
  const root = {
    $ref: '#/components/schemas/Input',
    components: { schemas: mapValues({ ...schemas, Input: top }, toJsonSchema) },
  };
  let validate: ValidateFunction;
  try {
    validate = ajv.compile(root);
  } catch {
    ajv.removeSchema(root);
    return { check: undefined, root: undefined };
  }
  compilations++;
  return { check: (value) => (validate(value) ? [] : toInvalidFields(validate.errors ?? [], value)), root };
}

/**
 * The compiled check of `openapi`'s Input schema, from the cache when this document (or one
 * with the same JSON) was compiled before; undefined when it has no Input schema or ajv
 * cannot compile it (then nothing is checked here).
 */
export function inputCheck(openapi: unknown): InputCheck | undefined {
  if (!isObject(openapi)) return undefined;
  const known = byDocument.get(openapi);
  if (known) return known.check;
  const key = createHash('sha256').update(JSON.stringify(openapi)).digest('base64url');
  let compiled = byHash.get(key);
  if (compiled) byHash.delete(key);
  else compiled = compile(openapi);
  byHash.set(key, compiled);
  while (byHash.size > INPUT_CACHE_SIZE) {
    const [oldest, entry] = byHash.entries().next().value as [string, Compiled];
    byHash.delete(oldest);
    if (entry.root) ajv.removeSchema(entry.root);
  }
  byDocument.set(openapi, compiled);
  return compiled.check;
}

/** How many schemas have been compiled since the process started (for tests and metrics). */
export function inputCompilations(): number {
  return compilations;
}

/**
 * Validates `input` against the `Input` schema of `openapi`. Returns the problems, or an empty
 * list. Unknown fields pass (the Cog server drops them); no schema, nothing checked.
 */
export function validateInput(input: unknown, openapi: unknown): InvalidField[] {
  const check = inputCheck(openapi);
  if (!check) return [];
  if (!isObject(input)) {
    return [{ type: 'type', field: 'input', description: 'input must be a JSON object' }];
  }
  return check(input);
}

/** `/tags/1` in `input` → `input.tags[1]`. */
function fieldOf(pointer: string, input: unknown): string {
  let field = 'input';
  let at: unknown = input;
  if (!pointer) return field;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    field += Array.isArray(at) ? `[${key}]` : `.${key}`;
    at = isObject(at) || Array.isArray(at) ? (at as Record<string, unknown>)[key] : undefined;
  }
  return field;
}

function valueAt(pointer: string, input: unknown): unknown {
  let at: unknown = input;
  if (!pointer) return at;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    at = isObject(at) || Array.isArray(at) ? (at as Record<string, unknown>)[key] : undefined;
  }
  return at;
}

function describe(e: ErrorObject, field: string, value: unknown): InvalidField | undefined {
  const p = e.params as Record<string, unknown>;
  const say = (type: string, text: string): InvalidField => ({
    type,
    field,
    description: `${field} ${text}`,
  });
  switch (e.keyword) {
    case 'required': {
      const name = String(p.missingProperty);
      // A top-level field is named bare, as the model's own docs name it.
      const description = field === 'input' ? `${name} is required` : `${field}.${name} is required`;
      return { type: 'required', field: `${field}.${name}`, description };
    }
    case 'type':
      return value === null ? say('type', 'must not be null') : say('type', `must be of type ${p.type}`);
    case 'anyOf':
    case 'oneOf':
      if (Array.isArray(p.passingSchemas)) return say('type', 'matches more than one of the allowed types');
      return say('type', 'matches none of the allowed types');
    case 'enum':
      return say(
        'enum',
        `must be one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      );
    case 'const':
      return say('const', `must be ${JSON.stringify(p.allowedValue)}`);
    case 'minimum':
      return say('minimum', `must be at least ${p.limit}`);
    case 'maximum':
      return say('maximum', `must be at most ${p.limit}`);
    case 'exclusiveMinimum':
      return say('exclusiveMinimum', `must be greater than ${p.limit}`);
    case 'exclusiveMaximum':
      return say('exclusiveMaximum', `must be less than ${p.limit}`);
    case 'multipleOf':
      return say('multipleOf', `must be a multiple of ${p.multipleOf}`);
    case 'minLength':
      return say('minLength', `must be at least ${p.limit} characters`);
    case 'maxLength':
      return say('maxLength', `must be at most ${p.limit} characters`);
    case 'pattern':
      return say('pattern', `must match ${p.pattern}`);
    case 'minItems':
      return say('minItems', `must have at least ${p.limit} items`);
    case 'maxItems':
      return say('maxItems', `must have at most ${p.limit} items`);
    case 'uniqueItems':
      return say('uniqueItems', `must not repeat an item (items ${p.j} and ${p.i} are equal)`);
    case 'additionalProperties':
      return say('additionalProperties', `must not have the field ${JSON.stringify(p.additionalProperty)}`);
    case 'if':
      return undefined; // the failing branch reports itself
    default:
      return say(e.keyword, e.message ?? 'is invalid');
  }
}

/**
 * ajv's errors as `invalid_fields`: a failed anyOf/oneOf stands for what its branches said, a
 * wrong type for anything else said of the same value; required fields first, then in the
 * order of the input's fields.
 */
function toInvalidFields(errors: readonly ErrorObject[], input: Record<string, unknown>): InvalidField[] {
  const alternatives = errors
    .filter((e) => e.keyword === 'anyOf' || e.keyword === 'oneOf')
    .map((e) => e.instancePath);
  const under = (path: string, base: string) => path === base || path.startsWith(`${base}/`);
  const outcomes = errors.filter((e) => {
    const isAlternative = e.keyword === 'anyOf' || e.keyword === 'oneOf';
    if (!isAlternative) return !alternatives.some((a) => under(e.instancePath, a));
    return !alternatives.some((a) => a !== e.instancePath && under(e.instancePath, a));
  });
  const wrongType = new Set(outcomes.filter((e) => e.keyword === 'type').map((e) => e.instancePath));
  const kept = outcomes.filter((e) => e.keyword === 'type' || !wrongType.has(e.instancePath));
  const order = Object.keys(input);
  const rank = (e: ErrorObject) => {
    if (e.keyword === 'required' && e.instancePath === '') return -1;
    const top = (e.instancePath.split('/')[1] ?? '').replace(/~1/g, '/').replace(/~0/g, '~');
    const i = order.indexOf(top);
    return i < 0 ? order.length : i;
  };
  const seen = new Set<string>();
  const out: InvalidField[] = [];
  for (const e of kept.map((e, i) => ({ e, i })).sort((a, b) => rank(a.e) - rank(b.e) || a.i - b.i)) {
    const f = describe(e.e, fieldOf(e.e.instancePath, input), valueAt(e.e.instancePath, input));
    if (!f) continue;
    const key = `${f.type}\0${f.field}\0${f.description}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(f);
  }
  return out;
}

/** Maps the Cog server's 422 body (`detail: [{loc, msg, type}]`) to `invalid_fields`. */
export function fromCogDetail(body: unknown): InvalidField[] {
  const detail = isObject(body) && Array.isArray(body.detail) ? body.detail : [];
  const out: InvalidField[] = [];
  for (const d of detail) {
    if (!isObject(d)) continue;
    const loc = Array.isArray(d.loc) ? d.loc.map(String) : [];
    const path = loc[0] === 'body' ? loc.slice(1) : loc;
    const field = path.length ? path.join('.') : 'input';
    const cogType = typeof d.type === 'string' ? d.type : '';
    const type = cogType === 'value_error.missing' ? 'required' : 'invalid';
    const msg = typeof d.msg === 'string' ? d.msg : 'invalid value';
    out.push({ type, field, description: `${field}: ${msg}` });
  }
  if (out.length === 0)
    out.push({ type: 'invalid', field: 'input', description: 'the model server rejected the input' });
  return out;
}
