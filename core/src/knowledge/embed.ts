// Billed embeddings: hold (priced estimate from the real tokenizer) → upstream call → capture of the
// reported usage, or release when the call fails. Used by ingestion (one call per batch of chunks)
// and by retrieval (the query). Idempotent on `idempotencyKey`: a retried caller replays the same
// hold and capture, so a batch is billed once however often its activity runs.
import { AppError } from '../errors.ts';
import { countTokens } from '../tokenizer.ts';
import { Ledger } from '../billing/ledger.ts';
import type { Actor } from '../billing/types.ts';
import { classifyUpstreamError, withUpstreamRetry, type OpenAI } from '../ai/upstream.ts';

export interface BilledEmbeddingInput {
  orgId: string;
  projectId: string;
  /** Catalog model name (kind embedding). */
  model: string;
  texts: string[];
  traceId: string;
  runId?: string | null;
  stepId?: string | null;
  idempotencyKey: string;
  actor?: Actor;
  apiKeyId?: string | null;
  userId?: string | null;
  signal?: AbortSignal;
}

export interface BilledEmbeddingResult {
  vectors: number[][];
  promptTokens: number;
  costMicros: bigint;
  chargedMicros: bigint;
  holdId: string;
  upstreamModel: string;
  /** The capture already existed (a retry after the money moved). */
  replayed: boolean;
}

/** Thrown when the upstream refused or kept failing; the hold is released, nothing is charged. */
export class EmbeddingCallError extends AppError {}

const MAX_HOLD_ATTEMPTS = 8;

export async function embedTextsBilled(deps: { ledger: Ledger; upstream: OpenAI }, input: BilledEmbeddingInput): Promise<BilledEmbeddingResult> {
  if (input.texts.length === 0) throw new AppError('validation_failed', 'nothing to embed');
  const promptTokens = input.texts.reduce((sum, text) => sum + countTokens(text), 0);
  // A released hold under this key means an earlier attempt failed without charging: the next
  // attempt takes a fresh key. A captured one means it succeeded: replay it (no second charge).
  let key = input.idempotencyKey;
  let held: Awaited<ReturnType<Ledger['holdForModel']>> | null = null;
  for (let attempt = 1; attempt <= MAX_HOLD_ATTEMPTS; attempt++) {
    key = attempt === 1 ? input.idempotencyKey : `${input.idempotencyKey}:attempt-${attempt}`;
    held = await deps.ledger.holdForModel({
      orgId: input.orgId,
      projectId: input.projectId,
      model: input.model,
      promptTokens,
      maxTokens: 0,
      traceId: input.traceId,
      runId: input.runId ?? null,
      stepId: input.stepId ?? null,
      idempotencyKey: `${key}:hold`,
      actor: input.actor,
    });
    if (!(held.replayed && (held.hold.status === 'released' || held.hold.status === 'expired'))) break;
    held = null;
  }
  if (!held) throw new AppError('conflict', `the embedding call failed ${MAX_HOLD_ATTEMPTS} times; giving up`);
  const startedAt = performance.now();
  let response: OpenAI.Embeddings.CreateEmbeddingResponse;
  try {
    response = await withUpstreamRetry(
      () => deps.upstream.embeddings.create({ model: held.model.upstreamModel, input: input.texts, encoding_format: 'float' }, { signal: input.signal }),
      undefined,
      input.signal,
    );
  } catch (error) {
    if (held.hold.status === 'active') {
      await deps.ledger.release({ holdId: held.hold.id, idempotencyKey: `${key}:release`, reason: classifyUpstreamError(error).code });
    }
    const failure = classifyUpstreamError(error);
    throw new EmbeddingCallError('upstream_error', `The embedding model failed: ${failure.message}`, { cause: error });
  }
  const vectors = [...response.data].sort((a, b) => a.index - b.index).map((d) => d.embedding as number[]);
  if (vectors.length !== input.texts.length) {
    await deps.ledger.release({ holdId: held.hold.id, idempotencyKey: `${key}:release`, reason: 'bad_upstream_response' });
    throw new EmbeddingCallError('upstream_error', `The embedding model returned ${vectors.length} vectors for ${input.texts.length} inputs`);
  }
  const captured = await deps.ledger.capture({
    holdId: held.hold.id,
    idempotencyKey: `${key}:capture`,
    usage: {
      promptTokens: response.usage?.prompt_tokens ?? promptTokens,
      completionTokens: 0,
      traceId: input.traceId,
      latencyMs: Math.round(performance.now() - startedAt),
      status: 'success',
      projectId: input.projectId,
      runId: input.runId ?? null,
      stepId: input.stepId ?? null,
      apiKeyId: input.apiKeyId ?? null,
      userId: input.userId ?? null,
    },
  });
  return {
    vectors,
    promptTokens: response.usage?.prompt_tokens ?? promptTokens,
    costMicros: captured.costMicros,
    chargedMicros: captured.chargedMicros,
    holdId: held.hold.id,
    upstreamModel: held.model.upstreamModel,
    replayed: captured.replayed,
  };
}
