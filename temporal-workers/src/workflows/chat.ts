// A chat message is a one-step workflow: context → hold → streamed model call → capture, with the
// release as compensation when anything fails or the run is cancelled. Orchestration only.
//
// Three shapes, newest first (patched() keeps runs begun by earlier workers replaying; fixtures in
// ./fixtures): 'chat-one-call' (prepare + call in one local activity, then settle), 'chat-all-local'
// (prepare, call, settle as three local activities), and the first (prepare and hold local, call
// and settle as activities). New runs take 'chat-one-call'.
import { ActivityCancellationType, ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, patched, proxyActivities, proxyLocalActivities } from '@temporalio/workflow';
import type { ChatActivities, ChatRunInput } from '../activities/chat.ts';
import type { BillingActivities } from '../activities/billing.ts';
import { BILLING_NON_RETRYABLE_ERRORS } from './billing.ts';

// The oldest shape. Short database steps run as local activities: each saves a task round trip.
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

// Since 'chat-all-local': the whole run is local activities in the worker that took its first
// workflow task. Measured here, every task the server dispatches (an activity, or the workflow
// task after one) cost 20–45 ms on the dev server, against ~1 ms for a workflow task that only runs
// local activities; the chat path had three of them before its first token. A long local activity
// keeps its workflow task alive by heartbeats (every 80% of the task timeout, which the gateway
// sets short for chat runs), and a cancel reaches it at the next one.
const prepareLocal = proxyLocalActivities<Pick<ChatActivities, 'prepareChatRun'>>({
  startToCloseTimeout: '15 seconds',
  retry: { maximumAttempts: 5, initialInterval: '100 ms', nonRetryableErrorTypes: BILLING_NON_RETRYABLE_ERRORS },
});

const modelLocal = proxyLocalActivities<Pick<ChatActivities, 'chatModelCall'>>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 3, initialInterval: '500 ms', nonRetryableErrorTypes: ['bad_request', 'cancelled'] },
  // A cancelled call stops streaming before the hold is released.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

// Since 'chat-one-call': prepare and the streamed call are one local activity (one round through
// the workflow less before the first token). Business refusals of the prepare part are final.
const prepareAndCallLocal = proxyLocalActivities<Pick<ChatActivities, 'chatPrepareAndCall'>>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 3, initialInterval: '500 ms', nonRetryableErrorTypes: ['bad_request', 'cancelled', ...BILLING_NON_RETRYABLE_ERRORS] },
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
});

const settleLocal = proxyLocalActivities<Pick<ChatActivities, 'finishChatRun' | 'failChatRun'>>({
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
  if (patched('chat-one-call')) return oneCall(run);
  if (patched('chat-all-local')) return allLocal(run);
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

async function allLocal(run: ChatRunInput): Promise<{ assistantMessageId: string; costMicros: string }> {
  let holdId: string | null = null;
  try {
    const prepared = await prepareLocal.prepareChatRun(run);
    holdId = prepared.holdId;
    const result = await modelLocal.chatModelCall({
      runId: run.runId,
      upstreamModel: prepared.upstreamModel,
      messages: prepared.messages,
      maxTokens: prepared.maxTokens,
      temperature: run.temperature ?? null,
    });
    return await settleLocal.finishChatRun({
      run,
      holdId,
      result,
      citations: prepared.citations,
      retrievalCostMicros: prepared.retrievalCostMicros,
      known: prepared.known,
      model: { name: run.model, upstreamModel: prepared.upstreamModel },
    });
  } catch (error) {
    const cancelled = isCancellation(error);
    const { code, message } = cancelled ? { code: 'cancelled', message: 'The run was cancelled' } : failureCode(error);
    await CancellationScope.nonCancellable(() => settleLocal.failChatRun({ run, holdId, code, message, cancelled }));
    throw error;
  }
}

async function oneCall(run: ChatRunInput): Promise<{ assistantMessageId: string; costMicros: string }> {
  let holdId: string | null = null;
  try {
    const { prepared, result } = await prepareAndCallLocal.chatPrepareAndCall(run);
    holdId = prepared.holdId;
    return await settleLocal.finishChatRun({
      run,
      holdId,
      result,
      citations: prepared.citations,
      retrievalCostMicros: prepared.retrievalCostMicros,
      known: prepared.known,
      model: { name: run.model, upstreamModel: prepared.upstreamModel },
    });
  } catch (error) {
    const cancelled = isCancellation(error);
    const { code, message } = cancelled ? { code: 'cancelled', message: 'The run was cancelled' } : failureCode(error);
    // A failed prepare-and-call may have taken the hold: failChatRun finds it by its key.
    await CancellationScope.nonCancellable(() => settleLocal.failChatRun({ run, holdId, code, message, cancelled, findHoldByKey: holdId === null }));
    throw error;
  }
}
