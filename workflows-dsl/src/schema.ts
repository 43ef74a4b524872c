// The JSON Schema (2020-12) of a workflow document. This module is the source of truth;
// schema/workflow.schema.json is written from it (`node workflows-dsl/scripts/write-schema.ts`)
// and a unit test fails when the two differ. Pure data: safe to import anywhere.
//
// Shape notes for tools: steps dispatch on `kind` with if/then (one branch per kind, each with
// additionalProperties: false), and unions of literal-or-expression use if/then/else on the
// value's type, so validators report one precise error instead of a oneOf/anyOf cascade.
import { STEP_KINDS, type StepKind } from './types.ts';

export const WORKFLOW_SCHEMA_ID = 'https://schemas.deepspace.dev/workflows-dsl/workflow.schema.json';

type Schema = Record<string, unknown>;

const ref = (name: string): Schema => ({ $ref: `#/$defs/${name}` });

/** A number (within bounds) or a `${{ }}` expression producing one. */
function numberOrExpression(description: string, bounds: Schema, integer = false): Schema {
  return {
    description,
    type: [integer ? 'integer' : 'number', 'string'],
    if: { type: 'string' },
    then: ref('expression'),
    else: bounds,
  };
}

/** Properties every step accepts. They are validated once, in the dispatcher. */
const COMMON_PROPERTIES: Schema = {
  id: ref('stepId'),
  kind: {
    description: 'What the step does.',
    enum: [...STEP_KINDS],
  },
  name: { type: 'string', maxLength: 200, description: 'Display name.' },
  description: { type: 'string', maxLength: 2000 },
  needs: {
    description:
      'Steps of the same block that must finish before this one. When no step of a block declares `needs`, the block runs as a plain sequence in document order.',
    type: 'array',
    items: ref('stepId'),
    uniqueItems: true,
  },
  if: {
    ...ref('expression'),
    description: 'Run the step only when this expression is truthy; otherwise it is skipped.',
  },
  on_error: ref('onError'),
};

const RETRYABLE_PROPERTIES: Schema = {
  retry: ref('retry'),
  timeout: { ...ref('duration'), description: 'Time limit of one attempt, e.g. `30s`, `5m`.' },
};

const CONTAINER_TIMEOUT: Schema = {
  timeout: { ...ref('duration'), description: 'Time limit of the whole step, nested steps included.' },
};

interface KindDefinition {
  description: string;
  properties: Schema;
  required: string[];
  extra?: Schema;
}

const KINDS: Record<StepKind, KindDefinition> = {
  llm: {
    description: 'A model call through the gateway (billed and audited). Give either `prompt` or `messages`.',
    properties: {
      ...RETRYABLE_PROPERTIES,
      model: { ...ref('template'), description: "Model id; the project's default model when omitted." },
      prompt: { ...ref('template'), description: 'The user message.' },
      system: { ...ref('template'), description: 'System message sent before `prompt`.' },
      messages: { type: 'array', minItems: 1, items: ref('message') },
      temperature: numberOrExpression('Sampling temperature, 0–2.', { minimum: 0, maximum: 2 }),
      max_tokens: numberOrExpression('Upper bound of generated tokens.', { minimum: 1, maximum: 1000000 }, true),
      output_schema: {
        description:
          'JSON Schema (2020-12) of the expected reply. The model is asked for JSON, the reply is parsed and validated, and `output` is the parsed value.',
        type: 'object',
      },
      repair_retries: {
        description: 'With `output_schema`: extra attempts that show the model its invalid reply and the validation errors.',
        type: 'integer',
        minimum: 0,
        maximum: 5,
        default: 1,
      },
    },
    required: [],
    extra: {
      oneOf: [{ required: ['prompt'] }, { required: ['messages'] }],
      'x-error-message': 'an llm step needs exactly one of `prompt` or `messages`',
    },
  },
  retrieve: {
    description: "Retrieval from a knowledge base of the workflow's project. `output` is the list of passages.",
    properties: {
      ...RETRYABLE_PROPERTIES,
      knowledge_base: { ...ref('template'), description: 'Knowledge base id or slug.' },
      query: ref('template'),
      top_k: numberOrExpression('Number of passages, 1–100 (default 5).', { minimum: 1, maximum: 100 }, true),
      min_score: numberOrExpression('Drop passages scoring below this, 0–1.', { minimum: 0, maximum: 1 }),
      filters: { type: 'object', description: 'Metadata filters; values may be templates.' },
    },
    required: ['knowledge_base', 'query'],
  },
  http: {
    description:
      'An outbound HTTP request made by the worker. Private and internal addresses are refused by organisation policy; a workflow cannot lift that.',
    properties: {
      ...RETRYABLE_PROPERTIES,
      method: { enum: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD'], default: 'GET' },
      url: { ...ref('template'), description: 'http(s) URL; may contain templates.' },
      headers: { type: 'object', additionalProperties: ref('template') },
      body: { description: 'Request body: a string, or any JSON value (sent as JSON); templates are evaluated.' },
    },
    required: ['url'],
  },
  template: {
    description: 'Renders a text template; `output` is the text (or the raw value when the template is one whole `${{ }}`).',
    properties: { template: ref('template') },
    required: ['template'],
  },
  transform: {
    description: 'Computes a value: any JSON whose template strings are evaluated. `output` is the result.',
    properties: { value: { description: 'Any JSON value; strings may be templates.' } },
    required: ['value'],
  },
  switch: {
    description:
      'Routes to one step: the first case whose `when` holds, else `default`. The other targets are skipped. Targets are steps of the same block.',
    properties: {
      cases: {
        type: 'array',
        minItems: 1,
        items: {
          type: 'object',
          properties: { when: ref('expression'), then: ref('stepId') },
          required: ['when', 'then'],
          additionalProperties: false,
        },
      },
      default: { ...ref('stepId'), description: 'Step run when no case holds.' },
    },
    required: ['cases'],
  },
  map: {
    description: "Runs the nested steps once per item of a list. `output` is the list of each item's result, in order.",
    properties: {
      ...CONTAINER_TIMEOUT,
      over: { ...ref('expression'), description: 'Expression producing the list.' },
      as: { ...ref('identifier'), description: 'Name of the item variable in the nested steps (default `item`).', default: 'item' },
      index_as: { ...ref('identifier'), description: 'Name of the 0-based index variable (default `index`).', default: 'index' },
      concurrency: { type: 'integer', minimum: 1, maximum: 32, default: 4, description: 'Items processed at the same time.' },
      steps: ref('steps'),
    },
    required: ['over', 'steps'],
  },
  parallel: {
    description: 'Runs named branches at the same time. `output` maps each branch name to its result.',
    properties: {
      ...CONTAINER_TIMEOUT,
      branches: {
        type: 'object',
        minProperties: 1,
        propertyNames: ref('identifier'),
        additionalProperties: {
          type: 'object',
          properties: { steps: ref('steps') },
          required: ['steps'],
          additionalProperties: false,
        },
      },
    },
    required: ['branches'],
  },
  loop: {
    description:
      'Repeats the nested steps until `until` holds (checked after each iteration) or `max_iterations` is reached. Every iteration is kept: `output` is the last result, `iterations` all of them.',
    properties: {
      ...CONTAINER_TIMEOUT,
      until: { ...ref('expression'), description: "Stop condition; the iteration's steps are in scope." },
      max_iterations: { type: 'integer', minimum: 1, maximum: 100, description: 'Hard limit of iterations (at most 100).' },
      steps: ref('steps'),
    },
    required: ['max_iterations', 'steps'],
  },
  approval: {
    description:
      'Waits for a person to approve or reject (a signal). On timeout the `default` decision is taken. A rejection fails the step (see `on_error`); `output` is `{ decision, by, comment, timed_out }`.',
    properties: {
      prompt: { ...ref('template'), description: 'What the approver is asked.' },
      timeout: { ...ref('duration'), description: 'How long to wait for a decision, e.g. `24h`.' },
      default: { enum: ['approve', 'reject'], default: 'reject', description: 'Decision taken on timeout.' },
    },
    required: ['prompt', 'timeout'],
  },
  workflow: {
    description: "Runs another workflow of the project as a child; `output` is the child's outputs.",
    properties: {
      ...RETRYABLE_PROPERTIES,
      workflow: { type: 'string', minLength: 1, maxLength: 200, description: 'Workflow id or slug.' },
      version: { type: 'integer', minimum: 1, description: 'Version number; the latest published version when omitted.' },
      inputs: { type: 'object', description: "The child's inputs; values may be templates." },
    },
    required: ['workflow'],
  },
  set: {
    description: 'Sets variables, read as `vars.<name>` by later steps of the same block and of nested blocks.',
    properties: {
      values: {
        type: 'object',
        minProperties: 1,
        propertyNames: ref('identifier'),
        description: 'Variable name → value (templates are evaluated).',
      },
    },
    required: ['values'],
  },
  output: {
    description:
      'Sets the result of the enclosing block and ends it (at top level: the run outputs). Steps cannot depend on it.',
    properties: { value: { description: 'Any JSON value; strings may be templates.' } },
    required: ['value'],
  },
};

function kindSchema(kind: StepKind): Schema {
  const definition = KINDS[kind];
  const properties: Schema = {};
  // Common properties are validated by the dispatcher; listing them here keeps
  // additionalProperties: false exact for each kind.
  for (const name of Object.keys(COMMON_PROPERTIES)) properties[name] = true;
  Object.assign(properties, definition.properties);
  return {
    title: `${kind} step`,
    description: definition.description,
    type: 'object',
    properties,
    ...(definition.required.length > 0 ? { required: definition.required } : {}),
    additionalProperties: false,
    ...definition.extra,
  };
}

const stepDefinitions: Schema = {};
for (const kind of STEP_KINDS) stepDefinitions[`${kind}Step`] = kindSchema(kind);

export const WORKFLOW_SCHEMA = {
  $schema: 'https://json-schema.org/draft/2020-12/schema',
  $id: WORKFLOW_SCHEMA_ID,
  title: 'DeepSpace workflow',
  description: 'A workflow definition: inputs, a DAG (or sequence) of steps, and outputs.',
  type: 'object',
  required: ['name', 'steps'],
  additionalProperties: false,
  properties: {
    $schema: { type: 'string', description: 'Optional: the URL of this schema, for editors.' },
    name: { type: 'string', minLength: 1, maxLength: 200, description: 'Name of the workflow.' },
    version: { type: 'integer', minimum: 1, default: 1, description: "The definition's version." },
    description: { type: 'string', maxLength: 5000 },
    inputs: {
      description: 'JSON Schema (2020-12) of the run inputs, an object schema; read as `inputs.<name>`.',
      type: 'object',
      properties: {
        type: { const: 'object' },
        properties: { type: 'object', additionalProperties: { type: ['object', 'boolean'] } },
        required: { type: 'array', items: { type: 'string' }, uniqueItems: true },
      },
      required: ['type'],
    },
    outputs: {
      description: 'Run outputs: name → template, evaluated after the last step (unless an `output` step ended the run).',
      type: 'object',
    },
    steps: ref('steps'),
  },
  $defs: {
    identifier: {
      type: 'string',
      pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
      maxLength: 64,
      description: 'Letters, digits and `_`, not starting with a digit.',
    },
    stepId: {
      type: 'string',
      pattern: '^[A-Za-z_][A-Za-z0-9_]*$',
      maxLength: 64,
      description: 'A step id: letters, digits and `_`, not starting with a digit; unique in the document.',
    },
    expression: {
      type: 'string',
      pattern: '^\\$\\{\\{[\\s\\S]*\\}\\}$',
      description: 'An expression: the whole string is one `${{ … }}` block.',
    },
    template: {
      type: 'string',
      description: 'Text that may contain `${{ … }}` expressions.',
    },
    duration: {
      type: 'string',
      pattern: '^(?:[0-9]+(?:ms|s|m|h|d))+$',
      description: 'A duration: `500ms`, `30s`, `5m`, `2h`, `7d`, or a sum such as `1h30m`.',
    },
    retry: {
      type: 'object',
      description: 'Retries of the step after a failure.',
      properties: {
        max_attempts: { type: 'integer', minimum: 1, maximum: 10, description: 'Total attempts, the first included.' },
        backoff: {
          type: 'object',
          properties: {
            initial: { ...ref('duration'), description: 'First delay (default 1s).' },
            factor: { type: 'number', minimum: 1, maximum: 10, description: 'Multiplier between delays (default 2).' },
            max: { ...ref('duration'), description: 'Longest delay (default 1m).' },
          },
          additionalProperties: false,
        },
      },
      required: ['max_attempts'],
      additionalProperties: false,
    },
    onError: {
      description:
        'After the last failed attempt: `fail` the run (default), `continue` (later steps see `status: failed`), or run `{ fallback: <step id> }` in its place.',
      type: ['string', 'object'],
      if: { type: 'string' },
      then: { type: 'string', enum: ['fail', 'continue'] },
      else: {
        type: 'object',
        properties: { fallback: ref('stepId') },
        required: ['fallback'],
        additionalProperties: false,
      },
    },
    message: {
      type: 'object',
      properties: {
        role: { enum: ['system', 'user', 'assistant'] },
        content: ref('template'),
      },
      required: ['role', 'content'],
      additionalProperties: false,
    },
    steps: {
      type: 'array',
      minItems: 1,
      items: ref('step'),
    },
    step: {
      type: 'object',
      required: ['id', 'kind'],
      properties: COMMON_PROPERTIES,
      allOf: STEP_KINDS.map((kind) => ({
        if: { type: 'object', properties: { kind: { const: kind } }, required: ['kind'] },
        then: ref(`${kind}Step`),
      })),
    },
    ...stepDefinitions,
  },
} as const satisfies Schema;

export type WorkflowSchema = typeof WORKFLOW_SCHEMA;
