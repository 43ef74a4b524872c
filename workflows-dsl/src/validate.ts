// validateWorkflow: JSON Schema validation (ajv) of a document, validity of the JSON Schemas it
// embeds (inputs, output_schema), and the semantic checks. This module uses ajv, which generates
// code at run time: import it from the gateway and the designer, never from workflow code (the
// interpreter needs only runtime.ts).
import { Ajv2020, type ErrorObject, type ValidateFunction } from 'ajv/dist/2020.js';
import { analyze } from './analysis.ts';
import { suggest } from './expression/parser.ts';
import { isPlainObject } from './expression/values.ts';
import { checkUserSchema } from './json-schema.ts';
import { pointerJoin, pointerSegments, pointerWithin } from './pointer.ts';
import { WORKFLOW_SCHEMA } from './schema.ts';
import { checkSemantics } from './semantics.ts';
import type { DslError, DslErrorCode, DslWarning, ValidationResult, WorkflowDocument } from './types.ts';
import { STEP_KINDS } from './types.ts';

/** A diagnostic plus what the source mapper needs: point at the key (not the value)? */
export interface Located<T extends DslError | DslWarning = DslError> {
  error: T;
  /** Point at the property's key rather than its value (unknown properties, bad names). */
  key: boolean;
}
export type LocatedError = Located<DslError>;

const EXPRESSION_PATTERN = WORKFLOW_SCHEMA.$defs.expression.pattern;
const DURATION_PATTERN = WORKFLOW_SCHEMA.$defs.duration.pattern;
const IDENTIFIER_PATTERN = WORKFLOW_SCHEMA.$defs.identifier.pattern;

/** Fields that take a number or an expression producing one. */
const NUMBER_OR_EXPRESSION = new Set(['temperature', 'max_tokens', 'top_k', 'min_score']);

let compiled: ValidateFunction | undefined;

function schemaValidator(): ValidateFunction {
  if (!compiled) {
    const ajv = new Ajv2020({ allErrors: true, verbose: true, strict: true, strictRequired: false, allowUnionTypes: true });
    ajv.addKeyword({ keyword: 'x-error-message', schemaType: 'string' });
    compiled = ajv.compile(WORKFLOW_SCHEMA);
  }
  return compiled;
}

function valueAt(data: unknown, pointer: string): unknown {
  let current = data;
  for (const segment of pointerSegments(pointer)) {
    if (Array.isArray(current)) current = current[Number(segment)];
    else if (isPlainObject(current) && Object.hasOwn(current, segment)) current = current[segment];
    else return undefined;
  }
  return current;
}

const STEP_POINTER = /\/steps\/\d+$/;

/** "llm step "plan"", "the workflow", ""retry"" … for message prefixes. */
function describeAt(data: unknown, pointer: string): string {
  if (pointer === '') return 'the workflow';
  const value = valueAt(data, pointer);
  if (STEP_POINTER.test(pointer) && isPlainObject(value)) {
    const id = typeof value.id === 'string' ? ` "${value.id}"` : '';
    const kind = typeof value.kind === 'string' && (STEP_KINDS as readonly string[]).includes(value.kind) ? `${value.kind} step` : 'step';
    return `${kind}${id}`;
  }
  const segments = pointerSegments(pointer);
  const last = segments[segments.length - 1]!;
  if (/^\d+$/.test(last) && segments.length > 1) return `item ${last} of "${segments[segments.length - 2]}"`;
  return `"${last}"`;
}

const article = (type: string) => (type === 'array' || type === 'object' || type === 'integer' ? `an ${type}` : `a ${type}`);

function typeMessage(types: unknown): string {
  const list = (Array.isArray(types) ? types : [types]).map(String);
  const words = list.map((t) => (t === 'array' ? 'a list' : article(t)));
  return `must be ${words.length > 1 ? `${words.slice(0, -1).join(', ')} or ${words[words.length - 1]}` : words[0]}`;
}

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'an object';
  return String(value);
}

/** Turns ajv's errors into DslErrors: one precise error per problem, combinator noise removed. */
export function translateSchemaErrors(errors: readonly ErrorObject[], data: unknown): LocatedError[] {
  const combinators = errors.filter((e) => e.keyword === 'oneOf' || e.keyword === 'anyOf' || e.keyword === 'not');
  const out: LocatedError[] = [];
  for (const e of errors) {
    if (e.keyword === 'if' || e.keyword === 'propertyNames') continue;
    if (combinators.some((c) => c !== e && c.instancePath === e.instancePath && e.schemaPath.startsWith(`${c.schemaPath}/`))) continue;
    const params = e.params as Record<string, unknown>;
    const parent = (e.parentSchema ?? {}) as Record<string, unknown>;
    let pointer = e.instancePath;
    let key = false;
    let code: DslErrorCode = 'schema';
    let message: string;
    if (e.propertyName !== undefined) {
      // A property name failed `propertyNames`.
      pointer = pointerJoin(e.instancePath, e.propertyName);
      key = true;
      message = `"${e.propertyName}" is not a valid name: use letters, digits and _, not starting with a digit`;
      out.push({ error: { code, message, pointer }, key });
      continue;
    }
    const value = e.data;
    switch (e.keyword) {
      case 'required':
        message = `${describeAt(data, pointer)} is missing the required property "${String(params.missingProperty)}"`;
        break;
      case 'additionalProperties': {
        const property = String(params.additionalProperty);
        pointer = pointerJoin(e.instancePath, property);
        key = true;
        const allowed = isPlainObject(parent.properties) ? Object.keys(parent.properties) : [];
        message = `${describeAt(data, e.instancePath)} has no property "${property}"${suggest(property, allowed)}`;
        if (allowed.length > 0 && allowed.length <= 40) message += `; allowed: ${allowed.join(', ')}`;
        break;
      }
      case 'type':
        if (parent.pattern === EXPRESSION_PATTERN) {
          code = 'expected_expression';
          message = `${describeAt(data, pointer)} must be one whole \${{ … }} expression, not ${describeValue(value)}`;
        } else if (parent.pattern === DURATION_PATTERN) {
          code = 'invalid_duration';
          message = `${describeAt(data, pointer)} must be a duration such as 500ms, 30s, 5m, 2h, 7d or 1h30m, not ${describeValue(value)}`;
        } else {
          const orExpression = isPlainObject(parent.then) && parent.then.$ref === '#/$defs/expression';
          const types = orExpression ? (params.type as string[]).filter((t) => t !== 'string') : params.type;
          message = `${describeAt(data, pointer)} ${typeMessage(types)}${orExpression ? ' or a ${{ … }} expression' : ''}, not ${describeValue(value)}`;
        }
        break;
      case 'enum': {
        const allowed = (params.allowedValues as unknown[]) ?? [];
        if (pointer.endsWith('/kind') && allowed.includes('llm')) {
          code = 'unknown_kind';
          const kind = String(value);
          message = `unknown step kind ${describeValue(value)}${typeof value === 'string' ? suggest(kind, STEP_KINDS) : ''}; kinds: ${STEP_KINDS.join(', ')}`;
        } else {
          message = `${describeAt(data, pointer)} must be one of ${allowed.map((v) => JSON.stringify(v)).join(', ')}, not ${describeValue(value)}`;
        }
        break;
      }
      case 'const':
        message = `${describeAt(data, pointer)} must be ${JSON.stringify(params.allowedValue)}`;
        break;
      case 'pattern':
        if (params.pattern === EXPRESSION_PATTERN) {
          code = 'expected_expression';
          const numeric = NUMBER_OR_EXPRESSION.has(pointerSegments(pointer).pop() ?? '');
          message = `${describeAt(data, pointer)} must be ${numeric ? 'a number or ' : ''}one whole \${{ … }} expression, not ${describeValue(value)}`;
        } else if (params.pattern === DURATION_PATTERN) {
          code = 'invalid_duration';
          message = `${describeAt(data, pointer)} must be a duration such as 500ms, 30s, 5m, 2h, 7d or 1h30m, not ${describeValue(value)}`;
        } else if (params.pattern === IDENTIFIER_PATTERN) {
          message = `${describeAt(data, pointer)} must be a name of letters, digits and _, not starting with a digit, not ${describeValue(value)}`;
        } else {
          message = `${describeAt(data, pointer)} ${e.message ?? 'is invalid'}`;
        }
        break;
      case 'oneOf':
      case 'anyOf':
      case 'not': {
        const custom = parent['x-error-message'];
        message = `${describeAt(data, pointer)}: ${typeof custom === 'string' ? custom : (e.message ?? 'is invalid')}`;
        break;
      }
      case 'minLength':
        message = params.limit === 1 ? `${describeAt(data, pointer)} must not be empty` : `${describeAt(data, pointer)} must have at least ${String(params.limit)} characters`;
        break;
      case 'maxLength':
        message = `${describeAt(data, pointer)} must have at most ${String(params.limit)} characters`;
        break;
      case 'minimum':
      case 'maximum':
      case 'exclusiveMinimum':
      case 'exclusiveMaximum':
        message = `${describeAt(data, pointer)} must be ${String(params.comparison)} ${String(params.limit)}, not ${describeValue(value)}`;
        break;
      case 'minItems':
        message = `${describeAt(data, pointer)} must have at least ${String(params.limit)} item${params.limit === 1 ? '' : 's'}`;
        break;
      case 'minProperties':
        message = `${describeAt(data, pointer)} must have at least ${String(params.limit)} entr${params.limit === 1 ? 'y' : 'ies'}`;
        break;
      case 'uniqueItems':
        message = `${describeAt(data, pointer)} must not repeat an item (items ${String(params.j)} and ${String(params.i)} are equal)`;
        break;
      default:
        message = `${describeAt(data, pointer)} ${e.message ?? 'is invalid'}`;
    }
    out.push({ error: { code, message, pointer }, key });
  }
  return dedupe(out);
}

function dedupe(items: LocatedError[]): LocatedError[] {
  const seen = new Set<string>();
  return items.filter(({ error }) => {
    const k = `${error.code}\u0000${error.pointer}\u0000${error.message}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** Schema errors about the value itself (not a missing/extra property): semantic errors under them are noise. */
const SHADOWING = new Set<DslErrorCode>(['schema', 'unknown_kind', 'expected_expression', 'invalid_duration']);

export interface DetailedValidation {
  errors: Located<DslError>[];
  warnings: Located<DslWarning>[];
}

const located = <T extends DslError | DslWarning>(error: T, key = false): Located<T> => ({ error, key });

/** Validation with source-mapping hints; parseWorkflow uses it, validateWorkflow strips the hints. */
export function validateDetailed(document: unknown): DetailedValidation {
  if (document === null || document === undefined) {
    return { errors: [located<DslError>({ code: 'schema', message: 'the workflow document is empty', pointer: '' })], warnings: [] };
  }
  const validate = schemaValidator();
  const schemaErrors = validate(document) ? [] : translateSchemaErrors(validate.errors ?? [], document);
  if (!isPlainObject(document)) return { errors: schemaErrors, warnings: [] };

  const errors: Located<DslError>[] = [...schemaErrors];
  const warnings: Located<DslWarning>[] = [];

  // Embedded JSON Schemas must themselves be valid.
  const embedded = (schema: unknown, base: string, code: 'invalid_input_schema' | 'invalid_output_schema', label: string) => {
    const result = checkUserSchema(schema);
    for (const issue of result.errors) errors.push(located<DslError>({ code, message: `${label} is not a valid JSON Schema: ${issue.message}`, pointer: base + issue.pointer }));
    for (const issue of result.warnings) warnings.push(located<DslWarning>({ code: 'schema_warning', message: `${label}: ${issue.message}`, pointer: base + issue.pointer }, true));
  };
  if (isPlainObject(document.inputs)) embedded(document.inputs, '/inputs', 'invalid_input_schema', 'inputs');
  const analysis = analyze(document);
  for (const step of analysis.all) {
    if (step.kind === 'llm' && isPlainObject(step.raw.output_schema)) {
      embedded(step.raw.output_schema, pointerJoin(step.pointer, 'output_schema'), 'invalid_output_schema', 'output_schema');
    }
  }

  const semantic = checkSemantics(document, analysis);
  const shadows = schemaErrors.filter((e) => SHADOWING.has(e.error.code) && !e.key && e.error.pointer !== '').map((e) => e.error.pointer);
  for (const error of semantic.errors) {
    if (!shadows.some((p) => pointerWithin(error.pointer, p))) errors.push(located(error));
  }
  for (const warning of semantic.warnings) warnings.push(located(warning));
  return { errors, warnings };
}

/**
 * Validates a parsed document (any value): JSON Schema, embedded schemas, semantics. Never
 * throws on bad input; returns every error. Errors carry JSON pointers but no line/column (use
 * parseWorkflow on the source text for those).
 */
export function validateWorkflow(document: unknown): ValidationResult {
  const { errors, warnings } = validateDetailed(document);
  const plainWarnings = warnings.map((w) => w.error);
  if (errors.length > 0) return { ok: false, errors: errors.map((e) => e.error), warnings: plainWarnings };
  return { ok: true, document: document as WorkflowDocument, warnings: plainWarnings };
}
