// Semantic checks that a JSON Schema cannot express: graph errors (from analysis.ts), and every
// expression of the document parsed and resolved against what is in scope where it runs: the
// declared inputs, the steps certainly finished before it, variables, loop and map names.
// Pure, deterministic and free of ajv: the interpreter may run it (compileWorkflow does).
import { analyze, type Analysis, type BlockNode, type StepNode } from './analysis.ts';
import { parseDuration } from './duration.ts';
import type { ExpressionNode } from './expression/ast.ts';
import { ExpressionError } from './expression/errors.ts';
import { suggest } from './expression/parser.ts';
import { inferType, referencesOf, type Reference, type StaticType } from './expression/references.ts';
import { hasExpression, parseTemplate, wholeExpression } from './expression/template.ts';
import { isPlainObject } from './expression/values.ts';
import { pointerJoin } from './pointer.ts';
import type { DslError, DslErrorCode, DslWarning, DslWarningCode } from './types.ts';

export interface SemanticResult {
  errors: DslError[];
  warnings: DslWarning[];
}

/** Fields of a step's state, as read by `steps.<id>.<field>`. */
export const STEP_STATE_FIELDS = ['output', 'status', 'error'] as const;
const LOOP_FIELDS = ['index', 'previous'] as const;

/** Keys of a step that hold no templates (ids, numbers, options, nested blocks, schemas). */
const NOT_TEMPLATES = new Set([
  'id',
  'kind',
  'name',
  'description',
  'needs',
  'if',
  'on_error',
  'retry',
  'timeout',
  'steps',
  'branches',
  'output_schema',
  'repair_retries',
  'max_iterations',
  'concurrency',
  'as',
  'index_as',
  'over',
  'until',
  'cases',
  'default',
  'method',
  'workflow',
  'version',
]);

/** Fields that are numbers or expressions producing numbers. */
const NUMERIC_FIELDS = new Set(['temperature', 'max_tokens', 'top_k', 'min_score']);

/** Where an expression runs: a block, and the step it belongs to (null: after the whole block). */
interface Context {
  block: BlockNode;
  at: StepNode | null;
}

type Expectation = 'template' | 'expression' | 'list' | 'number' | 'condition';

const isString = (value: unknown): value is string => typeof value === 'string';
const WHOLE_EXPRESSION_SHAPE = /^\$\{\{[\s\S]*\}\}$/;

function schemaTypeOf(schema: unknown): StaticType {
  if (!isPlainObject(schema)) return 'unknown';
  const type = schema.type;
  if (type === 'integer' || type === 'number') return 'number';
  if (type === 'string' || type === 'boolean' || type === 'array' || type === 'object' || type === 'null') return type;
  return 'unknown';
}

/** The sub-schema at `path` (properties / items), or undefined when the schema does not say. */
function schemaAt(schema: unknown, path: readonly (string | number)[]): unknown {
  let current = schema;
  for (const segment of path) {
    if (!isPlainObject(current)) return undefined;
    if (typeof segment === 'number') current = current.items;
    else current = isPlainObject(current.properties) ? current.properties[segment] : undefined;
  }
  return current;
}

export function checkSemantics(document: unknown, analysis: Analysis = analyze(document)): SemanticResult {
  const errors: DslError[] = [...analysis.errors];
  const warnings: DslWarning[] = [...analysis.warnings];
  const error = (code: DslErrorCode, pointer: string, message: string, position?: number) =>
    errors.push(position === undefined ? { code, message, pointer } : { code, message, pointer, position });
  const warn = (code: DslWarningCode, pointer: string, message: string, position?: number) =>
    warnings.push(position === undefined ? { code, message, pointer } : { code, message, pointer, position });

  const doc = isPlainObject(document) ? document : {};
  const inputs = isPlainObject(doc.inputs) ? doc.inputs : undefined;
  const inputProperties = inputs && isPlainObject(inputs.properties) ? inputs.properties : {};
  const inputNames = Object.keys(inputProperties);
  const allIds = [...analysis.steps.keys()];

  if (inputs && Array.isArray(inputs.required)) {
    inputs.required.forEach((name, i) => {
      if (isString(name) && !Object.hasOwn(inputProperties, name)) {
        error('unknown_input', pointerJoin('/inputs', 'required', i), `required input "${name}" is not declared in inputs.properties${suggest(name, inputNames)}`);
      }
    });
  }

  // ---- scope helpers -------------------------------------------------------------------------
  const containers = (block: BlockNode): StepNode[] => {
    const out: StepNode[] = [];
    for (let c = block.container; c; c = c.block.container) out.push(c);
    return out;
  };
  const mapNames = (block: BlockNode): Map<string, 'item' | 'index'> => {
    const names = new Map<string, 'item' | 'index'>();
    // Innermost first, so inner maps shadow outer ones.
    for (const c of containers(block)) {
      if (c.kind !== 'map') continue;
      const item = isString(c.raw.as) ? c.raw.as : 'item';
      const index = isString(c.raw.index_as) ? c.raw.index_as : 'index';
      if (!names.has(item)) names.set(item, 'item');
      if (!names.has(index)) names.set(index, 'index');
    }
    return names;
  };
  const inLoop = (block: BlockNode) => containers(block).some((c) => c.kind === 'loop');
  const visibleVars = (block: BlockNode): Set<string> => {
    const out = new Set(block.vars);
    for (const c of containers(block)) for (const v of c.block.vars) out.add(v);
    return out;
  };

  /** Why `target` cannot be read from `ctx`, or undefined when it can. */
  const visibility = (target: StepNode, ctx: Context): { code: DslErrorCode; message: string } | undefined => {
    for (const c of containers(ctx.block)) {
      if (c === target) {
        return { code: 'out_of_scope', message: `step "${target.id}" contains this expression; its state exists only once all of its nested steps have finished` };
      }
    }
    let block = ctx.block;
    let at = ctx.at;
    for (;;) {
      if (target.block === block) {
        if (at === null || at.id === undefined) return undefined;
        if (at === target) return { code: 'missing_dependency', message: `step "${target.id}" cannot read its own state` };
        if (at.id !== undefined && block.ancestors.get(at.id)?.has(target.id!)) return undefined;
        if (block.mode === 'sequence' && target.index > at.index) {
          return { code: 'missing_dependency', message: `step "${at.id}" reads step "${target.id}", which runs after it` };
        }
        if (block.handlers.has(at.id ?? '')) {
          return { code: 'missing_dependency', message: `fallback step "${at.id}" reads step "${target.id}", which is not certain to have finished when it runs` };
        }
        return {
          code: 'missing_dependency',
          message: `step "${at.id}" reads step "${target.id}" but does not depend on it; add "${target.id}" to its needs (directly or through a step it needs)`,
        };
      }
      if (!block.container) break;
      at = block.container;
      block = at.block;
    }
    const owner = target.block.container;
    return {
      code: 'out_of_scope',
      message: `step "${target.id}" is nested in ${owner ? `${owner.kind} step "${owner.id}"` : 'another block'} and cannot be read from here${owner ? `; read steps.${owner.id}.output instead` : ''}`,
    };
  };

  /** Static type of a reference, for the cheap type checks. */
  const resolveType = (ctx: Context) => (reference: Reference): StaticType => {
    const [first, second, ...rest] = reference.path;
    switch (reference.root) {
      case 'inputs':
        return reference.path.length === 1 && isString(first) ? schemaTypeOf(inputProperties[first]) : 'unknown';
      case 'loop':
        return first === 'index' && reference.path.length === 1 && inLoop(ctx.block) ? 'number' : 'unknown';
      case 'steps': {
        const step = isString(first) ? analysis.steps.get(first) : undefined;
        if (!step) return 'unknown';
        if (second === 'status' && rest.length === 0) return 'string';
        if (second === 'iterations' && rest.length === 0 && step.kind === 'loop') return 'array';
        if (second !== 'output') return 'unknown';
        if (step.kind === 'llm') {
          const schema = step.raw.output_schema;
          if (schema === undefined) return rest.length === 0 ? 'string' : 'unknown';
          return schemaTypeOf(schemaAt(schema, rest));
        }
        if (rest.length > 0) return 'unknown';
        if (step.kind === 'map' || step.kind === 'retrieve') return 'array';
        if (step.kind === 'parallel' || step.kind === 'approval' || step.kind === 'set' || step.kind === 'switch') return 'object';
        return 'unknown';
      }
      default:
        if (reference.path.length === 0 && mapNames(ctx.block).get(reference.root) === 'index') return 'number';
        return 'unknown';
    }
  };

  const checkReference = (reference: Reference, ctx: Context, pointer: string): void => {
    const position = reference.start;
    const [first, second] = reference.path;
    switch (reference.root) {
      case 'inputs': {
        if (first === undefined) return;
        if (!isString(first) || !Object.hasOwn(inputProperties, first)) {
          const declared = inputNames.length > 0 ? `; declared inputs: ${inputNames.join(', ')}` : '; the workflow declares no inputs';
          error('unknown_input', pointer, `input "${String(first)}" is not declared in inputs.properties${isString(first) ? suggest(first, inputNames) : ''}${declared}`, position);
        }
        return;
      }
      case 'steps': {
        if (first === undefined) {
          error('dynamic_reference', pointer, '`steps` must be followed by a step id written out, e.g. steps.plan.output', position);
          return;
        }
        const target = isString(first) ? analysis.steps.get(first) : undefined;
        if (!target) {
          error('unknown_step', pointer, `step "${String(first)}" does not exist${isString(first) ? suggest(first, allIds) : ''}`, position);
          return;
        }
        const problem = visibility(target, ctx);
        if (problem) {
          error(problem.code, pointer, problem.message, position);
          return;
        }
        if (second !== undefined) {
          const fields: string[] = [...STEP_STATE_FIELDS, ...(target.kind === 'loop' ? ['iterations'] : [])];
          if (!isString(second) || !fields.includes(second)) {
            error('unknown_reference', pointer, `steps.${first} has no field "${String(second)}"${isString(second) ? suggest(second, fields) : ''}; available: ${fields.join(', ')}`, position);
            return;
          }
        }
        if (second === 'output' && target.kind === 'llm' && isPlainObject(target.raw.output_schema)) {
          let schema: unknown = target.raw.output_schema;
          const path = reference.path.slice(2);
          for (const segment of path) {
            if (!isPlainObject(schema)) break;
            if (typeof segment === 'number') {
              schema = schema.items;
              continue;
            }
            if (!isPlainObject(schema.properties)) break;
            if (!Object.hasOwn(schema.properties, segment)) {
              warn('unknown_output_property', pointer, `the output_schema of step "${first}" declares no property "${segment}"${suggest(segment, Object.keys(schema.properties))}`, position);
              break;
            }
            schema = schema.properties[segment];
          }
        }
        return;
      }
      case 'vars': {
        if (!isString(first)) return;
        const vars = visibleVars(ctx.block);
        if (!vars.has(first)) {
          error('unknown_reference', pointer, `variable "${first}" is never set: no \`set\` step of this block or an enclosing one defines it${suggest(first, [...vars])}`, position);
        }
        return;
      }
      case 'loop': {
        if (!inLoop(ctx.block)) {
          error('unknown_reference', pointer, '`loop` is only available in the nested steps of a loop step (and its `until`)', position);
          return;
        }
        if (first !== undefined && (!isString(first) || !(LOOP_FIELDS as readonly string[]).includes(first))) {
          error('unknown_reference', pointer, `loop has no field "${String(first)}"; available: ${LOOP_FIELDS.join(', ')}`, position);
        }
        return;
      }
      default: {
        const names = mapNames(ctx.block);
        if (names.has(reference.root)) return;
        const available = ['inputs', 'steps', 'vars', ...(inLoop(ctx.block) ? ['loop'] : []), ...names.keys()];
        error('unknown_reference', pointer, `unknown name "${reference.root}"${suggest(reference.root, available)}; expressions here can read ${available.join(', ')}`, position);
      }
    }
  };

  /** Parses one string of the document and checks what it reads; returns its whole-expression tree. */
  const checkString = (text: string, pointer: string, ctx: Context, expectation: Expectation): ExpressionNode | undefined => {
    const mustBeExpression = expectation !== 'template' && expectation !== 'number';
    if (!hasExpression(text)) return undefined; // plain text; an expression field without ${{ is a schema error
    let parts;
    try {
      parts = parseTemplate(text);
    } catch (e) {
      if (!(e instanceof ExpressionError)) throw e;
      const code: DslErrorCode = e.code === 'expression_limit' ? 'limit_exceeded' : e.code === 'unknown_function' || e.code === 'forbidden_property' ? e.code : 'expression_syntax';
      error(code, pointer, e.message, e.position);
      return undefined;
    }
    for (const part of parts) {
      if (part.type !== 'expression') continue;
      for (const reference of referencesOf(part.node)) checkReference(reference, ctx, pointer);
    }
    const whole = wholeExpression(parts, text)?.node;
    if (mustBeExpression && !whole) {
      if (WHOLE_EXPRESSION_SHAPE.test(text)) error('expected_expression', pointer, 'expected one whole ${{ … }} expression, found several blocks or text around one');
      return undefined;
    }
    if (!whole) return undefined;
    if (expectation === 'condition' && whole.type === 'literal') {
      warn('constant_condition', pointer, `the condition is always ${whole.value ? 'true' : 'false'}`);
    }
    const wanted = expectation === 'list' ? 'array' : expectation === 'number' ? 'number' : undefined;
    if (wanted) {
      const actual = inferType(whole, resolveType(ctx));
      if (actual !== 'unknown' && actual !== wanted) {
        const noun = wanted === 'array' ? 'a list' : 'a number';
        error('type_mismatch', pointer, `this expression must produce ${noun}, but it produces ${actual === 'array' ? 'a list' : actual === 'null' ? 'null' : actual === 'object' ? 'an object' : `a ${actual}`}`, whole.start);
      }
    }
    return whole;
  };

  /** Walks a value and checks every template string in it. */
  const checkValue = (value: unknown, pointer: string, ctx: Context): void => {
    if (isString(value)) checkString(value, pointer, ctx, 'template');
    else if (Array.isArray(value)) value.forEach((item, i) => checkValue(item, pointerJoin(pointer, i), ctx));
    else if (isPlainObject(value)) for (const [key, item] of Object.entries(value)) checkValue(item, pointerJoin(pointer, key), ctx);
  };

  // ---- per step ------------------------------------------------------------------------------
  for (const step of analysis.all) {
    const raw = step.raw;
    const ctx: Context = { block: step.block, at: step };
    if (isString(raw.if)) checkString(raw.if, pointerJoin(step.pointer, 'if'), ctx, 'condition');
    for (const [key, value] of Object.entries(raw)) {
      if (NOT_TEMPLATES.has(key)) continue;
      const pointer = pointerJoin(step.pointer, key);
      if (NUMERIC_FIELDS.has(key) && isString(value)) checkString(value, pointer, ctx, 'number');
      else checkValue(value, pointer, ctx);
    }
    for (const field of ['timeout'] as const) {
      if (isString(raw[field]) && parseDuration(raw[field]) === 0) error('invalid_duration', pointerJoin(step.pointer, field), 'a duration must be longer than 0');
    }
    if (isPlainObject(raw.retry) && isPlainObject(raw.retry.backoff)) {
      for (const field of ['initial', 'max'] as const) {
        const value = raw.retry.backoff[field];
        if (isString(value) && parseDuration(value) === 0) error('invalid_duration', pointerJoin(step.pointer, 'retry', 'backoff', field), 'a duration must be longer than 0');
      }
    }
    switch (step.kind) {
      case 'map':
        if (isString(raw.over)) checkString(raw.over, pointerJoin(step.pointer, 'over'), ctx, 'list');
        break;
      case 'loop': {
        const body = step.children[0];
        if (isString(raw.until) && body) checkString(raw.until, pointerJoin(step.pointer, 'until'), { block: body, at: null }, 'condition');
        break;
      }
      case 'switch':
        if (Array.isArray(raw.cases)) {
          raw.cases.forEach((c, i) => {
            if (isPlainObject(c) && isString(c.when)) checkString(c.when, pointerJoin(step.pointer, 'cases', i, 'when'), ctx, 'condition');
          });
        }
        break;
      case 'llm':
        if (raw.repair_retries !== undefined && raw.output_schema === undefined) {
          warn('unused_repair_retries', pointerJoin(step.pointer, 'repair_retries'), '`repair_retries` has no effect without `output_schema`');
        }
        break;
      case 'workflow':
        if (isString(raw.workflow) && raw.workflow === doc.name) {
          warn('recursive_workflow', pointerJoin(step.pointer, 'workflow'), `step "${step.id}" calls the workflow "${raw.workflow}" itself; make sure the recursion ends`);
        }
        break;
    }
  }

  // ---- run outputs ---------------------------------------------------------------------------
  if (isPlainObject(doc.outputs)) checkValue(doc.outputs, '/outputs', { block: analysis.root, at: null });

  return { errors: dedupe(errors), warnings: dedupe(warnings) };
}

function dedupe<T extends { code: string; pointer: string; message: string; position?: number }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => {
    const key = `${item.code}\u0000${item.pointer}\u0000${item.message}\u0000${item.position ?? ''}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}
