// Append-only audit rows. Successful mutations write theirs inside the same database transaction
// as the change; failed or denied mutations get one written by the router before it answers.
import type { PrismaClient, Prisma } from '@deepspace/core';
import type { SettlementAudit } from '@deepspace/core/billing/index';
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
 * The same row as a ledger settlement's audit row: on the /v1 path the capture (or release) writes
 * it in its own statement, so money, usage and audit commit together.
 */
export function settlementAudit(request: AuditRequestInfo, entry: AuditEntry): SettlementAudit {
  const actor = request.actor;
  return {
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
    details: entry.details ?? {},
  };
}
