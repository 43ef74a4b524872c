// Chat: sessions, messages and runs. A message is a one-step durable workflow (temporal-workers
// chatMessageWorkflow); its reply streams back over SSE from the run's Redis Stream.
import { createHash, randomUUID } from 'node:crypto';
import { WorkflowExecutionAlreadyStartedError } from '@temporalio/client';
import { AppError, CHAT_WORKFLOW_TYPE, chatWorkflowId, type ChatRunInput, type Models, type Prisma } from '@deepspace/core';
import type { ApiRouter, RequestContext } from '../http/router.ts';
import { projectAccess, requireRole } from '../services/access.ts';
import type { Role } from '../auth/actor.ts';
import { assertPolicyAllows } from '../services/policy.ts';
import { openSse, relayRunEvents, writeSse } from '../services/sse.ts';

const DEFAULT_CHAT_MODEL = 'gpt-4o-mini';

/** A UUID derived from text, so retried requests map to the same rows and workflow. */
function stableUuid(text: string): string {
  const h = createHash('sha256').update(text).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function sessionJson(s: Models.ChatSession) {
  return {
    id: s.id,
    project_id: s.projectId,
    title: s.title,
    model: s.model,
    params: s.params,
    created_by: s.createdBy,
    created_at: s.createdAt.toISOString(),
    updated_at: s.updatedAt.toISOString(),
  };
}

function runJson(r: Models.WorkflowRun) {
  return {
    id: r.id,
    kind: r.kind,
    status: r.status,
    trace_id: r.traceId,
    temporal_workflow_id: r.temporalWorkflowId,
    cost_micros: r.costMicros.toString(),
    input: r.input,
    output: r.output,
    error: r.error,
    created_at: r.createdAt.toISOString(),
    started_at: r.startedAt?.toISOString() ?? null,
    finished_at: r.finishedAt?.toISOString() ?? null,
  };
}

function actorRef(ctx: RequestContext): { type: 'user' | 'api_key'; id: string } {
  const actor = ctx.actorOrThrow();
  return actor.type === 'user' ? { type: 'user', id: actor.userId } : { type: 'api_key', id: actor.keyId };
}

async function sessionOf(ctx: RequestContext, minimumRole: 'viewer' | 'member' = 'viewer') {
  // Side by side: the session is only used once access to its project is granted.
  const [access, session] = await Promise.allSettled([
    projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, minimumRole, { what: 'chat' }),
    ctx.deps.prisma.chatSession.findFirst({ where: { id: ctx.params.sessionId!, projectId: ctx.params.projectId!, archivedAt: null } }),
  ]);
  if (access.status === 'rejected') throw access.reason;
  const { project } = access.value;
  if (session.status === 'rejected') throw session.reason;
  if (!session.value) throw new AppError('not_found', 'Chat session not found');
  return { project, session: session.value };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * sessionOf for the message hot path: project, the caller's role and the session in one
 * statement (projectAccess and the session read take three Prisma queries), with the same answers:
 * another tenant's project or session is 404, a role below member is 403.
 */
async function sendContextOf(ctx: RequestContext) {
  const actor = ctx.actorOrThrow();
  const projectId = ctx.params.projectId!;
  const sessionId = ctx.params.sessionId!;
  const notFound = (what: string) => new AppError('not_found', `${what} not found`);
  if (!UUID.test(projectId)) throw notFound('Project');
  if (!UUID.test(sessionId)) throw notFound('Chat session');
  const { rows } = await ctx.deps.pool.query<{ org_id: string; archived: boolean; role: Role | null; session_id: string | null; model: string | null; params: unknown }>(
    `SELECT p.org_id, p.archived_at IS NOT NULL AS archived, m.role, s.id AS session_id, s.model, s.params
       FROM projects p
       LEFT JOIN memberships m ON m.org_id = p.org_id AND m.user_id = $2::uuid
       LEFT JOIN chat_sessions s ON s.id = $3::uuid AND s.project_id = p.id AND s.archived_at IS NULL
      WHERE p.id = $1::uuid`,
    [projectId, actor.type === 'user' ? actor.userId : null, sessionId],
  );
  const row = rows[0];
  if (!row || row.archived) throw notFound('Project');
  if (actor.type === 'api_key') {
    if (actor.projectId !== projectId) throw notFound('Project');
  } else {
    if (!row.role) throw notFound('Project');
    requireRole(row.role, 'member', 'chat');
  }
  if (!row.session_id) throw notFound('Chat session');
  return { project: { id: projectId, orgId: row.org_id }, session: { id: row.session_id, model: row.model, params: row.params } };
}

async function runOf(ctx: RequestContext) {
  const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
  const run = await ctx.deps.prisma.workflowRun.findFirst({ where: { id: ctx.params.runId!, projectId: project.id, kind: 'chat' } });
  if (!run) throw new AppError('not_found', 'Run not found');
  return { project, run };
}

/** Knowledge bases a session answers from must be live knowledge bases of its project. */
async function checkKnowledgeBases(ctx: RequestContext, projectId: string, params: { knowledge_base_ids?: string[] } | undefined) {
  const ids = params?.knowledge_base_ids ?? [];
  if (ids.length === 0) return;
  const found = await ctx.deps.prisma.knowledgeBase.count({ where: { id: { in: ids }, projectId, archivedAt: null } });
  if (found !== ids.length) throw new AppError('validation_failed', 'params.knowledge_base_ids names a knowledge base that is not in this project');
}

async function chatModel(ctx: RequestContext, name: string) {
  const model = await ctx.deps.catalog.get(name);
  if (!model || model.kind !== 'chat') throw new AppError('not_found', `The model "${name}" does not exist or is not a chat model`);
  return model;
}

/** The final event of a run whose stream is gone (expired), from the database. */
function finalEventFor(ctx: RequestContext, runId: string) {
  return async () => {
    const run = await ctx.deps.prisma.workflowRun.findUnique({ where: { id: runId } });
    if (!run || run.status === 'queued' || run.status === 'running') return null;
    if (run.status === 'succeeded') return { type: 'message.completed', data: { ...(run.output as object), cost_micros: run.costMicros.toString() } };
    return { type: run.status === 'cancelled' ? 'run.cancelled' : 'run.failed', data: (run.error as Record<string, unknown>) ?? {} };
  };
}

export function chatRoutes(api: ApiRouter): void {
  api.handle('createChatSession', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'member', { what: 'chat' });
    if (ctx.body.model) await chatModel(ctx, ctx.body.model);
    await checkKnowledgeBases(ctx, project.id, ctx.body.params);
    const actor = actorRef(ctx);
    const session = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = await tx.chatSession.create({
        data: {
          orgId: project.orgId,
          projectId: project.id,
          title: ctx.body.title ?? 'New chat',
          model: ctx.body.model ?? null,
          params: (ctx.body.params ?? {}) as Prisma.InputJsonValue,
          createdBy: `${actor.type}:${actor.id}`,
        },
      });
      await ctx.audit({ action: 'chat.session.create', resourceType: 'chat_session', resourceId: row.id, orgId: project.orgId, projectId: project.id }, tx);
      return row;
    });
    return { status: 201, body: sessionJson(session) };
  });

  api.handle('listChatSessions', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
    const limit: number = ctx.query.limit ?? 20;
    let cursor: Prisma.ChatSessionWhereInput = {};
    if (ctx.query.starting_after) {
      const anchor = await ctx.deps.prisma.chatSession.findFirst({ where: { id: ctx.query.starting_after, projectId: project.id } });
      if (!anchor) throw new AppError('validation_failed', 'starting_after does not name a session of this project');
      cursor = { OR: [{ updatedAt: { lt: anchor.updatedAt } }, { updatedAt: anchor.updatedAt, id: { lt: anchor.id } }] };
    }
    const rows = await ctx.deps.prisma.chatSession.findMany({
      where: { AND: [{ projectId: project.id, archivedAt: null }, cursor] },
      orderBy: [{ updatedAt: 'desc' }, { id: 'desc' }],
      take: limit + 1,
    });
    return { body: { data: rows.slice(0, limit).map(sessionJson), has_more: rows.length > limit } };
  });

  api.handle('getChatSession', async (ctx) => {
    const { session } = await sessionOf(ctx);
    return { body: sessionJson(session) };
  });

  api.handle('updateChatSession', async (ctx) => {
    const { project, session } = await sessionOf(ctx, 'member');
    if (ctx.body.model) await chatModel(ctx, ctx.body.model);
    await checkKnowledgeBases(ctx, project.id, ctx.body.params);
    const updated = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = await tx.chatSession.update({
        where: { id: session.id },
        data: {
          ...(ctx.body.title ? { title: ctx.body.title } : {}),
          ...(ctx.body.model ? { model: ctx.body.model } : {}),
          ...(ctx.body.params ? { params: ctx.body.params as Prisma.InputJsonValue } : {}),
        },
      });
      await ctx.audit({ action: 'chat.session.update', resourceType: 'chat_session', resourceId: session.id, orgId: project.orgId, projectId: project.id }, tx);
      return row;
    });
    return { body: sessionJson(updated) };
  });

  api.handle('deleteChatSession', async (ctx) => {
    const { project, session } = await sessionOf(ctx, 'member');
    await ctx.deps.prisma.$transaction(async (tx) => {
      await tx.chatSession.update({ where: { id: session.id }, data: { archivedAt: new Date() } });
      await ctx.audit({ action: 'chat.session.delete', resourceType: 'chat_session', resourceId: session.id, orgId: project.orgId, projectId: project.id }, tx);
    });
    return { status: 204 };
  });

  api.handle('listChatMessages', async (ctx) => {
    const { session } = await sessionOf(ctx);
    const limit: number = ctx.query.limit ?? 50;
    let cursor: Prisma.ChatMessageWhereInput = {};
    if (ctx.query.starting_after) {
      const anchor = await ctx.deps.prisma.chatMessage.findFirst({ where: { id: ctx.query.starting_after, sessionId: session.id } });
      if (!anchor) throw new AppError('validation_failed', 'starting_after does not name a message of this session');
      cursor = { OR: [{ createdAt: { gt: anchor.createdAt } }, { createdAt: anchor.createdAt, id: { gt: anchor.id } }] };
    }
    const rows = await ctx.deps.prisma.chatMessage.findMany({
      where: { AND: [{ sessionId: session.id }, cursor] },
      orderBy: [{ createdAt: 'asc' }, { id: 'asc' }],
      take: limit + 1,
    });
    const page = rows.slice(0, limit);
    const runIds = page.filter((m) => m.role === 'assistant' && m.runId).map((m) => m.runId!);
    const usage = runIds.length
      ? await ctx.deps.prisma.usageRecord.findMany({ where: { runId: { in: runIds }, status: 'success' }, select: { runId: true, costMicros: true } })
      : [];
    // A run may have several usage rows (the reply, and the query embedding of its retrieval).
    const costByRun = new Map<string | null, bigint>();
    for (const u of usage) costByRun.set(u.runId, (costByRun.get(u.runId) ?? 0n) + u.costMicros);
    return {
      body: {
        data: page.map((m) => ({
          id: m.id,
          role: m.role,
          content: m.content,
          model: m.model,
          trace_id: m.traceId,
          run_id: m.runId,
          usage: m.role === 'assistant' ? { prompt_tokens: m.promptTokens, completion_tokens: m.completionTokens, cost_micros: (costByRun.get(m.runId) ?? 0n).toString() } : null,
          citations: m.citations ?? null,
          created_at: m.createdAt.toISOString(),
        })),
        has_more: rows.length > limit,
      },
    };
  });

  api.handle('sendChatMessage', async (ctx) => {
    const { project, session } = await sendContextOf(ctx);
    const { deps } = ctx;
    const params = (session.params ?? {}) as { temperature?: number; max_tokens?: number };
    const model = await chatModel(ctx, ctx.body.model ?? session.model ?? DEFAULT_CHAT_MODEL);
    const maxTokens: number | undefined = ctx.body.max_tokens ?? params.max_tokens;
    if (ctx.policy) {
      const spent = ctx.policy.monthlyBudgetMicros !== null ? await ctx.services.policy.monthToDateSpend(project.id) : 0n;
      assertPolicyAllows(ctx.policy, { model: model.name, maxTokens }, spent);
    }
    const actor = actorRef(ctx);
    // Same Idempotency-Key → same message, run and workflow: a retried POST attaches to the run.
    const idempotencyKey = ctx.req.header('idempotency-key');
    const userMessageId = idempotencyKey ? stableUuid(`chat-message:${session.id}:${actor.id}:${idempotencyKey}`) : randomUUID();
    const runId = stableUuid(`chat-run:${userMessageId}`);
    const assistantMessageId = stableUuid(`chat-reply:${userMessageId}`);
    const workflowId = chatWorkflowId(userMessageId);
    const input: ChatRunInput = {
      runId,
      traceId: ctx.traceId,
      orgId: project.orgId,
      projectId: project.id,
      sessionId: session.id,
      userMessageId,
      assistantMessageId,
      model: model.name,
      maxTokens: maxTokens ?? null,
      temperature: ctx.body.temperature ?? params.temperature ?? null,
      actor,
    };

    // The user message, its run, the session's title/updated_at and the audit row in one statement
    // (one round trip, atomic); a retried POST (same ids) writes nothing and gets the first trace id.
    const auditActor = ctx.auditInfo.actor;
    const { rows } = await deps.pool.query<{ created: boolean; trace_id: string }>(
      `WITH run AS (
         INSERT INTO workflow_runs (id, org_id, project_id, kind, temporal_workflow_id, trace_id, actor_type, actor_id, input)
         VALUES ($1::uuid, $2::uuid, $3::uuid, 'chat', $4, $5, $6::"ActorType", $7, $8::jsonb)
         ON CONFLICT (id) DO NOTHING
         RETURNING id
       ), message AS (
         INSERT INTO chat_messages (id, session_id, org_id, project_id, role, content, model, trace_id, run_id)
         SELECT $9::uuid, $10::uuid, $2::uuid, $3::uuid, 'user', $11, $12, $5, $1 FROM run
       ), session AS (
         UPDATE chat_sessions SET title = CASE WHEN title = 'New chat' THEN $13 ELSE title END, updated_at = now()
         WHERE id = $10::uuid AND EXISTS (SELECT 1 FROM run)
       ), audit AS (
         INSERT INTO audit_logs (trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, project_id, result, ip, user_agent, details)
         SELECT $5, $14::"ActorType", $15, 'chat.message.create', 'chat_session', $10, $2::uuid, $3::uuid, 'success'::"AuditResult", $16, $17, $18::jsonb FROM run
       )
       SELECT true AS created, $5 AS trace_id FROM run
       UNION ALL
       SELECT false, trace_id FROM workflow_runs WHERE id = $1::uuid AND NOT EXISTS (SELECT 1 FROM run)`,
      [
        runId,
        project.orgId,
        project.id,
        workflowId,
        ctx.traceId,
        actor.type,
        actor.id,
        JSON.stringify({ session_id: session.id, user_message_id: userMessageId, model: model.name, max_tokens: maxTokens ?? null }),
        userMessageId,
        session.id,
        ctx.body.content,
        model.name,
        ctx.body.content.slice(0, 60),
        auditActor ? auditActor.type : 'anonymous',
        auditActor ? (auditActor.type === 'user' ? auditActor.userId : auditActor.keyId) : null,
        ctx.auditInfo.ip ?? null,
        ctx.auditInfo.userAgent?.slice(0, 500) ?? null,
        JSON.stringify({ run_id: runId, model: model.name }),
      ],
    );
    const written = rows[0];
    if (!written) throw new AppError('conflict', 'This message could not be stored; try again');
    if (written.created) ctx.auditedByDomain();
    else {
      await ctx.audit({ action: 'chat.message.create', resourceType: 'chat_session', resourceId: session.id, orgId: project.orgId, projectId: project.id, details: { run_id: runId, replay: true } });
    }
    const traceId = written.trace_id;
    // A run this request created and started has no events yet and cannot have ended without
    // them: the relay need not ask the database first.
    let startedHere = written.created;
    try {
      await deps.temporal.client.workflow.start(CHAT_WORKFLOW_TYPE, {
        taskQueue: deps.config.temporal.taskQueue,
        workflowId,
        args: [{ ...input, traceId }],
        // The reply streams inside a local activity, which keeps its workflow task alive with a
        // heartbeat at 80% of this timeout: with the default 2 s a cancel reaches the call within
        // ~1.6 s, and a run whose worker died is picked up again after 2 s.
        workflowTaskTimeout: deps.config.temporal.chatWorkflowTaskTimeoutMs,
        // A retried POST after the run finished attaches to it (replays its events); it never
        // starts a second run, which would call the model again.
        workflowIdReusePolicy: 'REJECT_DUPLICATE',
        searchAttributes: {
          DsOrgId: [project.orgId],
          DsProjectId: [project.id],
          DsSessionId: [session.id],
          DsTraceId: [traceId],
          DsRunKind: ['chat'],
        },
      });
      // The Temporal run id is recorded by the worker when it marks the run running (one commit
      // per message fewer here).
    } catch (error) {
      startedHere = false;
      if (!(error instanceof WorkflowExecutionAlreadyStartedError)) {
        await deps.prisma.workflowRun.updateMany({ where: { id: runId, status: 'queued' }, data: { status: 'failed', error: { code: 'service_unavailable', message: 'could not start the run' } } });
        throw new AppError('service_unavailable', 'The workflow engine is unavailable; try again', { cause: error });
      }
    }

    openSse(ctx.res);
    writeSse(ctx.res, 'run', { run_id: runId, user_message_id: userMessageId, assistant_message_id: assistantMessageId, trace_id: traceId, workflow_id: workflowId, model: model.name });
    await relayRunEvents(deps.redis, ctx.res, runId, '0', finalEventFor(ctx, runId), { justStarted: startedHere });
  });

  api.handle('getChatRun', async (ctx) => {
    const { run } = await runOf(ctx);
    return { body: runJson(run) };
  });

  api.handle('streamChatRunEvents', async (ctx) => {
    const { run } = await runOf(ctx);
    const lastEventId = ctx.req.header('last-event-id');
    if (lastEventId !== undefined && !/^\d+-\d+$/.test(lastEventId)) throw new AppError('validation_failed', 'Last-Event-ID must be an event id from this stream');
    openSse(ctx.res);
    await relayRunEvents(ctx.deps.redis, ctx.res, run.id, lastEventId ?? '0', finalEventFor(ctx, run.id));
  });

  api.handle('cancelChatRun', async (ctx) => {
    const { project, run } = await runOf(ctx);
    if (run.status !== 'queued' && run.status !== 'running') throw new AppError('conflict', `The run already ${run.status}`);
    await ctx.deps.temporal.client.workflow.getHandle(run.temporalWorkflowId).cancel();
    await ctx.audit({ action: 'chat.run.cancel', resourceType: 'workflow_run', resourceId: run.id, orgId: project.orgId, projectId: project.id });
    return { status: 202, body: { ...runJson(run), cancel_requested: true } };
  });
}
