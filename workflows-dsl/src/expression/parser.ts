// Pratt parser of the expression language. Grammar, from loosest to tightest binding:
//
//   expression  := nullish ( '?' expression ':' expression )?          right-associative
//   nullish     := or ( '??' or )*
//   or          := and ( '||' and )*
//   and         := equality ( '&&' equality )*
//   equality    := comparison ( ( '==' | '!=' ) comparison )*
//   comparison  := additive ( ( '<' | '<=' | '>' | '>=' ) additive )*
//   additive    := multiplicative ( ( '+' | '-' ) multiplicative )*
//   multiplicative := unary ( ( '*' | '/' | '%' ) unary )*
//   unary       := ( '!' | '-' ) unary | postfix
//   postfix     := primary ( '.' name | '[' expression ']' )*
//   primary     := number | string | true | false | null | name | function '(' args ')'
//                | '(' expression ')' | '[' items ']' | '{' key ':' expression, … '}'
import type { BinaryOperator, ExpressionNode, LogicalOperator } from './ast.ts';
import { ExpressionError, FORBIDDEN_PROPERTIES } from './errors.ts';
import { FUNCTION_NAMES, getFunction } from './functions.ts';
import { tokenize, type Token } from './tokenizer.ts';

export const MAX_EXPRESSION_LENGTH = 4096;
export const MAX_DEPTH = 64;

const BINARY_PRECEDENCE: Record<string, number> = {
  '??': 1,
  '||': 2,
  '&&': 3,
  '==': 4,
  '!=': 4,
  '<': 5,
  '<=': 5,
  '>': 5,
  '>=': 5,
  '+': 6,
  '-': 6,
  '*': 7,
  '/': 7,
  '%': 7,
};
const LOGICAL = new Set(['&&', '||', '??']);
const KEYWORDS: Record<string, null | boolean> = { true: true, false: false, null: null };

function describeToken(token: Token): string {
  if (token.type === 'eof') return 'end of expression';
  if (token.type === 'string') return `string ${JSON.stringify(token.text)}`;
  return `"${token.text}"`;
}

function closest(name: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of candidates) {
    const d = editDistance(name.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

/** Levenshtein distance, for "did you mean" hints. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  let prev = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i += 1) {
    const row = [i];
    for (let j = 1; j <= b.length; j += 1) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}

export function suggest(name: string, candidates: readonly string[]): string {
  const hint = closest(name, candidates);
  return hint === undefined ? '' : ` (did you mean "${hint}"?)`;
}

class Parser {
  private readonly tokens: Token[];
  private index = 0;
  private depth = 0;

  constructor(tokens: Token[]) {
    this.tokens = tokens;
  }

  private peek(): Token {
    return this.tokens[this.index]!;
  }

  private next(): Token {
    const token = this.tokens[this.index]!;
    if (token.type !== 'eof') this.index += 1;
    return token;
  }

  private isPunct(text: string): boolean {
    const token = this.peek();
    return token.type === 'punct' && token.text === text;
  }

  private expect(text: string, context: string): Token {
    const token = this.peek();
    if (token.type === 'punct' && token.text === text) return this.next();
    throw new ExpressionError(
      'expression_syntax',
      `expected "${text}" ${context} at position ${token.start}, found ${describeToken(token)}`,
      token.start,
      token.end - token.start,
    );
  }

  private enter(token: Token): void {
    this.depth += 1;
    if (this.depth > MAX_DEPTH) {
      throw new ExpressionError('expression_limit', `expression nested too deeply at position ${token.start} (limit ${MAX_DEPTH})`, token.start);
    }
  }

  parseProgram(): ExpressionNode {
    const first = this.peek();
    if (first.type === 'eof') throw new ExpressionError('expression_syntax', `empty expression at position ${first.start}`, first.start);
    const node = this.parseExpression();
    const rest = this.peek();
    if (rest.type !== 'eof') {
      throw new ExpressionError('expression_syntax', `unexpected ${describeToken(rest)} at position ${rest.start}`, rest.start, rest.end - rest.start);
    }
    return node;
  }

  parseExpression(): ExpressionNode {
    const start = this.peek();
    this.enter(start);
    const test = this.parseBinary(1);
    let result = test;
    if (this.isPunct('?')) {
      this.next();
      const consequent = this.parseExpression();
      this.expect(':', 'in the conditional (a ? b : c)');
      const alternate = this.parseExpression();
      result = { type: 'conditional', test, consequent, alternate, start: test.start, end: alternate.end };
    }
    this.depth -= 1;
    return result;
  }

  private parseBinary(minPrecedence: number): ExpressionNode {
    let left = this.parseUnary();
    for (;;) {
      const token = this.peek();
      if (token.type !== 'punct') break;
      const precedence = BINARY_PRECEDENCE[token.text];
      if (precedence === undefined || precedence < minPrecedence) break;
      this.next();
      this.enter(token);
      const right = this.parseBinary(precedence + 1);
      this.depth -= 1;
      if (LOGICAL.has(token.text)) {
        left = { type: 'logical', operator: token.text as LogicalOperator, left, right, start: left.start, end: right.end };
      } else {
        left = { type: 'binary', operator: token.text as BinaryOperator, left, right, operatorStart: token.start, start: left.start, end: right.end };
      }
    }
    return left;
  }

  private parseUnary(): ExpressionNode {
    const token = this.peek();
    if (token.type === 'punct' && (token.text === '!' || token.text === '-')) {
      this.next();
      this.enter(token);
      const argument = this.parseUnary();
      this.depth -= 1;
      return { type: 'unary', operator: token.text, argument, start: token.start, end: argument.end };
    }
    return this.parsePostfix(this.parsePrimary());
  }

  private parsePostfix(node: ExpressionNode): ExpressionNode {
    let object = node;
    for (;;) {
      if (this.isPunct('.')) {
        this.next();
        const name = this.peek();
        if (name.type !== 'identifier') {
          throw new ExpressionError('expression_syntax', `expected a property name after "." at position ${name.start}, found ${describeToken(name)}`, name.start, name.end - name.start);
        }
        this.next();
        if (FORBIDDEN_PROPERTIES.has(name.text)) {
          throw new ExpressionError('forbidden_property', `property "${name.text}" is not accessible (at position ${name.start})`, name.start, name.end - name.start);
        }
        object = { type: 'member', object, property: name.text, propertyStart: name.start, start: object.start, end: name.end };
      } else if (this.isPunct('[')) {
        const open = this.next();
        this.enter(open);
        const index = this.parseExpression();
        this.depth -= 1;
        if (index.type === 'literal' && typeof index.value === 'string' && FORBIDDEN_PROPERTIES.has(index.value)) {
          throw new ExpressionError('forbidden_property', `property "${index.value}" is not accessible (at position ${index.start})`, index.start, index.end - index.start);
        }
        const close = this.expect(']', 'to close the index');
        object = { type: 'index', object, index, start: object.start, end: close.end };
      } else if (this.isPunct('(')) {
        const token = this.peek();
        throw new ExpressionError('expression_syntax', `only built-in functions can be called (at position ${token.start})`, token.start);
      } else {
        return object;
      }
    }
  }

  private parsePrimary(): ExpressionNode {
    const token = this.next();
    switch (token.type) {
      case 'number':
        return { type: 'literal', value: token.number!, start: token.start, end: token.end };
      case 'string':
        return { type: 'literal', value: token.text, start: token.start, end: token.end };
      case 'identifier': {
        if (Object.hasOwn(KEYWORDS, token.text)) {
          return { type: 'literal', value: KEYWORDS[token.text]!, start: token.start, end: token.end };
        }
        if (this.isPunct('(')) return this.parseCall(token);
        if (FORBIDDEN_PROPERTIES.has(token.text)) {
          throw new ExpressionError('forbidden_property', `name "${token.text}" is not accessible (at position ${token.start})`, token.start, token.end - token.start);
        }
        return { type: 'identifier', name: token.text, start: token.start, end: token.end };
      }
      case 'punct':
        if (token.text === '(') {
          const inner = this.parseExpression();
          this.expect(')', 'to close the parenthesis');
          return inner;
        }
        if (token.text === '[') return this.parseArray(token);
        if (token.text === '{') return this.parseObject(token);
        break;
      case 'eof':
        throw new ExpressionError('expression_syntax', `unexpected end of expression at position ${token.start}`, token.start);
    }
    throw new ExpressionError('expression_syntax', `unexpected ${describeToken(token)} at position ${token.start}`, token.start, token.end - token.start);
  }

  private parseCall(name: Token): ExpressionNode {
    const spec = getFunction(name.text);
    if (!spec) {
      throw new ExpressionError(
        'unknown_function',
        `unknown function "${name.text}" at position ${name.start}${suggest(name.text, FUNCTION_NAMES)}; available: ${FUNCTION_NAMES.join(', ')}`,
        name.start,
        name.end - name.start,
      );
    }
    this.expect('(', 'after the function name');
    const args: ExpressionNode[] = [];
    if (!this.isPunct(')')) {
      for (;;) {
        args.push(this.parseExpression());
        if (!this.isPunct(',')) break;
        this.next();
      }
    }
    const close = this.expect(')', `to close the call of ${name.text}()`);
    if (args.length < spec.minArgs || args.length > spec.maxArgs) {
      const range = spec.minArgs === spec.maxArgs ? `${spec.minArgs}` : spec.maxArgs >= 16 ? `at least ${spec.minArgs}` : `${spec.minArgs} to ${spec.maxArgs}`;
      throw new ExpressionError(
        'expression_syntax',
        `${name.text}() takes ${range} argument${range === '1' ? '' : 's'}, got ${args.length} at position ${name.start} — ${spec.signature}`,
        name.start,
        close.end - name.start,
      );
    }
    return { type: 'call', callee: name.text, args, start: name.start, end: close.end };
  }

  private parseArray(open: Token): ExpressionNode {
    const elements: ExpressionNode[] = [];
    if (!this.isPunct(']')) {
      for (;;) {
        elements.push(this.parseExpression());
        if (!this.isPunct(',')) break;
        this.next();
        if (this.isPunct(']')) break; // trailing comma
      }
    }
    const close = this.expect(']', 'to close the list');
    return { type: 'array', elements, start: open.start, end: close.end };
  }

  private parseObject(open: Token): ExpressionNode {
    const properties: { key: string; value: ExpressionNode }[] = [];
    const seen = new Set<string>();
    if (!this.isPunct('}')) {
      for (;;) {
        const key = this.next();
        if (key.type !== 'identifier' && key.type !== 'string') {
          throw new ExpressionError('expression_syntax', `expected a key at position ${key.start}, found ${describeToken(key)}`, key.start, key.end - key.start);
        }
        if (FORBIDDEN_PROPERTIES.has(key.text)) {
          throw new ExpressionError('forbidden_property', `key "${key.text}" is not allowed (at position ${key.start})`, key.start, key.end - key.start);
        }
        if (seen.has(key.text)) {
          throw new ExpressionError('expression_syntax', `duplicate key "${key.text}" at position ${key.start}`, key.start, key.end - key.start);
        }
        seen.add(key.text);
        this.expect(':', 'after the key');
        properties.push({ key: key.text, value: this.parseExpression() });
        if (!this.isPunct(',')) break;
        this.next();
        if (this.isPunct('}')) break; // trailing comma
      }
    }
    const close = this.expect('}', 'to close the object');
    return { type: 'object', properties, start: open.start, end: close.end };
  }
}

/**
 * Parses a bare expression (`steps.plan.output.items[0]`). `offset` shifts every position, for an
 * expression that sits inside a larger string. Throws ExpressionError.
 */
export function parseExpression(source: string, offset = 0): ExpressionNode {
  if (source.length > MAX_EXPRESSION_LENGTH) {
    throw new ExpressionError('expression_limit', `expression longer than ${MAX_EXPRESSION_LENGTH} characters at position ${offset}`, offset, source.length);
  }
  return new Parser(tokenize(source, offset)).parseProgram();
}
