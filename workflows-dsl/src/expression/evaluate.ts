// Tree-walking evaluator. Pure and deterministic: it reads only the scope it is given, reads only
// own properties of plain data (never prototypes), and calls only the whitelisted functions.
import type { ExpressionNode } from './ast.ts';
import { ExpressionError, FORBIDDEN_PROPERTIES } from './errors.ts';
import { FunctionArgumentError, getFunction } from './functions.ts';
import { codePoints, deepEqual, describe, isPlainObject, toText, truthy } from './values.ts';

/** The names an expression can see: `inputs`, `steps`, `vars`, `loop`, a map's item variable, … */
export type Scope = Readonly<Record<string, unknown>>;

const span = (node: ExpressionNode) => node.end - node.start;

function typeError(node: { start: number; end: number }, message: string): ExpressionError {
  return new ExpressionError('expression_type', `${message} at position ${node.start}`, node.start, node.end - node.start);
}

/** `object[key]` / `object.key` on JSON-like data; null when absent, an error on non-data. */
export function readProperty(object: unknown, key: unknown, where: { start: number; end: number }): unknown {
  if (typeof key === 'string' && FORBIDDEN_PROPERTIES.has(key)) {
    throw new ExpressionError('forbidden_property', `property "${key}" is not accessible (at position ${where.start})`, where.start, where.end - where.start);
  }
  if (object === null || object === undefined) return null;
  if (typeof key !== 'string' && typeof key !== 'number') {
    throw typeError(where, `an index must be a string or a number, got ${describe(key)}`);
  }
  if (Array.isArray(object) || typeof object === 'string') {
    const items: readonly unknown[] = typeof object === 'string' ? codePoints(object) : object;
    if (key === 'length') return items.length;
    if (typeof key !== 'number' || !Number.isInteger(key)) {
      throw typeError(where, `${typeof object === 'string' ? 'a string' : 'an array'} can only be indexed by an integer or .length, got ${JSON.stringify(key)}`);
    }
    const i = key < 0 ? items.length + key : key;
    return i >= 0 && i < items.length ? (items[i] ?? null) : null;
  }
  if (isPlainObject(object)) {
    const name = String(key);
    return Object.hasOwn(object, name) ? (object[name] ?? null) : null;
  }
  throw typeError(where, `cannot read property ${JSON.stringify(key)} of ${describe(object)}`);
}

function number(value: unknown, node: ExpressionNode, operator: string): number {
  if (typeof value !== 'number') throw typeError(node, `operator "${operator}" expects numbers, got ${describe(value)}`);
  return value;
}

function finite(value: number, node: ExpressionNode): number {
  if (!Number.isFinite(value)) {
    throw new ExpressionError('expression_limit', `result is not a finite number at position ${node.start}`, node.start, span(node));
  }
  return value;
}

function compare(operator: string, left: unknown, right: unknown, node: ExpressionNode): boolean {
  const sameKind = (typeof left === 'number' && typeof right === 'number') || (typeof left === 'string' && typeof right === 'string');
  if (!sameKind) {
    throw typeError(node, `operator "${operator}" compares two numbers or two strings, got ${describe(left)} and ${describe(right)}`);
  }
  const l = left as number | string;
  const r = right as number | string;
  switch (operator) {
    case '<':
      return l < r;
    case '<=':
      return l <= r;
    case '>':
      return l > r;
    default:
      return l >= r;
  }
}

export function evaluateNode(node: ExpressionNode, scope: Scope): unknown {
  switch (node.type) {
    case 'literal':
      return node.value;
    case 'identifier':
      if (!Object.hasOwn(scope, node.name)) {
        throw new ExpressionError('unknown_reference', `unknown name "${node.name}" at position ${node.start}`, node.start, span(node));
      }
      return scope[node.name] ?? null;
    case 'member':
      return readProperty(evaluateNode(node.object, scope), node.property, { start: node.propertyStart, end: node.end });
    case 'index':
      return readProperty(evaluateNode(node.object, scope), evaluateNode(node.index, scope), node.index);
    case 'unary': {
      const value = evaluateNode(node.argument, scope);
      if (node.operator === '!') return !truthy(value);
      return finite(-number(value, node.argument, '-'), node);
    }
    case 'logical': {
      const left = evaluateNode(node.left, scope);
      if (node.operator === '&&') return truthy(left) ? evaluateNode(node.right, scope) : left;
      if (node.operator === '||') return truthy(left) ? left : evaluateNode(node.right, scope);
      return left === null || left === undefined ? evaluateNode(node.right, scope) : left;
    }
    case 'conditional':
      return truthy(evaluateNode(node.test, scope)) ? evaluateNode(node.consequent, scope) : evaluateNode(node.alternate, scope);
    case 'binary': {
      const left = evaluateNode(node.left, scope);
      const right = evaluateNode(node.right, scope);
      switch (node.operator) {
        case '==':
          return deepEqual(left, right);
        case '!=':
          return !deepEqual(left, right);
        case '<':
        case '<=':
        case '>':
        case '>=':
          return compare(node.operator, left, right, node);
        case '+':
          if (typeof left === 'string' || typeof right === 'string') return toText(left) + toText(right);
          if (Array.isArray(left) && Array.isArray(right)) return [...left, ...right];
          if (typeof left !== 'number' || typeof right !== 'number') {
            throw typeError(node, `operator "+" adds numbers, joins strings or concatenates arrays, got ${describe(left)} and ${describe(right)}`);
          }
          return finite(left + right, node);
        case '-':
          return finite(number(left, node.left, '-') - number(right, node.right, '-'), node);
        case '*':
          return finite(number(left, node.left, '*') * number(right, node.right, '*'), node);
        case '/': {
          const dividend = number(left, node.left, '/');
          const divisor = number(right, node.right, '/');
          if (divisor === 0) throw typeError(node.right, 'division by zero');
          return finite(dividend / divisor, node);
        }
        case '%': {
          const dividend = number(left, node.left, '%');
          const divisor = number(right, node.right, '%');
          if (divisor === 0) throw typeError(node.right, 'division by zero');
          return finite(dividend % divisor, node);
        }
      }
      break;
    }
    case 'call': {
      const spec = getFunction(node.callee);
      if (!spec) throw new ExpressionError('unknown_function', `unknown function "${node.callee}" at position ${node.start}`, node.start, span(node));
      const args = node.args.map((arg) => evaluateNode(arg, scope));
      try {
        return spec.call(args);
      } catch (error) {
        if (error instanceof FunctionArgumentError) {
          const at = (error.argument !== undefined ? node.args[error.argument] : undefined) ?? node;
          throw new ExpressionError('expression_type', `${error.message} at position ${at.start}`, at.start, span(at));
        }
        throw error;
      }
    }
    case 'array':
      return node.elements.map((element) => evaluateNode(element, scope));
    case 'object': {
      const out: Record<string, unknown> = {};
      for (const { key, value } of node.properties) out[key] = evaluateNode(value, scope);
      return out;
    }
  }
  throw new ExpressionError('expression_syntax', 'malformed expression tree', 0);
}
