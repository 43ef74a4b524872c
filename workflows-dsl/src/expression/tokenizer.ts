// Hand-written tokenizer of the expression language. No regular-expression backtracking on user
// input, no eval: one left-to-right pass producing tokens with their source offsets.
import { ExpressionError } from './errors.ts';

export type TokenType = 'number' | 'string' | 'identifier' | 'punct' | 'eof';

export interface Token {
  type: TokenType;
  /** Source text of punctuators and identifiers; decoded value of strings; digits of numbers. */
  text: string;
  /** Numeric value (numbers only). */
  number?: number;
  start: number;
  end: number;
}

/** Longest first: two-character punctuators are tried before one-character ones. */
const PUNCT_2 = new Set(['==', '!=', '<=', '>=', '&&', '||', '??']);
const PUNCT_1 = new Set(['(', ')', '[', ']', '{', '}', ',', '.', '?', ':', '+', '-', '*', '/', '%', '!', '<', '>']);

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9';
const isIdentStart = (c: string | undefined) => c !== undefined && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c === '_');
const isIdentPart = (c: string | undefined) => isIdentStart(c) || isDigit(c);
const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';

const HINTS: Record<string, string> = {
  '=': 'use == to compare',
  '&': 'use && for "and"',
  '|': 'use || for "or"',
  '$': '"$" is only used to open a template: ${{ … }}',
  '`': 'use single or double quotes for strings',
};

function describeChar(c: string): string {
  return JSON.stringify(c);
}

/** Reads a quoted string starting at `start` (the quote); returns the decoded value and the end offset. */
export function readString(source: string, start: number): { value: string; end: number } {
  const quote = source[start]!;
  let i = start + 1;
  let value = '';
  while (i < source.length) {
    const c = source[i]!;
    if (c === quote) return { value, end: i + 1 };
    if (c === '\\') {
      const e = source[i + 1];
      switch (e) {
        case 'n': value += '\n'; i += 2; continue;
        case 'r': value += '\r'; i += 2; continue;
        case 't': value += '\t'; i += 2; continue;
        case '\\': value += '\\'; i += 2; continue;
        case '\'': value += '\''; i += 2; continue;
        case '"': value += '"'; i += 2; continue;
        case 'u': {
          const hex = source.slice(i + 2, i + 6);
          if (!/^[0-9a-fA-F]{4}$/.test(hex)) {
            throw new ExpressionError('expression_syntax', `invalid \\u escape at position ${i}: expected 4 hex digits`, i, 2);
          }
          value += String.fromCharCode(parseInt(hex, 16));
          i += 6;
          continue;
        }
        case undefined:
          break;
        default:
          throw new ExpressionError('expression_syntax', `unknown escape \\${e} at position ${i}`, i, 2);
      }
    }
    value += c;
    i += 1;
  }
  throw new ExpressionError('expression_syntax', `unterminated string starting at position ${start}`, start, source.length - start);
}

export function tokenize(source: string, offset = 0): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (isSpace(c)) {
      i += 1;
      continue;
    }
    const start = i;
    if (isDigit(c)) {
      while (isDigit(source[i])) i += 1;
      if (source[i] === '.' && isDigit(source[i + 1])) {
        i += 1;
        while (isDigit(source[i])) i += 1;
      }
      if (source[i] === 'e' || source[i] === 'E') {
        let j = i + 1;
        if (source[j] === '+' || source[j] === '-') j += 1;
        if (!isDigit(source[j])) {
          throw new ExpressionError('expression_syntax', `malformed number at position ${start + offset}`, start + offset, j - start);
        }
        i = j;
        while (isDigit(source[i])) i += 1;
      }
      if (isIdentStart(source[i])) {
        throw new ExpressionError('expression_syntax', `malformed number at position ${start + offset}`, start + offset, i - start + 1);
      }
      const text = source.slice(start, i);
      const number = Number(text);
      if (!Number.isFinite(number)) {
        throw new ExpressionError('expression_limit', `number out of range at position ${start + offset}`, start + offset, i - start);
      }
      tokens.push({ type: 'number', text, number, start: start + offset, end: i + offset });
      continue;
    }
    if (isIdentStart(c)) {
      while (isIdentPart(source[i])) i += 1;
      tokens.push({ type: 'identifier', text: source.slice(start, i), start: start + offset, end: i + offset });
      continue;
    }
    if (c === '\'' || c === '"') {
      let read;
      try {
        read = readString(source, i);
      } catch (error) {
        throw error instanceof ExpressionError ? error.shifted(offset) : error;
      }
      tokens.push({ type: 'string', text: read.value, start: start + offset, end: read.end + offset });
      i = read.end;
      continue;
    }
    const two = source.slice(i, i + 2);
    if (PUNCT_2.has(two)) {
      tokens.push({ type: 'punct', text: two, start: start + offset, end: i + 2 + offset });
      i += 2;
      continue;
    }
    if (PUNCT_1.has(c)) {
      tokens.push({ type: 'punct', text: c, start: start + offset, end: i + 1 + offset });
      i += 1;
      continue;
    }
    const hint = HINTS[c];
    throw new ExpressionError(
      'expression_syntax',
      `unexpected character ${describeChar(c)} at position ${start + offset}${hint ? ` (${hint})` : ''}`,
      start + offset,
    );
  }
  tokens.push({ type: 'eof', text: '', start: source.length + offset, end: source.length + offset });
  return tokens;
}

/**
 * Finds the `}}` that closes a template expression opened just before `from`: skips string
 * literals and balanced brackets, so `${{ format('{0}}', x) }}` and `${{ {a: {b: 1}} }}` work.
 * Returns the offset of the closing `}}`, or -1 when there is none.
 */
export function findExpressionEnd(text: string, from: number): number {
  let depth = 0;
  let i = from;
  while (i < text.length) {
    const c = text[i]!;
    if (c === '\'' || c === '"') {
      // Skip the literal; an unterminated one runs to the end (the parser reports it).
      let j = i + 1;
      while (j < text.length && text[j] !== c) j += text[j] === '\\' ? 2 : 1;
      i = j + 1;
      continue;
    }
    if (c === '(' || c === '[' || c === '{') depth += 1;
    else if (c === ')' || c === ']') depth = Math.max(0, depth - 1);
    else if (c === '}') {
      if (depth === 0 && text[i + 1] === '}') return i;
      depth = Math.max(0, depth - 1);
    }
    i += 1;
  }
  return -1;
}
