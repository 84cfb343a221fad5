/**
 * The vocabulary the API's zod schemas are written in: functions that hang Kubernetes-only
 * facts (CEL rules, printer columns, list types, free-form subtrees, selectable fields) on a
 * zod schema through `.meta()`, and the field schemas the five kinds share.
 *
 * Everything travels in zod's metadata, so `z.toJSONSchema` carries it into the JSON Schema
 * and `structural.ts` turns it into what the API server reads. A CEL rule may also carry the
 * same check in TypeScript; it becomes a zod refinement, so parsing an object with these
 * schemas (admission, the operator, tests) agrees with the API server.
 */
import { z } from 'zod';

/** A CEL validation rule, as the API server reads it (`x-kubernetes-validations`). */
export interface CelRule {
  /** CEL expression; `self` is the value of the field the rule hangs on, `oldSelf` its stored value. */
  rule: string;
  /** What is wrong and what is allowed, naming the field. */
  message: string;
  /** Path of the offending field, relative to the node the rule hangs on (e.g. `.minInstances`). */
  fieldPath?: string;
  reason?: 'FieldValueInvalid' | 'FieldValueForbidden' | 'FieldValueRequired' | 'FieldValueDuplicate';
}

export interface Rule<T> extends CelRule {
  /**
   * The same rule in TypeScript. Omit it only for transition rules (those that read
   * `oldSelf`), which need the stored object.
   */
  check?: (value: T) => boolean;
}

/** A printer column for `kubectl get`, hung on the field it shows. */
export interface ColumnMeta {
  name: string;
  /** 0 shows in `kubectl get`, 1 and more only with `-o wide`. */
  priority?: number;
  /** Defaults to the field's description. */
  description?: string;
}

/** Keys this module writes into zod metadata, and so into the JSON Schema. */
export const META = {
  validations: 'x-kubernetes-validations',
  listType: 'x-kubernetes-list-type',
  listMapKeys: 'x-kubernetes-list-map-keys',
  preserveUnknownFields: 'x-kubernetes-preserve-unknown-fields',
  /** Private to the generator: becomes an additionalPrinterColumn, then is removed. */
  column: 'x-modelplane-column',
  /** Private to the generator: becomes a selectableField, then is removed. */
  selectable: 'x-modelplane-selectable',
} as const;

function zodPath(fieldPath: string | undefined): string[] {
  return fieldPath ? fieldPath.split('.').filter((p) => p !== '') : [];
}

/** Attaches CEL rules to a schema; rules with a `check` also become zod refinements. */
export function rules<S extends z.ZodType>(schema: S, ...list: Rule<z.output<S>>[]): S {
  let out = schema;
  for (const r of list) {
    const check = r.check;
    if (check)
      out = out.refine((v) => check(v as z.output<S>), { message: r.message, path: zodPath(r.fieldPath) });
  }
  const before = (out.meta()?.[META.validations] ?? []) as CelRule[];
  const added = list.map(({ rule, message, fieldPath, reason }) => ({
    rule,
    message,
    ...(fieldPath ? { fieldPath } : {}),
    ...(reason ? { reason } : {}),
  }));
  return out.meta({ [META.validations]: [...before, ...added] });
}

/** Shows the field as a `kubectl get` column. Columns appear in the order of the fields. */
export function column<S extends z.ZodType>(schema: S, meta: ColumnMeta): S {
  return schema.meta({ [META.column]: meta });
}

/** Makes the field usable in field selectors (`--field-selector spec.model=...`, watches). */
export function selectable<S extends z.ZodType>(schema: S): S {
  return schema.meta({ [META.selectable]: true });
}

/**
 * A list whose items are identified by the values of `keys` (merged by them in server-side
 * apply); the API server refuses two items with the same keys, and so does the refinement.
 */
export function mapList<S extends z.ZodArray>(schema: S, keys: string[]): S {
  const unique = schema.refine(
    (items) => {
      const seen = new Set(
        (items as Record<string, unknown>[]).map((i) => JSON.stringify(keys.map((k) => i[k]))),
      );
      return seen.size === (items as unknown[]).length;
    },
    { message: `items must be unique by ${keys.join(', ')}` },
  );
  return unique.meta({ [META.listType]: 'map', [META.listMapKeys]: keys });
}

/** A list of unique scalars. */
export function setList<S extends z.ZodArray>(schema: S): S {
  const unique = schema.refine((items) => new Set(items as unknown[]).size === (items as unknown[]).length, {
    message: 'items must be unique',
  });
  return unique.meta({ [META.listType]: 'set' });
}

/** A JSON object whose contents the API server keeps as they are (model inputs, schemas). */
export function freeFormObject() {
  return z.record(z.string(), z.unknown()).meta({ [META.preserveUnknownFields]: true });
}

/** Any JSON value, kept as it is (model outputs). */
export function anyValue() {
  return z.unknown().meta({ [META.preserveUnknownFields]: true });
}

// ---------------------------------------------------------------------------------------
// Patterns, written so that CEL (RE2) and JavaScript read them the same way.

export const PATTERN = {
  /** RFC 1123 label: names of objects modelplane turns into labels and child names. */
  dnsLabel: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  /** RFC 1123 subdomain: names of Secrets and ConfigMaps. */
  dnsSubdomain: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
  /** A label value (may be empty). */
  labelValue: '^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$',
  /** A qualified name (`nvidia.com/gpu`, label keys): optional DNS prefix, then a name. */
  qualifiedName:
    '^([a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$',
  /** A non-negative decimal number written as a string. */
  decimal: '^[0-9]+([.][0-9]+)?$',
  /** An environment variable name. */
  envName: '^[-._a-zA-Z][-._a-zA-Z0-9]*$',
  /** A container image reference: registry/path[:tag][@digest]. */
  image:
    '^[a-z0-9]([-a-z0-9._:/]*[a-z0-9])?(:[A-Za-z0-9_][-A-Za-z0-9_.]{0,127})?(@[a-z0-9]+:[a-f0-9]{32,})?$',
  /** A Kubernetes quantity (`500m`, `4`, `16Gi`, `1e3`). */
  quantity: '^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?[0-9]+))?$',
  /** A percentage (`25%`). */
  percent: '^[0-9]+%$',
  /** A 64-hex content id. */
  hex64: '^[0-9a-f]{64}$',
} as const;

const re = (p: string) => new RegExp(p);
const DNS_LABEL = re(PATTERN.dnsLabel);
const DNS_SUBDOMAIN = re(PATTERN.dnsSubdomain);
const LABEL_VALUE = re(PATTERN.labelValue);
const QUALIFIED_NAME = re(PATTERN.qualifiedName);
const DECIMAL = re(PATTERN.decimal);
const QUANTITY = re(PATTERN.quantity);
const PERCENT = re(PATTERN.percent);

export const DNS_LABEL_RULES =
  "lowercase letters, digits and '-', starting and ending with a letter or digit, at most 63 characters";

/** The name of an object of `kind` in the same namespace (or cluster-wide), as a DNS-1123 label. */
export function objectName(field: string, kind: string) {
  return rules(z.string().min(1).max(63), {
    rule: `self.matches('${PATTERN.dnsLabel}')`,
    message: `${field} must be the name of a ${kind}: ${DNS_LABEL_RULES}`,
    check: (v) => DNS_LABEL.test(v),
  });
}

/** The name of a Secret or ConfigMap (a DNS-1123 subdomain). */
export function subdomainName(field: string, kind: string) {
  return rules(z.string().min(1).max(253), {
    rule: `self.matches('${PATTERN.dnsSubdomain}')`,
    message: `${field} must be the name of a ${kind}: lowercase letters, digits, '-' and '.', at most 253 characters`,
    check: (v) => DNS_SUBDOMAIN.test(v),
  });
}

/** A label value: at most 63 characters, alphanumeric at both ends, `-_.` inside. */
export function labelValue(field: string) {
  return rules(z.string().max(63), {
    rule: `self.matches('${PATTERN.labelValue}')`,
    message: `${field} must be a valid label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit`,
    check: (v) => LABEL_VALUE.test(v),
  });
}

/** A qualified name such as `nvidia.com/gpu` (resource names, label keys). */
export function qualifiedName(field: string) {
  return rules(z.string().min(1).max(316), {
    rule: `self.matches('${PATTERN.qualifiedName}')`,
    message: `${field} must be a qualified name such as nvidia.com/gpu: an optional DNS prefix and '/', then letters, digits, '-', '_' or '.'`,
    check: (v) => QUALIFIED_NAME.test(v),
  });
}

/** A non-negative decimal number kept as a string, so no float rounding creeps into prices. */
export function decimalString(field: string, example: string) {
  return rules(z.string().min(1).max(32), {
    rule: `self.matches('${PATTERN.decimal}')`,
    message: `${field} must be a non-negative decimal number written as a string, such as "${example}"`,
    check: (v) => DECIMAL.test(v),
  });
}

/** A positive Kubernetes quantity (`500m`, `4`, `16Gi`). */
export function quantity(field: string, examples: string) {
  return rules(z.string().min(1).max(64), {
    rule: "isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))",
    message: `${field} must be a positive Kubernetes quantity such as ${examples}`,
    check: (v) => QUANTITY.test(v) && Number.parseFloat(v.replace(/^[+]/, '')) > 0,
  });
}

function isHttpUrl(v: string): boolean {
  if (!URL.canParse(v)) return false;
  const u = new URL(v);
  return (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '';
}

/** An absolute http(s) URL. */
export function httpUrl(field: string) {
  return rules(z.string().min(1).max(2048), {
    rule: "isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''",
    message: `${field} must be an absolute http:// or https:// URL`,
    check: isHttpUrl,
  });
}

/** A number of instances, or a percentage of them (`1`, `25%`), as rolling updates take it. */
export function intOrPercent(field: string) {
  return rules(z.union([z.int32().min(0), z.string().max(8)]), {
    rule: `type(self) == int || self.matches('${PATTERN.percent}')`,
    message: `${field} must be a whole number of instances or a percentage such as "25%"`,
    check: (v) => typeof v === 'number' || PERCENT.test(v),
  });
}

export const RFC3339 = () => z.iso.datetime();

// ---------------------------------------------------------------------------------------
// Shapes every kind shares.

/** metav1.Condition. */
export const ConditionSchema = z
  .object({
    type: z
      .string()
      .min(1)
      .max(316)
      .regex(re(PATTERN.qualifiedName))
      .describe('Type of the condition in CamelCase: Ready, Available, Progressing or Degraded.'),
    status: z.enum(['True', 'False', 'Unknown']).describe('Status of the condition: True, False or Unknown.'),
    observedGeneration: z
      .int()
      .min(0)
      .optional()
      .describe('The .metadata.generation the condition was set from.'),
    lastTransitionTime: RFC3339().describe('When the condition last changed from one status to another.'),
    reason: z
      .string()
      .min(1)
      .max(1024)
      .regex(/^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$/)
      .describe("A CamelCase word for the condition's last transition, for programs to match on."),
    message: z
      .string()
      .max(32768)
      .describe('What happened and, when something is wrong, what to do about it.'),
  })
  .describe('A condition in the metav1.Condition shape.');
export type Condition = z.output<typeof ConditionSchema>;

export function conditions(kind: string) {
  return mapList(z.array(ConditionSchema), ['type']).describe(
    `The latest observations of the ${kind}'s state, one per type (Ready is the summary).`,
  );
}

export function observedGeneration() {
  return z
    .int()
    .min(0)
    .describe(
      'The .metadata.generation the status was computed from; behind .metadata.generation while a change is pending.',
    );
}

/**
 * Object metadata as the API server returns it. The CRD declares `metadata` as a plain
 * object (the API server validates it); this schema only types it for TypeScript.
 */
export const ObjectMetaSchema = z
  .looseObject({
    name: z.string().optional(),
    generateName: z.string().optional(),
    namespace: z.string().optional(),
    uid: z.string().optional(),
    resourceVersion: z.string().optional(),
    generation: z.int().optional(),
    creationTimestamp: z.union([z.string(), z.date()]).optional(),
    deletionTimestamp: z.union([z.string(), z.date()]).optional(),
    labels: z.record(z.string(), z.string()).optional(),
    annotations: z.record(z.string(), z.string()).optional(),
    finalizers: z.array(z.string()).optional(),
    ownerReferences: z.array(z.looseObject({})).optional(),
  })
  .describe('Standard object metadata: name, namespace, labels, annotations.');
export type ObjectMeta = z.output<typeof ObjectMetaSchema>;

/**
 * Metadata of a kind whose name becomes a label value and the name of child objects: the
 * name must be a DNS-1123 label. The CRD keeps this schema for metadata.name (the only part
 * of metadata a CRD may constrain besides generateName).
 */
export function labelNamedMetadata(kind: string) {
  return ObjectMetaSchema.extend({
    name: rules(z.string().max(63), {
      rule: `self.matches('${PATTERN.dnsLabel}')`,
      message: `metadata.name of a ${kind} must be a DNS-1123 label: ${DNS_LABEL_RULES}`,
      check: (v) => DNS_LABEL.test(v),
    })
      .optional()
      .describe(`Name of the ${kind}, a DNS-1123 label.`),
  });
}
