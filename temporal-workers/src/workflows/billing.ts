// Billing orchestration. Orchestration only: no I/O, clocks or randomness (Temporal replays it).
import { proxyActivities } from '@temporalio/workflow';
import type { BillingActivities } from '../activities/billing.ts';

/** AppError codes that are final answers; retrying them cannot succeed. */
export const BILLING_NON_RETRYABLE_ERRORS = [
  'insufficient_funds',
  'idempotency_conflict',
  'conflict',
  'not_found',
  'validation_failed',
  'policy_violation',
];

/**
 * The billing activity family, for workflows that bill a model call: hold before, capture after,
 * release as the compensation. Each is idempotent on its key, so retries are safe; keep the keys
 * deterministic (e.g. `${runId}:${stepId}:hold`).
 */
export const billing = proxyActivities<BillingActivities>({
  startToCloseTimeout: '15 seconds',
  retry: { maximumAttempts: 10, initialInterval: '200 ms', backoffCoefficient: 2, maximumInterval: '10 seconds', nonRetryableErrorTypes: BILLING_NON_RETRYABLE_ERRORS },
});

const sweep = proxyActivities<Pick<BillingActivities, 'expireHolds'>>({
  startToCloseTimeout: '2 minutes',
  retry: { maximumAttempts: 3, initialInterval: '1 second' },
});

export interface ExpireHoldsWorkflowInput {
  /** Holds per activity call. */
  batchSize?: number;
  /** Upper bound on batches per run; the next scheduled run continues. */
  maxBatches?: number;
}

/** Run by the `billing-expire-holds` Schedule: returns expired holds' money, batch by batch. */
export async function expireHoldsWorkflow(input: ExpireHoldsWorkflowInput = {}): Promise<{ expired: number; batches: number }> {
  const batchSize = input.batchSize ?? 200;
  const maxBatches = input.maxBatches ?? 10;
  let expired = 0;
  let batches = 0;
  while (batches < maxBatches) {
    const result = await sweep.expireHolds({ limit: batchSize });
    batches++;
    expired += result.expired;
    if (result.expired < batchSize) break;
  }
  return { expired, batches };
}
