// Knowledge-base activities: parse + chunk a stored document into PostgreSQL, embed its chunks in
// billed batches and index them in LanceDB, then mark it indexed (or failed, with the reason).
// Every write is conditional on the document's generation, so an ingestion that a re-index (or a
// delete) superseded stops instead of overwriting newer work. Each activity is idempotent: chunk
// ids are derived from (document, generation, ordinal), billing keys from (document, generation,
// batch), and index writes are upserts by chunk id.
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { appendRunEvent, ingestEventsId, Ledger, type IngestionInput, type Prisma } from '@deepspace/core';
import { chunkDocument } from '@deepspace/core/knowledge/chunk';
import { DocumentParseError, parseDocument } from '@deepspace/core/knowledge/parse';
import { embedTextsBilled, EmbeddingCallError } from '@deepspace/core/knowledge/embed';
import type { KnowledgeRuntime } from '@deepspace/core/knowledge/runtime';
import { indexIdFor } from '@deepspace/core/knowledge/retrieve';
import type { IndexedChunk } from '@deepspace/core/knowledge/types';
import { ObjectNotFoundError } from '@deepspace/core/storage/index';
import type { ActivityDeps } from './index.ts';

export const EMBED_BATCH_SIZE = 64;

export interface ParseResult {
  chunkCount: number;
  batchCount: number;
  batchSize: number;
  pageCount: number;
  embeddingModel: string;
}

export interface EmbedBatchInput extends IngestionInput {
  batch: number;
  batchSize: number;
}

export interface IngestFailInput extends IngestionInput {
  code: string;
  message: string;
  cancelled: boolean;
}

export function chunkId(documentId: string, generation: number, ordinal: number): string {
  const h = createHash('sha256').update(`chunk:${documentId}:${generation}:${ordinal}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** Heartbeats while `fn` runs, so a worker that dies mid-activity is noticed in seconds (not at the timeout). */
async function heartbeating<T>(fn: () => Promise<T>): Promise<T> {
  const context = Context.current();
  context.heartbeat();
  const beat = setInterval(() => context.heartbeat(), 2_000);
  try {
    return await fn();
  } finally {
    clearInterval(beat);
  }
}

const final = (type: string, message: string) => ApplicationFailure.create({ type, message, nonRetryable: true });

export function createKnowledgeActivities(deps: ActivityDeps & { knowledge: KnowledgeRuntime }) {
  const ledger = new Ledger(deps.pool);

  /** The document, if this ingestion still owns it (same generation, not deleted). */
  async function ownedDocument(input: IngestionInput) {
    const doc = await deps.prisma.document.findUnique({ where: { id: input.documentId } });
    if (!doc || doc.projectId !== input.projectId) throw final('not_found', 'the document was deleted');
    if (doc.generation !== input.generation) throw final('superseded', `a newer ingestion (generation ${doc.generation}) replaced this one`);
    return doc;
  }

  async function setStatus(input: IngestionInput, data: Prisma.DocumentUpdateManyMutationInput): Promise<void> {
    const { count } = await deps.prisma.document.updateMany({ where: { id: input.documentId, generation: input.generation }, data });
    if (count === 0) throw final('superseded', 'the document was deleted or re-ingested');
  }

  const event = (input: IngestionInput, type: Parameters<typeof appendRunEvent>[2], data: Record<string, unknown>) =>
    appendRunEvent(deps.redis, ingestEventsId(input.documentId, input.generation), type, { document_id: input.documentId, generation: input.generation, ...data });

  async function parse(input: IngestionInput): Promise<ParseResult> {
    const doc = await ownedDocument(input);
    const kb = await deps.prisma.knowledgeBase.findUniqueOrThrow({ where: { id: input.knowledgeBaseId } });
    await setStatus(input, { status: 'parsing', error: null, errorCode: null });
    await event(input, 'document.status', { status: 'parsing' });

    let bytes: Uint8Array;
    try {
      bytes = await deps.knowledge.storage.getBytes(doc.storageKey);
    } catch (error) {
      if (error instanceof ObjectNotFoundError) throw final('not_found', 'the stored file is missing');
      throw error;
    }
    let chunks;
    let pageCount: number;
    try {
      const parsed = await parseDocument(bytes, { contentType: doc.mimeType, filename: doc.filename });
      pageCount = parsed.pageCount;
      chunks = chunkDocument(parsed, { chunkTokens: kb.chunkSize, overlapTokens: kb.chunkOverlap });
    } catch (error) {
      if (error instanceof DocumentParseError) throw final(error.code, error.message);
      throw final('corrupt_file', `The file could not be read: ${(error as Error).message}`);
    }
    if (chunks.length === 0) throw final('empty_document', 'The document contains no text');

    // Entries of an earlier generation (re-index) leave the index before the new ones arrive.
    const index = await deps.knowledge.index();
    await index.deleteDocument(indexIdFor(input.knowledgeBaseId, kb.embeddingModel), input.documentId);
    if (doc.embeddingModel && doc.embeddingModel !== kb.embeddingModel) await index.deleteDocument(indexIdFor(input.knowledgeBaseId, doc.embeddingModel), input.documentId);
    const tokenCount = chunks.reduce((sum, c) => sum + c.tokenCount, 0);
    await deps.prisma.$transaction(async (tx) => {
      const { count } = await tx.document.updateMany({
        where: { id: input.documentId, generation: input.generation },
        data: { status: 'embedding', chunkCount: chunks.length, pageCount, tokenCount, embeddedChunks: 0, costMicros: 0n, embeddingModel: kb.embeddingModel },
      });
      if (count === 0) throw final('superseded', 'the document was deleted or re-ingested');
      await tx.documentChunk.deleteMany({ where: { documentId: input.documentId } });
      await tx.documentChunk.createMany({
        data: chunks.map((c) => ({
          id: chunkId(input.documentId, input.generation, c.ordinal),
          documentId: input.documentId,
          knowledgeBaseId: input.knowledgeBaseId,
          ordinal: c.ordinal,
          text: c.text,
          tokenCount: c.tokenCount,
          metadata: c.metadata as unknown as Prisma.InputJsonValue,
        })),
      });
    });
    await event(input, 'document.status', { status: 'embedding', chunk_count: chunks.length, page_count: pageCount, token_count: tokenCount });
    return {
      chunkCount: chunks.length,
      batchCount: Math.ceil(chunks.length / EMBED_BATCH_SIZE),
      batchSize: EMBED_BATCH_SIZE,
      pageCount,
      embeddingModel: kb.embeddingModel,
    };
  }

  /** One billed embedding call for a batch of chunks, then an idempotent upsert into the index. */
  async function embedBatch(input: EmbedBatchInput): Promise<{ embedded: number; costMicros: string }> {
    const doc = await ownedDocument(input);
    const kb = await deps.prisma.knowledgeBase.findUniqueOrThrow({ where: { id: input.knowledgeBaseId } });
    const rows = await deps.prisma.documentChunk.findMany({
      where: { documentId: input.documentId, ordinal: { gte: input.batch * input.batchSize, lt: (input.batch + 1) * input.batchSize } },
      orderBy: { ordinal: 'asc' },
    });
    if (rows.length === 0) return { embedded: 0, costMicros: '0' };
    let result;
    try {
      result = await embedTextsBilled(
        { ledger, upstream: deps.upstream },
        {
          orgId: input.orgId,
          projectId: input.projectId,
          model: doc.embeddingModel ?? kb.embeddingModel,
          texts: rows.map((r) => r.text),
          traceId: input.traceId,
          runId: doc.workflowId,
          stepId: `embed-${input.batch}`,
          idempotencyKey: `ingest:${input.documentId}:${input.generation}:batch:${input.batch}`,
          actor: input.actor,
          ...(input.actor.type === 'api_key' ? { apiKeyId: input.actor.id } : { userId: input.actor.id }),
          signal: Context.current().cancellationSignal,
        },
      );
    } catch (error) {
      // Retried inside embedTextsBilled already; the hold is released, so this batch is final.
      if (error instanceof EmbeddingCallError) throw final('upstream_error', error.message);
      throw error;
    }
    const metadataOf = (m: unknown) => (m ?? {}) as { page?: number; heading?: string };
    const indexed: IndexedChunk[] = rows.map((r, i) => ({
      chunk_id: r.id,
      document_id: input.documentId,
      project_id: input.projectId,
      ordinal: r.ordinal,
      text: r.text,
      page: metadataOf(r.metadata).page ?? null,
      heading: metadataOf(r.metadata).heading ?? null,
      vector: result.vectors[i]!,
    }));
    await (await deps.knowledge.index()).upsertChunks(indexIdFor(input.knowledgeBaseId, doc.embeddingModel ?? kb.embeddingModel), indexed);
    // Progress only (a retried batch may count twice; the final figures are recomputed at the end).
    await deps.prisma.$executeRaw`UPDATE documents SET embedded_chunks = LEAST(chunk_count, embedded_chunks + ${rows.length}) WHERE id = ${input.documentId}::uuid AND generation = ${input.generation}`;
    await event(input, 'document.progress', { embedded_batch: input.batch, embedded_chunks: Math.min(doc.chunkCount, (input.batch + 1) * input.batchSize), chunk_count: doc.chunkCount });
    return { embedded: rows.length, costMicros: result.chargedMicros.toString() };
  }

  return {
    async ingestParse(input: IngestionInput): Promise<ParseResult> {
      return heartbeating(() => parse(input));
    },

    async ingestEmbedBatch(input: EmbedBatchInput): Promise<{ embedded: number; costMicros: string }> {
      return heartbeating(() => embedBatch(input));
    },
    async ingestFinish(input: IngestionInput): Promise<{ status: 'indexed'; chunkCount: number; costMicros: string }> {
      const doc = await ownedDocument(input);
      // The cost is what the ledger captured for this ingestion: exact even when batches retried.
      const spent = await deps.prisma.usageRecord.aggregate({ where: { runId: doc.workflowId, status: 'success' }, _sum: { costMicros: true } });
      const cost = spent._sum.costMicros ?? 0n;
      await deps.prisma.$transaction(async (tx) => {
        const { count } = await tx.document.updateMany({
          where: { id: input.documentId, generation: input.generation },
          data: { status: 'indexed', embeddedChunks: doc.chunkCount, costMicros: cost, indexedAt: new Date(), error: null, errorCode: null },
        });
        if (count === 0) throw final('superseded', 'the document was deleted or re-ingested');
        if (Context.current().info.attempt === 1 || !(await tx.auditLog.findFirst({ where: { traceId: input.traceId, action: 'knowledge.document.indexed', resourceId: input.documentId } }))) {
          await tx.auditLog.create({
            data: {
              traceId: input.traceId,
              actorType: input.actor.type,
              actorId: input.actor.id,
              action: 'knowledge.document.indexed',
              resourceType: 'document',
              resourceId: input.documentId,
              orgId: input.orgId,
              projectId: input.projectId,
              result: 'success',
              details: { knowledge_base_id: input.knowledgeBaseId, generation: input.generation, chunks: doc.chunkCount, cost_micros: cost.toString() },
            },
          });
        }
      });
      await event(input, 'document.indexed', { status: 'indexed', chunk_count: doc.chunkCount, page_count: doc.pageCount, cost_micros: cost.toString() });
      return { status: 'indexed', chunkCount: doc.chunkCount, costMicros: cost.toString() };
    },

    /** Compensation: the document ends failed with its reason and leaves nothing in the index. */
    async ingestFail(input: IngestFailInput): Promise<void> {
      if (input.code === 'superseded' || input.code === 'not_found') return;
      const { count } = await deps.prisma.document.updateMany({
        where: { id: input.documentId, generation: input.generation },
        data: { status: 'failed', errorCode: input.cancelled ? 'cancelled' : input.code, error: input.message.slice(0, 2_000) },
      });
      if (count === 0) return;
      const doc = await deps.prisma.document.findUnique({ where: { id: input.documentId }, select: { embeddingModel: true } });
      if (doc?.embeddingModel) await (await deps.knowledge.index()).deleteDocument(indexIdFor(input.knowledgeBaseId, doc.embeddingModel), input.documentId);
      await deps.prisma.auditLog.create({
        data: {
          traceId: input.traceId,
          actorType: input.actor.type,
          actorId: input.actor.id,
          action: 'knowledge.document.failed',
          resourceType: 'document',
          resourceId: input.documentId,
          orgId: input.orgId,
          projectId: input.projectId,
          result: 'failure',
          details: { code: input.cancelled ? 'cancelled' : input.code, message: input.message.slice(0, 500), generation: input.generation },
        },
      });
      await event(input, 'document.failed', { status: 'failed', code: input.cancelled ? 'cancelled' : input.code, message: input.message });
    },

    /**
     * Removes index entries the rows no longer back: a deleted document's, or whole tables of a
     * deleted knowledge base or of an embedding model it stopped using.
     */
    async purgeKnowledgeIndex(input: { knowledgeBaseId: string; embeddingModels: string[]; documentId?: string | null }): Promise<void> {
      const index = await deps.knowledge.index();
      for (const model of input.embeddingModels) {
        const indexId = indexIdFor(input.knowledgeBaseId, model);
        if (input.documentId) await index.deleteDocument(indexId, input.documentId);
        else await index.dropKnowledgeBase(indexId);
      }
    },
  };
}

export type KnowledgeActivities = ReturnType<typeof createKnowledgeActivities>;
