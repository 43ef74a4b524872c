// compileWorkflow: a validated document → the normalised plan the interpreter runs. Pure and
// deterministic (no ajv, no clocks): safe inside Temporal workflow code. It re-runs the semantic
// checks, so a plan is never built from a document with graph or expression errors.
import { analyze, type BlockNode, type StepNode } from './analysis.ts';
import { parseDuration } from './duration.ts';
import { isPlainObject } from './expression/values.ts';
import { checkSemantics } from './semantics.ts';
import type {
  CompiledBlock,
  CompiledOnError,
  CompiledRetry,
  CompiledStep,
  CompiledWorkflow,
  DslError,
  InputsSchema,
  Step,
  StepKind,
  WorkflowDocument,
} from './types.ts';

export const RETRY_DEFAULTS = { initialIntervalMs: 1000, backoffCoefficient: 2, maxIntervalMs: 60_000 } as const;

export class WorkflowCompileError extends Error {
  readonly errors: DslError[];
  constructor(errors: DslError[]) {
    const [first] = errors;
    super(first ? `workflow is invalid: ${first.message} (at ${first.pointer || '/'})${errors.length > 1 ? ` and ${errors.length - 1} more error(s)` : ''}` : 'workflow is invalid');
    this.name = 'WorkflowCompileError';
    this.errors = errors;
  }
}

function compileRetry(value: unknown): CompiledRetry | null {
  if (!isPlainObject(value) || typeof value.max_attempts !== 'number') return null;
  const backoff = isPlainObject(value.backoff) ? value.backoff : {};
  const initial = typeof backoff.initial === 'string' ? parseDuration(backoff.initial) : undefined;
  const max = typeof backoff.max === 'string' ? parseDuration(backoff.max) : undefined;
  const initialIntervalMs = initial ?? RETRY_DEFAULTS.initialIntervalMs;
  return {
    maxAttempts: value.max_attempts,
    initialIntervalMs,
    backoffCoefficient: typeof backoff.factor === 'number' ? backoff.factor : RETRY_DEFAULTS.backoffCoefficient,
    maxIntervalMs: Math.max(max ?? RETRY_DEFAULTS.maxIntervalMs, initialIntervalMs),
  };
}

function compileOnError(value: unknown): CompiledOnError {
  if (value === 'continue') return { action: 'continue' };
  if (isPlainObject(value) && typeof value.fallback === 'string') return { action: 'fallback', step: value.fallback };
  return { action: 'fail' };
}

const record = <T>(entries: Iterable<readonly [string, T]>): Record<string, T> => Object.fromEntries(entries) as Record<string, T>;

/**
 * Compiles a workflow document. Throws WorkflowCompileError (with every error) when the document
 * has graph or expression errors; schema validity is the caller's job (validateWorkflow).
 */
export function compileWorkflow(document: WorkflowDocument): CompiledWorkflow {
  const analysis = analyze(document);
  const { errors } = checkSemantics(document, analysis);
  if (errors.length > 0) throw new WorkflowCompileError(errors);

  const steps: Record<string, CompiledStep> = {};
  const stepIds: string[] = [];

  const compileBlock = (block: BlockNode): CompiledBlock => {
    const ids = block.steps.map((s) => s.id!).filter((id) => id !== undefined);
    const dependents = new Map<string, string[]>(ids.map((id) => [id, []]));
    for (const id of block.order) for (const dep of block.dependencies.get(id) ?? []) dependents.get(dep)?.push(id);
    return {
      pointer: block.pointer,
      mode: block.mode,
      order: [...block.order],
      dependencies: record(block.order.map((id) => [id, [...(block.dependencies.get(id) ?? [])]] as const)),
      dependents: record(block.order.map((id) => [id, dependents.get(id) ?? []] as const)),
      entry: block.order.filter((id) => !block.handlers.has(id) && (block.dependencies.get(id) ?? []).length === 0),
      handlers: block.order.filter((id) => block.handlers.has(id)),
      outputs: block.order.filter((id) => block.byId.get(id)?.kind === 'output'),
    };
  };

  const compileStep = (node: StepNode): void => {
    const id = node.id!;
    const raw = node.raw;
    const block = node.block;
    stepIds.push(id);
    let body: CompiledBlock | null = null;
    let branches: Record<string, CompiledBlock> | null = null;
    if (node.kind === 'parallel') {
      branches = record(node.children.map((child) => [child.branch!, compileBlock(child)] as const));
    } else if (node.children[0]) {
      body = compileBlock(node.children[0]);
    }
    const timeout = typeof raw.timeout === 'string' ? parseDuration(raw.timeout) : undefined;
    steps[id] = {
      id,
      kind: node.kind as StepKind,
      pointer: node.pointer,
      definition: raw as unknown as Step,
      block: block.pointer,
      parent: block.container?.id ?? null,
      branch: block.branch,
      dependencies: [...(block.dependencies.get(id) ?? [])],
      needs: [...(block.needs.get(id) ?? [])],
      switchedBy: block.switchOf.get(id) ?? null,
      handler: block.handlers.has(id),
      handlerFor: [...(block.handlerFor.get(id) ?? [])],
      condition: typeof raw.if === 'string' ? raw.if : null,
      onError: compileOnError(raw.on_error),
      retry: compileRetry(raw.retry),
      timeoutMs: timeout ?? null,
      body,
      branches,
    };
    for (const child of node.children) for (const s of child.steps) compileStep(s);
  };
  for (const node of analysis.root.steps) compileStep(node);

  return {
    name: document.name,
    version: document.version ?? 1,
    description: document.description ?? null,
    inputs: (document.inputs as InputsSchema | undefined) ?? null,
    outputs: document.outputs ?? null,
    root: compileBlock(analysis.root),
    steps,
    stepIds,
  };
}
