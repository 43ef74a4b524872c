// Knowledge bases: CRUD, uploads streamed to object storage, one durable ingestion workflow per
// document (progress over SSE), re-index/cancel, download, delete (file, chunks and index entries)
// and hybrid retrieval with citations. PostgreSQL holds documents and chunk metadata; LanceDB holds
// vectors and the full-text index, written only by the worker.
import { randomUUID } from 'node:crypto';
import { PassThrough, Transform } from 'node:stream';
import busboy from 'busboy';
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError } from '@temporalio/client';
import {
  AppError,
  INGEST_WORKFLOW_TYPE,
  ingestEventsId,
  ingestWorkflowId,
  Prisma,
  type IngestionInput,
  type Models,
} from '@deepspace/core';
import { sanitizeFilename, sniffContentType, SUPPORTED_TYPES } from '@deepspace/core/knowledge/parse';
import { retrieveChunks } from '@deepspace/core/knowledge/retrieve';
import { ObjectTooLargeError, projectObjectKey } from '@deepspace/core/storage/index';
import type { ApiRouter, RequestContext } from '../http/router.ts';
import { projectAccess } from '../services/access.ts';
import { DEFAULT_MAX_UPLOAD_BYTES } from '../services/policy.ts';
import { openSse, relayRunEvents } from '../services/sse.ts';

const DEFAULT_EMBEDDING_MODEL = 'text-embedding-3-small';
const ACTIVE_STATUSES = ['queued', 'parsing', 'embedding'] as const;
const SNIFF_BYTES = 8_192;
/** Multipart framing around the file (boundaries, part headers). */
const MULTIPART_OVERHEAD = 64 * 1024;

function kbJson(kb: Models.KnowledgeBase, counts?: Record<string, number>) {
  return {
    id: kb.id,
    project_id: kb.projectId,
    name: kb.name,
    description: kb.description,
    embedding_model: kb.embeddingModel,
    chunk_size: kb.chunkSize,
    chunk_overlap: kb.chunkOverlap,
    created_by: kb.createdBy,
    created_at: kb.createdAt.toISOString(),
    updated_at: kb.updatedAt.toISOString(),
    ...(counts ? { documents: counts } : {}),
  };
}

function documentJson(d: Models.Document) {
  return {
    id: d.id,
    knowledge_base_id: d.knowledgeBaseId,
    project_id: d.projectId,
    filename: d.filename,
    content_type: d.mimeType,
    size_bytes: d.sizeBytes.toString(),
    sha256: d.sha256,
    status: d.status,
    error: d.status === 'failed' ? { code: d.errorCode ?? 'failed', message: d.error ?? '' } : null,
    generation: d.generation,
    embedding_model: d.embeddingModel,
    page_count: d.pageCount,
    chunk_count: d.chunkCount,
    embedded_chunks: d.embeddedChunks,
    token_count: d.tokenCount,
    cost_micros: d.costMicros.toString(),
    trace_id: d.traceId,
    workflow_id: d.workflowId,
    created_by: d.createdBy,
    created_at: d.createdAt.toISOString(),
    updated_at: d.updatedAt.toISOString(),
    indexed_at: d.indexedAt?.toISOString() ?? null,
  };
}

function actorOf(ctx: RequestContext): IngestionInput['actor'] {
  const actor = ctx.actorOrThrow();
  return actor.type === 'user' ? { type: 'user', id: actor.userId } : { type: 'api_key', id: actor.keyId };
}

async function knowledgeBaseOf(ctx: RequestContext, minimumRole: 'viewer' | 'member') {
  const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, minimumRole, { what: 'change knowledge bases' });
  const kb = await ctx.deps.prisma.knowledgeBase.findFirst({ where: { id: ctx.params.knowledgeBaseId!, projectId: project.id, archivedAt: null } });
  if (!kb) throw new AppError('not_found', 'Knowledge base not found');
  return { project, kb };
}

async function documentOf(ctx: RequestContext, minimumRole: 'viewer' | 'member') {
  const { project, kb } = await knowledgeBaseOf(ctx, minimumRole);
  const doc = await ctx.deps.prisma.document.findFirst({ where: { id: ctx.params.documentId!, knowledgeBaseId: kb.id, projectId: project.id } });
  if (!doc) throw new AppError('not_found', 'Document not found');
  return { project, kb, doc };
}

async function embeddingModel(ctx: RequestContext, name: string) {
  const model = await ctx.deps.catalog.get(name);
  if (!model || model.kind !== 'embedding') throw new AppError('validation_failed', `"${name}" is not an embedding model`);
  if (ctx.policy?.allowedModels && !ctx.policy.allowedModels.includes(model.name)) {
    throw new AppError('policy_violation', `model "${model.name}" is not allowed by policy`);
  }
  return model;
}

async function startIngestion(ctx: RequestContext, input: IngestionInput): Promise<void> {
  try {
    await ctx.deps.temporal.client.workflow.start(INGEST_WORKFLOW_TYPE, {
      taskQueue: ctx.deps.config.temporal.taskQueue,
      workflowId: ingestWorkflowId(input.documentId, input.generation),
      args: [input],
      searchAttributes: { DsOrgId: [input.orgId], DsProjectId: [input.projectId], DsTraceId: [input.traceId], DsRunKind: ['ingestion'] },
    });
  } catch (error) {
    if (error instanceof WorkflowExecutionAlreadyStartedError) return;
    await ctx.deps.prisma.document.updateMany({
      where: { id: input.documentId, generation: input.generation },
      data: { status: 'failed', errorCode: 'service_unavailable', error: 'The workflow engine was unavailable; re-index to try again' },
    });
    throw new AppError('service_unavailable', 'The workflow engine is unavailable; try again', { cause: error });
  }
}

/** Cancels a document's running ingestion, if any (its compensation marks nothing: it is superseded). */
async function cancelIngestion(ctx: RequestContext, doc: Models.Document): Promise<void> {
  if (!doc.workflowId || !(ACTIVE_STATUSES as readonly string[]).includes(doc.status)) return;
  try {
    await ctx.deps.temporal.client.workflow.getHandle(doc.workflowId).cancel();
  } catch (error) {
    if (!(error instanceof WorkflowNotFoundError)) ctx.log.warn({ err: error, document_id: doc.id }, 'could not cancel an ingestion');
  }
}

async function purgeIndex(ctx: RequestContext, knowledgeBaseId: string, embeddingModels: string[], documentId: string | null, reason: string): Promise<void> {
  try {
    await ctx.deps.temporal.client.workflow.start('purgeKnowledgeIndexWorkflow', {
      taskQueue: ctx.deps.config.temporal.taskQueue,
      workflowId: documentId ? `purge-document-${documentId}` : `purge-kb-${knowledgeBaseId}-${reason}-${randomUUID()}`,
      args: [{ knowledgeBaseId, embeddingModels: [...new Set(embeddingModels)], documentId }],
    });
  } catch (error) {
    // Retrieval already ignores chunks without a row; the entries are only dead weight.
    if (!(error instanceof WorkflowExecutionAlreadyStartedError)) ctx.log.warn({ err: error, knowledge_base_id: knowledgeBaseId }, 'could not schedule the index purge');
  }
}

/** Bumps the generation (superseding a running ingestion) and starts a new one. */
async function reingest(ctx: RequestContext, doc: Models.Document, orgId: string): Promise<Models.Document> {
  await cancelIngestion(ctx, doc);
  const generation = doc.generation + 1;
  const updated = await ctx.deps.prisma.document.update({
    where: { id: doc.id },
    data: {
      generation,
      status: 'queued',
      error: null,
      errorCode: null,
      embeddedChunks: 0,
      indexedAt: null,
      traceId: ctx.traceId,
      workflowId: ingestWorkflowId(doc.id, generation),
    },
  });
  await startIngestion(ctx, {
    documentId: doc.id,
    knowledgeBaseId: doc.knowledgeBaseId,
    orgId,
    projectId: doc.projectId,
    generation,
    traceId: ctx.traceId,
    actor: actorOf(ctx),
  });
  return updated;
}

interface ReceivedFile {
  filename: string;
  declaredType: string;
  head: Uint8Array;
  sizeBytes: number;
  sha256: string;
}

/** Streams the multipart field `file` into storage under `key`; never buffers the whole upload. */
function receiveUpload(ctx: RequestContext, key: string, maxBytes: number): Promise<ReceivedFile> {
  const storage = ctx.deps.knowledge!.storage;
  return new Promise<ReceivedFile>((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: ctx.req.headers, limits: { files: 1, fields: 20, parts: 25, fieldSize: 64 * 1024 } });
    } catch (error) {
      reject(new AppError('validation_failed', `Invalid multipart request: ${(error as Error).message}`));
      return;
    }
    let seen = false;
    let settled = false;
    const settle = (fn: () => void) => {
      if (!settled) {
        settled = true;
        fn();
      }
    };
    parser.on('file', (field, stream, info) => {
      if (field !== 'file' || seen) {
        stream.resume();
        return;
      }
      seen = true;
      const headChunks: Buffer[] = [];
      let headLength = 0;
      const sniffer = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          if (headLength < SNIFF_BYTES) {
            headChunks.push(chunk.subarray(0, SNIFF_BYTES - headLength));
            headLength += Math.min(chunk.length, SNIFF_BYTES - headLength);
          }
          callback(null, chunk);
        },
      });
      const body = new PassThrough();
      stream.pipe(sniffer).pipe(body);
      storage
        .put(key, body, { contentType: 'application/octet-stream', maxBytes })
        .then((result) =>
          settle(() =>
            resolve({
              filename: info.filename ?? 'document',
              declaredType: info.mimeType ?? '',
              head: new Uint8Array(Buffer.concat(headChunks)),
              sizeBytes: result.sizeBytes,
              sha256: result.sha256,
            }),
          ),
        )
        .catch((error: unknown) => {
          stream.resume();
          settle(() =>
            reject(
              error instanceof ObjectTooLargeError
                ? new AppError('payload_too_large', `The file is larger than this project's upload limit of ${maxBytes} bytes`, { details: { max_upload_bytes: String(maxBytes) } })
                : error,
            ),
          );
        });
    });
    parser.on('error', (error: Error) => settle(() => reject(new AppError('validation_failed', `Invalid multipart request: ${error.message}`))));
    parser.on('close', () => {
      if (!seen) settle(() => reject(new AppError('validation_failed', 'The multipart field "file" is required')));
    });
    ctx.req.on('aborted', () => settle(() => reject(new AppError('bad_request', 'The upload was interrupted'))));
    ctx.req.pipe(parser);
  });
}

export function knowledgeRoutes(api: ApiRouter): void {
  api.handle('listKnowledgeBases', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
    const bases = await ctx.deps.prisma.knowledgeBase.findMany({ where: { projectId: project.id, archivedAt: null }, orderBy: { createdAt: 'asc' } });
    const grouped = bases.length
      ? await ctx.deps.prisma.document.groupBy({ by: ['knowledgeBaseId', 'status'], where: { projectId: project.id }, _count: { _all: true } })
      : [];
    const counts = new Map<string, Record<string, number>>();
    for (const g of grouped) {
      const entry = counts.get(g.knowledgeBaseId) ?? { total: 0 };
      entry[g.status] = g._count._all;
      entry.total = (entry.total ?? 0) + g._count._all;
      counts.set(g.knowledgeBaseId, entry);
    }
    return { body: { data: bases.map((kb) => kbJson(kb, counts.get(kb.id) ?? { total: 0 })), has_more: false } };
  });

  api.handle('createKnowledgeBase', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'member', { what: 'create knowledge bases' });
    const model = await embeddingModel(ctx, ctx.body.embedding_model ?? DEFAULT_EMBEDDING_MODEL);
    const chunkSize: number = ctx.body.chunk_size ?? 800;
    const chunkOverlap: number = ctx.body.chunk_overlap ?? Math.min(100, Math.floor(chunkSize / 8));
    if (chunkOverlap * 2 >= chunkSize) throw new AppError('validation_failed', 'chunk_overlap must be less than half of chunk_size');
    const actor = actorOf(ctx);
    try {
      const kb = await ctx.deps.prisma.$transaction(async (tx) => {
        const row = await tx.knowledgeBase.create({
          data: {
            orgId: project.orgId,
            projectId: project.id,
            name: ctx.body.name,
            description: ctx.body.description ?? '',
            embeddingModel: model.name,
            chunkSize,
            chunkOverlap,
            createdBy: `${actor.type}:${actor.id}`,
          },
        });
        await ctx.audit({ action: 'knowledge.base.create', resourceType: 'knowledge_base', resourceId: row.id, orgId: project.orgId, projectId: project.id }, tx);
        return row;
      });
      return { status: 201, body: kbJson(kb, { total: 0 }) };
    } catch (error) {
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') {
        throw new AppError('conflict', `A knowledge base named "${ctx.body.name}" already exists in this project`);
      }
      throw error;
    }
  });

  api.handle('getKnowledgeBase', async (ctx) => {
    const { kb } = await knowledgeBaseOf(ctx, 'viewer');
    const grouped = await ctx.deps.prisma.document.groupBy({ by: ['status'], where: { knowledgeBaseId: kb.id }, _count: { _all: true } });
    const counts: Record<string, number> = { total: 0 };
    for (const g of grouped) {
      counts[g.status] = g._count._all;
      counts.total = (counts.total ?? 0) + g._count._all;
    }
    return { body: kbJson(kb, counts) };
  });

  api.handle('updateKnowledgeBase', async (ctx) => {
    const { project, kb } = await knowledgeBaseOf(ctx, 'member');
    const model = ctx.body.embedding_model ? await embeddingModel(ctx, ctx.body.embedding_model) : null;
    const chunkSize: number = ctx.body.chunk_size ?? kb.chunkSize;
    const chunkOverlap: number = ctx.body.chunk_overlap ?? Math.min(kb.chunkOverlap, Math.floor((chunkSize - 1) / 2));
    if (chunkOverlap * 2 >= chunkSize) throw new AppError('validation_failed', 'chunk_overlap must be less than half of chunk_size');
    const reindex = (model !== null && model.name !== kb.embeddingModel) || chunkSize !== kb.chunkSize || chunkOverlap !== kb.chunkOverlap;
    let updated: Models.KnowledgeBase;
    try {
      updated = await ctx.deps.prisma.$transaction(async (tx) => {
        const row = await tx.knowledgeBase.update({
          where: { id: kb.id },
          data: {
            ...(ctx.body.name ? { name: ctx.body.name } : {}),
            ...(ctx.body.description !== undefined ? { description: ctx.body.description } : {}),
            ...(model ? { embeddingModel: model.name } : {}),
            chunkSize,
            chunkOverlap,
          },
        });
        await ctx.audit(
          { action: 'knowledge.base.update', resourceType: 'knowledge_base', resourceId: kb.id, orgId: project.orgId, projectId: project.id, details: { reindex } },
          tx,
        );
        return row;
      });
    } catch (error) {
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') throw new AppError('conflict', `A knowledge base named "${ctx.body.name}" already exists in this project`);
      throw error;
    }
    let reindexed = 0;
    if (model !== null && model.name !== kb.embeddingModel) await purgeIndex(ctx, kb.id, [kb.embeddingModel], null, 'model-change');
    if (reindex) {
      // Vectors of different models (or chunks of another size) cannot share an index: rebuild all.
      const docs = await ctx.deps.prisma.document.findMany({ where: { knowledgeBaseId: kb.id } });
      for (const doc of docs) {
        await reingest(ctx, doc, project.orgId);
        reindexed++;
      }
    }
    return { body: { ...kbJson(updated), reindexed_documents: reindexed } };
  });

  api.handle('deleteKnowledgeBase', async (ctx) => {
    const { project, kb } = await knowledgeBaseOf(ctx, 'member');
    const docs = await ctx.deps.prisma.document.findMany({ where: { knowledgeBaseId: kb.id } });
    for (const doc of docs) await cancelIngestion(ctx, doc);
    await ctx.deps.prisma.$transaction(async (tx) => {
      await tx.knowledgeBase.delete({ where: { id: kb.id } });
      await ctx.audit(
        { action: 'knowledge.base.delete', resourceType: 'knowledge_base', resourceId: kb.id, orgId: project.orgId, projectId: project.id, details: { documents: docs.length } },
        tx,
      );
    });
    await ctx.deps.knowledge!.storage.deletePrefix(`${projectObjectKey(project.id, 'knowledge-bases', kb.id)}/`);
    const models = [kb.embeddingModel, ...docs.map((d) => d.embeddingModel).filter((m): m is string => Boolean(m))];
    await purgeIndex(ctx, kb.id, models, null, 'delete');
    return { status: 204 };
  });

  api.handle('listDocuments', async (ctx) => {
    const { kb } = await knowledgeBaseOf(ctx, 'viewer');
    const limit: number = ctx.query.limit ?? 20;
    let cursor: Prisma.DocumentWhereInput = {};
    if (ctx.query.starting_after) {
      const anchor = await ctx.deps.prisma.document.findFirst({ where: { id: ctx.query.starting_after, knowledgeBaseId: kb.id } });
      if (!anchor) throw new AppError('validation_failed', 'starting_after does not name a document of this knowledge base');
      cursor = { OR: [{ createdAt: { lt: anchor.createdAt } }, { createdAt: anchor.createdAt, id: { lt: anchor.id } }] };
    }
    const rows = await ctx.deps.prisma.document.findMany({
      where: { AND: [{ knowledgeBaseId: kb.id, ...(ctx.query.status ? { status: ctx.query.status } : {}) }, cursor] },
      orderBy: [{ createdAt: 'desc' }, { id: 'desc' }],
      take: limit + 1,
    });
    return { body: { data: rows.slice(0, limit).map(documentJson), has_more: rows.length > limit } };
  });

  api.handle('uploadDocument', async (ctx) => {
    const { project, kb } = await knowledgeBaseOf(ctx, 'member');
    if (!ctx.req.is('multipart/form-data')) throw new AppError('unsupported_media_type', 'Send the file as multipart/form-data in a field named "file"');
    const maxBytes = Number(ctx.policy?.maxUploadBytes ?? DEFAULT_MAX_UPLOAD_BYTES);
    const declaredLength = Number(ctx.req.header('content-length') ?? '0');
    if (declaredLength > maxBytes + MULTIPART_OVERHEAD) {
      ctx.res.setHeader('connection', 'close');
      throw new AppError('payload_too_large', `The file is larger than this project's upload limit of ${maxBytes} bytes`, { details: { max_upload_bytes: String(maxBytes) } });
    }
    const storage = ctx.deps.knowledge!.storage;
    const documentId = randomUUID();
    const key = projectObjectKey(project.id, 'knowledge-bases', kb.id, 'documents', documentId);
    let file: ReceivedFile;
    try {
      file = await receiveUpload(ctx, key, maxBytes);
    } catch (error) {
      await storage.delete(key).catch(() => {});
      if (error instanceof AppError && error.code === 'payload_too_large') ctx.res.setHeader('connection', 'close');
      throw error;
    }
    const filename = sanitizeFilename(file.filename);
    const contentType = sniffContentType(file.head, filename, file.declaredType);
    const discard = () => storage.delete(key).catch(() => {});
    if (file.sizeBytes === 0) {
      await discard();
      throw new AppError('validation_failed', 'The file is empty');
    }
    if (!(SUPPORTED_TYPES as readonly string[]).includes(contentType)) {
      await discard();
      throw new AppError('unsupported_media_type', `Files of type ${contentType} are not supported; send ${SUPPORTED_TYPES.join(', ')}`, { details: { content_type: contentType } });
    }
    const duplicate = await ctx.deps.prisma.document.findFirst({ where: { knowledgeBaseId: kb.id, sha256: file.sha256 } });
    if (duplicate) {
      await discard();
      throw new AppError('conflict', `This file is already in the knowledge base as "${duplicate.filename}"`, { details: { document_id: duplicate.id } });
    }
    const actor = actorOf(ctx);
    let doc: Models.Document;
    try {
      doc = await ctx.deps.prisma.$transaction(async (tx) => {
        const row = await tx.document.create({
          data: {
            id: documentId,
            knowledgeBaseId: kb.id,
            orgId: project.orgId,
            projectId: project.id,
            filename,
            mimeType: contentType,
            sizeBytes: BigInt(file.sizeBytes),
            sha256: file.sha256,
            storageKey: key,
            status: 'queued',
            generation: 1,
            embeddingModel: kb.embeddingModel,
            traceId: ctx.traceId,
            workflowId: ingestWorkflowId(documentId, 1),
            createdBy: `${actor.type}:${actor.id}`,
          },
        });
        await ctx.audit(
          {
            action: 'knowledge.document.upload',
            resourceType: 'document',
            resourceId: documentId,
            orgId: project.orgId,
            projectId: project.id,
            details: { knowledge_base_id: kb.id, filename, content_type: contentType, size_bytes: file.sizeBytes },
          },
          tx,
        );
        return row;
      });
    } catch (error) {
      await discard();
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') {
        throw new AppError('conflict', 'This file is already in the knowledge base');
      }
      throw error;
    }
    await startIngestion(ctx, { documentId, knowledgeBaseId: kb.id, orgId: project.orgId, projectId: project.id, generation: 1, traceId: ctx.traceId, actor });
    return { status: 202, body: documentJson(doc) };
  });

  api.handle('getDocument', async (ctx) => {
    const { doc } = await documentOf(ctx, 'viewer');
    return { body: documentJson(doc) };
  });

  api.handle('deleteDocument', async (ctx) => {
    const { project, kb, doc } = await documentOf(ctx, 'member');
    await cancelIngestion(ctx, doc);
    await ctx.deps.prisma.$transaction(async (tx) => {
      await tx.document.delete({ where: { id: doc.id } });
      await ctx.audit(
        { action: 'knowledge.document.delete', resourceType: 'document', resourceId: doc.id, orgId: project.orgId, projectId: project.id, details: { knowledge_base_id: kb.id, filename: doc.filename } },
        tx,
      );
    });
    await ctx.deps.knowledge!.storage.delete(doc.storageKey);
    await purgeIndex(ctx, kb.id, [kb.embeddingModel, ...(doc.embeddingModel ? [doc.embeddingModel] : [])], doc.id, 'document');
    return { status: 204 };
  });

  api.handle('downloadDocument', async (ctx) => {
    const { doc } = await documentOf(ctx, 'viewer');
    const stream = await ctx.deps.knowledge!.storage.get(doc.storageKey);
    ctx.res.status(200);
    ctx.res.setHeader('content-type', doc.mimeType);
    ctx.res.setHeader('content-length', doc.sizeBytes.toString());
    ctx.res.setHeader('content-disposition', `attachment; filename*=UTF-8''${encodeURIComponent(doc.filename)}`);
    ctx.res.setHeader('x-content-type-options', 'nosniff');
    await new Promise<void>((resolve, reject) => {
      stream.on('error', reject);
      ctx.res.on('close', () => resolve());
      stream.pipe(ctx.res);
    });
  });

  api.handle('listDocumentChunks', async (ctx) => {
    const { doc } = await documentOf(ctx, 'viewer');
    const limit: number = ctx.query.limit ?? 20;
    const after: number = ctx.query.after_ordinal ?? -1;
    const rows = await ctx.deps.prisma.documentChunk.findMany({
      where: { documentId: doc.id, ordinal: { gt: after } },
      orderBy: { ordinal: 'asc' },
      take: limit + 1,
    });
    return {
      body: {
        data: rows.slice(0, limit).map((c) => ({ id: c.id, ordinal: c.ordinal, text: c.text, token_count: c.tokenCount, metadata: c.metadata })),
        has_more: rows.length > limit,
      },
    };
  });

  api.handle('reindexDocument', async (ctx) => {
    const { project, kb, doc } = await documentOf(ctx, 'member');
    const updated = await reingest(ctx, doc, project.orgId);
    await ctx.audit({
      action: 'knowledge.document.reindex',
      resourceType: 'document',
      resourceId: doc.id,
      orgId: project.orgId,
      projectId: project.id,
      details: { knowledge_base_id: kb.id, generation: updated.generation },
    });
    return { status: 202, body: documentJson(updated) };
  });

  api.handle('cancelDocumentIngestion', async (ctx) => {
    const { project, doc } = await documentOf(ctx, 'member');
    if (!(ACTIVE_STATUSES as readonly string[]).includes(doc.status)) throw new AppError('conflict', `The document is already ${doc.status}`);
    await cancelIngestion(ctx, doc);
    await ctx.audit({ action: 'knowledge.document.cancel', resourceType: 'document', resourceId: doc.id, orgId: project.orgId, projectId: project.id });
    return { status: 202, body: { ...documentJson(doc), cancel_requested: true } };
  });

  api.handle('streamDocumentEvents', async (ctx) => {
    const { doc } = await documentOf(ctx, 'viewer');
    const lastEventId = ctx.req.header('last-event-id');
    if (lastEventId !== undefined && !/^\d+-\d+$/.test(lastEventId)) throw new AppError('validation_failed', 'Last-Event-ID must be an event id from this stream');
    openSse(ctx.res);
    await relayRunEvents(ctx.deps.redis, ctx.res, ingestEventsId(doc.id, doc.generation), lastEventId ?? '0', async () => {
      const current = await ctx.deps.prisma.document.findUnique({ where: { id: doc.id } });
      if (!current) return { type: 'document.failed', data: { document_id: doc.id, status: 'deleted' } };
      if (current.generation !== doc.generation) return { type: 'document.failed', data: { document_id: doc.id, code: 'superseded', generation: doc.generation } };
      if (current.status === 'indexed') return { type: 'document.indexed', data: documentJson(current) };
      if (current.status === 'failed') return { type: 'document.failed', data: documentJson(current) };
      return null;
    });
  });

  api.handle('retrieveKnowledge', async (ctx) => {
    const { project, kb } = await knowledgeBaseOf(ctx, 'viewer');
    const actor = ctx.actorOrThrow();
    if (ctx.policy?.allowedModels && !ctx.policy.allowedModels.includes(kb.embeddingModel) && (ctx.body.mode ?? 'hybrid') !== 'fts') {
      throw new AppError('policy_violation', `model "${kb.embeddingModel}" is not allowed by policy`);
    }
    const result = await retrieveChunks(
      { prisma: ctx.deps.prisma, index: await ctx.deps.knowledge!.index(), ledger: ctx.deps.ledger, upstream: ctx.deps.upstream },
      {
        orgId: project.orgId,
        projectId: project.id,
        knowledgeBaseIds: [kb.id],
        query: ctx.body.query,
        topK: ctx.body.top_k ?? 5,
        mode: ctx.body.mode ?? 'hybrid',
        documentIds: ctx.body.document_ids,
        traceId: ctx.traceId,
        idempotencyKey: `retrieve:${ctx.traceId}:${randomUUID()}`,
        actor: actor.type === 'user' ? { type: 'user', id: actor.userId } : { type: 'api_key', id: actor.keyId },
        ...(actor.type === 'api_key' ? { apiKeyId: actor.keyId } : { userId: actor.userId }),
      },
    );
    return {
      body: {
        object: 'list',
        mode: result.mode,
        query: ctx.body.query,
        data: result.hits.map((h, i) => ({ rank: i + 1, ...h })),
        usage: result.embedding ? { prompt_tokens: result.embedding.promptTokens, cost_micros: result.embedding.costMicros } : { prompt_tokens: 0, cost_micros: '0' },
        trace_id: ctx.traceId,
      },
    };
  });
}
