// Errors of the expression language. Every error carries a stable code and the offset (0-based,
// in UTF-16 code units) of the offending text inside the string that was parsed or evaluated.

export type ExpressionErrorCode =
  /** The text is not a valid expression (tokens, grammar, arity, unterminated `${{`). */
  | 'expression_syntax'
  /** A call to a function that is not in the whitelist. */
  | 'unknown_function'
  /** `constructor`, `__proto__` or `prototype` used as a property name. */
  | 'forbidden_property'
  /** An identifier that is not a name of the evaluation scope. */
  | 'unknown_reference'
  /** An operator or function applied to a value of the wrong type. */
  | 'expression_type'
  /** Expression too long or too deeply nested, or a result that is not a finite number. */
  | 'expression_limit';

export class ExpressionError extends Error {
  readonly code: ExpressionErrorCode;
  /** Offset of the offending text in the parsed string. */
  readonly position: number;
  /** Length of the offending text (at least 1). */
  readonly length: number;

  constructor(code: ExpressionErrorCode, message: string, position: number, length = 1) {
    super(message);
    this.name = 'ExpressionError';
    this.code = code;
    this.position = position;
    this.length = Math.max(1, length);
  }

  /** A copy whose position is moved by `offset` (used when an expression sits inside a template). */
  shifted(offset: number): ExpressionError {
    if (offset === 0) return this;
    return new ExpressionError(this.code, this.message.replace(/at position (\d+)/, (_, p: string) => `at position ${Number(p) + offset}`), this.position + offset, this.length);
  }
}

export function isExpressionError(value: unknown): value is ExpressionError {
  return value instanceof ExpressionError;
}

/** Property names that are refused everywhere: they lead to prototypes, never to data. */
export const FORBIDDEN_PROPERTIES: ReadonlySet<string> = new Set(['__proto__', 'constructor', 'prototype']);
