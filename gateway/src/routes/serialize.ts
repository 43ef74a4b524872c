// Public JSON shapes (snake_case, ISO times, money as decimal strings of micros).
import type { Models } from '@deepspace/core';

const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);

export function userJson(u: Pick<Models.User, 'id' | 'email' | 'name' | 'isPlatformAdmin' | 'createdAt'>) {
  return { id: u.id, email: u.email, name: u.name, is_platform_admin: u.isPlatformAdmin, created_at: iso(u.createdAt) };
}

export function orgJson(o: Pick<Models.Organization, 'id' | 'name' | 'slug' | 'createdAt'>, role?: string) {
  return { id: o.id, name: o.name, slug: o.slug, created_at: iso(o.createdAt), ...(role ? { role } : {}) };
}

export function projectJson(p: Pick<Models.Project, 'id' | 'orgId' | 'name' | 'slug' | 'description' | 'createdAt' | 'archivedAt'>) {
  return {
    id: p.id,
    org_id: p.orgId,
    name: p.name,
    slug: p.slug,
    description: p.description,
    created_at: iso(p.createdAt),
    archived_at: iso(p.archivedAt),
  };
}

export function apiKeyJson(k: Models.ApiKey) {
  return {
    id: k.id,
    project_id: k.projectId,
    name: k.name,
    prefix: k.prefix,
    scopes: k.scopes,
    created_at: iso(k.createdAt),
    expires_at: iso(k.expiresAt),
    revoked_at: iso(k.revokedAt),
    last_used_at: iso(k.lastUsedAt),
  };
}

export function invitationJson(i: Models.Invitation) {
  return {
    id: i.id,
    org_id: i.orgId,
    email: i.email,
    role: i.role,
    created_at: iso(i.createdAt),
    expires_at: iso(i.expiresAt),
    accepted_at: iso(i.acceptedAt),
    revoked_at: iso(i.revokedAt),
  };
}

export function auditJson(a: Models.AuditLog) {
  return {
    id: a.id.toString(),
    occurred_at: iso(a.occurredAt),
    trace_id: a.traceId,
    actor_type: a.actorType,
    actor_id: a.actorId,
    action: a.action,
    resource_type: a.resourceType,
    resource_id: a.resourceId,
    org_id: a.orgId,
    project_id: a.projectId,
    result: a.result,
    ip: a.ip,
    user_agent: a.userAgent,
    details: a.details,
  };
}

export function usageJson(u: Models.UsageRecord) {
  return {
    id: u.id,
    trace_id: u.traceId,
    project_id: u.projectId,
    model: u.modelName,
    upstream_model: u.upstreamModel,
    prompt_tokens: u.promptTokens,
    completion_tokens: u.completionTokens,
    cost_micros: u.costMicros.toString(),
    latency_ms: u.latencyMs,
    status: u.status,
    error_code: u.errorCode,
    api_key_id: u.apiKeyId,
    user_id: u.userId,
    run_id: u.runId,
    step_id: u.stepId,
    created_at: iso(u.createdAt),
  };
}

export function slugify(name: string): string {
  const base = name
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return base || 'org';
}
