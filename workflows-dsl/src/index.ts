// @deepspace/workflows-dsl — the workflow DSL as a pure library.
//
// - parseWorkflow(source, format?)  YAML/JSON text → document, or every error with pointer + line/column
// - validateWorkflow(doc)           any value → document, or every error (pointers only)
// - compileWorkflow(doc)            document → plan for the interpreter (throws WorkflowCompileError)
// - evaluate / renderTemplate       the `${{ }}` expression language
// - extractReferences               what an expression reads
// - WORKFLOW_SCHEMA                 the JSON Schema (also schema/workflow.schema.json)
//
// Workflow code must import '@deepspace/workflows-dsl/runtime' instead: this entry point pulls in
// ajv and yaml (parsing and validation), which do not belong in a Temporal workflow bundle.
export * from './runtime.ts';
export { parseWorkflow, MAX_SOURCE_LENGTH, MAX_ALIAS_COUNT, type SourceFormat } from './parse.ts';
export { validateWorkflow } from './validate.ts';
export { WORKFLOW_SCHEMA, WORKFLOW_SCHEMA_ID, type WorkflowSchema } from './schema.ts';
export { checkUserSchema, compileJsonSchema, validateInputs, type SchemaIssue, type CompiledJsonSchema, type ValueCheck } from './json-schema.ts';
