/**
 * Structured output (`response_format`): deterministic JSON instead of prose.
 *   - `{type: 'json_object'}` → `{"reply": "<filler sentence>"}`
 *   - `{type: 'json_schema', json_schema: {schema}}` → a minimal instance of the schema (all `required`
 *     properties, or all properties when none are required; enums/consts honoured; local $refs resolved).
 * The JSON text is token-capped like prose: when cut by max_tokens it is (realistically) invalid JSON
 * and finish_reason is `length`.
 */
import { invalidRequest } from './errors.ts';
import { mulberry32 } from './prng.ts';
import { decode, encode } from './tokenizer.ts';
import type { GeneratedCompletion } from './completion.ts';
import { isPlainObject } from './util.ts';

export type ResponseFormat =
  | { type: 'text' }
  | { type: 'json_object' }
  | { type: 'json_schema'; schema: Record<string, unknown> };

const WORDS = ['simulated', 'value', 'result', 'sample', 'alpha', 'beta', 'gamma', 'delta', 'stable', 'signal', 'report', 'study'];
const MAX_DEPTH = 8;

export function parseResponseFormat(raw: unknown): ResponseFormat {
  if (raw === undefined || raw === null) return { type: 'text' };
  if (!isPlainObject(raw) || typeof raw['type'] !== 'string') {
    throw invalidRequest("Invalid 'response_format': expected an object with a 'type'.", 'response_format', 'invalid_type');
  }
  const type = raw['type'];
  if (type === 'text') return { type: 'text' };
  if (type === 'json_object') return { type: 'json_object' };
  if (type === 'json_schema') {
    const js = raw['json_schema'];
    if (!isPlainObject(js)) {
      throw invalidRequest("Missing required parameter: 'response_format.json_schema'.", 'response_format.json_schema', 'missing_required_parameter');
    }
    const schema = js['schema'];
    return { type: 'json_schema', schema: isPlainObject(schema) ? schema : {} };
  }
  throw invalidRequest(
    `Invalid value for 'response_format.type': expected one of 'text', 'json_object', 'json_schema', got '${type}'.`,
    'response_format.type',
    'invalid_value',
  );
}

function resolveRef(root: Record<string, unknown>, ref: string): Record<string, unknown> {
  if (!ref.startsWith('#/')) return {};
  let node: unknown = root;
  for (const part of ref.slice(2).split('/')) {
    const key = part.replace(/~1/g, '/').replace(/~0/g, '~');
    node = isPlainObject(node) ? node[key] : undefined;
  }
  return isPlainObject(node) ? node : {};
}

function instance(schema: Record<string, unknown>, root: Record<string, unknown>, rand: () => number, name: string, depth: number): unknown {
  if (depth > MAX_DEPTH) return null;
  if (typeof schema['$ref'] === 'string') return instance(resolveRef(root, schema['$ref']), root, rand, name, depth + 1);
  if ('const' in schema) return schema['const'];
  if (Array.isArray(schema['enum']) && schema['enum'].length > 0) return schema['enum'][0];
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    const alts = schema[key];
    if (Array.isArray(alts) && alts.length > 0) {
      const firstNonNull = alts.find((a) => isPlainObject(a) && a['type'] !== 'null') ?? alts[0];
      return instance(isPlainObject(firstNonNull) ? firstNonNull : {}, root, rand, name, depth + 1);
    }
  }
  let type = schema['type'];
  // A string `pattern` is not generated: when null is allowed, null is the valid minimal answer.
  if (Array.isArray(type)) type = typeof schema['pattern'] === 'string' && type.includes('null') ? 'null' : (type.find((t) => t !== 'null') ?? 'null');
  if (type === undefined) type = isPlainObject(schema['properties']) ? 'object' : 'string';
  switch (type) {
    case 'object': {
      const props = isPlainObject(schema['properties']) ? schema['properties'] : {};
      const required = Array.isArray(schema['required']) ? schema['required'].filter((k): k is string => typeof k === 'string') : [];
      const keys = required.length > 0 ? required : Object.keys(props);
      const out: Record<string, unknown> = {};
      for (const k of keys) {
        const sub = props[k];
        out[k] = instance(isPlainObject(sub) ? sub : {}, root, rand, k, depth + 1);
      }
      return out;
    }
    case 'array': {
      const items = isPlainObject(schema['items']) ? schema['items'] : {};
      const min = typeof schema['minItems'] === 'number' ? schema['minItems'] : 1;
      const max = typeof schema['maxItems'] === 'number' ? schema['maxItems'] : Math.max(min, 2);
      const n = Math.min(Math.max(min, 1 + Math.floor(rand() * 2)), max);
      return Array.from({ length: n }, () => instance(items, root, rand, name, depth + 1));
    }
    case 'integer': {
      const lo = Math.ceil(typeof schema['minimum'] === 'number' ? schema['minimum'] : 0);
      const hi = Math.max(lo, Math.floor(typeof schema['maximum'] === 'number' ? schema['maximum'] : lo + 100));
      return lo + Math.floor(rand() * (hi - lo + 1));
    }
    case 'number': {
      const lo = typeof schema['minimum'] === 'number' ? schema['minimum'] : 0;
      const hi = Math.max(lo, typeof schema['maximum'] === 'number' ? schema['maximum'] : lo + 100);
      return Math.min(hi, Math.max(lo, Math.round((lo + rand() * (hi - lo)) * 100) / 100));
    }
    case 'boolean':
      return rand() < 0.5;
    case 'null':
      return null;
    default: {
      const format = schema['format'];
      if (format === 'date-time') return '2024-01-01T00:00:00Z';
      if (format === 'date') return '2024-01-01';
      if (format === 'email') return 'simulated@example.com';
      if (format === 'uri' || format === 'url') return 'https://example.com/simulated';
      const words = [name || 'simulated'];
      const count = 2 + Math.floor(rand() * 3);
      for (let i = 0; i < count; i++) words.push(WORDS[Math.floor(rand() * WORDS.length)] ?? 'value');
      let s = words.join(' ');
      const maxLength = typeof schema['maxLength'] === 'number' ? schema['maxLength'] : undefined;
      const minLength = typeof schema['minLength'] === 'number' ? schema['minLength'] : 0;
      while (s.length < minLength) s += ' value';
      if (maxLength !== undefined) s = s.slice(0, maxLength);
      return s;
    }
  }
}

export function generateStructured(args: {
  format: Exclude<ResponseFormat, { type: 'text' }>;
  seed: number;
  maxTokens?: number | undefined;
}): GeneratedCompletion {
  const rand = mulberry32(args.seed);
  const value =
    args.format.type === 'json_object'
      ? { reply: instance({ type: 'string' }, {}, rand, 'simulated reply', 0) }
      : instance(args.format.schema, args.format.schema, rand, '', 0);
  const full = JSON.stringify(value);
  let tokens = encode(full);
  let finishReason: GeneratedCompletion['finishReason'] = 'stop';
  if (args.maxTokens !== undefined && tokens.length > args.maxTokens) {
    tokens = tokens.slice(0, Math.max(1, args.maxTokens));
    finishReason = 'length';
  }
  // The JSON is ASCII unless the schema carries non-ASCII enums/consts; decode per token when that is
  // lossless, otherwise stream it as one piece.
  const pieces = tokens.map((t) => decode([t]));
  const text = decode(tokens);
  // completion_tokens is the length of the generated token sequence, as upstream counts it
  if (pieces.join('') !== text) {
    return { pieces: [text], pieceTokens: [tokens.length], text, completionTokens: tokens.length, finishReason };
  }
  return { pieces, pieceTokens: pieces.map(() => 1), text, completionTokens: tokens.length, finishReason };
}
