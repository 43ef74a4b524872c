// Types of the workflow document (what authors write), of the compiled plan (what the
// interpreter runs) and of the errors. The JSON Schema in schema.ts describes the same shapes.

/** A string that is exactly one `${{ … }}` block, e.g. `${{ steps.plan.output.items }}`. */
export type Expression = string;
/** A string that may contain `${{ … }}` blocks; one whole block yields the raw value. */
export type Template = string;
/** `500ms`, `30s`, `5m`, `2h`, `7d`, or a sum such as `1h30m`. */
export type Duration = string;
/** Any JSON value whose strings are templates; rendered deeply at run time. */
export type TemplateValue = unknown;
export type JsonSchema = boolean | { [keyword: string]: unknown };

/** The JSON Schema (2020-12) of a run's inputs: an object schema. */
export interface InputsSchema {
  type: 'object';
  properties?: Record<string, JsonSchema>;
  required?: string[];
  [keyword: string]: unknown;
}

export interface WorkflowDocument {
  /** Optional editor hint pointing at the published schema. */
  $schema?: string;
  name: string;
  /** The definition's version, a positive integer (default 1). */
  version?: number;
  description?: string;
  inputs?: InputsSchema;
  /** Run outputs: name → template, evaluated after the last step. */
  outputs?: Record<string, TemplateValue>;
  steps: Step[];
}

export interface Backoff {
  /** First retry delay (default 1s). */
  initial?: Duration;
  /** Multiplier between retries (default 2). */
  factor?: number;
  /** Longest delay (default 1m). */
  max?: Duration;
}

export interface RetryPolicy {
  /** Total attempts including the first, 1–10. */
  max_attempts: number;
  backoff?: Backoff;
}

/** What happens when the step fails after its retries. */
export type OnError = 'fail' | 'continue' | { fallback: string };

export const STEP_KINDS = [
  'llm',
  'retrieve',
  'http',
  'template',
  'transform',
  'switch',
  'map',
  'parallel',
  'loop',
  'approval',
  'workflow',
  'set',
  'output',
] as const;
export type StepKind = (typeof STEP_KINDS)[number];

interface StepCommon {
  /** Unique in the whole document; letters, digits and `_`, not starting with a digit. */
  id: string;
  name?: string;
  description?: string;
  /** Steps of the same block that must finish first. When no step of a block declares
   * `needs`, the block runs as a plain sequence. */
  needs?: string[];
  /** Run only when the expression is truthy; otherwise the step is skipped. */
  if?: Expression;
  on_error?: OnError;
}

/** Kinds that call an activity: they can be retried and timed out. */
interface Retryable {
  retry?: RetryPolicy;
  timeout?: Duration;
}

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: Template;
}

export interface LlmStep extends StepCommon, Retryable {
  kind: 'llm';
  /** Model id (template); the project's default model when omitted. */
  model?: Template;
  /** Either `prompt` (with an optional `system`) or `messages`. */
  prompt?: Template;
  system?: Template;
  messages?: ChatMessage[];
  temperature?: number | Expression;
  max_tokens?: number | Expression;
  /** When set, the reply must be JSON valid against this schema; `output` is the parsed value. */
  output_schema?: JsonSchema;
  /** Extra attempts that show the model its invalid reply and the validation errors (0–5, default 1). */
  repair_retries?: number;
}

export interface RetrieveStep extends StepCommon, Retryable {
  kind: 'retrieve';
  /** Knowledge base id or slug of the workflow's project (template). */
  knowledge_base: Template;
  query: Template;
  top_k?: number | Expression;
  min_score?: number | Expression;
  filters?: Record<string, TemplateValue>;
}

export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD';

export interface HttpStep extends StepCommon, Retryable {
  kind: 'http';
  method?: HttpMethod;
  url: Template;
  headers?: Record<string, Template>;
  body?: TemplateValue;
}

export interface TemplateStep extends StepCommon {
  kind: 'template';
  /** Rendered to text (or to a raw value when it is one whole `${{ }}`). */
  template: Template;
}

export interface TransformStep extends StepCommon {
  kind: 'transform';
  /** Any value; every template string in it is evaluated. */
  value: TemplateValue;
}

export interface SwitchCase {
  when: Expression;
  /** A step of the same block, run when this is the first case that holds. */
  then: string;
}

export interface SwitchStep extends StepCommon {
  kind: 'switch';
  cases: SwitchCase[];
  /** Step run when no case holds. */
  default?: string;
}

export interface MapStep extends StepCommon {
  kind: 'map';
  /** Must produce a list. */
  over: Expression;
  /** Name of the item variable in the nested steps (default `item`). */
  as?: string;
  /** Name of the 0-based index variable (default `index`). */
  index_as?: string;
  /** Items processed at the same time, 1–32 (default 4). */
  concurrency?: number;
  timeout?: Duration;
  steps: Step[];
}

export interface ParallelBranch {
  steps: Step[];
}

export interface ParallelStep extends StepCommon {
  kind: 'parallel';
  /** Branch name → nested block; all branches run at the same time. */
  branches: Record<string, ParallelBranch>;
  timeout?: Duration;
}

export interface LoopStep extends StepCommon {
  kind: 'loop';
  steps: Step[];
  /** Checked after each iteration, with that iteration's steps in scope; stops when truthy. */
  until?: Expression;
  /** Hard limit, 1–100. */
  max_iterations: number;
  timeout?: Duration;
}

export type ApprovalDecision = 'approve' | 'reject';

export interface ApprovalStep extends StepCommon {
  kind: 'approval';
  prompt: Template;
  /** How long to wait for a decision. */
  timeout: Duration;
  /** Decision taken when nobody decides in time (default `reject`). */
  default?: ApprovalDecision;
}

export interface WorkflowCallStep extends StepCommon, Retryable {
  kind: 'workflow';
  /** Id or slug of a workflow of the same project. */
  workflow: string;
  /** A version number; the latest published version when omitted. */
  version?: number;
  inputs?: Record<string, TemplateValue>;
}

export interface SetStep extends StepCommon {
  kind: 'set';
  /** Variable name → template; readable as `vars.<name>` afterwards. */
  values: Record<string, TemplateValue>;
}

export interface OutputStep extends StepCommon {
  kind: 'output';
  /** The result of the enclosing block; the block ends when this step runs. */
  value: TemplateValue;
}

export type Step =
  | LlmStep
  | RetrieveStep
  | HttpStep
  | TemplateStep
  | TransformStep
  | SwitchStep
  | MapStep
  | ParallelStep
  | LoopStep
  | ApprovalStep
  | WorkflowCallStep
  | SetStep
  | OutputStep;

export type StepOfKind<K extends StepKind> = Extract<Step, { kind: K }>;

// ---------------------------------------------------------------------------------------------
// Errors

export type DslErrorCode =
  // reading the source
  | 'yaml_syntax'
  | 'json_syntax'
  | 'duplicate_key'
  // shape (JSON Schema)
  | 'schema'
  | 'unknown_kind'
  | 'expected_expression'
  | 'invalid_duration'
  | 'invalid_input_schema'
  | 'invalid_output_schema'
  // names and graph
  | 'duplicate_id'
  | 'reserved_name'
  | 'unknown_step'
  | 'invalid_need'
  | 'invalid_fallback'
  | 'invalid_switch_target'
  | 'cycle'
  | 'unreachable_step'
  | 'limit_exceeded'
  // expressions
  | 'expression_syntax'
  | 'unknown_function'
  | 'forbidden_property'
  | 'unknown_input'
  | 'unknown_reference'
  | 'missing_dependency'
  | 'out_of_scope'
  | 'dynamic_reference'
  | 'type_mismatch'
  // a bug of this library (reported instead of thrown)
  | 'internal_error';

export type DslWarningCode =
  | 'yaml_warning'
  | 'schema_warning'
  | 'constant_condition'
  | 'unused_repair_retries'
  | 'recursive_workflow'
  | 'unknown_output_property';

export interface DslDiagnostic<C extends string> {
  /** Stable machine code. */
  code: C;
  /** For people. */
  message: string;
  /** RFC 6901 JSON pointer into the document ('' is the whole document). */
  pointer: string;
  /** 1-based position of the pointed node in the source (parseWorkflow only). */
  line?: number;
  column?: number;
  endLine?: number;
  endColumn?: number;
  /** For errors inside an expression or template: offset in that string. */
  position?: number;
}

export type DslError = DslDiagnostic<DslErrorCode>;
export type DslWarning = DslDiagnostic<DslWarningCode>;

export type ValidationResult =
  | { ok: true; document: WorkflowDocument; warnings: DslWarning[] }
  | { ok: false; errors: DslError[]; warnings: DslWarning[] };

// ---------------------------------------------------------------------------------------------
// Compiled plan

/** Normalised retry policy in milliseconds. */
export interface CompiledRetry {
  maxAttempts: number;
  initialIntervalMs: number;
  backoffCoefficient: number;
  maxIntervalMs: number;
}

export type CompiledOnError = { action: 'fail' } | { action: 'continue' } | { action: 'fallback'; step: string };

export interface CompiledBlock {
  /** JSON pointer of the block's `steps` array, e.g. `/steps` or `/steps/2/steps`. */
  pointer: string;
  /** 'dag' when a step of the block declares `needs`, else 'sequence'. */
  mode: 'dag' | 'sequence';
  /** The block's step ids in a topological order (ties broken by document order), handlers last. */
  order: string[];
  /** Step → the steps it waits for (explicit needs, implicit sequence order, its switch). */
  dependencies: Record<string, string[]>;
  /** Step → the steps that wait for it. */
  dependents: Record<string, string[]>;
  /** Steps with no dependencies: they start first. */
  entry: string[];
  /** Steps that only run as another step's `on_error.fallback`. */
  handlers: string[];
  /** `output` steps of the block: when one runs, the block ends with its value. */
  outputs: string[];
}

export interface CompiledStep {
  id: string;
  kind: StepKind;
  /** JSON pointer of the step in the document. */
  pointer: string;
  /** The step as written. */
  definition: Step;
  /** Pointer of the block that holds the step. */
  block: string;
  /** The map/loop/parallel step whose nested block holds this step (null at top level). */
  parent: string | null;
  /** For steps in a parallel branch: the branch name. */
  branch: string | null;
  /** Everything this step waits for (see CompiledBlock.dependencies). */
  dependencies: string[];
  /** The explicit `needs`: when every one of them was skipped, this step is skipped too. */
  needs: string[];
  /** The switch that routes to this step, if any: it runs only when chosen. */
  switchedBy: string | null;
  /** True for a fallback-only step. */
  handler: boolean;
  /** Steps that name this one as their fallback. */
  handlerFor: string[];
  /** The `if` expression, or null. */
  condition: string | null;
  onError: CompiledOnError;
  retry: CompiledRetry | null;
  timeoutMs: number | null;
  /** Nested block of a map or loop step. */
  body: CompiledBlock | null;
  /** Nested blocks of a parallel step, by branch name. */
  branches: Record<string, CompiledBlock> | null;
}

export interface CompiledWorkflow {
  name: string;
  version: number;
  description: string | null;
  inputs: InputsSchema | null;
  /** The document's `outputs` templates, or null. */
  outputs: Record<string, TemplateValue> | null;
  root: CompiledBlock;
  /** Every step of every block, by id. */
  steps: Record<string, CompiledStep>;
  /** Every step id, depth-first in document order: a stable order for listings and UIs. */
  stepIds: string[];
}
