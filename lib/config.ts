/**
 * Settings from command-line flags and environment variables, declared once per setting:
 * its flag, its variables, how its text is read, its default, its checks and its --help
 * text. The operator and the sidecar read their settings with it.
 *
 *   const OPTIONS = {
 *     workers: option({ flag: 'workers', env: 'MY_WORKERS', type: 'int', min: 1, default: 4,
 *                       meta: 'N', help: 'concurrent workers (MY_WORKERS; default 4)' }),
 *   };
 *   const values = parseOptions(OPTIONS, argv, process.env); // 'help', or { workers: number }
 *
 * A flag wins over its variables, the first variable set wins over the next, and an empty
 * value counts as not set. Flags are read by node's `util.parseArgs` (`--flag value` and
 * `--flag=value`); `-h`/`--help` is always known. A bad value is a ConfigError that names
 * the flag, and the variable when the value came from one.
 */
import { parseArgs } from 'node:util';

export class ConfigError extends Error {}

/** How a setting's text is read. `duration` is seconds (a decimal) read as milliseconds. */
export type OptionType = 'string' | 'int' | 'number' | 'bool' | 'duration' | 'list';

interface TypeOf {
  string: string;
  int: number;
  number: number;
  bool: boolean;
  duration: number;
  list: string[];
}

interface Common<T> {
  /** The flag, without dashes (`lease-duration`); leave out for a setting only a variable sets. */
  flag?: string;
  /** The environment variables read when the flag is absent, in order. */
  env?: string | readonly string[];
  /** The value when neither the flag nor a variable is set. */
  default?: T | (() => T);
  /** A further check of the value read: what is wrong with it, or undefined. */
  check?: (value: T) => string | undefined;
  /** Stands for the value in --help: `SECONDS`, `HOST:PORT`. */
  meta?: string;
  /**
   * The --help text, with its own line breaks. Text that begins with a line break starts
   * on the line below the flag.
   */
  help: string;
}

/** A setting read by one of the built-in types. */
export interface TypedSpec<K extends OptionType> extends Common<TypeOf[K]> {
  type?: K;
  parse?: never;
  /** Least value of an int, number or duration (in seconds for a duration). */
  min?: number;
  /** Greatest value of an int, number or duration (in seconds for a duration). */
  max?: number;
  /** The values a string (or each item of a list) may take. */
  oneOf?: readonly string[];
}

/** A setting read by its own function. */
export interface ParsedSpec<T> extends Common<T> {
  /** Reads the text; throws an Error whose message says what is wrong (`want HOST:PORT, got "x"`). */
  parse: (raw: string) => T;
  type?: never;
}

const UNITS: Record<string, number> = { '': 1, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };

/** A size in bytes: a whole number, optionally with Ki, Mi, Gi or Ti (`256Mi`), as Kubernetes writes them. */
export function parseBytes(raw: string): number {
  const m = /^(\d+)(Ki|Mi|Gi|Ti)?$/.exec(raw.trim());
  if (!m) throw new Error(`want a size in bytes such as 268435456 or 256Mi, got "${raw}"`);
  const n = Number(m[1]) * (UNITS[m[2] ?? ''] ?? 1);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`want a size of at least 1 byte, got "${raw}"`);
  return n;
}

/** A declared setting: make one with `option`. */
export class Option<T> {
  readonly flag: string | undefined;
  readonly env: readonly string[];
  readonly meta: string | undefined;
  readonly help: string;
  readonly #read: (raw: string) => T;
  readonly #default: T | (() => T) | undefined;

  constructor(spec: Common<T>, read: (raw: string) => T) {
    if (spec.flag === undefined && spec.env === undefined)
      throw new Error('an option needs a flag or an environment variable');
    this.flag = spec.flag;
    this.env = typeof spec.env === 'string' ? [spec.env] : [...(spec.env ?? [])];
    this.meta = spec.meta;
    this.help = spec.help;
    const check = spec.check;
    this.#read = (raw) => {
      const value = read(raw);
      const problem = check?.(value);
      if (problem !== undefined) throw new Error(problem);
      return value;
    };
    this.#default = spec.default;
  }

  /** How messages name the setting: `--flag`, or its variable when it has no flag. */
  get name(): string {
    return this.flag === undefined ? this.env[0]! : `--${this.flag}`;
  }

  /** The value of `raw`; throws an Error saying what is wrong with it. */
  read(raw: string): T {
    return this.#read(raw);
  }

  /** The value when nothing sets the setting. */
  defaultValue(): T {
    const d = this.#default;
    return (typeof d === 'function' ? (d as () => T)() : d) as T;
  }
}

function range(what: string, min: number | undefined, max: number | undefined): string {
  if (min !== undefined && max !== undefined) return `${what} from ${min} to ${max}`;
  if (min !== undefined) return `${what} >= ${min}`;
  if (max !== undefined) return `${what} <= ${max}`;
  return what;
}

function reader<K extends OptionType>(spec: TypedSpec<K>): (raw: string) => TypeOf[K] {
  const { min, max, oneOf } = spec;
  const numeric = (what: string, ok: (v: number) => boolean) => (raw: string) => {
    const v = Number(raw);
    if (!ok(v) || (min !== undefined && v < min) || (max !== undefined && v > max))
      throw new Error(`want ${range(what, min, max)}, got "${raw}"`);
    return v;
  };
  const read: { [T in OptionType]: (raw: string) => TypeOf[T] } = {
    string: (raw) => {
      if (oneOf && !oneOf.includes(raw)) throw new Error(`want one of ${oneOf.join(', ')}, got "${raw}"`);
      return raw;
    },
    int: numeric('a whole number', Number.isInteger),
    number: numeric('a number', Number.isFinite),
    duration: (raw) => Math.round(numeric('a number of seconds', Number.isFinite)(raw) * 1000),
    bool: (raw) => {
      if (/^(1|true|yes|on)$/i.test(raw)) return true;
      if (/^(0|false|no|off)$/i.test(raw)) return false;
      throw new Error(`want true or false, got "${raw}"`);
    },
    list: (raw) => {
      const items = raw
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
      const bad = oneOf && items.find((i) => !oneOf.includes(i));
      if (bad !== undefined) throw new Error(`want some of ${oneOf!.join(', ')}, got "${bad}"`);
      return items;
    },
  };
  return read[spec.type ?? ('string' as K)];
}

/**
 * Declares a setting. Without a default its value is undefined when nothing sets it (an
 * empty list for the list type).
 */
export function option<K extends OptionType = 'string'>(
  spec: TypedSpec<K> & { default: TypeOf[K] | (() => TypeOf[K]) },
): Option<TypeOf[K]>;
export function option<K extends OptionType = 'string'>(
  spec: TypedSpec<K>,
): Option<K extends 'list' ? string[] : TypeOf[K] | undefined>;
export function option<T>(spec: ParsedSpec<T> & { default: T | (() => T) }): Option<T>;
export function option<T>(spec: ParsedSpec<T>): Option<T | undefined>;
export function option(spec: TypedSpec<OptionType> | ParsedSpec<unknown>): Option<unknown> {
  const read = spec.parse ?? reader(spec as TypedSpec<OptionType>);
  // The list type's default is empty rather than undefined.
  const fallback = spec.default ?? (spec.type === 'list' ? () => [] : undefined);
  return new Option<unknown>({ ...spec, default: fallback } as Common<unknown>, read);
}

export type Options = Record<string, Option<unknown>>;
export type Values<O extends Options> = { [K in keyof O]: O[K] extends Option<infer T> ? T : never };

/**
 * Reads `options` from `argv` (flags only, no positional arguments) and `env`. Returns
 * `'help'` when -h or --help is given, whatever else is; throws ConfigError on an unknown
 * flag or a bad value.
 */
export function parseOptions<O extends Options>(
  options: O,
  argv: readonly string[],
  env: Record<string, string | undefined>,
): Values<O> | 'help' {
  const flags: Record<string, { type: 'string' } | { type: 'boolean'; short: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const o of Object.values(options)) {
    if (o.flag === undefined) continue;
    if (o.flag in flags) throw new Error(`--${o.flag} is declared twice`);
    flags[o.flag] = { type: 'string' };
  }
  let given: Record<string, string | boolean | undefined>;
  try {
    ({ values: given } = parseArgs({
      args: [...argv],
      options: flags,
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    throw new ConfigError((err as Error).message);
  }
  if (given.help === true) return 'help';
  const values: Record<string, unknown> = {};
  for (const [key, o] of Object.entries(options)) {
    const flagValue = o.flag === undefined ? undefined : given[o.flag];
    let raw = typeof flagValue === 'string' && flagValue !== '' ? flagValue : undefined;
    let from: string | undefined;
    if (raw === undefined) {
      from = o.env.find((e) => env[e] !== undefined && env[e] !== '');
      raw = from === undefined ? undefined : env[from];
    }
    if (raw === undefined) {
      values[key] = o.defaultValue();
      continue;
    }
    try {
      values[key] = o.read(raw);
    } catch (err) {
      throw new ConfigError(`${o.name}: ${(err as Error).message}${from ? ` (from ${from})` : ''}`);
    }
  }
  return values as Values<O>;
}

/** A --help line that is no setting of its own, such as `-h, --help`. */
export interface HelpRow {
  label: string;
  help: string;
}

/**
 * The --help lines of `rows`: each flag (with its placeholder) or variable, and its text
 * from `column` on; a label that reaches the column is followed by two spaces.
 */
export function formatOptions(rows: ReadonlyArray<Option<unknown> | HelpRow>, column: number): string {
  const pad = ' '.repeat(column);
  const lines: string[] = [];
  for (const row of rows) {
    let label: string;
    if (row instanceof Option) {
      label = row.flag === undefined ? row.env[0]! : `--${row.flag}${row.meta ? ` ${row.meta}` : ''}`;
    } else label = row.label;
    label = `  ${label}`;
    const [first = '', ...rest] = row.help.split('\n');
    if (first === '') lines.push(label);
    else lines.push(label.length < column ? label.padEnd(column) + first : `${label}  ${first}`);
    for (const line of rest) lines.push(pad + line);
  }
  return `${lines.join('\n')}\n`;
}

/** The help row every command has. */
export const HELP_ROW: HelpRow = { label: '-h, --help', help: 'show this help' };
