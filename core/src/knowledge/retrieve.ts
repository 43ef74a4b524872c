// Retrieval over one or more knowledge bases of a project: embed the query (billed, once per
// embedding model), search each knowledge base's index (hybrid BM25 + vector by default), then
// keep only chunks PostgreSQL still knows as part of an indexed document of this project — the
// index is a derived copy, so a deleted or re-indexing document never leaks into answers.
import { createHash } from 'node:crypto';
import { AppError } from '../errors.ts';
import type { PrismaClient } from '../db/client.ts';
import type { Ledger } from '../billing/ledger.ts';
import type { Actor } from '../billing/types.ts';
import type { OpenAI } from '../ai/upstream.ts';
import { embedTextsBilled } from './embed.ts';
import type { KnowledgeIndex } from './index-store.ts';
import type { RetrievalMode, SearchHit } from './types.ts';

export interface RetrievalDeps {
  prisma: PrismaClient;
  index: KnowledgeIndex;
  ledger: Ledger;
  upstream: OpenAI;
}

export interface RetrieveInput {
  orgId: string;
  projectId: string;
  knowledgeBaseIds: string[];
  query: string;
  topK: number;
  mode?: RetrievalMode;
  documentIds?: string[];
  /** Drop hits scoring below this (mode-specific scale). */
  minScore?: number;
  traceId: string;
  runId?: string | null;
  stepId?: string | null;
  /** Billing key of the query embedding(s); one per embedding model is derived from it. */
  idempotencyKey: string;
  actor?: Actor;
  apiKeyId?: string | null;
  userId?: string | null;
}

/** One retrieved chunk with what a citation needs. */
export interface Citation {
  chunk_id: string;
  document_id: string;
  knowledge_base_id: string;
  filename: string;
  ordinal: number;
  page: number | null;
  heading: string | null;
  text: string;
  score: number;
  vector_rank: number | null;
  fts_rank: number | null;
}

export interface RetrieveResult {
  hits: Citation[];
  mode: RetrievalMode;
  embedding: { promptTokens: number; costMicros: string } | null;
}

export const MAX_TOP_K = 100;

/**
 * The index table of a knowledge base for one embedding model. Vectors of different models cannot
 * share a table, so a model change writes a new one (and the old is purged) instead of colliding.
 */
export function indexIdFor(knowledgeBaseId: string, embeddingModel: string): string {
  const h = createHash('sha256').update(`kb-index:${knowledgeBaseId}:${embeddingModel}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export async function retrieveChunks(deps: RetrievalDeps, input: RetrieveInput): Promise<RetrieveResult> {
  const mode = input.mode ?? 'hybrid';
  const ids = [...new Set(input.knowledgeBaseIds)];
  if (ids.length === 0) return { hits: [], mode, embedding: null };
  const topK = Math.max(1, Math.min(MAX_TOP_K, Math.floor(input.topK)));
  const bases = await deps.prisma.knowledgeBase.findMany({ where: { id: { in: ids }, projectId: input.projectId, archivedAt: null } });
  if (bases.length !== ids.length) {
    const found = new Set(bases.map((b) => b.id));
    throw new AppError('not_found', `Knowledge base not found: ${ids.filter((id) => !found.has(id)).join(', ')}`);
  }

  // One billed query embedding per distinct embedding model.
  const vectorsByModel = new Map<string, number[]>();
  let embedding: RetrieveResult['embedding'] = null;
  if (mode !== 'fts') {
    let promptTokens = 0;
    let cost = 0n;
    for (const model of [...new Set(bases.map((b) => b.embeddingModel))].sort()) {
      const result = await embedTextsBilled(deps, {
        orgId: input.orgId,
        projectId: input.projectId,
        model,
        texts: [input.query],
        traceId: input.traceId,
        runId: input.runId ?? null,
        stepId: input.stepId ?? null,
        idempotencyKey: `${input.idempotencyKey}:${model}`,
        actor: input.actor,
        apiKeyId: input.apiKeyId ?? null,
        userId: input.userId ?? null,
      });
      vectorsByModel.set(model, result.vectors[0]!);
      promptTokens += result.promptTokens;
      cost += result.chargedMicros;
    }
    embedding = { promptTokens, costMicros: cost.toString() };
  }

  const perBase = await Promise.all(
    bases.map(async (base) => {
      const hits = await deps.index.search(indexIdFor(base.id, base.embeddingModel), input.projectId, {
        queryText: input.query,
        queryVector: vectorsByModel.get(base.embeddingModel),
        topK,
        mode,
        documentIds: input.documentIds,
      });
      return hits.map((hit) => ({ ...hit, knowledge_base_id: base.id }));
    }),
  );
  const candidates: Array<SearchHit & { knowledge_base_id: string }> = perBase.flat().sort((a, b) => b.score - a.score);
  if (candidates.length === 0) return { hits: [], mode, embedding };

  const rows = await deps.prisma.documentChunk.findMany({
    where: { id: { in: candidates.map((c) => c.chunk_id) }, knowledgeBaseId: { in: ids } },
    select: { id: true, document: { select: { id: true, filename: true, status: true, projectId: true } } },
  });
  const live = new Map(rows.filter((r) => r.document.status === 'indexed' && r.document.projectId === input.projectId).map((r) => [r.id, r.document]));
  const hits: Citation[] = [];
  for (const c of candidates) {
    const doc = live.get(c.chunk_id);
    if (!doc || (input.minScore !== undefined && c.score < input.minScore)) continue;
    hits.push({
      chunk_id: c.chunk_id,
      document_id: doc.id,
      knowledge_base_id: c.knowledge_base_id,
      filename: doc.filename,
      ordinal: c.ordinal,
      page: c.page,
      heading: c.heading,
      text: c.text,
      score: c.score,
      vector_rank: c.vector_rank,
      fts_rank: c.fts_rank,
    });
    if (hits.length === topK) break;
  }
  return { hits, mode, embedding };
}

/** The context block a model gets: numbered sources, so its answer can cite [1], [2]… */
export function formatSourcesForPrompt(hits: Citation[], maxCharsPerSource = 2_000): string {
  return hits
    .map((h, i) => {
      const where = [h.filename, h.page !== null ? `page ${h.page}` : null, h.heading].filter(Boolean).join(', ');
      return `[${i + 1}] (${where})\n${h.text.slice(0, maxCharsPerSource)}`;
    })
    .join('\n\n');
}
