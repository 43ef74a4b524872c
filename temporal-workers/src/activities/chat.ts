// Chat activities: build the prompt from the session's history, stream the model's reply into the
// run's Redis Stream, and settle the run (capture + assistant message + audit) or fail it
// (release + usage + audit). Each is idempotent on the run id, so Temporal may retry them.
import { Context } from '@temporalio/activity';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import {
  appendRunEvent,
  runEventsKey,
  countChatPromptTokens,
  countTokens,
  Ledger,
  RunDeltaBatcher,
  type ChatMessageLike,
  type ChatRunInput,
  type Prisma,
} from '@deepspace/core';
import { classifyUpstreamError, leanUpstream, type OpenAI } from '@deepspace/core/ai/upstream';
import { formatSourcesForPrompt, retrieveChunks, type Citation } from '@deepspace/core/knowledge/retrieve';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';
import { estimateHoldMicros } from '@deepspace/core/billing/pricing';
import { WalletHeadroom } from '@deepspace/core/billing/wallet-headroom';
import { createBillingActivities } from './billing.ts';
import type { ActivityDeps } from './index.ts';

export type { ChatRunInput };

export interface ChatContext {
  messages: ChatMessageLike[];
  upstreamModel: string;
  modelId: string;
  maxTokens: number;
  droppedMessages: number;
  /** Knowledge-base sources put in front of the model (numbered [1], [2]… in the prompt). */
  citations: ChatCitation[];
  /** What the query embedding of that retrieval cost (micros, decimal string). */
  retrievalCostMicros: string;
}

export type ChatCitation = Pick<Citation, 'chunk_id' | 'document_id' | 'knowledge_base_id' | 'filename' | 'page' | 'heading' | 'score'> & { index: number; text: string };

const CITATION_INSTRUCTIONS =
  'Answer from the numbered sources below when they are relevant, and cite them inline as [1], [2]. If they do not contain the answer, say so before answering from general knowledge.';

export interface ChatModelResult {
  content: string;
  promptTokens: number;
  completionTokens: number;
  finishReason: string | null;
  latencyMs: number;
  usageFromUpstream: boolean;
}

const DEFAULT_MAX_TOKENS = 1024;
/** Deltas after the first are appended to the run streams together, this often. */
const DELTA_FLUSH_MS = 50;

/** The audit row of a chat run's model call, under the run's trace id. */
function chatAuditRow(run: ChatRunInput, result: 'success' | 'failure', details: Record<string, unknown>) {
  return {
    traceId: run.traceId,
    actorType: run.actor.type,
    actorId: run.actor.id,
    action: 'ai.call',
    resourceType: 'chat_session',
    resourceId: run.sessionId,
    orgId: run.orgId,
    projectId: run.projectId,
    result,
    details: { run_id: run.runId, model: run.model, ...details } as Prisma.InputJsonValue,
  };
}

/** A chat run's prompt, model and hold, from one local activity (prepareChatRun). */
export interface PreparedChatRun extends ChatContext {
  holdId: string;
  /** The hold as taken (absent on a replay), so the capture can be one statement. */
  known: { amountMicros: string; inputMicrosPerMillion: string; outputMicrosPerMillion: string } | null;
}

interface HistoryRow {
  id: string;
  role: string;
  content: string;
  params: { system_prompt?: string; knowledge_base_ids?: string[]; retrieval_top_k?: number } | null;
}

/** Messages of a session read for one prompt, newest first: older turns never fit a window anyway. */
const MAX_HISTORY_MESSAGES = 2_000;

export function createChatActivities(deps: ActivityDeps) {
  const ledger = new Ledger(deps.pool);
  const billing = createBillingActivities(deps);
  const catalog = deps.catalog ?? new ModelCatalog(deps.pool);
  const deltas = new RunDeltaBatcher(deps.redis, DELTA_FLUSH_MS);
  const headroom = new WalletHeadroom({ factor: deps.config.chat.speculativeHeadroom });

  /** Learns the wallet from a refused hold (its error carries what was available). */
  function noteRefusal(orgId: string, error: unknown): void {
    if (!(error instanceof ApplicationFailure) || error.type !== 'insufficient_funds') return;
    const available = (error.details?.[0] as { available_micros?: string } | undefined)?.available_micros;
    if (available !== undefined) headroom.noteAvailable(orgId, BigInt(available));
  }

  /**
   * Loads the model (cached catalog) and the session's history up to the user's message in one
   * statement, retrieves knowledge-base sources when the session has any, and keeps the newest
   * turns that fit the model's window next to the reply's max tokens.
   */
  async function buildContext(input: ChatRunInput): Promise<ChatContext & { modelName: string }> {
    const model = (await catalog.all()).get(input.model);
    if (!model || model.kind !== 'chat') {
      throw ApplicationFailure.create({ type: 'not_found', message: `model "${input.model}" is not an active chat model`, nonRetryable: true });
    }
    const maxTokens = Math.min(input.maxTokens ?? DEFAULT_MAX_TOKENS, model.maxOutputTokens);
    const { rows } = await deps.pool.query<HistoryRow>(
      `SELECT m.id, m.role, m.content, s.params
       FROM chat_sessions s
       JOIN chat_messages anchor ON anchor.id = $2::uuid AND anchor.session_id = s.id
       JOIN LATERAL (
         SELECT id, role, content FROM chat_messages
         WHERE session_id = s.id AND created_at <= anchor.created_at AND role IN ('system', 'user', 'assistant')
         ORDER BY created_at DESC, id DESC LIMIT $3
       ) m ON true
       WHERE s.id = $1::uuid`,
      [input.sessionId, input.userMessageId, MAX_HISTORY_MESSAGES],
    );
    const anchor = rows.find((r) => r.id === input.userMessageId);
    if (!anchor) throw ApplicationFailure.create({ type: 'not_found', message: 'the message or its session no longer exists', nonRetryable: true });
    const params = anchor.params ?? {};
    const history = rows.reverse();

    // Sessions with knowledge bases answer from them: the user's message is the query.
    let citations: ChatCitation[] = [];
    let retrievalCostMicros = '0';
    if (params.knowledge_base_ids?.length) {
      const retrieved = await retrieveChunks(
        { prisma: deps.prisma, index: await deps.knowledge.index(), ledger, upstream: deps.upstream },
        {
          orgId: input.orgId,
          projectId: input.projectId,
          knowledgeBaseIds: params.knowledge_base_ids,
          query: anchor.content,
          topK: params.retrieval_top_k ?? 5,
          traceId: input.traceId,
          runId: input.runId,
          stepId: 'retrieve',
          idempotencyKey: `chat:${input.runId}:retrieve`,
          actor: input.actor,
          ...(input.actor.type === 'api_key' ? { apiKeyId: input.actor.id } : { userId: input.actor.id }),
        },
      ).catch((error: unknown) => {
        if (error instanceof Error && 'status' in error && typeof error.status === 'number' && error.status < 500) {
          throw ApplicationFailure.create({ type: (error as { code?: string }).code ?? 'bad_request', message: error.message, nonRetryable: true });
        }
        throw error;
      });
      citations = retrieved.hits.map((h, i) => ({
        index: i + 1,
        chunk_id: h.chunk_id,
        document_id: h.document_id,
        knowledge_base_id: h.knowledge_base_id,
        filename: h.filename,
        page: h.page,
        heading: h.heading,
        score: h.score,
        text: h.text.slice(0, 2_000),
      }));
      retrievalCostMicros = retrieved.embedding?.costMicros ?? '0';
    }
    const preamble: ChatMessageLike[] = [];
    if (params.system_prompt) preamble.push({ role: 'system', content: params.system_prompt });
    if (citations.length) preamble.push({ role: 'system', content: `${CITATION_INSTRUCTIONS}\n\n${formatSourcesForPrompt(citations as unknown as Citation[])}` });

    // Newest turns first while they fit (the count is additive per message: tokenizer.ts).
    const budget = model.contextWindow - maxTokens;
    const emptyPrompt = countChatPromptTokens([]);
    let used = countChatPromptTokens(preamble);
    const kept: ChatMessageLike[] = [];
    for (let i = history.length - 1; i >= 0; i--) {
      const message = { role: history[i]!.role, content: history[i]!.content };
      const cost = countChatPromptTokens([message]) - emptyPrompt;
      if (used + cost > budget && kept.length > 0) break;
      used += cost;
      kept.push(message);
    }
    kept.reverse();
    return {
      messages: [...preamble, ...kept],
      modelName: model.name,
      upstreamModel: model.upstreamModel,
      modelId: model.id,
      maxTokens,
      droppedMessages: history.length - kept.length,
      citations,
      retrievalCostMicros,
    };
  }

  /**
   * The run is running: its row (with the Temporal run id, which the gateway leaves to this write
   * rather than commit an update of its own per message) and its `run.started` event.
   */
  async function markRunning(input: ChatRunInput, modelName: string): Promise<void> {
    const temporalRunId = Context.current().info.workflowExecution?.runId ?? null;
    await deps.pool.query(
      `UPDATE workflow_runs SET status = 'running', started_at = COALESCE(started_at, now()), temporal_run_id = COALESCE(temporal_run_id, $2)
        WHERE id = $1::uuid AND status IN ('queued', 'running')`,
      [input.runId, temporalRunId],
    );
    await appendRunEvent(deps.redis, input.runId, 'run.started', { run_id: input.runId, model: modelName, trace_id: input.traceId });
  }

  /** The run marked running and its hold taken (idempotent on its key, so a retry holds once). */
  async function holdAndMarkRunning(input: ChatRunInput, modelName: string, context: ChatContext): Promise<PreparedChatRun> {
    try {
      const [, hold] = await Promise.all([
        markRunning(input, modelName),
        billing.billingHold({
          orgId: input.orgId,
          projectId: input.projectId,
          model: modelName,
          messages: context.messages,
          maxTokens: context.maxTokens,
          traceId: input.traceId,
          runId: input.runId,
          stepId: 'model',
          idempotencyKey: `chat:${input.runId}:hold`,
          ttlSeconds: 15 * 60,
          actor: input.actor,
        }),
      ]);
      if (!hold.replayed && hold.availableAfterMicros !== undefined) headroom.noteAvailable(input.orgId, BigInt(hold.availableAfterMicros));
      return {
        ...context,
        holdId: hold.holdId,
        known: hold.price ? { amountMicros: hold.amountMicros, ...hold.price } : null,
      };
    } catch (error) {
      noteRefusal(input.orgId, error);
      throw error;
    }
  }

  /** The hold's estimate for this prompt at the cached price in force (null: no price cached). */
  async function estimateOf(context: ChatContext): Promise<bigint | null> {
    const price = await catalog.priceAt(context.modelId);
    return price ? estimateHoldMicros({ price, messages: context.messages, maxTokens: context.maxTokens }).amountMicros : null;
  }

  /**
   * Whether the run's stream holds a reply delta after its latest reset: an earlier try of the call
   * streamed part of a reply. Read from the newest entry back, a page at a time (a first try finds
   * only `run.started`; a re-run finds the earlier try's deltas within the first page).
   */
  async function streamedBefore(runId: string): Promise<boolean> {
    const key = runEventsKey(runId);
    let end = '+';
    for (;;) {
      const page = (await deps.redis.xrevrange(key, end, '-', 'COUNT', 200)) as Array<[string, string[]]>;
      for (const [, fields] of page) {
        const type = fields[fields.indexOf('type') + 1];
        if (type === 'message.delta') return true;
        if (type === 'message.reset') return false;
      }
      if (page.length < 200) return false;
      end = `(${page.at(-1)![0]}`;
    }
  }

  const activities = {
    /** Loads the model and the session's history up to the user's message, trimmed to the window (earlier workflow versions). */
    async prepareChatContext(input: ChatRunInput): Promise<ChatContext> {
      const { modelName, ...context } = await buildContext(input);
      await markRunning(input, modelName);
      return context;
    },

    /**
     * Everything before the model call, in one local activity: the prompt, the run marked running
     * and the hold (idempotent on its key, so a retry holds once).
     */
    async prepareChatRun(input: ChatRunInput): Promise<PreparedChatRun> {
      const { modelName, ...context } = await buildContext(input);
      return holdAndMarkRunning(input, modelName, context);
    },

    /** Streams the reply, appending deltas to the run's event stream; heartbeats so cancellation reaches it. */
    async chatModelCall(
      input: { runId: string; upstreamModel: string; messages: ChatMessageLike[]; maxTokens: number; temperature?: number | null },
      /** The hold, when the call started beside it: nothing is appended unless it stands, and a refusal aborts the call. */
      held?: Promise<unknown>,
    ): Promise<ChatModelResult> {
      const context = Context.current();
      const refused = new AbortController();
      let holdFailure: { error: unknown } | undefined;
      held?.catch((error: unknown) => {
        holdFailure = { error };
        refused.abort();
      });
      const signal = held ? AbortSignal.any([context.cancellationSignal, refused.signal]) : context.cancellationSignal;
      const local = context.info.isLocal;
      // A retry tells the client to drop what an earlier try streamed. A local activity re-run by
      // another worker after a crash starts again at attempt 1, so the stream itself says whether a
      // reply was begun; that read runs beside the upstream request, off the first token's path.
      const resetNeeded = context.info.attempt > 1 ? Promise.resolve(true) : local ? streamedBefore(input.runId) : Promise.resolve(false);
      resetNeeded.catch(() => undefined);
      let resetChecked = false;
      const resetIfNeeded = async () => {
        if (resetChecked) return;
        resetChecked = true;
        await held;
        if (await resetNeeded) await appendRunEvent(deps.redis, input.runId, 'message.reset', { attempt: context.info.attempt });
      };
      const heartbeat = (details: unknown) => {
        // A local activity has no heartbeat: its worker keeps the workflow task alive instead.
        if (!local) context.heartbeat(details);
      };
      const started = performance.now();
      // Heartbeat on a timer too: the wait for the first token can be long, and a dead worker must
      // be noticed by its heartbeat timeout, not by the whole call's timeout.
      const beat = local ? undefined : setInterval(() => heartbeat({ chars: content.length }), 2_000);
      let content = '';
      let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
      let finishReason: string | null = null;
      try {
        const request = {
          model: input.upstreamModel,
          messages: input.messages as never,
          max_tokens: input.maxTokens,
          ...(input.temperature != null ? { temperature: input.temperature } : {}),
          stream: true as const,
          stream_options: { include_usage: true },
        };
        // The lean client parses the SSE itself (the SDK's fetch and web streams cost more CPU per
        // chunk, and a worker relays many replies at once); the SDK when the client can't be mirrored.
        const lean = leanUpstream(deps.upstream);
        const stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk> = lean
          ? await lean.streamJson<OpenAI.Chat.Completions.ChatCompletionChunk>('chat/completions', request, signal)
          : await deps.upstream.chat.completions.create(request, { signal });
        for await (const chunk of stream) {
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices?.[0];
          if (choice?.finish_reason) finishReason = choice.finish_reason;
          const delta = choice?.delta?.content ?? '';
          if (!delta) continue;
          // The first delta goes at once (time to first token is what people feel); the rest are
          // coalesced into the batcher's ticks: ~20 updates a second per reply, smooth to read, and
          // all replies' updates of a tick in one Redis round trip (see RunDeltaBatcher).
          if (!content) {
            content = delta;
            await resetIfNeeded();
            await appendRunEvent(deps.redis, input.runId, 'message.delta', { content: delta });
          } else {
            content += delta;
            deltas.queue(input.runId, delta);
          }
          heartbeat({ chars: content.length });
        }
        await resetIfNeeded();
        await deltas.flushRun(input.runId);
      } catch (error) {
        // Nothing more of this try is appended (a retry starts with a reset).
        deltas.discard(input.runId);
        // A refused hold is the answer, whatever it did to the call started beside it.
        if (held) await held.catch(() => undefined);
        if (holdFailure) throw holdFailure.error;
        // A cancellation, reported as one: a local activity's failure would otherwise be retried.
        if (context.cancellationSignal.aborted) throw new CancelledFailure('cancelled during the model call', [], error as Error);
        const failure = classifyUpstreamError(error);
        throw ApplicationFailure.create({ type: failure.code, message: failure.message, nonRetryable: !failure.retryable });
      } finally {
        clearInterval(beat);
      }
      if (context.cancellationSignal.aborted) throw new CancelledFailure('cancelled during the model call');
      return {
        content,
        promptTokens: usage?.prompt_tokens ?? countChatPromptTokens(input.messages),
        completionTokens: usage?.completion_tokens ?? countTokens(content),
        finishReason,
        latencyMs: Math.round(performance.now() - started),
        usageFromUpstream: Boolean(usage),
      };
    },

    /** Capture at the real usage, save the assistant message, mark the run done, audit, announce. */
    async finishChatRun(input: {
      run: ChatRunInput;
      holdId: string;
      result: ChatModelResult;
      citations?: ChatCitation[];
      retrievalCostMicros?: string;
      /** The hold as taken (prepareChatRun): the capture is then one statement. */
      known?: PreparedChatRun['known'];
      /** Names for the usage row when `known` is given. */
      model?: { name: string; upstreamModel: string };
    }): Promise<{ assistantMessageId: string; costMicros: string }> {
      const { run, result } = input;
      const known = input.known && input.model
        ? {
            amountMicros: BigInt(input.known.amountMicros),
            price: { inputMicrosPerMillion: BigInt(input.known.inputMicrosPerMillion), outputMicrosPerMillion: BigInt(input.known.outputMicrosPerMillion) },
          }
        : undefined;
      const capture = await ledger.capture({
        known,
        orgId: run.orgId,
        holdId: input.holdId,
        idempotencyKey: `chat:${run.runId}:capture`,
        usage: {
          promptTokens: result.promptTokens,
          completionTokens: result.completionTokens,
          traceId: run.traceId,
          latencyMs: result.latencyMs,
          status: 'success',
          projectId: run.projectId,
          runId: run.runId,
          stepId: 'model',
          // Named whether or not `known` is: a re-run whose hold was a replay must hash the same.
          ...(input.model ? { modelName: input.model.name, upstreamModel: input.model.upstreamModel } : {}),
          ...(run.actor.type === 'api_key' ? { apiKeyId: run.actor.id } : { userId: run.actor.id }),
        },
        actor: run.actor,
      });
      const cost = capture.chargedMicros + BigInt(input.retrievalCostMicros ?? '0');
      const citations = input.citations?.length ? input.citations : null;
      // The reply, the session's updated_at, the run's outcome and its audit row (only when this call
      // settled the run) in one statement: every chat run pays it, where a Prisma transaction cost
      // six round trips and a good share of the worker's CPU per run.
      const audit = chatAuditRow(run, 'success', { hold_id: input.holdId, prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, cost_micros: cost.toString() });
      await deps.pool.query(
        `WITH reply AS (
           INSERT INTO chat_messages (id, session_id, org_id, project_id, role, content, model, trace_id, run_id, prompt_tokens, completion_tokens, citations)
           VALUES ($1::uuid, $2::uuid, $3::uuid, $4::uuid, 'assistant', $5, $6, $7, $8, $9, $10, $11::jsonb)
           ON CONFLICT (id) DO NOTHING
         ), session AS (
           UPDATE chat_sessions SET updated_at = now() WHERE id = $2::uuid
         ), settled AS (
           UPDATE workflow_runs SET status = 'succeeded', finished_at = now(), cost_micros = $12::bigint, output = $13::jsonb
           WHERE id = $8::uuid AND status IN ('queued', 'running') RETURNING id
         )
         INSERT INTO audit_logs (trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, project_id, result, details)
         SELECT $7, $14::"ActorType", $15, $16, $17, $2, $3::uuid, $4::uuid, 'success'::"AuditResult", $18::jsonb FROM settled`,
        [
          run.assistantMessageId,
          run.sessionId,
          run.orgId,
          run.projectId,
          result.content,
          run.model,
          run.traceId,
          run.runId,
          result.promptTokens,
          result.completionTokens,
          citations ? JSON.stringify(citations) : null,
          cost.toString(),
          JSON.stringify({ assistant_message_id: run.assistantMessageId, prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens }),
          audit.actorType,
          audit.actorId,
          audit.action,
          audit.resourceType,
          JSON.stringify(audit.details),
        ],
      );
      await appendRunEvent(deps.redis, run.runId, 'message.completed', {
        message_id: run.assistantMessageId,
        content: result.content,
        finish_reason: result.finishReason,
        usage: { prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens },
        cost_micros: cost.toString(),
        ...(citations ? { citations } : {}),
      });
      return { assistantMessageId: run.assistantMessageId, costMicros: cost.toString() };
    },

    /** Compensation: release the hold (if any), record the failure, mark the run, announce it. */
    async failChatRun(input: { run: ChatRunInput; holdId: string | null; code: string; message: string; cancelled: boolean; findHoldByKey?: boolean }): Promise<void> {
      const { run } = input;
      let holdId = input.holdId;
      if (!holdId && input.findHoldByKey) {
        // The hold was taken inside a local activity that then failed: find it by its key, and
        // release it only while active (a sweep may have expired it meanwhile).
        const { rows } = await deps.pool.query<{ id: string; status: string }>('SELECT id, status FROM holds WHERE idempotency_key = $1', [`chat:${run.runId}:hold`]);
        if (rows[0]?.status === 'active') holdId = rows[0].id;
      }
      if (holdId) {
        await ledger.release({ holdId, orgId: run.orgId, idempotencyKey: `chat:${run.runId}:release`, reason: input.code, actor: run.actor });
      }
      const status = input.cancelled ? 'cancelled' : 'failed';
      await deps.prisma.$transaction(async (tx) => {
        const updated = await tx.workflowRun.updateMany({
          where: { id: run.runId, status: { in: ['queued', 'running'] } },
          data: { status, finishedAt: new Date(), error: { code: input.code, message: input.message } as Prisma.InputJsonValue },
        });
        if (updated.count === 0) return;
        if (holdId && !(await tx.usageRecord.findUnique({ where: { holdId } }))) {
          const model = await tx.model.findUnique({ where: { name: run.model } });
          await tx.usageRecord.create({
            data: {
              traceId: run.traceId,
              orgId: run.orgId,
              projectId: run.projectId,
              modelId: model?.id ?? null,
              modelName: run.model,
              upstreamModel: model?.upstreamModel ?? run.model,
              holdId,
              status: input.cancelled ? 'cancelled' : 'error',
              errorCode: input.code,
              runId: run.runId,
              stepId: 'model',
              ...(run.actor.type === 'api_key' ? { apiKeyId: run.actor.id } : { userId: run.actor.id }),
            },
          });
        }
        await tx.auditLog.create({ data: chatAuditRow(run, 'failure', { hold_id: holdId, error: input.code, cancelled: input.cancelled }) });
      });
      await appendRunEvent(deps.redis, run.runId, input.cancelled ? 'run.cancelled' : 'run.failed', { code: input.code, message: input.message });
    },
  };

  return {
    ...activities,

    /**
     * Everything up to the reply in one local activity: prepareChatRun, then the streamed call.
     * One local activity instead of two saves a round through the workflow (measured 3–5 ms of
     * time to first token). A retry starts over: the hold replays on its key, and the call says
     * `message.reset` when an earlier try streamed part of a reply.
     */
    async chatPrepareAndCall(input: ChatRunInput): Promise<{ prepared: PreparedChatRun; result: ChatModelResult }> {
      const { modelName, ...context } = await buildContext(input);
      const call = { runId: input.runId, upstreamModel: context.upstreamModel, messages: context.messages, maxTokens: context.maxTokens, temperature: input.temperature ?? null };
      const estimate = await estimateOf(context);
      if (estimate === null || !headroom.allows(input.orgId, estimate)) {
        const prepared = await holdAndMarkRunning(input, modelName, context);
        return { prepared, result: await activities.chatModelCall(call) };
      }
      // This worker saw the org's wallet moments ago with room for many calls like this one
      // (CHAT_SPECULATIVE_HEADROOM): the upstream request starts beside the hold, which takes the
      // hold's round trip off the time to first token. Nothing reaches the run's stream unless the
      // hold stands; a refused hold aborts the request and fails the run as a held-first one would.
      const preparing = holdAndMarkRunning(input, modelName, context);
      try {
        const result = await activities.chatModelCall(call, preparing);
        return { prepared: await preparing, result };
      } finally {
        // Never leave with the hold still in flight: a failed run releases it by its key.
        await preparing.catch(() => undefined);
      }
    },
  };
}

export type ChatActivities = ReturnType<typeof createChatActivities>;
