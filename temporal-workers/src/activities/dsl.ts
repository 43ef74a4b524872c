// Activities of the workflow-DSL interpreter (workflows/dsl.ts): the run's lifecycle rows, one
// row per step (reproducibility, the run view, resume/fork), the model call of an `llm` step with
// JSON-schema output and repair retries, the `http` step behind an SSRF guard, and child runs.
// Every one is idempotent on the run id and step key, so Temporal may retry them.
import { createHash } from 'node:crypto';
import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { appendRunEvent, countChatPromptTokens, countTokens, dslWorkflowId, type CaptureUsage, type ChatMessageLike, type DslRunInput, type Prisma, type RunEventType } from '@deepspace/core';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';
import { classifyUpstreamError } from '@deepspace/core/ai/upstream';
import { compileJsonSchema, validateInputs, validateWorkflow } from '@deepspace/workflows-dsl';
import { Ledger, isAppError } from '@deepspace/core';
import { retrieveChunks, type Citation } from '@deepspace/core/knowledge/retrieve';
import type { ActivityDeps } from './index.ts';
import { createBillingActivities, type BillingCaptureInput, type BillingHoldInput } from './billing.ts';

export type { DslRunInput };

export interface StepRecord {
  runId: string;
  stepKey: string;
  stepId: string;
  kind: string;
  status: 'running' | 'waiting' | 'succeeded' | 'failed' | 'skipped';
  attempt?: number;
  input?: unknown;
  output?: unknown;
  detail?: unknown;
  error?: { code: string; message: string } | null;
  model?: string | null;
  holdId?: string | null;
  promptTokens?: number;
  completionTokens?: number;
  costMicros?: string;
  reusedFromRunId?: string | null;
  /** Extra data for the progress event only (e.g. cost so far). */
  event?: Record<string, unknown>;
}

export interface DslModelCallInput {
  runId: string;
  stepKey: string;
  upstreamModel: string;
  messages: ChatMessageLike[];
  maxTokens: number;
  temperature: number | null;
  outputSchema: unknown;
  repairRetries: number;
}

export interface DslModelCallResult {
  ok: boolean;
  /** The reply text, or the parsed JSON when an output schema is set. */
  output: unknown;
  error: { code: string; message: string } | null;
  promptTokens: number;
  completionTokens: number;
  calls: number;
  latencyMs: number;
}

/** The start of an llm step, in one local activity: model check, `running` row and event, hold. */
export interface DslBeginLlmStepInput {
  runId: string;
  stepKey: string;
  stepId: string;
  /** The model as the document names it (or its upstream id). */
  model: string;
  messages: ChatMessageLike[];
  temperature: number | null;
  /** The document's max_tokens; clamped here to the model's maximum. */
  maxTokens: number;
  /** Repairs are further calls of the same step: the hold covers all of them. */
  repairRetries: number;
  hold: Omit<BillingHoldInput, 'model' | 'messages' | 'promptTokens' | 'maxTokens'>;
}

export interface DslBeginLlmStepResult {
  model: string;
  upstreamModel: string;
  maxTokens: number;
  holdId: string;
  amountMicros: string;
  /** The hold's price when this call took it (absent on a replay): lets the capture be one statement. */
  price?: { inputMicrosPerMillion: string; outputMicrosPerMillion: string } | null;
}

/** The end of an llm step, in one local activity: capture, then the step's final row and event. */
export interface DslSettleLlmStepInput {
  runId: string;
  stepKey: string;
  stepId: string;
  model: string;
  holdId: string;
  captureKey: string;
  usage: CaptureUsage;
  /** The call's outcome (ok=false: the reply never matched output_schema; still billed). */
  ok: boolean;
  output: unknown;
  error: { code: string; message: string } | null;
  calls: number;
  /** The run's cost before this step, for the event's running total. */
  costBeforeMicros: string;
  /** The hold as taken (see BillingCaptureInput.known). */
  known?: BillingCaptureInput['known'];
}

export interface DslSettleLlmStepResult {
  chargedMicros: string;
  promptTokens: number;
  completionTokens: number;
}

/** A short llm step, in one local activity (dslLlmStep). */
export interface DslLlmStepInput extends DslBeginLlmStepInput {
  outputSchema: unknown;
  /** What the run's budget has left (null: no budget): a hold above it fails the step. */
  budgetLeftMicros: string | null;
  captureKey: string;
  /** The usage record's fixed fields; the call fills in tokens, latency and status. */
  usage: Omit<CaptureUsage, 'promptTokens' | 'completionTokens' | 'latencyMs' | 'status' | 'errorCode'>;
  costBeforeMicros: string;
}

export interface DslLlmStepResult extends DslSettleLlmStepResult {
  model: string;
  holdId: string;
  ok: boolean;
  output: unknown;
  error: { code: string; message: string } | null;
  calls: number;
}

export interface DslHttpInput {
  url: string;
  method: string;
  headers: Record<string, string>;
  body: unknown;
  timeoutMs: number;
  /** The run's organization: its policy may allow private/loopback targets. */
  orgId?: string;
}

export interface DslRetrieveInput {
  runId: string;
  stepKey: string;
  orgId: string;
  projectId: string;
  traceId: string;
  /** Knowledge base id, or its name within the run's project. */
  knowledgeBase: string;
  query: string;
  topK: number;
  minScore: number | null;
  documentIds: string[] | null;
  mode: 'hybrid' | 'vector' | 'fts';
  actor: { type: 'user' | 'api_key'; id: string };
}

export interface DslRetrieveResult {
  hits: Array<Pick<Citation, 'chunk_id' | 'document_id' | 'knowledge_base_id' | 'filename' | 'page' | 'heading' | 'text' | 'score'>>;
  knowledgeBaseId: string;
  promptTokens: number;
  costMicros: string;
}

export interface DslHttpResult {
  status: number;
  headers: Record<string, string>;
  body: unknown;
}

/** A JSON column's parameter: undefined leaves the column alone, null stores SQL NULL. */
const jsonText = (value: unknown) => (value === undefined || value === null ? value : JSON.stringify(value));
const MAX_HTTP_BODY = 1024 * 1024;

/** A UUID derived from text (same shape as the gateway's), so retried activities reuse rows. */
export function stableUuid(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Addresses an `http` step must not reach: loopback, private, link-local, unspecified, multicast, CGNAT, ULA. */
export function addressClass(address: string): 'public' | 'loopback' | 'private' {
  let ip = address;
  if (ip.startsWith('::ffff:') && net.isIPv4(ip.slice(7))) ip = ip.slice(7);
  if (net.isIPv4(ip)) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    if (a === 127) return 'loopback';
    if (a === 10 || a === 0 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 169 && b === 254) || (a === 100 && b >= 64 && b <= 127) || a >= 224) return 'private';
    return 'public';
  }
  const lower = ip.toLowerCase();
  if (lower === '::1') return 'loopback';
  if (lower === '::' || lower.startsWith('fe8') || lower.startsWith('fe9') || lower.startsWith('fea') || lower.startsWith('feb') || lower.startsWith('fc') || lower.startsWith('fd') || lower.startsWith('ff')) return 'private';
  return 'public';
}

function ssrfError(host: string, address: string, kind: string): Error {
  return ApplicationFailure.create({ type: 'ssrf_blocked', message: `http step refused: ${host} resolves to a ${kind} address (${address})`, nonRetryable: true });
}

function stepEvent(status: StepRecord['status']): RunEventType {
  return status === 'running' ? 'step.started' : (`step.${status}` as RunEventType);
}

export function createDslActivities(deps: ActivityDeps) {
  const ledger = new Ledger(deps.pool);
  const billing = createBillingActivities(deps);
  const catalog = deps.catalog ?? new ModelCatalog(deps.pool);
  const allowLoopback = deps.config.workflows?.httpAllowLoopback ?? false;

  /** DNS lookup that refuses forbidden addresses, so the socket connects only to a checked IP (no rebinding window). */
  const guardedLookup =
    (allowPrivate: boolean): net.LookupFunction =>
    (hostname, options, callback) => {
      dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
        if (error) return (callback as (e: Error | null, a: string, f?: number) => void)(error, '', 4);
        const list = addresses as unknown as dns.LookupAddress[];
        for (const entry of list) {
          const kind = addressClass(entry.address);
          if (!allowPrivate && (kind === 'private' || (kind === 'loopback' && !allowLoopback))) {
            return (callback as (e: Error | null, a: string, f?: number) => void)(ssrfError(hostname, entry.address, kind), '', 4);
          }
        }
        if ((options as dns.LookupOptions).all) return (callback as unknown as (e: null, a: dns.LookupAddress[]) => void)(null, list);
        (callback as (e: Error | null, a: string, f?: number) => void)(null, list[0]!.address, list[0]!.family);
      });
    };

  /** Private/loopback/link-local targets are the organization's call (its policy row), never a project's. */
  async function orgAllowsPrivateHttp(orgId: string | undefined): Promise<boolean> {
    if (!orgId) return false;
    const row = await deps.prisma.policy.findFirst({ where: { orgId, projectId: null }, select: { allowPrivateHttp: true } });
    return row?.allowPrivateHttp === true;
  }

  /**
   * Upserts a step's row and appends its progress event. One hand-written statement: two per step
   * on the hot path, where Prisma's upsert cost about 7× the CPU of the same SQL through pg.
   */
  async function recordStep(record: StepRecord): Promise<void> {
    const finished = record.status === 'succeeded' || record.status === 'failed' || record.status === 'skipped';
    // Only what this record says: a later record (e.g. succeeded) keeps the model and input of the first.
    const fields = (
      [
        ['kind', record.kind],
        ['status', record.status],
        ['attempt', record.attempt],
        ['input', jsonText(record.input), '::jsonb'],
        ['output', jsonText(record.output), '::jsonb'],
        ['detail', jsonText(record.detail), '::jsonb'],
        ['error', jsonText(record.error), '::jsonb'],
        ['model', record.model],
        ['hold_id', record.holdId],
        ['prompt_tokens', record.promptTokens],
        ['completion_tokens', record.completionTokens],
        ['cost_micros', record.costMicros, '::bigint'],
        ['reused_from_run_id', record.reusedFromRunId, '::uuid'],
        ['finished_at', finished ? new Date() : undefined, '::timestamptz'],
      ] as Array<[string, unknown, string?]>
    ).filter(([, value]) => value !== undefined);
    const columns = fields.map(([column]) => `, ${column}`).join('');
    const values = fields.map(([, , cast], i) => `, $${i + 4}${cast ?? ''}`).join('');
    const updates = [...fields.map(([column]) => `${column} = EXCLUDED.${column}`), ...(record.status === 'running' ? ['started_at = now()'] : [])];
    await deps.pool.query(
      `INSERT INTO workflow_run_steps (run_id, step_key, step_id${columns}) VALUES ($1::uuid, $2, $3${values})
       ON CONFLICT (run_id, step_key) DO UPDATE SET ${updates.join(', ')}`,
      [record.runId, record.stepKey, record.stepId, ...fields.map(([, value]) => value)],
    );
    await appendRunEvent(deps.redis, record.runId, stepEvent(record.status), {
      step_key: record.stepKey,
      step_id: record.stepId,
      kind: record.kind,
      ...(record.status === 'succeeded' || record.status === 'failed' ? { output: record.output ?? null } : {}),
      ...(record.error ? { error: record.error } : {}),
      ...(record.costMicros ? { cost_micros: record.costMicros } : {}),
      ...(record.reusedFromRunId ? { reused: true } : {}),
      ...record.event,
    });
  }

  // Compiled output schemas by their JSON: ajv compiles are costly, and a workflow's steps repeat them.
  const validators = new Map<string, ReturnType<typeof compileJsonSchema>>();
  function outputValidator(schema: unknown): ReturnType<typeof compileJsonSchema> {
    const text = JSON.stringify(schema);
    let compiled = validators.get(text);
    if (!compiled) {
      compiled = compileJsonSchema(schema);
      if (validators.size >= 200) validators.delete(validators.keys().next().value!);
      validators.set(text, compiled);
    }
    return compiled;
  }

  /** Active chat models by name or upstream id, from the catalog cache (a stale entry lives ≤ 10 s). */
  async function chatModel(name: string): Promise<{ name: string; upstreamModel: string; maxOutputTokens: number }> {
    const models = await catalog.all();
    const model = models.get(name) ?? [...models.values()].find((m) => m.upstreamModel === name);
    if (!model || model.kind !== 'chat') {
      throw ApplicationFailure.create({ type: 'not_found', message: `model "${name}" is not an active chat model`, nonRetryable: true });
    }
    return { name: model.name, upstreamModel: model.upstreamModel, maxOutputTokens: model.maxOutputTokens };
  }

  /**
   * Captures a step's hold once. A step re-run after a worker crash (its earlier local activities
   * were in a workflow task that never completed) calls the model again, and that call's usage may
   * differ from the one already captured: the first capture stands, so the step is charged once.
   */
  async function captureOnce(input: DslSettleLlmStepInput): Promise<DslSettleLlmStepResult> {
    try {
      const captured = await billing.billingCapture({ holdId: input.holdId, idempotencyKey: input.captureKey, usage: input.usage, known: input.known });
      return { chargedMicros: captured.chargedMicros, promptTokens: input.usage.promptTokens, completionTokens: input.usage.completionTokens };
    } catch (error) {
      // The ledger names the capture that stands: as the key's first use (idempotency_conflict) or
      // as the hold's settlement (conflict). Either way it is this hold's, so this step's.
      const details = error instanceof ApplicationFailure && (error.type === 'idempotency_conflict' || error.type === 'conflict') ? (error.details?.[0] as { first_transaction_id?: string; transaction_id?: string } | undefined) : undefined;
      const transactionId = details?.first_transaction_id ?? details?.transaction_id;
      if (!transactionId) throw error;
      const { rows } = await deps.pool.query<{ charged: string; prompt_tokens: number; completion_tokens: number }>(
        `SELECT (-t.amount_micros)::text AS charged, u.prompt_tokens, u.completion_tokens
         FROM wallet_transactions t JOIN usage_records u ON u.hold_id = t.hold_id
         WHERE t.id = $1 AND t.hold_id = $2::uuid AND t.kind = 'capture'`,
        [transactionId, input.holdId],
      );
      if (!rows[0]) throw error;
      return { chargedMicros: rows[0].charged, promptTokens: rows[0].prompt_tokens, completionTokens: rows[0].completion_tokens };
    }
  }

  /** An llm step starts: model check, its `running` row and event, then its hold (idempotent on its key). */
  async function beginLlm(input: DslBeginLlmStepInput): Promise<DslBeginLlmStepResult> {
    const model = await chatModel(input.model);
    const maxTokens = Math.min(input.maxTokens, model.maxOutputTokens);
    // Independent writes, side by side; both settle before a failure is reported, so a later
    // `failed` row cannot be overtaken by this `running` one. A retry redoes both (upsert, keyed hold).
    const [recorded, held] = await Promise.allSettled([
      recordStep({
        runId: input.runId,
        stepKey: input.stepKey,
        stepId: input.stepId,
        kind: 'llm',
        status: 'running',
        model: model.name,
        input: { model: model.name, messages: input.messages, temperature: input.temperature, max_tokens: maxTokens },
      }),
      billing.billingHold({ ...input.hold, model: model.name, messages: input.messages, maxTokens: maxTokens * (1 + input.repairRetries) }),
    ]);
    if (held.status === 'rejected') throw held.reason;
    if (recorded.status === 'rejected') throw recorded.reason;
    const hold = held.value;
    return { model: model.name, upstreamModel: hold.upstreamModel, maxTokens, holdId: hold.holdId, amountMicros: hold.amountMicros, price: hold.price ?? null };
  }

  /** An llm step ends: its hold captured (once), then its `succeeded` (or `failed`) row and event. */
  async function settleLlm(input: DslSettleLlmStepInput): Promise<DslSettleLlmStepResult> {
    const billed = await captureOnce(input);
    const common = {
      runId: input.runId,
      stepKey: input.stepKey,
      stepId: input.stepId,
      kind: 'llm',
      holdId: input.holdId,
      promptTokens: billed.promptTokens,
      completionTokens: billed.completionTokens,
      costMicros: billed.chargedMicros,
      event: { cost_so_far_micros: (BigInt(input.costBeforeMicros) + BigInt(billed.chargedMicros)).toString() },
    };
    if (input.ok) {
      const detail = { calls: input.calls, model: input.model, holdId: input.holdId, promptTokens: billed.promptTokens, completionTokens: billed.completionTokens, costMicros: billed.chargedMicros };
      await recordStep({ ...common, status: 'succeeded', output: input.output, detail });
    } else {
      await recordStep({ ...common, status: 'failed', output: null, error: input.error, model: input.model });
    }
    return billed;
  }

  /**
   * One llm step's calls: the first answer, then up to `repairRetries` repairs showing the model
   * its invalid reply and the validation errors. Usage is summed over every call; a reply that
   * stays invalid is a result with ok=false (its tokens are still billed by the workflow).
   */
  async function callModel(input: DslModelCallInput): Promise<DslModelCallResult> {
    const context = Context.current();
    const started = performance.now();
    const validator = input.outputSchema !== null && input.outputSchema !== undefined ? outputValidator(input.outputSchema) : null;
    if (validator && !validator.ok) throw ApplicationFailure.create({ type: 'invalid_output_schema', message: 'output_schema does not compile', nonRetryable: true });
    const messages = [...input.messages] as Array<{ role: string; content: string }>;
    let promptTokens = 0;
    let completionTokens = 0;
    let calls = 0;
    // A local activity has no heartbeat (its worker runs the workflow task that waits for it).
    const beat = context.info.isLocal ? undefined : setInterval(() => context.heartbeat(), 2_000);
    try {
      for (let attempt = 0; attempt <= (validator ? input.repairRetries : 0); attempt++) {
        calls++;
        let completion;
        try {
          completion = await deps.upstream.chat.completions.create(
            {
              model: input.upstreamModel,
              messages: messages as never,
              max_tokens: input.maxTokens,
              ...(input.temperature != null ? { temperature: input.temperature } : {}),
              ...(validator ? { response_format: { type: 'json_schema', json_schema: { name: 'output', schema: input.outputSchema as Record<string, unknown>, strict: false } } } : {}),
            },
            { signal: context.cancellationSignal },
          );
        } catch (error) {
          // Reported as a cancellation, not a failure: a failure would be retried (a local activity's
          // retries run even after the workflow asked it to stop).
          if (context.cancellationSignal.aborted) throw new CancelledFailure('cancelled during the model call', [], error as Error);
          const failure = classifyUpstreamError(error);
          throw ApplicationFailure.create({ type: failure.code, message: failure.message, nonRetryable: !failure.retryable });
        }
        const text = completion.choices[0]?.message?.content ?? '';
        promptTokens += completion.usage?.prompt_tokens ?? countChatPromptTokens(messages as ChatMessageLike[]);
        completionTokens += completion.usage?.completion_tokens ?? countTokens(text);
        const result = { promptTokens, completionTokens, calls, latencyMs: Math.round(performance.now() - started) };
        if (!validator) return { ok: true, output: text, error: null, ...result };
        let parsed: unknown;
        let problem: string;
        try {
          parsed = JSON.parse(text);
          const check = validator.schema.validate(parsed);
          if (check.ok) return { ok: true, output: parsed, error: null, ...result };
          problem = check.errors.map((e) => `${e.pointer || '/'} ${e.message}`).join('; ');
        } catch {
          problem = 'the reply is not valid JSON';
        }
        if (attempt === input.repairRetries) {
          return { ok: false, output: null, error: { code: 'invalid_output', message: `the reply does not match output_schema: ${problem}` }, ...result };
        }
        messages.push({ role: 'assistant', content: text }, { role: 'user', content: `Your reply does not match the required JSON schema: ${problem}. Reply again with JSON only, valid against the schema.` });
      }
      throw new Error('unreachable');
    } finally {
      clearInterval(beat);
    }
  }

  return {
    /** The run starts: status running, `run.started` event. */
    async dslStartRun(input: { runId: string; traceId: string; name: string }): Promise<void> {
      await deps.pool.query(`UPDATE workflow_runs SET status = 'running', started_at = now() WHERE id = $1::uuid AND status = 'queued'`, [input.runId]);
      if (Context.current().info.attempt === 1) {
        await appendRunEvent(deps.redis, input.runId, 'run.started', { run_id: input.runId, workflow: input.name, trace_id: input.traceId });
      }
    },

    /** Upserts a step's row and appends its progress event. */
    dslRecordStep: recordStep,

    /** A retrieve step: billed query embedding + hybrid search of one knowledge base of the run's project. */
    async dslRetrieve(input: DslRetrieveInput): Promise<DslRetrieveResult> {
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(input.knowledgeBase);
      const kb = await deps.prisma.knowledgeBase.findFirst({
        where: { projectId: input.projectId, archivedAt: null, ...(uuid ? { id: input.knowledgeBase } : { name: input.knowledgeBase }) },
      });
      if (!kb) throw ApplicationFailure.create({ type: 'not_found', message: `knowledge base "${input.knowledgeBase}" not found in this project`, nonRetryable: true });
      try {
        const result = await retrieveChunks(
          { prisma: deps.prisma, index: await deps.knowledge.index(), ledger, upstream: deps.upstream },
          {
            orgId: input.orgId,
            projectId: input.projectId,
            knowledgeBaseIds: [kb.id],
            query: input.query,
            topK: input.topK,
            mode: input.mode,
            minScore: input.minScore ?? undefined,
            documentIds: input.documentIds ?? undefined,
            traceId: input.traceId,
            runId: input.runId,
            stepId: input.stepKey,
            idempotencyKey: `${input.runId}:${input.stepKey}:retrieve`,
            actor: input.actor,
            ...(input.actor.type === 'api_key' ? { apiKeyId: input.actor.id } : { userId: input.actor.id }),
          },
        );
        return {
          hits: result.hits.map((h) => ({ chunk_id: h.chunk_id, document_id: h.document_id, knowledge_base_id: h.knowledge_base_id, filename: h.filename, page: h.page, heading: h.heading, text: h.text, score: h.score })),
          knowledgeBaseId: kb.id,
          promptTokens: result.embedding?.promptTokens ?? 0,
          costMicros: result.embedding?.costMicros ?? '0',
        };
      } catch (error) {
        if (isAppError(error) && error.status < 500) throw ApplicationFailure.create({ type: error.code, message: error.message, nonRetryable: true });
        if (isAppError(error)) throw ApplicationFailure.create({ type: error.code, message: error.message });
        throw error;
      }
    },

    /** The model of an llm step: catalog check. */
    async dslResolveModel(input: { model: string }): Promise<{ name: string; upstreamModel: string; maxOutputTokens: number }> {
      const model = await deps.prisma.model.findFirst({ where: { OR: [{ name: input.model }, { upstreamModel: input.model }] } });
      if (!model || !model.isActive || model.kind !== 'chat') {
        throw ApplicationFailure.create({ type: 'not_found', message: `model "${input.model}" is not an active chat model`, nonRetryable: true });
      }
      return { name: model.name, upstreamModel: model.upstreamModel, maxOutputTokens: model.maxOutputTokens };
    },

    dslBeginLlmStep: beginLlm,
    dslModelCall: callModel,
    dslSettleLlmStep: settleLlm,

    /**
     * A short llm step in one local activity: begin, call, settle. A retry starts over: the hold
     * and the capture are idempotent on their keys, so only the model call repeats. When it fails,
     * the workflow releases the hold by its key (dslReleaseStepHold).
     */
    async dslLlmStep(input: DslLlmStepInput): Promise<DslLlmStepResult> {
      const begun = await beginLlm(input);
      if (input.budgetLeftMicros !== null && BigInt(begun.amountMicros) > BigInt(input.budgetLeftMicros)) {
        throw ApplicationFailure.create({
          type: 'budget_exceeded',
          message: `the step may cost up to ${begun.amountMicros} micros; the run's budget has ${input.budgetLeftMicros} left`,
          nonRetryable: true,
        });
      }
      // Cancelled while the hold was taken: no call (the workflow waits for this, then releases).
      if (Context.current().cancellationSignal.aborted) throw new CancelledFailure('cancelled before the model call');
      const result = await callModel({ ...input, upstreamModel: begun.upstreamModel, maxTokens: begun.maxTokens });
      // A finished call is billed even when a cancel arrives now: its tokens were spent.
      const billed = await settleLlm({
        runId: input.runId,
        stepKey: input.stepKey,
        stepId: input.stepId,
        model: begun.model,
        holdId: begun.holdId,
        captureKey: input.captureKey,
        usage: {
          ...input.usage,
          modelName: begun.model,
          upstreamModel: begun.upstreamModel,
          promptTokens: result.promptTokens,
          completionTokens: result.completionTokens,
          latencyMs: result.latencyMs,
          status: result.ok ? 'success' : 'error',
          errorCode: result.error?.code ?? null,
        },
        known: begun.price ? { amountMicros: begun.amountMicros, ...begun.price } : undefined,
        ok: result.ok,
        output: result.output,
        error: result.error,
        calls: result.calls,
        costBeforeMicros: input.costBeforeMicros,
      });
      return { model: begun.model, holdId: begun.holdId, ok: result.ok, output: result.output, error: result.error, calls: result.calls, ...billed };
    },

    /**
     * A failed or cancelled llm step's hold, found by its key, is released. Nothing to do when the
     * step failed before taking it, or it is settled already (released by an earlier attempt of this
     * activity, or expired by the sweep).
     */
    async dslReleaseStepHold(input: { holdKey: string; releaseKey: string; reason: string }): Promise<{ released: boolean }> {
      const { rows } = await deps.pool.query<{ id: string; status: string }>('SELECT id, status FROM holds WHERE idempotency_key = $1', [input.holdKey]);
      const hold = rows[0];
      if (!hold || hold.status !== 'active') return { released: false };
      await billing.billingRelease({ holdId: hold.id, idempotencyKey: input.releaseKey, reason: input.reason });
      return { released: true };
    },

    /** An http step: no redirects followed, DNS answers checked before connecting, 1 MiB body cap. */
    async dslHttpRequest(input: DslHttpInput): Promise<DslHttpResult> {
      let url: URL;
      try {
        url = new URL(input.url);
      } catch {
        throw ApplicationFailure.create({ type: 'bad_request', message: `invalid url "${input.url}"`, nonRetryable: true });
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:') throw ApplicationFailure.create({ type: 'bad_request', message: 'only http and https URLs are allowed', nonRetryable: true });
      const host = url.hostname.replace(/^\[|\]$/g, '');
      const allowPrivate = await orgAllowsPrivateHttp(input.orgId);
      if (net.isIP(host) && !allowPrivate) {
        const kind = addressClass(host);
        if (kind === 'private' || (kind === 'loopback' && !allowLoopback)) throw ssrfError(host, host, kind);
      }
      const headers: Record<string, string> = { ...input.headers };
      let payload: string | undefined;
      if (input.body !== undefined && input.body !== null && input.method !== 'GET' && input.method !== 'HEAD') {
        payload = typeof input.body === 'string' ? input.body : JSON.stringify(input.body);
        if (!Object.keys(headers).some((h) => h.toLowerCase() === 'content-type')) headers['content-type'] = 'application/json';
      }
      const signal = Context.current().cancellationSignal;
      const result = await new Promise<DslHttpResult>((resolve, reject) => {
        const request = (url.protocol === 'https:' ? https : http).request(
          url,
          { method: input.method, headers, lookup: guardedLookup(allowPrivate), timeout: input.timeoutMs, signal },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (chunk: Buffer) => {
              size += chunk.length;
              if (size > MAX_HTTP_BODY) {
                res.destroy(ApplicationFailure.create({ type: 'payload_too_large', message: 'response body over 1 MiB', nonRetryable: true }));
                return;
              }
              chunks.push(chunk);
            });
            res.on('error', reject);
            res.on('end', () => {
              const text = Buffer.concat(chunks).toString('utf8');
              let body: unknown = text;
              if ((res.headers['content-type'] ?? '').includes('json')) {
                try {
                  body = JSON.parse(text);
                } catch {
                  body = text;
                }
              }
              const outHeaders: Record<string, string> = {};
              for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') outHeaders[k] = v;
              resolve({ status: res.statusCode ?? 0, headers: outHeaders, body });
            });
          },
        );
        request.on('timeout', () => request.destroy(ApplicationFailure.create({ type: 'upstream_timeout', message: 'http step timed out' })));
        request.on('error', reject);
        if (payload !== undefined) request.write(payload);
        request.end();
      }).catch((error: unknown) => {
        if (error instanceof ApplicationFailure) throw error;
        throw ApplicationFailure.create({ type: 'http_error', message: `http step failed: ${(error as Error).message}` });
      });
      if (result.status >= 400) {
        const retryable = result.status >= 500 || result.status === 429;
        throw ApplicationFailure.create({ type: 'http_status', message: `http step got status ${result.status}`, nonRetryable: !retryable, details: [{ status: result.status }] });
      }
      return result;
    },

    /** A `workflow` step: finds the child definition, validates its inputs and creates its run row. */
    async dslPrepareChildRun(input: { parent: DslRunInput; stepKey: string; workflow: string; version: number | null; inputs: unknown }): Promise<DslRunInput> {
      const { parent } = input;
      const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(input.workflow);
      const definition = await deps.prisma.workflowDefinition.findFirst({
        where: { projectId: parent.projectId, archivedAt: null, ...(uuid ? { id: input.workflow } : { slug: input.workflow }) },
      });
      if (!definition) throw ApplicationFailure.create({ type: 'not_found', message: `workflow "${input.workflow}" not found in this project`, nonRetryable: true });
      const version = await deps.prisma.workflowVersion.findFirst({
        where: { definitionId: definition.id, ...(input.version ? { version: input.version } : {}) },
        orderBy: { version: 'desc' },
      });
      if (!version) throw ApplicationFailure.create({ type: 'not_found', message: `workflow "${input.workflow}" has no version ${input.version ?? ''}`, nonRetryable: true });
      const checked = validateWorkflow(version.spec);
      if (!checked.ok) throw ApplicationFailure.create({ type: 'validation_failed', message: 'the child workflow does not validate', nonRetryable: true });
      const inputs = validateInputs(checked.document.inputs, input.inputs ?? {});
      if (!inputs.ok) {
        throw ApplicationFailure.create({ type: 'validation_failed', message: `child inputs: ${inputs.errors.map((e) => `${e.pointer} ${e.message}`).join('; ')}`, nonRetryable: true });
      }
      const runId = stableUuid(`child-run:${parent.runId}:${input.stepKey}`);
      await deps.prisma.workflowRun.upsert({
        where: { id: runId },
        update: {},
        create: {
          id: runId,
          orgId: parent.orgId,
          projectId: parent.projectId,
          kind: 'workflow',
          definitionId: definition.id,
          versionId: version.id,
          temporalWorkflowId: dslWorkflowId(runId),
          traceId: parent.traceId,
          actorType: parent.actor.type,
          actorId: parent.actor.id,
          input: { inputs: inputs.inputs, parent_run_id: parent.runId, parent_step: input.stepKey } as Prisma.InputJsonValue,
        },
      });
      return {
        runId,
        traceId: parent.traceId,
        orgId: parent.orgId,
        projectId: parent.projectId,
        definitionId: definition.id,
        versionId: version.id,
        document: checked.document,
        inputs: inputs.inputs,
        budgetMicros: null,
        reuse: null,
        depth: (parent.depth ?? 0) + 1,
        actor: parent.actor,
      };
    },

    /** The run succeeded: outputs, total cost, audit, `run.completed`. */
    async dslFinishRun(input: { run: DslRunInput; output: unknown; costMicros: string }): Promise<void> {
      const { run } = input;
      // One statement (status + audit row together, the audit only when this call moved the run):
      // it runs once per run on the hot path, where Prisma's interactive transaction cost 4 round trips.
      await deps.pool.query(
        `WITH updated AS (
           UPDATE workflow_runs SET status = 'succeeded', finished_at = now(), cost_micros = $2::bigint, output = $3::jsonb
           WHERE id = $1::uuid AND status IN ('queued', 'running') RETURNING id
         )
         INSERT INTO audit_logs (trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, project_id, result, details)
         SELECT $4, $5::"ActorType", $6, 'workflow.run.succeeded', 'workflow_run', $1, $7::uuid, $8::uuid, 'success'::"AuditResult", $9::jsonb FROM updated`,
        [
          run.runId,
          input.costMicros,
          JSON.stringify(input.output ?? null),
          run.traceId,
          run.actor.type,
          run.actor.id,
          run.orgId,
          run.projectId,
          JSON.stringify({ cost_micros: input.costMicros, definition_id: run.definitionId, version_id: run.versionId }),
        ],
      );
      await appendRunEvent(deps.redis, run.runId, 'run.completed', { run_id: run.runId, output: input.output ?? null, cost_micros: input.costMicros });
    },

    /** The run failed or was cancelled (holds were released before): status, audit, final event. */
    async dslFailRun(input: { run: DslRunInput; code: string; message: string; step: string | null; cancelled: boolean; costMicros: string }): Promise<void> {
      const { run } = input;
      const status = input.cancelled ? 'cancelled' : 'failed';
      await deps.prisma.$transaction(async (tx) => {
        const updated = await tx.workflowRun.updateMany({
          where: { id: run.runId, status: { in: ['queued', 'running'] } },
          data: { status, finishedAt: new Date(), costMicros: BigInt(input.costMicros), error: { code: input.code, message: input.message, step: input.step } as Prisma.InputJsonValue },
        });
        if (updated.count > 0) {
          await tx.auditLog.create({
            data: {
              traceId: run.traceId,
              actorType: run.actor.type,
              actorId: run.actor.id,
              action: `workflow.run.${status}`,
              resourceType: 'workflow_run',
              resourceId: run.runId,
              orgId: run.orgId,
              projectId: run.projectId,
              result: 'failure',
              details: { code: input.code, step: input.step, cost_micros: input.costMicros } as Prisma.InputJsonValue,
            },
          });
        }
      });
      await appendRunEvent(deps.redis, run.runId, input.cancelled ? 'run.cancelled' : 'run.failed', { code: input.code, message: input.message, step: input.step, cost_micros: input.costMicros });
    },
  };
}

export type DslActivities = ReturnType<typeof createDslActivities>;
