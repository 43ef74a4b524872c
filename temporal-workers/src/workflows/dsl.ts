// The workflow-DSL interpreter: one Temporal workflow runs one compiled document. Orchestration
// only — expressions and the readiness rule come from the pure runtime library; every side effect
// (model calls, billing, http, rows and events) is an activity. A table of step executors, one small
// function per kind; blocks are scheduled with `nextSteps`.
//
// Billing: every llm step holds before, captures after (or releases), with keys
// `${runId}:${stepKey}:hold|capture|release`, so a replayed or retried step never charges twice.
// Holds still open when the run fails or is cancelled are released in a non-cancellable scope.
//
// Throughput: every activity is a round trip through the server and every local activity result a
// workflow activation (each costs the worker a few ms of CPU), so an llm step with a small output
// budget is ONE local activity (begin: model check, `running` row, hold → model call → settle:
// capture, final row), and a run of such steps completes in one workflow task. A step that may be
// long keeps its model call a normal, heartbeating activity between a begin and a settle local
// activity. Runs started before this shape replay the earlier one (patch `dsl-batched-llm-steps`;
// its old branch can go, with deprecatePatch, once no such run is open).
import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  ChildWorkflowFailure,
  condition,
  defineQuery,
  defineSignal,
  executeChild,
  isCancellation,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setHandler,
  workflowInfo,
  type ActivityOptions,
  type LocalActivityOptions,
} from '@temporalio/workflow';
import {
  compileWorkflow,
  evaluate,
  nextSteps,
  renderTemplate,
  truthy,
  type CompiledBlock,
  type CompiledStep,
  type CompiledWorkflow,
  type Step,
  type StepOfKind,
  type StepStatus,
  type WorkflowDocument,
} from '@deepspace/workflows-dsl/runtime';
import type { DslRunInput, DslApprovalSignal } from '@deepspace/core/run-events';
import type { DslActivities, StepRecord } from '../activities/dsl.ts';
import type { BillingActivities } from '../activities/billing.ts';
import { BILLING_NON_RETRYABLE_ERRORS } from './billing.ts';

export const approvalSignal = defineSignal<[DslApprovalSignal]>('approval');
export const stateQuery = defineQuery<{ costMicros: string; pendingApprovals: string[]; steps: Record<string, string> }>('state');

const DEFAULT_MODEL = 'gpt-4o-mini';
const DEFAULT_MAX_TOKENS = 1024;
const MAX_DEPTH = 5;

// Short database steps as local activities (rows, events, hold).
// The capture is one too: it is idempotent on its key, so a retry after a crash is safe.
const local = proxyLocalActivities<
  Pick<DslActivities, 'dslStartRun' | 'dslRecordStep' | 'dslResolveModel' | 'dslBeginLlmStep' | 'dslSettleLlmStep'> & Pick<BillingActivities, 'billingHold' | 'billingCapture'>
>({
  startToCloseTimeout: '15 seconds',
  retry: { maximumAttempts: 5, initialInterval: '100 ms', nonRetryableErrorTypes: BILLING_NON_RETRYABLE_ERRORS },
});

const money = proxyActivities<Pick<BillingActivities, 'billingRelease'> & Pick<DslActivities, 'dslReleaseStepHold'>>({
  startToCloseTimeout: '15 seconds',
  retry: { maximumAttempts: 20, initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '10 seconds', nonRetryableErrorTypes: BILLING_NON_RETRYABLE_ERRORS },
});

const SETTLE_OPTIONS: ActivityOptions & LocalActivityOptions = {
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 20, initialInterval: '200 ms', maximumInterval: '10 seconds', nonRetryableErrorTypes: ['not_found', 'validation_failed'] },
};
const settle = proxyActivities<Pick<DslActivities, 'dslFinishRun' | 'dslFailRun' | 'dslPrepareChildRun'>>(SETTLE_OPTIONS);
// The run's final row is one short transaction: local, so a run of local steps ends in its workflow task.
const localSettle = proxyLocalActivities<Pick<DslActivities, 'dslFinishRun'>>(SETTLE_OPTIONS);

/**
 * An llm step whose output budget is this small runs as one local activity: such a call is short,
 * so it needs no heartbeat, and the step costs one workflow activation instead of three plus a
 * task round trip through the server. The price: a cancel or signal waits for the open workflow
 * task (at most ~8 s, core's heartbeat of a long task), and a worker crash re-runs the steps of
 * that task (each is still billed once: its hold and capture are idempotent on the step's keys).
 */
const LOCAL_CALL_MAX_TOKENS = 256;
/** A step with a longer explicit timeout is long; without one, its local activity gets this. */
const LOCAL_CALL_TIMEOUT_MS = 60_000;
const BATCHED_PATCH = 'dsl-batched-llm-steps';

/** Activity options of a step: its own retry policy and timeout from the compiled plan. */
function stepOptions(step: CompiledStep, defaults: { timeoutMs: number; nonRetryable: string[]; heartbeat?: boolean }): ActivityOptions {
  const retry = step.retry;
  return {
    startToCloseTimeout: step.timeoutMs ?? defaults.timeoutMs,
    // A worker that dies mid-call is noticed by its missing heartbeat, not by the whole timeout.
    ...(defaults.heartbeat ? { heartbeatTimeout: '10 seconds' } : {}),
    retry: {
      maximumAttempts: retry?.maxAttempts ?? 3,
      initialInterval: retry?.initialIntervalMs ?? 1000,
      backoffCoefficient: retry?.backoffCoefficient ?? 2,
      maximumInterval: retry?.maxIntervalMs ?? 60_000,
      nonRetryableErrorTypes: defaults.nonRetryable,
    },
  };
}

/** A step that failed (after its retries); `on_error` decides what happens next. */
class StepError extends Error {
  readonly code: string;
  readonly output: unknown;
  constructor(code: string, message: string, output: unknown = null) {
    super(message);
    this.code = code;
    this.output = output;
  }
}

/** The run failed at a step whose on_error is `fail`. */
class RunFailure extends Error {
  readonly code: string;
  readonly stepKey: string;
  constructor(code: string, message: string, stepKey: string) {
    super(message);
    this.code = code;
    this.stepKey = stepKey;
  }
}

function failureOf(error: unknown): { code: string; message: string } {
  if (error instanceof StepError) return { code: error.code, message: error.message };
  let cause: unknown = error;
  while ((cause instanceof ActivityFailure || cause instanceof ChildWorkflowFailure) && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure) return { code: cause.type ?? 'error', message: cause.message };
  if (cause && typeof cause === 'object' && 'code' in cause && typeof (cause as { code: unknown }).code === 'string') {
    const code = (cause as { code: string }).code;
    return { code: code.startsWith('expression') || code.startsWith('unknown') ? 'expression_error' : code, message: String((cause as { message?: unknown }).message) };
  }
  return { code: 'internal_error', message: (cause as Error)?.message ?? 'failed' };
}

interface StepState {
  output: unknown;
  status: 'succeeded' | 'failed' | 'skipped';
  error: { code: string; message: string } | null;
  iterations?: unknown[];
}

/** What a block's steps see: the enclosing scope, plus the block's own steps and variables. */
interface Frame {
  /** Step key prefix of this block, e.g. `research[1]/`. */
  prefix: string;
  steps: Record<string, StepState>;
  vars: Record<string, unknown>;
  /** Extra names: `loop`, a map's item and index variables. */
  extra: Record<string, unknown>;
}

export async function dslWorkflow(run: DslRunInput): Promise<unknown> {
  // Runs started before the batched llm steps keep their recorded command sequence on replay.
  const batched = patched(BATCHED_PATCH);
  const plan: CompiledWorkflow = compileWorkflow(run.document as WorkflowDocument);
  const reuse = run.reuse ?? {};
  const openHolds = new Map<string, string>();
  const decisions = new Map<string, DslApprovalSignal>();
  const waiting = new Set<string>();
  const stepStatus: Record<string, string> = {};
  const models = new Map<string, { name: string; upstreamModel: string; maxOutputTokens: number }>();
  const budget = run.budgetMicros ? BigInt(run.budgetMicros) : null;
  let cost = 0n;

  setHandler(approvalSignal, (decision) => {
    if (!decisions.has(decision.step_key)) decisions.set(decision.step_key, decision);
  });
  setHandler(stateQuery, () => ({ costMicros: cost.toString(), pendingApprovals: [...waiting], steps: { ...stepStatus } }));

  const record = async (r: Omit<StepRecord, 'runId'>) => {
    stepStatus[r.stepKey] = r.status;
    await local.dslRecordStep({ runId: run.runId, ...r });
  };
  const scopeOf = (frame: Frame) => ({ inputs: run.inputs, steps: frame.steps, vars: frame.vars, ...frame.extra });

  // ─── step executors: one per kind ───────────────────────────────────────────────────────────
  /** `recorded`: the executor wrote the step's final row itself (batched llm steps). */
  type Executor = (step: CompiledStep, frame: Frame, key: string) => Promise<{ output: unknown; detail?: unknown; chosen?: string | null; recorded?: boolean }>;

  /**
   * An llm step. Short (a small output budget): one local activity that begins (model check,
   * `running` row, hold), calls and settles (capture, final row). Long: begin and settle are local
   * activities around a normal, heartbeating model-call activity.
   */
  async function llmBatched(step: CompiledStep, frame: Frame, key: string): Promise<{ output: unknown; detail: unknown; recorded: true }> {
    const def = step.definition as StepOfKind<'llm'>;
    const scope = scopeOf(frame);
    const messages: { role: string; content: string }[] = [];
    if (def.messages) {
      for (const m of def.messages) messages.push({ role: m.role, content: toText(renderTemplate(m.content, scope)) });
    } else {
      if (def.system) messages.push({ role: 'system', content: toText(renderTemplate(def.system, scope)) });
      messages.push({ role: 'user', content: toText(renderTemplate(def.prompt ?? '', scope)) });
    }
    const temperature = def.temperature === undefined ? null : Number(renderTemplate(def.temperature, scope));
    const maxTokens = def.max_tokens === undefined ? DEFAULT_MAX_TOKENS : Number(renderTemplate(def.max_tokens, scope));
    const repairRetries = def.output_schema !== undefined ? (def.repair_retries ?? 1) : 0;
    if (budget !== null && cost >= budget) throw new StepError('budget_exceeded', `the run's budget (${budget} micros) is spent`);
    const begin = {
      runId: run.runId,
      stepKey: key,
      stepId: step.id,
      model: String(renderTemplate(def.model ?? DEFAULT_MODEL, scope)),
      messages,
      temperature,
      maxTokens,
      repairRetries,
      hold: {
        orgId: run.orgId,
        projectId: run.projectId,
        traceId: run.traceId,
        runId: run.runId,
        stepId: key,
        idempotencyKey: `${run.runId}:${key}:hold`,
        ttlSeconds: Math.ceil((step.timeoutMs ?? 300_000) / 1000) * (step.retry?.maxAttempts ?? 3) + 15 * 60,
        actor: run.actor,
      },
    };
    const usage = { traceId: run.traceId, projectId: run.projectId, runId: run.runId, stepId: key, ...(run.actor.type === 'api_key' ? { apiKeyId: run.actor.id } : { userId: run.actor.id }) };
    const nonRetryable = ['bad_request', 'invalid_output_schema', 'not_found'];
    stepStatus[key] = 'running';
    let outcome: { model: string; holdId: string; ok: boolean; output: unknown; error: { code: string; message: string } | null; calls: number; chargedMicros: string; promptTokens: number; completionTokens: number };

    // The model's maximum can only lower max_tokens, so the document's value bounds the call.
    const short = maxTokens * (1 + repairRetries) <= LOCAL_CALL_MAX_TOKENS && (step.timeoutMs == null || step.timeoutMs <= LOCAL_CALL_TIMEOUT_MS);
    if (short) {
      const options = stepOptions(step, { timeoutMs: LOCAL_CALL_TIMEOUT_MS, nonRetryable: [...nonRetryable, ...BILLING_NON_RETRYABLE_ERRORS, 'budget_exceeded'] });
      // On cancel, wait for the activity to stop: a hold it takes meanwhile is then released below.
      const act = proxyLocalActivities<Pick<DslActivities, 'dslLlmStep'>>({ ...options, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED });
      try {
        outcome = await act.dslLlmStep({
          ...begin,
          outputSchema: def.output_schema ?? null,
          budgetLeftMicros: budget === null ? null : (budget - cost).toString(),
          captureKey: `${run.runId}:${key}:capture`,
          usage,
          costBeforeMicros: cost.toString(),
        });
      } catch (error) {
        await CancellationScope.nonCancellable(() =>
          money.dslReleaseStepHold({ holdKey: begin.hold.idempotencyKey, releaseKey: `${run.runId}:${key}:release`, reason: isCancellation(error) ? 'cancelled' : failureOf(error).code }),
        );
        throw error;
      }
    } else {
      // Non-cancellable: a hold taken must be known here so that it is released.
      const begun = await CancellationScope.nonCancellable(() => local.dslBeginLlmStep(begin));
      openHolds.set(key, begun.holdId);
      const release = (reason: string) =>
        CancellationScope.nonCancellable(async () => {
          await money.billingRelease({ holdId: begun.holdId, idempotencyKey: `${run.runId}:${key}:release`, reason });
          openHolds.delete(key);
        });
      if (budget !== null && cost + BigInt(begun.amountMicros) > budget) {
        await release('budget_exceeded');
        throw new StepError('budget_exceeded', `the step may cost up to ${begun.amountMicros} micros; the run's budget has ${budget - cost} left`);
      }
      let result;
      try {
        const call = proxyActivities<Pick<DslActivities, 'dslModelCall'>>(stepOptions(step, { timeoutMs: 300_000, nonRetryable, heartbeat: true }));
        result = await call.dslModelCall({ runId: run.runId, stepKey: key, upstreamModel: begun.upstreamModel, messages, maxTokens: begun.maxTokens, temperature, outputSchema: def.output_schema ?? null, repairRetries });
      } catch (error) {
        await release(isCancellation(error) ? 'cancelled' : failureOf(error).code);
        throw error;
      }
      const billed = await CancellationScope.nonCancellable(() =>
        local.dslSettleLlmStep({
          runId: run.runId,
          stepKey: key,
          stepId: step.id,
          model: begun.model,
          holdId: begun.holdId,
          captureKey: `${run.runId}:${key}:capture`,
          usage: { ...usage, promptTokens: result.promptTokens, completionTokens: result.completionTokens, latencyMs: result.latencyMs, status: result.ok ? 'success' : 'error', errorCode: result.error?.code ?? null },
          ok: result.ok,
          output: result.output,
          error: result.error,
          calls: result.calls,
          costBeforeMicros: cost.toString(),
        }),
      );
      openHolds.delete(key);
      outcome = { model: begun.model, holdId: begun.holdId, ok: result.ok, output: result.output, error: result.error, calls: result.calls, ...billed };
    }
    cost += BigInt(outcome.chargedMicros);
    stepStatus[key] = outcome.ok ? 'succeeded' : 'failed';
    if (!outcome.ok) throw Object.assign(new StepError(outcome.error!.code, outcome.error!.message), { recorded: true });
    const { model, holdId, calls, promptTokens, completionTokens, chargedMicros } = outcome;
    return { output: outcome.output, detail: { calls, model, holdId, promptTokens, completionTokens, costMicros: chargedMicros }, recorded: true };
  }

  const executors: Record<Step['kind'], Executor> = {
    // Runs started before the batched shape: resolve, record, hold, call, capture as separate tasks.
    async llm(step, frame, key) {
      if (batched) return llmBatched(step, frame, key);
      const def = step.definition as StepOfKind<'llm'>;
      const scope = scopeOf(frame);
      const modelName = String(renderTemplate(def.model ?? DEFAULT_MODEL, scope));
      // Memoised per run: the same name resolves the same way for the whole run (and on replay).
      const model = models.get(modelName) ?? (await local.dslResolveModel({ model: modelName }));
      models.set(modelName, model);
      const messages: { role: string; content: string }[] = [];
      if (def.messages) {
        for (const m of def.messages) messages.push({ role: m.role, content: toText(renderTemplate(m.content, scope)) });
      } else {
        if (def.system) messages.push({ role: 'system', content: toText(renderTemplate(def.system, scope)) });
        messages.push({ role: 'user', content: toText(renderTemplate(def.prompt ?? '', scope)) });
      }
      const temperature = def.temperature === undefined ? null : Number(renderTemplate(def.temperature, scope));
      const maxTokens = Math.min(def.max_tokens === undefined ? DEFAULT_MAX_TOKENS : Number(renderTemplate(def.max_tokens, scope)), model.maxOutputTokens);
      const repairRetries = def.output_schema !== undefined ? (def.repair_retries ?? 1) : 0;
      if (budget !== null && cost >= budget) throw new StepError('budget_exceeded', `the run's budget (${budget} micros) is spent`);
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running', model: model.name, input: { model: model.name, messages, temperature, max_tokens: maxTokens } });
      // Non-cancellable: a hold taken must be known here so that it is released.
      const hold = await CancellationScope.nonCancellable(() => local.billingHold({
        orgId: run.orgId,
        projectId: run.projectId,
        model: model.name,
        messages: messages as never,
        // Repairs are further calls of the same step: the hold covers all of them.
        maxTokens: maxTokens * (1 + repairRetries),
        traceId: run.traceId,
        runId: run.runId,
        stepId: key,
        idempotencyKey: `${run.runId}:${key}:hold`,
        ttlSeconds: Math.ceil((step.timeoutMs ?? 300_000) / 1000) * (step.retry?.maxAttempts ?? 3) + 15 * 60,
        actor: run.actor,
      }));
      openHolds.set(key, hold.holdId);
      const release = (reason: string) =>
        CancellationScope.nonCancellable(async () => {
          await money.billingRelease({ holdId: hold.holdId, idempotencyKey: `${run.runId}:${key}:release`, reason });
          openHolds.delete(key);
        });
      if (budget !== null && cost + BigInt(hold.amountMicros) > budget) {
        await release('budget_exceeded');
        throw new StepError('budget_exceeded', `the step may cost up to ${hold.amountMicros} micros; the run's budget has ${budget - cost} left`);
      }
      let result;
      try {
        const call = proxyActivities<Pick<DslActivities, 'dslModelCall'>>(stepOptions(step, { timeoutMs: 300_000, nonRetryable: ['bad_request', 'invalid_output_schema', 'not_found'], heartbeat: true }));
        result = await call.dslModelCall({ runId: run.runId, stepKey: key, upstreamModel: hold.upstreamModel, messages, maxTokens, temperature, outputSchema: def.output_schema ?? null, repairRetries });
      } catch (error) {
        await release(isCancellation(error) ? 'cancelled' : failureOf(error).code);
        throw error;
      }
      const captured = await CancellationScope.nonCancellable(() =>
        local.billingCapture({
          holdId: hold.holdId,
          idempotencyKey: `${run.runId}:${key}:capture`,
          usage: {
            promptTokens: result.promptTokens,
            completionTokens: result.completionTokens,
            traceId: run.traceId,
            latencyMs: result.latencyMs,
            status: result.ok ? 'success' : 'error',
            errorCode: result.error?.code ?? null,
            projectId: run.projectId,
            runId: run.runId,
            stepId: key,
            ...(run.actor.type === 'api_key' ? { apiKeyId: run.actor.id } : { userId: run.actor.id }),
          },
        }),
      );
      openHolds.delete(key);
      cost += BigInt(captured.chargedMicros);
      const billed = { model: model.name, holdId: hold.holdId, promptTokens: result.promptTokens, completionTokens: result.completionTokens, costMicros: captured.chargedMicros };
      if (!result.ok) throw Object.assign(new StepError(result.error!.code, result.error!.message), { billed });
      return { output: result.output, detail: { calls: result.calls, ...billed } };
    },

    async retrieve(step, frame, key) {
      const def = step.definition as StepOfKind<'retrieve'>;
      const scope = scopeOf(frame);
      const filters = (def.filters === undefined ? {} : renderTemplate(def.filters, scope)) as Record<string, unknown>;
      const documentIds = filters.document_ids ?? filters.document_id;
      const request = {
        knowledgeBase: toText(renderTemplate(def.knowledge_base, scope)),
        query: toText(renderTemplate(def.query, scope)),
        topK: def.top_k === undefined ? 5 : Number(renderTemplate(def.top_k, scope)),
        minScore: def.min_score === undefined ? null : Number(renderTemplate(def.min_score, scope)),
        documentIds: documentIds === undefined || documentIds === null ? null : (Array.isArray(documentIds) ? documentIds : [documentIds]).map(String),
        mode: (filters.mode === 'vector' || filters.mode === 'fts' ? filters.mode : 'hybrid') as 'hybrid' | 'vector' | 'fts',
      };
      if (!request.query.trim()) throw new StepError('bad_request', 'the retrieve query is empty');
      if (!Number.isInteger(request.topK) || request.topK < 1 || request.topK > 100) throw new StepError('bad_request', `top_k must be an integer from 1 to 100 (got ${request.topK})`);
      if (budget !== null && cost >= budget) throw new StepError('budget_exceeded', `the run's budget (${budget} micros) is spent`);
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running', input: request });
      const act = proxyActivities<Pick<DslActivities, 'dslRetrieve'>>(stepOptions(step, { timeoutMs: 60_000, nonRetryable: ['not_found', 'bad_request', 'validation_failed', 'policy_violation', 'insufficient_funds', 'conflict'] }));
      const result = await act.dslRetrieve({ ...request, runId: run.runId, stepKey: key, orgId: run.orgId, projectId: run.projectId, traceId: run.traceId, actor: run.actor });
      cost += BigInt(result.costMicros);
      return { output: result.hits, detail: { knowledgeBaseId: result.knowledgeBaseId, hits: result.hits.length, promptTokens: result.promptTokens, costMicros: result.costMicros } };
    },

    async http(step, frame, key) {
      const def = step.definition as StepOfKind<'http'>;
      const scope = scopeOf(frame);
      const request = {
        url: toText(renderTemplate(def.url, scope)),
        method: def.method ?? 'GET',
        headers: Object.fromEntries(Object.entries((renderTemplate(def.headers ?? {}, scope) ?? {}) as Record<string, unknown>).map(([k, v]) => [k, toText(v)])),
        body: def.body === undefined ? null : renderTemplate(def.body, scope),
        timeoutMs: step.timeoutMs ?? 30_000,
      };
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running', input: request });
      const call = { ...request, orgId: run.orgId };
      const act = proxyActivities<Pick<DslActivities, 'dslHttpRequest'>>(stepOptions(step, { timeoutMs: 30_000, nonRetryable: ['ssrf_blocked', 'bad_request', 'payload_too_large'] }));
      return { output: await act.dslHttpRequest(call) };
    },

    async template(step, frame) {
      return { output: renderTemplate((step.definition as StepOfKind<'template'>).template, scopeOf(frame)) };
    },

    async transform(step, frame) {
      return { output: renderTemplate((step.definition as StepOfKind<'transform'>).value, scopeOf(frame)) };
    },

    async set(step, frame) {
      const values = renderTemplate((step.definition as StepOfKind<'set'>).values, scopeOf(frame)) as Record<string, unknown>;
      Object.assign(frame.vars, values);
      return { output: values };
    },

    async output(step, frame) {
      return { output: renderTemplate((step.definition as StepOfKind<'output'>).value, scopeOf(frame)) };
    },

    async switch(step, frame) {
      const def = step.definition as StepOfKind<'switch'>;
      const scope = scopeOf(frame);
      for (let i = 0; i < def.cases.length; i++) {
        if (truthy(evaluate(def.cases[i]!.when, scope))) return { output: { case: i, step: def.cases[i]!.then }, chosen: def.cases[i]!.then };
      }
      return { output: { case: null, step: def.default ?? null }, chosen: def.default ?? null };
    },

    async map(step, frame, key) {
      const def = step.definition as StepOfKind<'map'>;
      const items = evaluate(def.over, scopeOf(frame));
      if (!Array.isArray(items)) throw new StepError('type_mismatch', `map.over gave ${items === null ? 'null' : typeof items}, not a list`);
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running', input: { items: items.length } });
      const results: unknown[] = new Array(items.length);
      let next = 0;
      const worker = async () => {
        while (next < items.length) {
          const i = next++;
          const child: Frame = { prefix: `${key}[${i}]/`, steps: { ...frame.steps }, vars: { ...frame.vars }, extra: { ...frame.extra, [def.as ?? 'item']: items[i], [def.index_as ?? 'index']: i } };
          results[i] = await runBlock(step.body!, child);
        }
      };
      await withTimeout(step, () => Promise.all(Array.from({ length: Math.min(def.concurrency ?? 4, Math.max(items.length, 1)) }, worker)));
      return { output: results };
    },

    async parallel(step, frame, key) {
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running' });
      const names = Object.keys(step.branches!);
      const results = await withTimeout(step, () =>
        Promise.all(names.map((name) => runBlock(step.branches![name]!, { prefix: `${key}.${name}/`, steps: { ...frame.steps }, vars: { ...frame.vars }, extra: { ...frame.extra } }))),
      );
      return { output: Object.fromEntries(names.map((n, i) => [n, results[i]])) };
    },

    async loop(step, frame, key) {
      const def = step.definition as StepOfKind<'loop'>;
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running' });
      const iterations: unknown[] = [];
      await withTimeout(step, async () => {
        let previous: unknown = null;
        for (let i = 0; i < def.max_iterations; i++) {
          const child: Frame = { prefix: `${key}[${i}]/`, steps: { ...frame.steps }, vars: frame.vars, extra: { ...frame.extra, loop: { index: i, previous } } };
          previous = await runBlock(step.body!, child);
          iterations.push(previous);
          if (def.until && truthy(evaluate(def.until, { inputs: run.inputs, steps: child.steps, vars: child.vars, ...child.extra }))) break;
        }
      });
      return { output: iterations.at(-1) ?? null, detail: { iterations } };
    },

    async approval(step, frame, key) {
      const def = step.definition as StepOfKind<'approval'>;
      const prompt = toText(renderTemplate(def.prompt, scopeOf(frame)));
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'waiting', input: { prompt, timeout_ms: step.timeoutMs }, event: { prompt } });
      waiting.add(key);
      const decided = await condition(() => decisions.has(key), step.timeoutMs ?? 24 * 3600_000);
      waiting.delete(key);
      const d = decisions.get(key);
      const output = decided && d
        ? { decision: d.decision, by: d.by, comment: d.comment ?? null, timed_out: false }
        : { decision: def.default ?? 'reject', by: null, comment: null, timed_out: true };
      if (output.decision === 'reject') throw new StepError('rejected', output.timed_out ? 'nobody decided in time; rejected by default' : `rejected by ${output.by}`, output);
      return { output };
    },

    async workflow(step, frame, key) {
      const def = step.definition as StepOfKind<'workflow'>;
      if ((run.depth ?? 0) >= MAX_DEPTH) throw new StepError('limit_exceeded', `workflow steps nest at most ${MAX_DEPTH} levels`);
      const inputs = renderTemplate(def.inputs ?? {}, scopeOf(frame));
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'running', input: { workflow: def.workflow, version: def.version ?? null, inputs } });
      const child = await settle.dslPrepareChildRun({ parent: run, stepKey: key, workflow: def.workflow, version: def.version ?? null, inputs });
      const output = await executeChild(dslWorkflow, {
        workflowId: `wf-run-${child.runId}`,
        args: [child],
        ...(step.timeoutMs ? { workflowExecutionTimeout: step.timeoutMs } : {}),
      });
      return { output, detail: { child_run_id: child.runId } };
    },
  };

  async function withTimeout<T>(step: CompiledStep, fn: () => Promise<T>): Promise<T> {
    if (!step.timeoutMs) return fn();
    try {
      return await CancellationScope.withTimeout(step.timeoutMs, fn);
    } catch (error) {
      if (isCancellation(error) && !CancellationScope.current().consideredCancelled) throw new StepError('timeout', `step ${step.id} timed out after ${step.timeoutMs} ms`);
      throw error;
    }
  }

  /** Runs one step (with its `if`, reuse, on_error and fallback); returns its settled state. */
  async function runStep(step: CompiledStep, frame: Frame, asKey?: string): Promise<StepState & { chosen?: string | null }> {
    const key = asKey ?? `${frame.prefix}${step.id}`;
    if (step.condition && !truthy(evaluate(step.condition, scopeOf(frame)))) {
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'skipped', detail: { reason: 'condition' } });
      return { output: null, status: 'skipped', error: null };
    }
    const reused = reuse[key];
    if (reused) {
      const detail = (reused.detail ?? null) as { iterations?: unknown[] } | null;
      if (step.kind === 'set') Object.assign(frame.vars, reused.output as object);
      await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'succeeded', output: reused.output, detail: reused.detail, reusedFromRunId: run.sourceRunId ?? null });
      const chosen = step.kind === 'switch' ? ((reused.output as { step: string | null }).step ?? null) : undefined;
      return { output: reused.output, status: 'succeeded', error: null, ...(detail?.iterations ? { iterations: detail.iterations } : {}), ...(chosen !== undefined ? { chosen } : {}) };
    }
    try {
      const done = await executors[step.kind](step, frame, key);
      const billed = (done.detail as { costMicros?: string; promptTokens?: number; completionTokens?: number; holdId?: string } | undefined) ?? {};
      if (!done.recorded) await record({
        stepKey: key,
        stepId: step.id,
        kind: step.kind,
        status: 'succeeded',
        output: done.output,
        detail: done.detail,
        costMicros: billed.costMicros,
        promptTokens: billed.promptTokens,
        completionTokens: billed.completionTokens,
        holdId: billed.holdId ?? null,
        event: { cost_so_far_micros: cost.toString() },
      });
      const iterations = (done.detail as { iterations?: unknown[] } | undefined)?.iterations;
      return { output: done.output, status: 'succeeded', error: null, ...(iterations ? { iterations } : {}), ...(done.chosen !== undefined ? { chosen: done.chosen } : {}) };
    } catch (error) {
      if (isCancellation(error) && CancellationScope.current().consideredCancelled) throw error;
      if (error instanceof RunFailure) throw error;
      const failure = failureOf(error);
      const output = error instanceof StepError ? error.output : null;
      const billed = (error as { billed?: { model: string; holdId: string; promptTokens: number; completionTokens: number; costMicros: string } }).billed;
      if (!(error as { recorded?: boolean }).recorded) {
        await record({ stepKey: key, stepId: step.id, kind: step.kind, status: 'failed', output, error: failure, ...(billed ?? {}), event: { cost_so_far_micros: cost.toString() } });
      }
      const failed: StepState = { output, status: 'failed', error: failure };
      if (step.onError.action === 'continue') return failed;
      if (step.onError.action === 'fallback') {
        frame.steps[step.id] = failed;
        const handler = plan.steps[step.onError.step]!;
        const result = await runStep(handler, frame, `${frame.prefix}${handler.id}`);
        return result.status === 'succeeded' ? { ...result, error: failure } : result;
      }
      throw new RunFailure(failure.code, failure.message, key);
    }
  }

  /** Runs a block with the readiness rule; returns its result (its output step's value, or step → output). */
  async function runBlock(block: CompiledBlock, frame: Frame): Promise<unknown> {
    const status: Record<string, StepStatus> = {};
    const chosen: Record<string, string | null> = {};
    const running = new Map<string, Promise<void>>();
    let firstError: unknown = null;
    let outputOf: string | null = null;
    const scope = new CancellationScope();
    const settleStep = (id: string, state: StepState & { chosen?: string | null }) => {
      status[id] = state.status;
      const { chosen: choice, ...rest } = state;
      frame.steps[id] = rest;
      if (choice !== undefined) chosen[id] = choice;
      if (state.status === 'succeeded' && plan.steps[id]!.kind === 'output') outputOf = id;
    };
    for (;;) {
      const next = nextSteps(block, plan.steps, { status, chosen });
      for (const { id, reason } of next.skip) {
        status[id] = 'skipped';
        frame.steps[id] = { output: null, status: 'skipped', error: null };
        await record({ stepKey: `${frame.prefix}${id}`, stepId: id, kind: plan.steps[id]!.kind, status: 'skipped', detail: { reason } });
      }
      if (!firstError) {
        for (const id of next.start) {
          status[id] = 'running';
          running.set(
            id,
            scope
              .run(() => runStep(plan.steps[id]!, frame))
              .then(
                (state) => settleStep(id, state),
                (error: unknown) => {
                  firstError ??= error;
                  scope.cancel();
                },
              )
              .finally(() => running.delete(id)),
          );
        }
      }
      if (running.size === 0) {
        if (firstError) throw firstError;
        if (next.complete || next.start.length === 0) break;
        continue;
      }
      await Promise.race(running.values());
    }
    if (outputOf) return frame.steps[outputOf]!.output;
    return Object.fromEntries(block.order.filter((id) => !plan.steps[id]!.handler).map((id) => [id, frame.steps[id]?.output ?? null]));
  }

  // ─── the run ────────────────────────────────────────────────────────────────────────────────
  try {
    await local.dslStartRun({ runId: run.runId, traceId: run.traceId, name: plan.name });
    const root: Frame = { prefix: '', steps: {}, vars: {}, extra: {} };
    const result = await runBlock(plan.root, root);
    const output = plan.outputs ? renderTemplate(plan.outputs, scopeOf(root)) : result;
    await (batched ? localSettle : settle).dslFinishRun({ run, output, costMicros: cost.toString() });
    return output;
  } catch (error) {
    const cancelled = isCancellation(error);
    const failure = cancelled ? { code: 'cancelled', message: 'The run was cancelled' } : failureOf(error);
    await CancellationScope.nonCancellable(async () => {
      for (const [key, holdId] of openHolds) {
        await money.billingRelease({ holdId, idempotencyKey: `${run.runId}:${key}:release`, reason: failure.code });
      }
      openHolds.clear();
      await settle.dslFailRun({ run, code: failure.code, message: failure.message, step: error instanceof RunFailure ? error.stepKey : null, cancelled, costMicros: cost.toString() });
    });
    if (cancelled) throw error;
    throw ApplicationFailure.create({ type: failure.code, message: failure.message, nonRetryable: true, details: [{ step: error instanceof RunFailure ? error.stepKey : null, workflow_id: workflowInfo().workflowId }] });
  }
}

function toText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === null || value === undefined) return '';
  return JSON.stringify(value);
}
