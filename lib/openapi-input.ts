/**
 * Checks a prediction's input against the model's OpenAPI `Input` schema (what the Cog server
 * serves at /openapi.json), so that input the model server would reject with 422 is refused
 * at once, even while the prediction would otherwise wait in the local queue. The model
 * server stays the authority: its own 422 is mapped to the same shape.
 */

/** One entry of a 422 problem's `invalid_fields`. */
export interface InvalidField {
  /** `required`, `type`, `minimum`, `maximum`, `enum`, `minLength`, `maxLength`, `pattern`, `invalid` */
  type: string;
  /** Path of the field, `input.<name>`. */
  field: string;
  description: string;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type Schema = { [k: string]: unknown };

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The Input schema of an OpenAPI document, with `$ref`s to sibling components resolved. */
export function inputSchema(openapi: unknown): Schema | undefined {
  if (!isObject(openapi)) return undefined;
  const components = openapi.components;
  if (!isObject(components) || !isObject(components.schemas)) return undefined;
  const input = components.schemas.Input;
  return isObject(input) ? input : undefined;
}

function resolve(schema: Schema, all: Record<string, unknown>): Schema {
  let out: Schema = { ...schema };
  const ref = out.$ref;
  if (typeof ref === 'string' && ref.startsWith('#/components/schemas/')) {
    const target = all[ref.slice('#/components/schemas/'.length)];
    delete out.$ref;
    if (isObject(target)) out = { ...resolve(target, all), ...out };
  }
  if (Array.isArray(out.allOf)) {
    const parts = out.allOf.filter(isObject).map((p) => resolve(p, all));
    delete out.allOf;
    for (const p of parts) out = { ...p, ...out };
  }
  return out;
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'number') return Number.isInteger(v) ? 'integer' : 'number';
  return typeof v;
}

function matchesType(v: unknown, type: unknown): boolean {
  if (typeof type !== 'string') return true;
  const t = typeOf(v);
  if (type === 'number') return t === 'number' || t === 'integer';
  return t === type;
}

function checkValue(value: unknown, schema: Schema, field: string, out: InvalidField[]): void {
  if (value === null) {
    if (schema.nullable !== true && schema.type !== undefined) {
      out.push({ type: 'type', field, description: `${field} must not be null` });
    }
    return;
  }
  if (Array.isArray(schema.anyOf)) {
    const variants = schema.anyOf.filter(isObject);
    const ok = variants.some((variant) => {
      const errs: InvalidField[] = [];
      checkValue(value, variant, field, errs);
      return errs.length === 0;
    });
    if (!ok) out.push({ type: 'type', field, description: `${field} matches none of the allowed types` });
    return;
  }
  if (!matchesType(value, schema.type)) {
    out.push({ type: 'type', field, description: `${field} must be of type ${String(schema.type)}` });
    return;
  }
  if (Array.isArray(schema.enum) && !schema.enum.some((e) => e === value)) {
    const allowed = schema.enum.map((e) => JSON.stringify(e)).join(', ');
    out.push({ type: 'enum', field, description: `${field} must be one of ${allowed}` });
  }
  if (typeof value === 'number') {
    if (typeof schema.minimum === 'number' && value < schema.minimum) {
      out.push({ type: 'minimum', field, description: `${field} must be at least ${schema.minimum}` });
    }
    if (typeof schema.maximum === 'number' && value > schema.maximum) {
      out.push({ type: 'maximum', field, description: `${field} must be at most ${schema.maximum}` });
    }
  }
  if (typeof value === 'string') {
    const len = [...value].length;
    if (typeof schema.minLength === 'number' && len < schema.minLength) {
      out.push({
        type: 'minLength',
        field,
        description: `${field} must be at least ${schema.minLength} characters`,
      });
    }
    if (typeof schema.maxLength === 'number' && len > schema.maxLength) {
      out.push({
        type: 'maxLength',
        field,
        description: `${field} must be at most ${schema.maxLength} characters`,
      });
    }
    if (typeof schema.pattern === 'string') {
      let re: RegExp | undefined;
      try {
        re = new RegExp(schema.pattern, 'u');
      } catch {
        re = undefined; // a pattern JavaScript cannot compile is left to the model server
      }
      if (re && !re.test(value)) {
        out.push({ type: 'pattern', field, description: `${field} must match ${schema.pattern}` });
      }
    }
  }
  if (Array.isArray(value) && isObject(schema.items)) {
    const items = schema.items;
    value.forEach((item, i) => {
      checkValue(item, items, `${field}[${i}]`, out);
    });
  }
}

/**
 * Validates `input` against the `Input` schema of `openapi`. Returns the problems, or an empty
 * list. Unknown fields pass (the Cog server drops them).
 */
export function validateInput(input: unknown, openapi: unknown): InvalidField[] {
  const raw = inputSchema(openapi);
  if (!raw) return [];
  if (!isObject(input)) {
    return [{ type: 'type', field: 'input', description: 'input must be a JSON object' }];
  }
  const all = (openapi as { components: { schemas: Record<string, unknown> } }).components.schemas;
  const out: InvalidField[] = [];
  const required = Array.isArray(raw.required) ? raw.required.filter((r) => typeof r === 'string') : [];
  for (const name of required) {
    if (!(name in input))
      out.push({ type: 'required', field: `input.${name}`, description: `${name} is required` });
  }
  const props = isObject(raw.properties) ? raw.properties : {};
  for (const [name, value] of Object.entries(input)) {
    const prop = props[name];
    if (!isObject(prop)) continue;
    checkValue(value as Json, resolve(prop, all), `input.${name}`, out);
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
