// The runtime entry point for workflow code (Temporal's bundle): expressions, templates, the
// compiler and the scheduling rule. No ajv, no yaml, no Node modules, no clocks, no randomness.
//   import { compileWorkflow, renderTemplate, nextSteps } from '@deepspace/workflows-dsl/runtime';
export * from './types.ts';
export {
  evaluate,
  evaluateNode,
  renderTemplate,
  renderString,
  parseExpression,
  parseExpressionSource,
  parseTemplate,
  isExpression,
  hasExpression,
  extractReferences,
  referencesOf,
  inferType,
  ExpressionError,
  isExpressionError,
  FUNCTIONS,
  FUNCTION_NAMES,
  FORBIDDEN_PROPERTIES,
  deepEqual,
  toText,
  truthy,
  typeOf,
  type Scope,
  type Reference,
  type StaticType,
  type ExpressionErrorCode,
  type ExpressionNode,
  type TemplatePart,
} from './expression/index.ts';
export { compileWorkflow, WorkflowCompileError, RETRY_DEFAULTS } from './compile.ts';
export { checkSemantics, STEP_STATE_FIELDS, type SemanticResult } from './semantics.ts';
export { nextSteps, type BlockState, type NextSteps, type SkipReason, type StepStatus } from './scheduler.ts';
export { parseDuration } from './duration.ts';
export { MAX_STEPS, MAX_NESTING } from './analysis.ts';
