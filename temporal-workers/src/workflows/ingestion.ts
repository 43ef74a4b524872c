// One ingestion per document (and generation): parse + chunk → embed in billed batches (a few at a
// time) → mark indexed. Any failure or a cancellation ends the document `failed` with its reason
// (compensation removes partial index entries); other documents are never affected.
import { ActivityFailure, ApplicationFailure, CancellationScope, isCancellation, proxyActivities } from '@temporalio/workflow';
import type { IngestionInput } from '@deepspace/core/run-events';
import type { KnowledgeActivities } from '../activities/knowledge.ts';

const FINAL_ERRORS = ['not_found', 'superseded', 'unsupported_type', 'corrupt_file', 'empty_document', 'too_large', 'upstream_error', 'insufficient_funds', 'policy_violation'];

const work = proxyActivities<Pick<KnowledgeActivities, 'ingestParse' | 'ingestEmbedBatch'>>({
  startToCloseTimeout: '10 minutes',
  // The activities heartbeat every 2 s: a worker that dies mid-batch is noticed within this.
  heartbeatTimeout: '10 seconds',
  retry: { maximumAttempts: 5, initialInterval: '1 second', maximumInterval: '30 seconds', nonRetryableErrorTypes: FINAL_ERRORS },
});

const settle = proxyActivities<Pick<KnowledgeActivities, 'ingestFinish' | 'ingestFail'>>({
  startToCloseTimeout: '1 minute',
  retry: { maximumAttempts: 20, initialInterval: '500 ms', maximumInterval: '10 seconds', nonRetryableErrorTypes: ['not_found', 'superseded'] },
});

/** Embedding batches in flight at once per document (the upstream's and the ledger's load). */
const BATCH_CONCURRENCY = 3;

function failureOf(error: unknown): { code: string; message: string } {
  let cause: unknown = error;
  while (cause instanceof ActivityFailure && cause.cause) cause = cause.cause;
  if (cause instanceof ApplicationFailure) return { code: cause.type ?? 'error', message: cause.message };
  return { code: 'internal_error', message: (cause as Error)?.message ?? 'failed' };
}

export async function ingestDocumentWorkflow(input: IngestionInput): Promise<{ status: string; chunkCount: number; costMicros: string }> {
  try {
    const parsed = await work.ingestParse(input);
    let next = 0;
    await Promise.all(
      Array.from({ length: Math.min(BATCH_CONCURRENCY, parsed.batchCount) }, async () => {
        while (next < parsed.batchCount) {
          const batch = next++;
          await work.ingestEmbedBatch({ ...input, batch, batchSize: parsed.batchSize });
        }
      }),
    );
    return await settle.ingestFinish(input);
  } catch (error) {
    const cancelled = isCancellation(error);
    const { code, message } = cancelled ? { code: 'cancelled', message: 'The ingestion was cancelled' } : failureOf(error);
    await CancellationScope.nonCancellable(() => settle.ingestFail({ ...input, code, message, cancelled }));
    throw error;
  }
}

/** Removes index entries of a deleted document, knowledge base or replaced embedding model (the rows are already gone). */
const purge = proxyActivities<Pick<KnowledgeActivities, 'purgeKnowledgeIndex'>>({
  startToCloseTimeout: '5 minutes',
  retry: { maximumAttempts: 50, initialInterval: '1 second', maximumInterval: '1 minute' },
});

export async function purgeKnowledgeIndexWorkflow(input: { knowledgeBaseId: string; embeddingModels: string[]; documentId?: string | null }): Promise<void> {
  await purge.purgeKnowledgeIndex(input);
}
