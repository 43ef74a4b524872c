export type * from './ast.ts';
export { ExpressionError, isExpressionError, FORBIDDEN_PROPERTIES, type ExpressionErrorCode } from './errors.ts';
export { evaluateNode, readProperty, type Scope } from './evaluate.ts';
export { FUNCTIONS, FUNCTION_NAMES, type FunctionSpec } from './functions.ts';
export { parseExpression, MAX_DEPTH, MAX_EXPRESSION_LENGTH } from './parser.ts';
export { extractReferences, referencesOf, inferType, type Reference, type StaticType } from './references.ts';
export {
  evaluate,
  renderTemplate,
  renderString,
  parseTemplate,
  parseExpressionSource,
  isExpression,
  hasExpression,
  wholeExpression,
  type TemplatePart,
  type TextPart,
  type ExpressionPart,
} from './template.ts';
export { deepEqual, toText, truthy, typeOf, isPlainObject, type ValueType } from './values.ts';
