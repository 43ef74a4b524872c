// A chat message is a one-step workflow: context → hold → streamed model call → capture, with the
// release as compensation when anything fails or the run is cancelled. Orchestration only.
import { ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { ChatActivities, ChatRunInput } from '../activities/chat.ts';
import type { BillingActivities } from '../activities/billing.ts';
import { BILLING_NON_RETRYABLE_ERRORS } from './billing.ts';

// Short database steps run as local activities: each saves a task round trip on the chat path.
const local = proxyLocalActivities<Pick<ChatActivities, 'prepareChatContext'> & Pick<BillingActivities, 'billingHold'>>({
  startToCloseTimeout: '15 seconds',
  retry: { maximumAttempts: 5, initialInterval: '100 ms', nonRetryableErrorTypes: BILLING_NON_RETRYABLE_ERRORS },
});

const model = proxyActivities<Pick<ChatActivities, 'chatModelCall'>>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '10 seconds',
  retry: { maximumAttempts: 3, initialInterval: '500 ms', nonRetryableErrorTypes: ['bad_request', 'cancelled'] },
});

const settle = proxyActivities<Pick<ChatActivities, 'finishChatRun' | 'failChatRun'>>({
  startToCloseTimeout: '30 seconds',
  retry: { maximumAttempts: 20, initialInterval: '200 ms', maximumInterval: '10 seconds' },
});

function failureCode(error: unknown): { code: string; message: string } {
  let cause: unknown = error;
  while (cause instanceof ActivityFailure && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure) return { code: cause.type ?? 'error', message: cause.message };
  return { code: 'internal_error', message: (cause as Error)?.message ?? 'failed' };
}

export async function chatMessageWorkflow(run: ChatRunInput): Promise<{ assistantMessageId: string; costMicros: string }> {
  let holdId: string | null = null;
  try {
    const context = await local.prepareChatContext(run);
    const hold = await local.billingHold({
      orgId: run.orgId,
      projectId: run.projectId,
      model: run.model,
      messages: context.messages,
      maxTokens: context.maxTokens,
      traceId: run.traceId,
      runId: run.runId,
      stepId: 'model',
      idempotencyKey: `chat:${run.runId}:hold`,
      ttlSeconds: 15 * 60,
      actor: run.actor,
    });
    holdId = hold.holdId;
    const result = await model.chatModelCall({
      runId: run.runId,
      upstreamModel: context.upstreamModel,
      messages: context.messages,
      maxTokens: context.maxTokens,
      temperature: run.temperature ?? null,
    });
    return await settle.finishChatRun({ run, holdId, result, citations: context.citations, retrievalCostMicros: context.retrievalCostMicros });
  } catch (error) {
    const cancelled = isCancellation(error);
    const { code, message } = cancelled ? { code: 'cancelled', message: 'The run was cancelled' } : failureCode(error);
    await CancellationScope.nonCancellable(() => settle.failChatRun({ run, holdId, code, message, cancelled }));
    throw error;
  }
}
