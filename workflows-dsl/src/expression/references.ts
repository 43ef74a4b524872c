// Static analysis of expressions: which names and paths an expression reads, and a cheap type
// inference used by the semantic checker (e.g. `map.over` must produce a list).
import type { ExpressionNode, IdentifierNode } from './ast.ts';
import { getFunction } from './functions.ts';
import { parseExpressionSource, hasExpression, parseTemplate } from './template.ts';
import type { ValueType } from './values.ts';

export interface Reference {
  /** The name the expression starts from: `inputs`, `steps`, `vars`, `loop`, a map variable, … */
  root: string;
  /** Accessors known statically: `steps.plan.output.items[0]` → ['plan', 'output', 'items', 0]. */
  path: (string | number)[];
  /** True when the chain continues with a computed accessor (`steps[name]`, `items[i]`). */
  dynamic: boolean;
  /** Span of the static part in the analysed string. */
  start: number;
  end: number;
}

type Accessor = { key: string | number; end: number } | { index: ExpressionNode };

function flatten(node: ExpressionNode): { base: ExpressionNode; accessors: Accessor[] } {
  const accessors: Accessor[] = [];
  let current = node;
  for (;;) {
    if (current.type === 'member') {
      accessors.unshift({ key: current.property, end: current.end });
      current = current.object;
    } else if (current.type === 'index') {
      const index = current.index;
      if (index.type === 'literal' && (typeof index.value === 'string' || typeof index.value === 'number')) {
        accessors.unshift({ key: index.value, end: current.end });
      } else {
        accessors.unshift({ index });
      }
      current = current.object;
    } else {
      return { base: current, accessors };
    }
  }
}

function visit(node: ExpressionNode, out: Reference[]): void {
  switch (node.type) {
    case 'literal':
      return;
    case 'identifier':
      out.push({ root: node.name, path: [], dynamic: false, start: node.start, end: node.end });
      return;
    case 'member':
    case 'index': {
      const { base, accessors } = flatten(node);
      if (base.type === 'identifier') {
        const path: (string | number)[] = [];
        let end = (base as IdentifierNode).end;
        let dynamic = false;
        for (const accessor of accessors) {
          if ('index' in accessor) {
            dynamic = true;
            break;
          }
          path.push(accessor.key);
          end = accessor.end;
        }
        out.push({ root: base.name, path, dynamic, start: base.start, end });
      } else {
        visit(base, out);
      }
      for (const accessor of accessors) if ('index' in accessor) visit(accessor.index, out);
      return;
    }
    case 'call':
      for (const arg of node.args) visit(arg, out);
      return;
    case 'unary':
      visit(node.argument, out);
      return;
    case 'binary':
    case 'logical':
      visit(node.left, out);
      visit(node.right, out);
      return;
    case 'conditional':
      visit(node.test, out);
      visit(node.consequent, out);
      visit(node.alternate, out);
      return;
    case 'array':
      for (const element of node.elements) visit(element, out);
      return;
    case 'object':
      for (const property of node.properties) visit(property.value, out);
  }
}

/** References read by a parsed expression, in source order. */
export function referencesOf(node: ExpressionNode): Reference[] {
  const out: Reference[] = [];
  visit(node, out);
  return out.sort((a, b) => a.start - b.start);
}

/**
 * References read by an expression: a parsed tree, a template string (anything containing
 * `${{`; every block is analysed), or a bare expression. Positions are offsets in the string.
 * Throws ExpressionError when the text does not parse.
 */
export function extractReferences(input: string | ExpressionNode): Reference[] {
  if (typeof input !== 'string') return referencesOf(input);
  if (!hasExpression(input)) return referencesOf(parseExpressionSource(input));
  const out: Reference[] = [];
  for (const part of parseTemplate(input)) if (part.type === 'expression') out.push(...referencesOf(part.node));
  return out;
}

export type StaticType = ValueType | 'unknown';

/**
 * Best-effort static type of an expression; 'unknown' whenever it cannot be known cheaply.
 * `resolve` gives the type of a reference (e.g. from the inputs' JSON Schema).
 */
export function inferType(node: ExpressionNode, resolve: (reference: Reference) => StaticType): StaticType {
  switch (node.type) {
    case 'literal':
      return node.value === null ? 'null' : (typeof node.value as StaticType);
    case 'array':
      return 'array';
    case 'object':
      return 'object';
    case 'identifier':
    case 'member':
    case 'index': {
      const [first] = referencesOf(node);
      return first && first.start === node.start && first.end === node.end && !first.dynamic ? resolve(first) : 'unknown';
    }
    case 'unary':
      return node.operator === '!' ? 'boolean' : 'number';
    case 'binary':
      if (['==', '!=', '<', '<=', '>', '>='].includes(node.operator)) return 'boolean';
      if (node.operator === '+') {
        const left = inferType(node.left, resolve);
        const right = inferType(node.right, resolve);
        if (left === 'string' || right === 'string') return 'string';
        if (left === 'number' && right === 'number') return 'number';
        if (left === 'array' && right === 'array') return 'array';
        return 'unknown';
      }
      return 'number';
    case 'logical':
      return 'unknown';
    case 'conditional': {
      const a = inferType(node.consequent, resolve);
      return a === inferType(node.alternate, resolve) ? a : 'unknown';
    }
    case 'call': {
      const spec = getFunction(node.callee);
      if (!spec) return 'unknown';
      if (spec.returns === 'first-argument') {
        const first = node.args[0];
        const t = first ? inferType(first, resolve) : 'unknown';
        return t === 'array' || t === 'string' ? t : 'unknown';
      }
      return spec.returns;
    }
  }
}
