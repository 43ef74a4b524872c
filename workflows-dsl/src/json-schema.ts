// The JSON Schemas a workflow embeds (its `inputs`, an llm step's `output_schema`): checking that
// they are valid 2020-12 schemas, and validating values against them (run inputs in the gateway,
// model replies in the llm activity). Uses ajv, which generates code: not for workflow code.
// No I/O: remote `$ref`s are never fetched, they are reported as unresolvable.
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import { isPlainObject } from './expression/values.ts';
import { pointerJoin } from './pointer.ts';

export interface SchemaIssue {
  /** Pointer inside the schema (for schema problems) or inside the value (for value problems). */
  pointer: string;
  message: string;
}

const DRAFT_2020 = /^https?:\/\/json-schema\.org\/draft\/2020-12\/schema#?$/;

// One instance checks every embedded schema: its meta-schema is compiled once. Each checked
// schema is removed again afterwards, so nothing accumulates and `$id`s never collide.
const logged: string[] = [];
let checker: Ajv2020 | undefined;

function schemaChecker(): Ajv2020 {
  checker ??= new Ajv2020({
    allErrors: true,
    strict: false,
    // Unknown keywords (often typos such as `propertis`) are reported as warnings.
    strictSchema: 'log',
    validateFormats: false,
    logger: {
      log: () => undefined,
      warn: (...args: unknown[]) => void logged.push(args.map(String).join(' ')),
      error: (...args: unknown[]) => void logged.push(args.map(String).join(' ')),
    },
  });
  return checker;
}

/** Pointer of the first property named `key` anywhere in `value` (depth first), or ''. */
function findKey(value: unknown, key: string, base = ''): string | undefined {
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i += 1) {
      const found = findKey(value[i], key, pointerJoin(base, i));
      if (found !== undefined) return found;
    }
  } else if (isPlainObject(value)) {
    for (const [k, v] of Object.entries(value)) {
      if (k === key) return pointerJoin(base, k);
      const found = findKey(v, key, pointerJoin(base, k));
      if (found !== undefined) return found;
    }
  }
  return undefined;
}

function issueMessage(e: ErrorObject): string {
  const params = e.params as Record<string, unknown>;
  if (e.keyword === 'enum' && Array.isArray(params.allowedValues)) return `must be one of ${params.allowedValues.map((v) => JSON.stringify(v)).join(', ')}`;
  if (e.keyword === 'additionalProperties') return `has no property "${String(params.additionalProperty)}"`;
  if (e.keyword === 'required') return `is missing the required property "${String(params.missingProperty)}"`;
  return e.message ?? 'is invalid';
}

/** Ajv errors → one issue per location (the first, most specific one), combinators dropped. */
export function schemaIssues(errors: readonly ErrorObject[] | null | undefined): SchemaIssue[] {
  const byPointer = new Map<string, SchemaIssue>();
  for (const e of errors ?? []) {
    if (e.keyword === 'anyOf' || e.keyword === 'oneOf' || e.keyword === 'if' || e.keyword === 'not') continue;
    const pointer = e.keyword === 'additionalProperties' ? pointerJoin(e.instancePath, String((e.params as Record<string, unknown>).additionalProperty)) : e.instancePath;
    if (!byPointer.has(pointer)) byPointer.set(pointer, { pointer, message: `${pointer || '/'} ${issueMessage(e)}` });
  }
  return [...byPointer.values()];
}

/** Is `schema` a usable JSON Schema 2020-12? Errors make it unusable; warnings flag likely typos. */
export function checkUserSchema(schema: unknown): { errors: SchemaIssue[]; warnings: SchemaIssue[] } {
  if (isPlainObject(schema) && typeof schema.$schema === 'string' && !DRAFT_2020.test(schema.$schema)) {
    return { errors: [{ pointer: '/$schema', message: `only JSON Schema 2020-12 is supported, not ${JSON.stringify(schema.$schema)}` }], warnings: [] };
  }
  const ajv = schemaChecker();
  logged.length = 0;
  if (!ajv.validateSchema(schema as object)) {
    const issues = schemaIssues(ajv.errors);
    return { errors: issues.length > 0 ? issues : [{ pointer: '', message: 'is not a valid JSON Schema' }], warnings: [] };
  }
  try {
    ajv.compile(schema as object);
  } catch (error) {
    return { errors: [{ pointer: '', message: (error as Error).message }], warnings: [] };
  } finally {
    try {
      ajv.removeSchema(schema as object);
    } catch {
      // nothing was added
    }
  }
  const warnings = logged.map((line) => {
    const keyword = /unknown keyword: "([^"]+)"/.exec(line)?.[1];
    const pointer = keyword === undefined ? '' : (findKey(schema, keyword) ?? '');
    return { pointer, message: keyword === undefined ? line.replace(/^strict mode: /, '') : `unknown keyword "${keyword}" is ignored` };
  });
  return { errors: [], warnings };
}

export type ValueCheck = { ok: true } | { ok: false; errors: SchemaIssue[] };

export interface CompiledJsonSchema {
  /** Validates a value; with `useDefaults`, fills defaults into it (mutates). */
  validate(value: unknown): ValueCheck;
}

/**
 * Compiles a JSON Schema for repeated validation, e.g. an llm step's `output_schema` in the
 * model activity (the repair prompt can quote `errors[].message`).
 */
export function compileJsonSchema(schema: unknown, options: { useDefaults?: boolean } = {}): { ok: true; schema: CompiledJsonSchema } | { ok: false; errors: SchemaIssue[] } {
  const check = checkUserSchema(schema);
  if (check.errors.length > 0) return { ok: false, errors: check.errors };
  const ajv = new Ajv2020({ allErrors: true, strict: false, validateFormats: false, useDefaults: options.useDefaults ?? false, logger: false });
  const validate = ajv.compile(schema as object);
  return {
    ok: true,
    schema: {
      validate(value: unknown): ValueCheck {
        return validate(value) ? { ok: true } : { ok: false, errors: schemaIssues(validate.errors) };
      },
    },
  };
}

/**
 * Validates run inputs against a workflow's `inputs` schema (defaults filled in a copy).
 * A workflow without `inputs` accepts only an empty object (or nothing).
 */
export function validateInputs(inputsSchema: unknown, inputs: unknown): { ok: true; inputs: Record<string, unknown> } | { ok: false; errors: SchemaIssue[] } {
  const value: unknown = inputs === undefined || inputs === null ? {} : structuredClone(inputs);
  if (inputsSchema === undefined || inputsSchema === null) {
    if (isPlainObject(value) && Object.keys(value).length === 0) return { ok: true, inputs: {} };
    return { ok: false, errors: [{ pointer: '', message: 'this workflow takes no inputs' }] };
  }
  const compiled = compileJsonSchema(inputsSchema, { useDefaults: true });
  if (!compiled.ok) return { ok: false, errors: compiled.errors };
  const result = compiled.schema.validate(value);
  if (!result.ok) return result;
  if (!isPlainObject(value)) return { ok: false, errors: [{ pointer: '', message: '/ must be an object' }] };
  return { ok: true, inputs: value };
}
