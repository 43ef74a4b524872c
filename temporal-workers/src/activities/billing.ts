// Billing activities: the hold before a model call, the capture after it, the release that
// compensates a failed or cancelled call, and the sweep that expires holds of runs that died.
// Every one is idempotent on its key (the ledger guarantees it), so Temporal may retry freely: a
// retried activity never charges twice. Inputs and outputs are JSON (micros as decimal strings),
// and business refusals become non-retryable ApplicationFailures whose `type` is the AppError code.
import { ApplicationFailure } from '@temporalio/common';
import { isAppError, Ledger, type Actor, type CaptureUsage, type ChatMessageLike } from '@deepspace/core';
import type { ActivityDeps } from './index.ts';

export interface BillingHoldInput {
  orgId: string;
  projectId?: string | null;
  /** Model name (or id) as callers know it. */
  model: string;
  /** The prompt, counted with the real tokenizer; or give promptTokens. */
  messages?: ChatMessageLike[];
  promptTokens?: number;
  maxTokens: number;
  traceId: string;
  runId?: string | null;
  stepId?: string | null;
  idempotencyKey: string;
  /** How long the hold may live before the expiry sweep returns it (default 15 minutes). */
  ttlSeconds?: number;
  actor?: Actor;
}

export interface BillingHoldOutput {
  holdId: string;
  amountMicros: string;
  modelId: string;
  modelName: string;
  upstreamModel: string;
  priceId: string | null;
  promptTokens: number | null;
  expiresAt: string;
  replayed: boolean;
  /** The price the hold was estimated at (null on a replay), for a one-statement capture. */
  price?: { inputMicrosPerMillion: string; outputMicrosPerMillion: string } | null;
  /** The wallet's available balance right after this hold (as of the first hold, on a replay). */
  availableAfterMicros?: string;
}

export interface BillingCaptureInput {
  holdId: string;
  idempotencyKey: string;
  usage: CaptureUsage;
  /** Only for holds without a price: the cost in micros, as a decimal string. */
  costMicros?: string;
  /**
   * The hold as its taker saw it (amount and price, decimal strings): the capture is then one
   * statement that checks the hold still is exactly that (the ledger's `known`). Needs the usage's
   * traceId, modelName and upstreamModel.
   */
  known?: { amountMicros: string; inputMicrosPerMillion: string; outputMicrosPerMillion: string };
}

export interface BillingCaptureOutput {
  holdId: string;
  transactionId: string;
  usageRecordId: string;
  costMicros: string;
  chargedMicros: string;
  releasedMicros: string;
  uncollectedMicros: string;
  replayed: boolean;
}

export interface BillingReleaseInput {
  holdId: string;
  idempotencyKey: string;
  reason?: string;
}

export interface BillingReleaseOutput {
  holdId: string;
  status: string;
  transactionId: string;
  releasedMicros: string;
  replayed: boolean;
}

export interface ExpireHoldsInput {
  limit?: number;
}

export interface ExpireHoldsOutput {
  expired: number;
  holdIds: string[];
}

/** AppErrors below 500 are final answers (no funds, conflicts, bad input): retrying cannot help. */
function asFailure(error: unknown): unknown {
  if (!isAppError(error)) return error;
  return ApplicationFailure.create({
    type: error.code,
    message: error.message,
    nonRetryable: error.status < 500,
    details: error.details ? [error.details] : [],
    cause: error,
  });
}

async function failing<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    throw asFailure(error);
  }
}

export function createBillingActivities(deps: Pick<ActivityDeps, 'prisma' | 'pool' | 'logger' | 'workerIdentity' | 'catalog'>) {
  const ledger = new Ledger(deps.pool);
  return {
    async billingHold(input: BillingHoldInput): Promise<BillingHoldOutput> {
      return failing(async () => {
        const { model, ttlSeconds, ...rest } = input;
        const result = await ledger.holdForModel({ ...rest, model, ttlMs: ttlSeconds === undefined ? undefined : ttlSeconds * 1000, catalog: deps.catalog });
        return {
          holdId: result.hold.id,
          amountMicros: result.hold.amountMicros.toString(),
          modelId: result.model.id,
          modelName: result.model.name,
          upstreamModel: result.model.upstreamModel,
          priceId: result.hold.priceId,
          promptTokens: result.estimate?.promptTokens ?? null,
          expiresAt: result.hold.expiresAt.toISOString(),
          replayed: result.replayed,
          price: result.price ? { inputMicrosPerMillion: result.price.inputMicrosPerMillion.toString(), outputMicrosPerMillion: result.price.outputMicrosPerMillion.toString() } : null,
          availableAfterMicros: (result.transaction.balanceAfterMicros - result.transaction.frozenAfterMicros).toString(),
        };
      });
    },

    async billingCapture(input: BillingCaptureInput): Promise<BillingCaptureOutput> {
      return failing(async () => {
        const result = await ledger.capture({
          holdId: input.holdId,
          idempotencyKey: input.idempotencyKey,
          usage: input.usage,
          costMicros: input.costMicros === undefined ? undefined : BigInt(input.costMicros),
          known: input.known
            ? {
                amountMicros: BigInt(input.known.amountMicros),
                price: { inputMicrosPerMillion: BigInt(input.known.inputMicrosPerMillion), outputMicrosPerMillion: BigInt(input.known.outputMicrosPerMillion) },
              }
            : undefined,
        });
        return {
          holdId: result.hold.id,
          transactionId: result.transaction.id,
          usageRecordId: result.usageRecordId,
          costMicros: result.costMicros.toString(),
          chargedMicros: result.chargedMicros.toString(),
          releasedMicros: result.releasedMicros.toString(),
          uncollectedMicros: result.uncollectedMicros.toString(),
          replayed: result.replayed,
        };
      });
    },

    async billingRelease(input: BillingReleaseInput): Promise<BillingReleaseOutput> {
      return failing(async () => {
        const result = await ledger.release({ holdId: input.holdId, idempotencyKey: input.idempotencyKey, reason: input.reason ?? null });
        return {
          holdId: result.hold.id,
          status: result.hold.status,
          transactionId: result.transaction.id,
          releasedMicros: result.releasedMicros.toString(),
          replayed: result.replayed,
        };
      });
    },

    async expireHolds(input: ExpireHoldsInput = {}): Promise<ExpireHoldsOutput> {
      return failing(async () => {
        const { expired } = await ledger.expireHolds(new Date(), input.limit ?? 200);
        if (expired.length > 0) deps.logger.info({ expired: expired.length }, 'billing: expired holds released');
        return { expired: expired.length, holdIds: expired.map((h) => h.id) };
      });
    },
  };
}

export type BillingActivities = ReturnType<typeof createBillingActivities>;
