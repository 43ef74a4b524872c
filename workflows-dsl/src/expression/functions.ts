// The whitelist of pure functions. Nothing else can be called: the parser rejects any other
// name, and there is no way to reach a JavaScript function from an expression.
import { FORBIDDEN_PROPERTIES } from './errors.ts';
import { codePoints, deepEqual, describe, isPlainObject, toText, type ValueType } from './values.ts';

/** Thrown by a function body; the evaluator turns it into an ExpressionError at the right argument. */
export class FunctionArgumentError extends Error {
  readonly argument: number | undefined;
  constructor(message: string, argument?: number) {
    super(message);
    this.argument = argument;
  }
}

export interface FunctionSpec {
  minArgs: number;
  maxArgs: number;
  /** Static result type, for the cheap type checks of the semantic checker. */
  returns: ValueType | 'unknown' | 'first-argument';
  signature: string;
  call(args: unknown[]): unknown;
}

const fail = (message: string, argument?: number): never => {
  throw new FunctionArgumentError(message, argument);
};

function text(value: unknown, argument: number, name: string): string {
  if (value === null || value === undefined) return '';
  if (typeof value !== 'string') fail(`${name}() expects a string, got ${describe(value)}`, argument);
  return value as string;
}

function integer(value: unknown, argument: number, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) fail(`${name}() expects an integer, got ${describe(value)}`, argument);
  return value as number;
}

function format(args: unknown[]): string {
  const template = args[0];
  if (typeof template !== 'string') return fail(`format() expects a string as its first argument, got ${describe(template)}`, 0);
  let out = '';
  let i = 0;
  while (i < template.length) {
    const c = template[i]!;
    if (c === '{' && template[i + 1] === '{') {
      out += '{';
      i += 2;
    } else if (c === '}' && template[i + 1] === '}') {
      out += '}';
      i += 2;
    } else if (c === '{') {
      const close = template.indexOf('}', i);
      const index = close === -1 ? '' : template.slice(i + 1, close);
      if (!/^\d+$/.test(index)) fail(`format(): invalid placeholder at offset ${i} of the format string (use {0}, {1}, … and {{ }} for braces)`, 0);
      const n = Number(index);
      if (n + 1 >= args.length) fail(`format(): placeholder {${n}} has no argument`, 0);
      out += toText(args[n + 1]);
      i = close + 1;
    } else if (c === '}') {
      fail(`format(): unmatched "}" at offset ${i} of the format string (use }} for a brace)`, 0);
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

export const FUNCTIONS: Readonly<Record<string, FunctionSpec>> = Object.freeze({
  length: {
    minArgs: 1,
    maxArgs: 1,
    returns: 'number',
    signature: 'length(value: string | array | object)',
    call([v]) {
      if (v === null || v === undefined) return 0;
      if (typeof v === 'string') return codePoints(v).length;
      if (Array.isArray(v)) return v.length;
      if (isPlainObject(v)) return Object.keys(v).length;
      return fail(`length() expects a string, array or object, got ${describe(v)}`, 0);
    },
  },
  join: {
    minArgs: 1,
    maxArgs: 2,
    returns: 'string',
    signature: 'join(items: array, separator = ",")',
    call([items, separator]) {
      if (items === null || items === undefined) return '';
      if (!Array.isArray(items)) return fail(`join() expects an array, got ${describe(items)}`, 0);
      const sep = separator === undefined ? ',' : text(separator, 1, 'join');
      return items.map(toText).join(sep);
    },
  },
  contains: {
    minArgs: 2,
    maxArgs: 2,
    returns: 'boolean',
    signature: 'contains(haystack: string | array | object, needle)',
    call([haystack, needle]) {
      if (haystack === null || haystack === undefined) return false;
      if (typeof haystack === 'string') {
        if (typeof needle !== 'string') return fail(`contains() on a string expects a string to look for, got ${describe(needle)}`, 1);
        return haystack.includes(needle);
      }
      if (Array.isArray(haystack)) return haystack.some((item) => deepEqual(item, needle));
      if (isPlainObject(haystack)) return typeof needle === 'string' && !FORBIDDEN_PROPERTIES.has(needle) && Object.hasOwn(haystack, needle);
      return fail(`contains() expects a string, array or object, got ${describe(haystack)}`, 0);
    },
  },
  lower: {
    minArgs: 1,
    maxArgs: 1,
    returns: 'string',
    signature: 'lower(text: string)',
    call([v]) {
      return text(v, 0, 'lower').toLowerCase();
    },
  },
  upper: {
    minArgs: 1,
    maxArgs: 1,
    returns: 'string',
    signature: 'upper(text: string)',
    call([v]) {
      return text(v, 0, 'upper').toUpperCase();
    },
  },
  trim: {
    minArgs: 1,
    maxArgs: 1,
    returns: 'string',
    signature: 'trim(text: string)',
    call([v]) {
      return text(v, 0, 'trim').trim();
    },
  },
  json: {
    minArgs: 1,
    maxArgs: 2,
    returns: 'string',
    signature: 'json(value, indent = 0)',
    call([v, indent]) {
      const spaces = indent === undefined ? 0 : integer(indent, 1, 'json');
      if (spaces < 0 || spaces > 10) fail('json(): indent must be between 0 and 10', 1);
      return JSON.stringify(v ?? null, null, spaces) ?? 'null';
    },
  },
  default: {
    minArgs: 2,
    maxArgs: 16,
    returns: 'unknown',
    signature: 'default(value, fallback, …)',
    call(args) {
      for (const v of args) if (v !== null && v !== undefined) return v;
      return null;
    },
  },
  keys: {
    minArgs: 1,
    maxArgs: 1,
    returns: 'array',
    signature: 'keys(object)',
    call([v]) {
      if (v === null || v === undefined) return [];
      if (!isPlainObject(v)) return fail(`keys() expects an object, got ${describe(v)}`, 0);
      return Object.keys(v);
    },
  },
  slice: {
    minArgs: 2,
    maxArgs: 3,
    returns: 'first-argument',
    signature: 'slice(items: array | string, start: integer, end?: integer)',
    call([v, start, end]) {
      const s = integer(start, 1, 'slice');
      const e = end === undefined || end === null ? undefined : integer(end, 2, 'slice');
      if (v === null || v === undefined) return null;
      if (typeof v === 'string') return codePoints(v).slice(s, e).join('');
      if (Array.isArray(v)) return v.slice(s, e);
      return fail(`slice() expects an array or a string, got ${describe(v)}`, 0);
    },
  },
  format: {
    minArgs: 1,
    maxArgs: 16,
    returns: 'string',
    signature: 'format(template: string, …args)',
    call: format,
  },
});

export function getFunction(name: string): FunctionSpec | undefined {
  return Object.hasOwn(FUNCTIONS, name) ? FUNCTIONS[name] : undefined;
}

export const FUNCTION_NAMES: readonly string[] = Object.freeze(Object.keys(FUNCTIONS));
