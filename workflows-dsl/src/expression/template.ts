// Templates: strings with `${{ expression }}` blocks. A string that is exactly one block
// evaluates to the raw value (a list stays a list); any other string interpolates text.
import type { ExpressionNode } from './ast.ts';
import { ExpressionError } from './errors.ts';
import { evaluateNode, type Scope } from './evaluate.ts';
import { parseExpression } from './parser.ts';
import { findExpressionEnd, tokenize } from './tokenizer.ts';
import { isPlainObject, toText } from './values.ts';

export const OPEN = '${{';
export const CLOSE = '}}';

export interface TextPart {
  type: 'text';
  value: string;
  start: number;
  end: number;
}
export interface ExpressionPart {
  type: 'expression';
  /** The source between `${{` and `}}`. */
  source: string;
  node: ExpressionNode;
  /** Offset of `${{` … end of `}}` in the template. */
  start: number;
  end: number;
}
export type TemplatePart = TextPart | ExpressionPart;

/** True when the string contains at least one `${{`. */
export function hasExpression(text: string): boolean {
  return text.includes(OPEN);
}

/**
 * Splits a template into text and parsed expressions; positions (also of errors) are offsets in
 * `text`. Throws ExpressionError on the first malformed block.
 */
export function parseTemplate(text: string): TemplatePart[] {
  const parts: TemplatePart[] = [];
  let cursor = 0;
  while (cursor < text.length) {
    const open = text.indexOf(OPEN, cursor);
    if (open === -1) {
      parts.push({ type: 'text', value: text.slice(cursor), start: cursor, end: text.length });
      break;
    }
    if (open > cursor) parts.push({ type: 'text', value: text.slice(cursor, open), start: cursor, end: open });
    const from = open + OPEN.length;
    const close = findExpressionEnd(text, from);
    if (close === -1) {
      // An unterminated string literal swallows the "}}": report the literal, it is the cause.
      try {
        tokenize(text.slice(from), from);
      } catch (error) {
        if (error instanceof ExpressionError && error.message.startsWith('unterminated string')) throw error;
      }
      throw new ExpressionError('expression_syntax', `unterminated "\${{" at position ${open}: missing "}}"`, open, text.length - open);
    }
    const source = text.slice(from, close);
    if (source.trim() === '') {
      throw new ExpressionError('expression_syntax', `empty expression at position ${open}`, open, close + CLOSE.length - open);
    }
    parts.push({ type: 'expression', source, node: parseExpression(source, from), start: open, end: close + CLOSE.length });
    cursor = close + CLOSE.length;
  }
  return parts;
}

/** The parsed expression when `text` is exactly one `${{ … }}` block, else undefined. */
export function wholeExpression(parts: readonly TemplatePart[], text: string): ExpressionPart | undefined {
  const [only] = parts;
  return parts.length === 1 && only?.type === 'expression' && only.start === 0 && only.end === text.length ? only : undefined;
}

/** True when the string is exactly one `${{ … }}` block (syntax is not checked). */
export function isExpression(text: string): boolean {
  if (!text.startsWith(OPEN)) return false;
  const close = findExpressionEnd(text, OPEN.length);
  return close !== -1 && close + CLOSE.length === text.length;
}

/**
 * Parses an expression given either bare (`inputs.topic`) or as one whole `${{ … }}` block;
 * positions are offsets in `source` either way.
 */
export function parseExpressionSource(source: string): ExpressionNode {
  if (!source.trimStart().startsWith(OPEN)) return parseExpression(source);
  const parts = parseTemplate(source);
  const blocks = parts.filter((p): p is ExpressionPart => p.type === 'expression');
  const onlyBlank = parts.every((p) => p.type === 'expression' || p.value.trim() === '');
  if (blocks.length === 1 && onlyBlank) return blocks[0]!.node;
  throw new ExpressionError('expression_syntax', 'expected a single ${{ … }} expression, found text or several blocks', 0, source.length);
}

/**
 * Evaluates an expression (bare, or one whole `${{ … }}` block, or an already parsed tree)
 * against a scope. Throws ExpressionError with the position of the offending text.
 */
export function evaluate(expression: string | ExpressionNode, scope: Scope): unknown {
  const node = typeof expression === 'string' ? parseExpressionSource(expression) : expression;
  return evaluateNode(node, scope);
}

/** Evaluates one template string: raw value for a whole block, interpolated text otherwise. */
export function renderString(text: string, scope: Scope): unknown {
  if (!hasExpression(text)) return text;
  const parts = parseTemplate(text);
  const whole = wholeExpression(parts, text);
  if (whole) return evaluateNode(whole.node, scope);
  let out = '';
  for (const part of parts) out += part.type === 'text' ? part.value : toText(evaluateNode(part.node, scope));
  return out;
}

/**
 * Deep render: walks arrays and plain objects and evaluates every template string; other values
 * are returned as they are. Keys are never evaluated. Returns new containers, never mutates.
 */
export function renderTemplate(value: unknown, scope: Scope): unknown {
  if (typeof value === 'string') return renderString(value, scope);
  if (Array.isArray(value)) return value.map((item) => renderTemplate(item, scope));
  if (isPlainObject(value)) {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value)) {
      Object.defineProperty(out, key, { value: renderTemplate(value[key], scope), enumerable: true, writable: true, configurable: true });
    }
    return out;
  }
  return value;
}
