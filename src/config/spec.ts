// The declarative description of balancer.yaml's shape: one tree that both decodes values (with every problem) and emits the JSON Schema.

import { isIP } from 'node:net';
import { checkHostPort, checkHostname } from '../net-address.js';
import { isPlainObject } from '../json.js';

export type PathSegment = string | number;
export type Path = readonly PathSegment[];

/** A problem found while decoding; `at: 'key'` points editors at the key rather than its value. */
export interface RawProblem {
  readonly path: Path;
  readonly at: 'key' | 'value';
  readonly message: string;
}

export class DecodeContext {
  readonly problems: RawProblem[] = [];

  report(path: Path, message: string, at: 'key' | 'value' = 'value'): void {
    this.problems.push({ path, at, message });
  }
}

export const INVALID: unique symbol = Symbol('invalid');
export type Decoded<T> = T | typeof INVALID;

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };
export type JsonSchema = { readonly [key: string]: JsonValue };

export interface Spec<T> {
  readonly kind: 'leaf' | 'object' | 'record' | 'list';
  readonly description?: string | undefined;
  /** Never throws: bad input becomes problems in ctx and INVALID. */
  decode(value: unknown, path: Path, ctx: DecodeContext): Decoded<T>;
  /** The file form of a decoded value, for schema defaults and for writing config back. */
  encode(value: T): JsonValue;
  schema(): JsonSchema;
}

export interface LeafSpec<T> extends Spec<T> {
  readonly kind: 'leaf';
}

export interface Field<T = unknown> {
  readonly spec: Spec<T>;
  readonly presence: 'required' | 'optional' | 'defaulted';
  readonly defaultValue?: T;
}

export type Fields = { readonly [key: string]: Field };

export interface ObjectSpec<F extends Fields> extends Spec<ObjectOf<F>> {
  readonly kind: 'object';
  readonly fields: F;
}

export interface RecordSpec<V> extends Spec<Readonly<Record<string, V>>> {
  readonly kind: 'record';
  readonly values: Spec<V>;
}

export interface ListSpec<V> extends Spec<readonly V[]> {
  readonly kind: 'list';
  readonly items: Spec<V>;
}

type FieldValue<F> = F extends Field<infer T> ? (F['presence'] extends 'optional' ? T | undefined : T) : never;
export type ObjectOf<F extends Fields> = { readonly [K in keyof F]: FieldValue<F[K]> };
export type Infer<S> = S extends Spec<infer T> ? T : never;

// ---------------------------------------------------------------- messages

export function formatPath(path: Path): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z0-9_$-]+$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

/** How a value reads in a message: `string "abc"`, `number 0`, `a list`. */
export function describeValue(value: unknown): string {
  if (value === null || value === undefined) return 'an empty value';
  if (typeof value === 'string') {
    const shown = value.length > 40 ? `${value.slice(0, 37)}...` : value;
    return `string ${JSON.stringify(shown)}`;
  }
  if (typeof value === 'number') return `number ${String(value)}`;
  if (typeof value === 'boolean') return `boolean ${String(value)}`;
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  return typeof value;
}

/** Edit distance counting a swap of neighbours as one edit, the commonest typo ("wbe" for "web"). */
function editDistance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Math.max(a.length, b.length);
  const rows: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    const row: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      if (i === 0) {
        row.push(j);
        continue;
      }
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, row[j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      row.push(best);
    }
    rows.push(row);
  }
  return rows[a.length]![b.length]!;
}

/** The closest candidate within a typo's distance, compared case-insensitively. */
export function closestMatch(input: string, candidates: Iterable<string>): string | undefined {
  const lowered = input.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of candidates) {
    const distance = editDistance(lowered, candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const allowed = Math.max(1, Math.floor(input.length / 3));
  return bestDistance <= allowed ? best : undefined;
}

export function didYouMean(input: string, candidates: Iterable<string>): string {
  const match = closestMatch(input, candidates);
  return match === undefined ? '' : ` (did you mean "${match}"?)`;
}

// ---------------------------------------------------------------- leaves

export function leaf<T>(parts: Omit<LeafSpec<T>, 'kind'>): LeafSpec<T> {
  return { kind: 'leaf', ...parts };
}

function withDescription(schema: JsonSchema, description: string | undefined): JsonSchema {
  return description === undefined ? schema : { description, ...schema };
}

export interface StringOptions {
  readonly description?: string;
  /** Turns the raw string into its stored form, or returns a message (without the path) explaining why not. */
  readonly parse?: (value: string) => { value: string } | { error: string };
  readonly pattern?: RegExp;
  readonly patternHint?: string;
  readonly minLength?: number;
  readonly maxLength?: number;
}

export function string(options: StringOptions = {}): LeafSpec<string> {
  const minLength = options.minLength ?? 1;
  return leaf({
    description: options.description,
    decode(value, path, ctx) {
      if (typeof value !== 'string') {
        ctx.report(path, `expected a string, got ${describeValue(value)}`);
        return INVALID;
      }
      if (value.length < minLength) {
        ctx.report(path, minLength === 1 ? 'must not be empty' : `must be at least ${minLength} characters long`);
        return INVALID;
      }
      if (options.maxLength !== undefined && value.length > options.maxLength) {
        ctx.report(path, `must be at most ${options.maxLength} characters long`);
        return INVALID;
      }
      if (options.pattern !== undefined && !options.pattern.test(value)) {
        ctx.report(path, `${options.patternHint ?? `must match ${options.pattern.source}`}, got ${describeValue(value)}`);
        return INVALID;
      }
      if (options.parse !== undefined) {
        const parsed = options.parse(value);
        if ('error' in parsed) {
          ctx.report(path, parsed.error);
          return INVALID;
        }
        return parsed.value;
      }
      return value;
    },
    encode: (value) => value,
    schema: () => {
      const schema: Record<string, JsonValue> = { type: 'string', minLength };
      if (options.maxLength !== undefined) schema['maxLength'] = options.maxLength;
      if (options.pattern !== undefined) schema['pattern'] = options.pattern.source;
      return withDescription(schema, options.description);
    },
  });
}

export interface NumberOptions {
  readonly description?: string;
  readonly min: number;
  readonly max: number;
  readonly integer: boolean;
  /** Replaces the generic range message, e.g. "must be a positive integer". */
  readonly rangeMessage?: string;
}

export function number(options: NumberOptions): LeafSpec<number> {
  const noun = options.integer ? 'an integer' : 'a number';
  const rangeMessage = options.rangeMessage ?? `must be ${noun} from ${options.min} to ${options.max}`;
  return leaf({
    description: options.description,
    decode(value, path, ctx) {
      if (typeof value !== 'number' || !Number.isFinite(value)) {
        ctx.report(path, `expected ${options.integer ? 'an integer' : 'a number'}, got ${describeValue(value)}`);
        return INVALID;
      }
      if ((options.integer && !Number.isInteger(value)) || value < options.min || value > options.max) {
        ctx.report(path, `${rangeMessage}, got ${String(value)}`);
        return INVALID;
      }
      return value;
    },
    encode: (value) => value,
    schema: () =>
      withDescription(
        { type: options.integer ? 'integer' : 'number', minimum: options.min, maximum: options.max },
        options.description,
      ),
  });
}

export function integer(min: number, max: number, description?: string, rangeMessage?: string): LeafSpec<number> {
  return number({
    min,
    max,
    integer: true,
    ...(description === undefined ? {} : { description }),
    ...(rangeMessage === undefined ? {} : { rangeMessage }),
  });
}

export function boolean(description?: string): LeafSpec<boolean> {
  return leaf({
    description,
    decode(value, path, ctx) {
      if (typeof value !== 'boolean') {
        ctx.report(path, `expected true or false, got ${describeValue(value)}`);
        return INVALID;
      }
      return value;
    },
    encode: (value) => value,
    schema: () => withDescription({ type: 'boolean' }, description),
  });
}

export function oneOf<T extends string>(values: readonly T[], description?: string): LeafSpec<T> {
  return leaf({
    description,
    decode(value, path, ctx) {
      if (typeof value === 'string' && (values as readonly string[]).includes(value)) return value as T;
      const hint = typeof value === 'string' ? didYouMean(value, values) : '';
      ctx.report(path, `must be one of ${values.join(', ')}, got ${describeValue(value)}${hint}`);
      return INVALID;
    },
    encode: (value) => value,
    schema: () => withDescription({ enum: [...values] }, description),
  });
}

/** Node's timers overflow above this many milliseconds (about 24.8 days). */
export const MAX_DURATION_MS = 2_147_483_647;
const DURATION_UNITS: Readonly<Record<string, number>> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };
const DURATION_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$/;

/** Milliseconds from `250ms`, `1.5s`, `1m`, `1h` or a non-negative integer; a message when it is not one. */
export function parseDuration(value: unknown): { value: number } | { error: string } {
  let ms: number;
  if (typeof value === 'number') {
    if (!Number.isInteger(value) || value < 0) {
      return { error: `must be a duration (250ms, 2s, 1m, 1h) or a whole number of milliseconds, got ${describeValue(value)}` };
    }
    ms = value;
  } else if (typeof value === 'string') {
    const match = DURATION_PATTERN.exec(value);
    if (match === null) {
      return { error: `must be a duration like 250ms, 2s, 1.5m or 1h, got ${describeValue(value)}` };
    }
    ms = Number(match[1]) * DURATION_UNITS[match[2]!]!;
    // 1.1s is 1100.0000000000002 in floating point; round away the representation error, not real fractions.
    const rounded = Math.round(ms);
    if (Math.abs(ms - rounded) > 1e-6) return { error: `must be a whole number of milliseconds, got ${describeValue(value)}` };
    ms = rounded;
  } else {
    return { error: `expected a duration (250ms, 2s, 1m, 1h) or milliseconds, got ${describeValue(value)}` };
  }
  if (ms > MAX_DURATION_MS) return { error: `must be at most ${MAX_DURATION_MS}ms (about 24 days), got ${describeValue(value)}` };
  return { value: ms };
}

/** The shortest exact file form of a duration: 1500 -> "1500ms", 2000 -> "2s", 90000 -> "90s", 3600000 -> "1h". */
export function formatDuration(ms: number): string {
  if (ms !== 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms !== 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  if (ms !== 0 && ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

/** Decodes with `parse` and refuses values below `min` (spelled `minText` in the message): durations and sizes alike. */
function decodeAtLeast(parse: (value: unknown) => { value: number } | { error: string }, min: number, minText: string): LeafSpec<number>['decode'] {
  return (value, path, ctx) => {
    const parsed = parse(value);
    if ('error' in parsed) {
      ctx.report(path, parsed.error);
      return INVALID;
    }
    if (parsed.value < min) {
      ctx.report(path, `must be at least ${minText}, got ${describeValue(value)}`);
      return INVALID;
    }
    return parsed.value;
  };
}

export function duration(options: { description?: string; min?: number } = {}): LeafSpec<number> {
  const min = options.min ?? 0;
  return leaf({
    description: options.description,
    decode: decodeAtLeast(parseDuration, min, formatDuration(min)),
    encode: (value) => formatDuration(value),
    schema: () =>
      withDescription(
        {
          anyOf: [
            { type: 'string', pattern: DURATION_PATTERN.source },
            { type: 'integer', minimum: min, maximum: MAX_DURATION_MS },
          ],
        },
        options.description === undefined ? 'A duration: 250ms, 2s, 1.5m, 1h, or an integer of milliseconds.' : `${options.description} A duration: 250ms, 2s, 1m, 1h, or milliseconds.`,
      ),
  });
}

const SIZE_UNITS: Readonly<Record<string, number>> = { b: 1, kb: 1024, mb: 1024 ** 2, gb: 1024 ** 3 };
const SIZE_PATTERN = /^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?[bB])\s*$/;

/** Bytes from an integer or `16kb`, `10mb`, `1gb` (1024-based). */
export function parseSize(value: unknown): { value: number } | { error: string } {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value) || value < 0) return { error: `must be a size (16kb, 10mb, 1gb) or a whole number of bytes, got ${describeValue(value)}` };
    return { value };
  }
  if (typeof value === 'string') {
    const match = SIZE_PATTERN.exec(value);
    if (match === null) return { error: `must be a size like 512b, 16kb, 10mb or 1gb (1024-based), got ${describeValue(value)}` };
    const bytes = Number(match[1]) * SIZE_UNITS[match[2]!.toLowerCase()]!;
    if (!Number.isSafeInteger(bytes)) return { error: `must be a whole number of bytes, got ${describeValue(value)}` };
    return { value: bytes };
  }
  return { error: `expected a size (16kb, 10mb, 1gb) or bytes, got ${describeValue(value)}` };
}

export function formatSize(bytes: number): string | number {
  for (const [unit, factor] of [['gb', 1024 ** 3], ['mb', 1024 ** 2], ['kb', 1024]] as const) {
    if (bytes !== 0 && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return bytes;
}

export function size(options: { description?: string; min?: number } = {}): LeafSpec<number> {
  const min = options.min ?? 0;
  return leaf({
    description: options.description,
    decode: decodeAtLeast(parseSize, min, `${min} bytes`),
    encode: (value) => formatSize(value),
    schema: () =>
      withDescription(
        { anyOf: [{ type: 'string', pattern: SIZE_PATTERN.source }, { type: 'integer', minimum: min }] },
        `${options.description === undefined ? '' : `${options.description} `}A size in bytes, or with a 1024-based unit: 16kb, 10mb, 1gb.`,
      ),
  });
}

// ---------------------------------------------------------------- network-shaped strings

/** A DNS name or IP literal (IPv6 without brackets); lower-cased. */
export function parseHostname(input: string): { value: string } | { error: string } {
  const checked = checkHostname(input);
  return 'error' in checked ? { error: `${checked.error}, got ${describeValue(input)}` } : checked;
}

/** Validates `host:port`, `[::1]:port` and `:port` (all interfaces) with the one address parser; keeps the text as written. */
export function parseHostPort(input: string, allowPortZero: boolean): { value: string } | { error: string } {
  const checked = checkHostPort(input, { allowPortZero });
  return 'error' in checked ? { error: `${checked.error}, got ${describeValue(input)}` } : { value: input };
}

export function hostPort(options: { description?: string; allowPortZero: boolean }): LeafSpec<string> {
  return string({
    parse: (value) => parseHostPort(value, options.allowPortZero),
    ...(options.description === undefined ? {} : { description: options.description }),
  });
}

/** An IPv4 or IPv6 CIDR, or a single address. */
export function parseCidr(input: string): { value: string } | { error: string } {
  const slash = input.indexOf('/');
  const address = slash === -1 ? input : input.slice(0, slash);
  const family = isIP(address);
  if (family === 0) return { error: `must be an IP address or CIDR like 10.0.0.0/8 or fd00::/8, got ${describeValue(input)}` };
  if (slash !== -1) {
    const prefix = input.slice(slash + 1);
    const maxPrefix = family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > maxPrefix) {
      return { error: `must have a prefix length from 0 to ${maxPrefix}, got ${describeValue(input)}` };
    }
  }
  return { value: input };
}

// ---------------------------------------------------------------- composites

export function required<T>(spec: Spec<T>): Field<T> & { presence: 'required' } {
  return { spec, presence: 'required' };
}
export function optional<T>(spec: Spec<T>): Field<T> & { presence: 'optional' } {
  return { spec, presence: 'optional' };
}
export function withDefault<T>(spec: Spec<T>, defaultValue: T): Field<T> & { presence: 'defaulted' } {
  return { spec, presence: 'defaulted', defaultValue };
}

export interface ObjectOptions<T> {
  readonly description?: string;
  /** Extra words for unknown keys, e.g. explaining that a key is local to each node. */
  readonly unknownKeyHint?: (key: string) => string | undefined;
  /** Rules across fields; runs only when every field decoded. Problems it reports make the object invalid. */
  readonly check?: (value: T, path: Path, ctx: DecodeContext) => void;
}

export function object<F extends Fields>(fields: F, options: ObjectOptions<ObjectOf<F>> = {}): ObjectSpec<F> {
  const names = Object.keys(fields);
  return {
    kind: 'object',
    fields,
    description: options.description,
    decode(value, path, ctx) {
      if (!isPlainObject(value)) {
        ctx.report(path, `expected a mapping, got ${describeValue(value)}`);
        return INVALID;
      }
      let ok = true;
      for (const key of Object.keys(value)) {
        if (!Object.hasOwn(fields, key)) {
          const hint = options.unknownKeyHint?.(key);
          ctx.report([...path, key], hint ?? `unknown key${didYouMean(key, names)}`, 'key');
          ok = false;
        }
      }
      const out: Record<string, unknown> = {};
      for (const name of names) {
        const field = fields[name]!;
        const raw = Object.hasOwn(value, name) ? value[name] : undefined;
        if (raw === undefined) {
          if (field.presence === 'required') {
            ctx.report([...path, name], 'is required');
            ok = false;
          } else if (field.presence === 'defaulted') {
            out[name] = field.defaultValue;
          }
          continue;
        }
        const decoded = field.spec.decode(raw, [...path, name], ctx);
        if (decoded === INVALID) ok = false;
        else out[name] = decoded;
      }
      if (!ok) return INVALID;
      if (options.check !== undefined) {
        const before = ctx.problems.length;
        options.check(out as ObjectOf<F>, path, ctx);
        if (ctx.problems.length > before) return INVALID;
      }
      return out as ObjectOf<F>;
    },
    encode(value) {
      const out: Record<string, JsonValue> = {};
      for (const name of names) {
        const item = (value as Record<string, unknown>)[name];
        if (item !== undefined) out[name] = fields[name]!.spec.encode(item);
      }
      return out;
    },
    schema() {
      const properties: Record<string, JsonValue> = {};
      const requiredNames: string[] = [];
      for (const name of names) {
        const field = fields[name]!;
        const schema: Record<string, JsonValue> = { ...field.spec.schema() };
        if (field.presence === 'defaulted' && field.defaultValue !== undefined) {
          schema['default'] = field.spec.encode(field.defaultValue);
        }
        if (field.presence === 'required') requiredNames.push(name);
        properties[name] = schema;
      }
      const schema: Record<string, JsonValue> = { type: 'object', properties, additionalProperties: false };
      if (requiredNames.length > 0) schema['required'] = requiredNames;
      return withDescription(schema, options.description);
    },
  };
}

export function record<V>(
  values: Spec<V>,
  options: { description?: string; keyPattern: RegExp; keyHint: string },
): RecordSpec<V> {
  return {
    kind: 'record',
    values,
    description: options.description,
    decode(value, path, ctx) {
      if (!isPlainObject(value)) {
        ctx.report(path, `expected a mapping, got ${describeValue(value)}`);
        return INVALID;
      }
      let ok = true;
      const out: Record<string, V> = {};
      for (const [key, item] of Object.entries(value)) {
        if (!options.keyPattern.test(key)) {
          ctx.report([...path, key], `${options.keyHint}, got ${describeValue(key)}`, 'key');
          ok = false;
        }
        const decoded = values.decode(item, [...path, key], ctx);
        if (decoded === INVALID) ok = false;
        // defineProperty: a pool named __proto__ must stay an own key, not become a prototype.
        else Object.defineProperty(out, key, { value: decoded, enumerable: true, writable: true, configurable: true });
      }
      return ok ? out : INVALID;
    },
    encode(value) {
      const out: Record<string, JsonValue> = {};
      for (const [key, item] of Object.entries(value)) out[key] = values.encode(item);
      return out;
    },
    schema: () =>
      withDescription(
        { type: 'object', propertyNames: { pattern: options.keyPattern.source }, additionalProperties: values.schema() },
        options.description,
      ),
  };
}

export interface ListOptions<V> {
  readonly description?: string;
  readonly maxItems?: number;
  /** Rules across entries (duplicates); sees every entry that decoded, so it runs even when others did not. */
  readonly check?: (entries: readonly { readonly index: number; readonly value: V }[], path: Path, ctx: DecodeContext) => void;
}

export function list<V>(items: Spec<V>, options: ListOptions<V> = {}): ListSpec<V> {
  return {
    kind: 'list',
    items,
    description: options.description,
    decode(value, path, ctx) {
      if (!Array.isArray(value)) {
        ctx.report(path, `expected a list, got ${describeValue(value)}`);
        return INVALID;
      }
      if (options.maxItems !== undefined && value.length > options.maxItems) {
        ctx.report(path, `must have at most ${options.maxItems} entries, got ${value.length}`);
        return INVALID;
      }
      let ok = true;
      const entries: { index: number; value: V }[] = [];
      value.forEach((item: unknown, index) => {
        const decoded = items.decode(item, [...path, index], ctx);
        if (decoded === INVALID) ok = false;
        else entries.push({ index, value: decoded });
      });
      if (options.check !== undefined) {
        const before = ctx.problems.length;
        options.check(entries, path, ctx);
        if (ctx.problems.length > before) ok = false;
      }
      return ok ? entries.map((entry) => entry.value) : INVALID;
    },
    encode: (value) => value.map((item) => items.encode(item)),
    schema: () => {
      const schema: Record<string, JsonValue> = { type: 'array', items: items.schema() };
      if (options.maxItems !== undefined) schema['maxItems'] = options.maxItems;
      return withDescription(schema, options.description);
    },
  };
}
