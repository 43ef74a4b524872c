// Chat activities: build the prompt from the session's history, stream the model's reply into the
// run's Redis Stream, and settle the run (capture + assistant message + audit) or fail it
// (release + usage + audit). Each is idempotent on the run id, so Temporal may retry them.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import {
  appendRunEvent,
  countChatPromptTokens,
  countTokens,
  Ledger,
  type ChatMessageLike,
  type ChatRunInput,
  type Prisma,
} from '@deepspace/core';
import { classifyUpstreamError } from '@deepspace/core/ai/upstream';
import { formatSourcesForPrompt, retrieveChunks, type Citation } from '@deepspace/core/knowledge/retrieve';
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

export function createChatActivities(deps: ActivityDeps) {
  const ledger = new Ledger(deps.pool);

  return {
    /** Loads the model and the session's history up to the user's message, trimmed to the window. */
    async prepareChatContext(input: ChatRunInput): Promise<ChatContext> {
      const model = await deps.prisma.model.findUnique({ where: { name: input.model } });
      if (!model || !model.isActive || model.kind !== 'chat') {
        throw ApplicationFailure.create({ type: 'not_found', message: `model "${input.model}" is not an active chat model`, nonRetryable: true });
      }
      const maxTokens = Math.min(input.maxTokens ?? DEFAULT_MAX_TOKENS, model.maxOutputTokens);
      const [anchor, session] = await Promise.all([
        deps.prisma.chatMessage.findUniqueOrThrow({ where: { id: input.userMessageId } }),
        deps.prisma.chatSession.findUniqueOrThrow({ where: { id: input.sessionId }, select: { params: true } }),
      ]);
      const params = (session.params ?? {}) as { system_prompt?: string; knowledge_base_ids?: string[]; retrieval_top_k?: number };
      const history = await deps.prisma.chatMessage.findMany({
        where: { sessionId: input.sessionId, createdAt: { lte: anchor.createdAt }, role: { in: ['system', 'user', 'assistant'] } },
        orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
        take: 2_000,
      });

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

      // Keep the newest turns that fit the context window next to the reply's max tokens.
      const budget = model.contextWindow - maxTokens;
      const kept: ChatMessageLike[] = [];
      for (let i = history.length - 1; i >= 0; i--) {
        const candidate = [...preamble, { role: history[i]!.role, content: history[i]!.content }, ...kept];
        if (countChatPromptTokens(candidate) > budget && kept.length > 0) break;
        kept.unshift(candidate[preamble.length]!);
      }
      kept.unshift(...preamble);
      await deps.prisma.workflowRun.update({ where: { id: input.runId }, data: { status: 'running', startedAt: new Date() } });
      await appendRunEvent(deps.redis, input.runId, 'run.started', { run_id: input.runId, model: model.name, trace_id: input.traceId });
      return { messages: kept, upstreamModel: model.upstreamModel, modelId: model.id, maxTokens, droppedMessages: history.length - (kept.length - preamble.length), citations, retrievalCostMicros };
    },

    /** Streams the reply, appending deltas to the run's event stream; heartbeats so cancellation reaches it. */
    async chatModelCall(input: { runId: string; upstreamModel: string; messages: ChatMessageLike[]; maxTokens: number; temperature?: number | null }): Promise<ChatModelResult> {
      const context = Context.current();
      if (context.info.attempt > 1) await appendRunEvent(deps.redis, input.runId, 'message.reset', { attempt: context.info.attempt });
      const started = performance.now();
      // Heartbeat on a timer too: the wait for the first token can be long, and a dead worker must
      // be noticed by its heartbeat timeout, not by the whole call's timeout.
      const beat = setInterval(() => context.heartbeat({ chars: content.length }), 2_000);
      let content = '';
      let usage: { prompt_tokens: number; completion_tokens: number } | undefined;
      let finishReason: string | null = null;
      try {
        const stream = await deps.upstream.chat.completions.create(
          {
            model: input.upstreamModel,
            messages: input.messages as never,
            max_tokens: input.maxTokens,
            ...(input.temperature != null ? { temperature: input.temperature } : {}),
            stream: true,
            stream_options: { include_usage: true },
          },
          { signal: context.cancellationSignal },
        );
        let pending = '';
        let lastFlush = performance.now();
        for await (const chunk of stream) {
          if (chunk.usage) usage = chunk.usage;
          const choice = chunk.choices?.[0];
          if (choice?.finish_reason) finishReason = choice.finish_reason;
          const delta = choice?.delta?.content ?? '';
          if (delta) {
            content += delta;
            pending += delta;
          }
          // Coalesce tiny deltas (≤ 20 ms) to keep Redis and SSE traffic proportional to the text;
          // the first one goes at once, since time to first token is what people feel.
          if (pending && (content.length === pending.length || performance.now() - lastFlush > 20 || pending.length > 200)) {
            await appendRunEvent(deps.redis, input.runId, 'message.delta', { content: pending });
            context.heartbeat({ chars: content.length });
            pending = '';
            lastFlush = performance.now();
          }
        }
        if (pending) await appendRunEvent(deps.redis, input.runId, 'message.delta', { content: pending });
      } catch (error) {
        if (context.cancellationSignal.aborted) throw error;
        const failure = classifyUpstreamError(error);
        throw ApplicationFailure.create({ type: failure.code, message: failure.message, nonRetryable: !failure.retryable });
      } finally {
        clearInterval(beat);
      }
      if (context.cancellationSignal.aborted) throw ApplicationFailure.create({ type: 'cancelled', message: 'cancelled', nonRetryable: true });
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
    async finishChatRun(input: { run: ChatRunInput; holdId: string; result: ChatModelResult; citations?: ChatCitation[]; retrievalCostMicros?: string }): Promise<{ assistantMessageId: string; costMicros: string }> {
      const { run, result } = input;
      const capture = await ledger.capture({
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
          ...(run.actor.type === 'api_key' ? { apiKeyId: run.actor.id } : { userId: run.actor.id }),
        },
        actor: run.actor,
      });
      const cost = capture.chargedMicros + BigInt(input.retrievalCostMicros ?? '0');
      const citations = input.citations?.length ? input.citations : null;
      await deps.prisma.$transaction(async (tx) => {
        await tx.chatMessage.upsert({
          where: { id: run.assistantMessageId },
          update: {},
          create: {
            id: run.assistantMessageId,
            sessionId: run.sessionId,
            orgId: run.orgId,
            projectId: run.projectId,
            role: 'assistant',
            content: result.content,
            model: run.model,
            traceId: run.traceId,
            runId: run.runId,
            promptTokens: result.promptTokens,
            completionTokens: result.completionTokens,
            ...(citations ? { citations: citations as unknown as Prisma.InputJsonValue } : {}),
          },
        });
        await tx.chatSession.update({ where: { id: run.sessionId }, data: { updatedAt: new Date() } });
        const updated = await tx.workflowRun.updateMany({
          where: { id: run.runId, status: { in: ['queued', 'running'] } },
          data: {
            status: 'succeeded',
            finishedAt: new Date(),
            costMicros: cost,
            output: { assistant_message_id: run.assistantMessageId, prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens } as Prisma.InputJsonValue,
          },
        });
        if (updated.count > 0) {
          await tx.auditLog.create({
            data: chatAuditRow(run, 'success', { hold_id: input.holdId, prompt_tokens: result.promptTokens, completion_tokens: result.completionTokens, cost_micros: cost.toString() }),
          });
        }
      });
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
    async failChatRun(input: { run: ChatRunInput; holdId: string | null; code: string; message: string; cancelled: boolean }): Promise<void> {
      const { run } = input;
      if (input.holdId) {
        await ledger.release({ holdId: input.holdId, idempotencyKey: `chat:${run.runId}:release`, reason: input.code, actor: run.actor });
      }
      const status = input.cancelled ? 'cancelled' : 'failed';
      await deps.prisma.$transaction(async (tx) => {
        const updated = await tx.workflowRun.updateMany({
          where: { id: run.runId, status: { in: ['queued', 'running'] } },
          data: { status, finishedAt: new Date(), error: { code: input.code, message: input.message } as Prisma.InputJsonValue },
        });
        if (updated.count === 0) return;
        if (input.holdId && !(await tx.usageRecord.findUnique({ where: { holdId: input.holdId } }))) {
          const model = await tx.model.findUnique({ where: { name: run.model } });
          await tx.usageRecord.create({
            data: {
              traceId: run.traceId,
              orgId: run.orgId,
              projectId: run.projectId,
              modelId: model?.id ?? null,
              modelName: run.model,
              upstreamModel: model?.upstreamModel ?? run.model,
              holdId: input.holdId,
              status: input.cancelled ? 'cancelled' : 'error',
              errorCode: input.code,
              runId: run.runId,
              stepId: 'model',
              ...(run.actor.type === 'api_key' ? { apiKeyId: run.actor.id } : { userId: run.actor.id }),
            },
          });
        }
        await tx.auditLog.create({ data: chatAuditRow(run, 'failure', { hold_id: input.holdId, error: input.code, cancelled: input.cancelled }) });
      });
      await appendRunEvent(deps.redis, run.runId, input.cancelled ? 'run.cancelled' : 'run.failed', { code: input.code, message: input.message });
    },
  };
}

export type ChatActivities = ReturnType<typeof createChatActivities>;
