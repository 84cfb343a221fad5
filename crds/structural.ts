/**
 * Turns the JSON Schema zod writes (`z.toJSONSchema`, OpenAPI 3.0 target, input side) into a
 * structural schema the Kubernetes API server accepts for a CRD, and collects the printer
 * columns and selectable fields hung on fields with `column()` and `selectable()`.
 *
 * What it does, node by node:
 * - objects with `properties` lose `additionalProperties` (zod writes `false`); maps keep
 *   `additionalProperties: <schema>`; free-form objects keep only
 *   `x-kubernetes-preserve-unknown-fields` and drop zod's key schema (`propertyNames`);
 * - `anyOf: [integer, string]` becomes `x-kubernetes-int-or-string: true`;
 * - integers get `format: int32` or `int64` in place of zod's range-of-the-type bounds;
 * - `date-time` strings lose zod's regular expression (the API server checks the format);
 * - `const` becomes a one-value `enum`;
 * - `$schema` goes; `$ref`, `$defs`, other combinators and any keyword the API server does not
 *   know are errors, as are fields without a type or without a description.
 */
import { META } from './schema.ts';

export type JsonSchema = { [key: string]: unknown };

export interface PrinterColumn {
  name: string;
  type: 'string' | 'integer' | 'number' | 'boolean' | 'date';
  jsonPath: string;
  description?: string;
  priority?: number;
  format?: string;
}

export interface SelectableField {
  jsonPath: string;
}

export interface StructuralResult {
  schema: JsonSchema;
  printerColumns: PrinterColumn[];
  selectableFields: SelectableField[];
}

/** Keywords of apiextensions.k8s.io/v1 JSONSchemaProps that the generated schemas may use. */
const ALLOWED = new Set([
  'type',
  'format',
  'description',
  'title',
  'default',
  'enum',
  'nullable',
  'properties',
  'required',
  'items',
  'additionalProperties',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'example',
  'x-kubernetes-validations',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-int-or-string',
  'x-kubernetes-embedded-resource',
]);

/** The order keys are written in, so the YAML reads top-down. */
const ORDER = [
  'description',
  'type',
  'format',
  'enum',
  'default',
  'nullable',
  'minimum',
  'exclusiveMinimum',
  'maximum',
  'exclusiveMaximum',
  'multipleOf',
  'minLength',
  'maxLength',
  'pattern',
  'minItems',
  'maxItems',
  'minProperties',
  'maxProperties',
  'x-kubernetes-int-or-string',
  'x-kubernetes-preserve-unknown-fields',
  'x-kubernetes-list-type',
  'x-kubernetes-list-map-keys',
  'x-kubernetes-map-type',
  'required',
  'properties',
  'additionalProperties',
  'items',
  'x-kubernetes-validations',
];

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

export class StructuralError extends Error {
  override name = 'StructuralError';
}

function isObject(v: unknown): v is JsonSchema {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function where(path: string[]): string {
  return path.length === 0 ? '(root)' : `.${path.join('.')}`;
}

/**
 * Post-processes one zod JSON Schema. `path` names where `json` sits in the object (for
 * printer column and selectable field paths, and error messages).
 */
export function toStructural(json: JsonSchema, path: string[] = []): StructuralResult {
  const printerColumns: PrinterColumn[] = [];
  const selectableFields: SelectableField[] = [];
  const schema = walk(structuredClone(json), path, { printerColumns, selectableFields, inArray: false });
  return { schema, printerColumns, selectableFields };
}

interface Ctx {
  printerColumns: PrinterColumn[];
  selectableFields: SelectableField[];
  inArray: boolean;
}

function walk(node: JsonSchema, path: string[], ctx: Ctx): JsonSchema {
  const at = where(path);
  delete node.$schema;
  delete node.id;
  for (const banned of ['$ref', '$defs', 'definitions', 'allOf', 'oneOf', 'not', 'patternProperties']) {
    if (banned in node)
      throw new StructuralError(`${at}: "${banned}" cannot be expressed in a structural schema`);
  }

  if ('const' in node) {
    node.enum = [node.const];
    delete node.const;
  }

  if ('anyOf' in node) {
    const branches = node.anyOf as JsonSchema[];
    const types = branches.map((b) => b.type).sort();
    if (branches.length !== 2 || types[0] !== 'integer' || types[1] !== 'string') {
      throw new StructuralError(
        `${at}: a union other than integer-or-string cannot be expressed in a structural schema`,
      );
    }
    delete node.anyOf;
    delete node.type;
    node['x-kubernetes-int-or-string'] = true;
  }

  const column = node[META.column] as { name: string; priority?: number; description?: string } | undefined;
  delete node[META.column];
  const isSelectable = node[META.selectable] === true;
  delete node[META.selectable];

  const free = node[META.preserveUnknownFields] === true;
  const type = node.type;

  if (type === 'integer') {
    const min = node.minimum as number | undefined;
    const max = node.maximum as number | undefined;
    const int32 = min !== undefined && min >= INT32_MIN && max !== undefined && max <= INT32_MAX;
    node.format = int32 ? 'int32' : 'int64';
    if (min === INT32_MIN || min === Number.MIN_SAFE_INTEGER) delete node.minimum;
    if (max === INT32_MAX || max === Number.MAX_SAFE_INTEGER) delete node.maximum;
  }

  if (type === 'string' && node.format === 'date-time') delete node.pattern;
  if (Array.isArray(node.required) && node.required.length === 0) delete node.required;

  // kubectl explain prints descriptions, not defaults: say the default in the description.
  const dflt = node.default;
  const description = node.description;
  if (
    typeof description === 'string' &&
    ['string', 'number', 'boolean'].includes(typeof dflt) &&
    !/\bdefault/i.test(description)
  ) {
    node.description = `${description.replace(/\s+$/, '')} Default: ${String(dflt)}.`;
  }

  if (type === 'object' || free) {
    if (free) {
      delete node.additionalProperties;
      delete node.propertyNames;
    } else {
      const keys = node.propertyNames as JsonSchema | undefined;
      if (keys && Object.keys(keys).some((k) => k !== 'type')) {
        throw new StructuralError(
          `${at}: constraints on map keys cannot be expressed in a structural schema`,
        );
      }
      delete node.propertyNames;
      if (node.properties !== undefined || node.additionalProperties === false) {
        delete node.additionalProperties;
      }
    }
  }

  for (const key of Object.keys(node)) {
    if (!ALLOWED.has(key))
      throw new StructuralError(`${at}: "${key}" is not a keyword the API server accepts`);
  }

  if (node.type === undefined && !free && node['x-kubernetes-int-or-string'] !== true) {
    throw new StructuralError(`${at}: every field needs a type (or a free-form marker)`);
  }

  if (isObject(node.properties)) {
    const props = node.properties;
    for (const [name, child] of Object.entries(props)) {
      if (!isObject(child)) throw new StructuralError(`${at}.${name}: not a schema`);
      if (typeof child.description !== 'string' || child.description.trim() === '') {
        throw new StructuralError(`${where([...path, name])}: every field needs a description (.describe())`);
      }
      props[name] = walk(child, [...path, name], ctx);
    }
  }
  if (isObject(node.additionalProperties)) {
    node.additionalProperties = walk(node.additionalProperties, [...path, '*'], { ...ctx, inArray: true });
  }
  if (isObject(node.items)) {
    node.items = walk(node.items, [...path, '[]'], { ...ctx, inArray: true });
  }

  if (column || isSelectable) {
    if (ctx.inArray)
      throw new StructuralError(`${at}: a column or selectable field cannot sit inside a list or map`);
    const jsonPath = `.${path.join('.')}`;
    if (column) {
      ctx.printerColumns.push({
        name: column.name,
        type: columnType(node, at),
        jsonPath,
        description: column.description ?? (node.description as string | undefined),
        ...(column.priority ? { priority: column.priority } : {}),
      });
    }
    if (isSelectable) {
      if (!['string', 'integer', 'boolean'].includes(node.type as string)) {
        throw new StructuralError(`${at}: only string, integer and boolean fields can be selectable`);
      }
      ctx.selectableFields.push({ jsonPath });
    }
  }

  return ordered(node);
}

function columnType(node: JsonSchema, at: string): PrinterColumn['type'] {
  if (node.format === 'date-time') return 'date';
  switch (node.type) {
    case 'string':
    case 'integer':
    case 'number':
    case 'boolean':
      return node.type;
    case 'array':
      return 'string';
    default:
      throw new StructuralError(`${at}: a printer column must show a scalar or a list of scalars`);
  }
}

function ordered(node: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  for (const k of ORDER) if (k in node) out[k] = node[k];
  for (const k of Object.keys(node).sort()) if (!(k in out)) out[k] = node[k];
  return out;
}
