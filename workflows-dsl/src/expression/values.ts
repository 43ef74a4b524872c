// Value helpers shared by the evaluator and the functions: JSON-like data only, deterministic.

export type ValueType = 'null' | 'boolean' | 'number' | 'string' | 'array' | 'object';

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return false;
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

/** The type name used in messages; anything that is not JSON-like data is 'opaque'. */
export function typeOf(value: unknown): ValueType | 'opaque' {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'boolean':
      return 'boolean';
    case 'number':
      return 'number';
    case 'string':
      return 'string';
    default:
      if (Array.isArray(value)) return 'array';
      if (isPlainObject(value)) return 'object';
      return 'opaque';
  }
}

/** Truthiness as in JavaScript: false, null, 0, '' (and NaN) are false; arrays and objects are true. */
export function truthy(value: unknown): boolean {
  return Boolean(value);
}

/** Structural equality of JSON-like values, without type coercion (1 != '1'). */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === undefined || b === undefined) return (a ?? null) === (b ?? null);
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((item, i) => deepEqual(item, b[i]));
  }
  if (isPlainObject(a)) {
    if (!isPlainObject(b)) return false;
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && deepEqual(a[k], b[k]));
  }
  return false;
}

/** Text form used by interpolation and join(): null → '', strings as-is, other data as JSON. */
export function toText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value) ?? '';
}

/** Code points, so that length() and slice() never split a surrogate pair. */
export function codePoints(text: string): string[] {
  return Array.from(text);
}

export function describe(value: unknown): string {
  const t = typeOf(value);
  if (t === 'null' || t === 'array' || t === 'object' || t === 'opaque') return t === 'opaque' ? 'a non-JSON value' : t === 'null' ? 'null' : `an ${t}`;
  return `a ${t}`;
}
