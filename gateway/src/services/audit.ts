// Append-only audit rows. Successful mutations write theirs inside the same database transaction
// as the change; failed or denied mutations get one written by the router before it answers.
import type { PrismaClient, Prisma } from '@deepspace/core';
import type { Actor } from '../auth/actor.ts';

export interface AuditEntry {
  action: string;
  resourceType: string;
  resourceId?: string | null;
  orgId?: string | null;
  projectId?: string | null;
  result?: 'success' | 'failure' | 'denied';
  details?: Record<string, unknown>;
}

export interface AuditRequestInfo {
  traceId: string;
  actor: Actor | undefined;
  ip: string | undefined;
  userAgent: string | undefined;
}

type Writer = Pick<PrismaClient, 'auditLog'> | Prisma.TransactionClient;

export async function writeAudit(db: Writer, request: AuditRequestInfo, entry: AuditEntry): Promise<void> {
  const actor = request.actor;
  await db.auditLog.create({
    data: {
      traceId: request.traceId,
      actorType: actor ? actor.type : 'anonymous',
      actorId: actor ? (actor.type === 'user' ? actor.userId : actor.keyId) : null,
      action: entry.action,
      resourceType: entry.resourceType,
      resourceId: entry.resourceId ?? null,
      orgId: entry.orgId ?? (actor?.type === 'api_key' ? actor.orgId : null),
      projectId: entry.projectId ?? (actor?.type === 'api_key' ? actor.projectId : null),
      result: entry.result ?? 'success',
      ip: request.ip ?? null,
      userAgent: request.userAgent?.slice(0, 500) ?? null,
      details: (entry.details ?? {}) as Prisma.InputJsonValue,
    },
  });
}

/**
 * The same row through the ledger's group committer (one plain INSERT): on the hot /v1 path it
 * shares the commit of concurrent ledger writes instead of paying its own.
 */
export async function writeAuditGrouped(
  committer: { query(sql: string, params: unknown[]): Promise<unknown> },
  request: AuditRequestInfo,
  entry: AuditEntry,
): Promise<void> {
  const actor = request.actor;
  await committer.query(
    `INSERT INTO audit_logs (trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, project_id, result, ip, user_agent, details)
     VALUES ($1, $2::"ActorType", $3, $4, $5, $6, $7::uuid, $8::uuid, $9::"AuditResult", $10, $11, $12::jsonb)`,
    [
      request.traceId,
      actor ? actor.type : 'anonymous',
      actor ? (actor.type === 'user' ? actor.userId : actor.keyId) : null,
      entry.action,
      entry.resourceType,
      entry.resourceId ?? null,
      entry.orgId ?? (actor?.type === 'api_key' ? actor.orgId : null),
      entry.projectId ?? (actor?.type === 'api_key' ? actor.projectId : null),
      entry.result ?? 'success',
      request.ip ?? null,
      request.userAgent?.slice(0, 500) ?? null,
      JSON.stringify(entry.details ?? {}),
    ],
  );
}
