// Projects, their scoped API keys, policies, usage, and the organization's audit log.
import { AppError, Prisma } from '@deepspace/core';
import { hmacHex, newApiKey } from '../auth/tokens.ts';
import { forgetApiKeys } from '../auth/authenticate.ts';
import type { ApiRouter, RequestContext } from '../http/router.ts';
import { orgAccess, projectAccess } from '../services/access.ts';
import { policyViolations, rulesToJson, type PolicyRules } from '../services/policy.ts';
import { apiKeyJson, auditJson, projectJson, slugify, usageJson } from './serialize.ts';

function rulesFromBody(body: Record<string, unknown>): PolicyRules {
  return {
    allowedModels: (body.allowed_models as string[] | null | undefined) ?? null,
    maxTokensPerRequest: (body.max_tokens_per_request as number | null | undefined) ?? null,
    monthlyBudgetMicros: body.monthly_budget_micros == null ? null : BigInt(body.monthly_budget_micros as string),
    requestsPerMinute: (body.requests_per_minute as number | null | undefined) ?? null,
    tokensPerMinute: (body.tokens_per_minute as number | null | undefined) ?? null,
    maxUploadBytes: body.max_upload_bytes == null ? null : BigInt(body.max_upload_bytes as string),
    allowPrivateHttp: (body.allow_private_http as boolean | null | undefined) ?? null,
  };
}

async function projectPolicyBody(ctx: RequestContext, orgId: string, projectId: string) {
  const [own, effective, spent] = await Promise.all([
    ctx.services.policy.rules(orgId, projectId),
    ctx.services.policy.effective(orgId, projectId),
    ctx.services.policy.monthToDateSpend(projectId),
  ]);
  return { project_id: projectId, rules: own ? rulesToJson(own) : null, effective: rulesToJson(effective), month_to_date_spend_micros: spent.toString() };
}

export function projectRoutes(api: ApiRouter): void {
  api.handle('listProjects', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'viewer');
    const projects = await ctx.deps.prisma.project.findMany({
      where: { orgId: org.id, ...(ctx.query.include_archived ? {} : { archivedAt: null }) },
      orderBy: { createdAt: 'asc' },
    });
    return { body: { data: projects.map(projectJson), has_more: false } };
  });

  api.handle('createProject', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'admin', 'create projects');
    const slug = ctx.body.slug ?? slugify(ctx.body.name);
    try {
      const project = await ctx.deps.prisma.$transaction(async (tx) => {
        const row = await tx.project.create({ data: { orgId: org.id, name: ctx.body.name.trim(), slug, description: ctx.body.description ?? '' } });
        await ctx.audit({ action: 'project.create', resourceType: 'project', resourceId: row.id, orgId: org.id, projectId: row.id }, tx);
        return row;
      });
      return { status: 201, body: projectJson(project) };
    } catch (error) {
      if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === 'P2002') {
        throw new AppError('conflict', `A project with slug "${slug}" already exists in this organization`);
      }
      throw error;
    }
  });

  api.handle('getProject', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer', { allowArchived: true });
    return { body: projectJson(project) };
  });

  api.handle('updateProject', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.user(), ctx.params.projectId!, 'admin', { what: 'edit projects' });
    const updated = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = await tx.project.update({
        where: { id: project.id },
        data: { ...(ctx.body.name ? { name: ctx.body.name.trim() } : {}), ...(ctx.body.description !== undefined ? { description: ctx.body.description } : {}) },
      });
      await ctx.audit({ action: 'project.update', resourceType: 'project', resourceId: project.id, orgId: project.orgId, projectId: project.id }, tx);
      return row;
    });
    return { body: projectJson(updated) };
  });

  api.handle('archiveProject', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.user(), ctx.params.projectId!, 'admin', { what: 'archive projects', allowArchived: true });
    const updated = await ctx.deps.prisma.$transaction(async (tx) => {
      const row = project.archivedAt ? await tx.project.findUniqueOrThrow({ where: { id: project.id } }) : await tx.project.update({ where: { id: project.id }, data: { archivedAt: new Date() } });
      forgetApiKeys(project.id);
      await ctx.audit({ action: 'project.archive', resourceType: 'project', resourceId: project.id, orgId: project.orgId, projectId: project.id }, tx);
      return row;
    });
    return { body: projectJson(updated) };
  });

  api.handle('listApiKeys', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.user(), ctx.params.projectId!, 'member', { what: 'see API keys' });
    const keys = await ctx.deps.prisma.apiKey.findMany({ where: { projectId: project.id }, orderBy: { createdAt: 'desc' } });
    return { body: { data: keys.map(apiKeyJson), has_more: false } };
  });

  api.handle('createApiKey', async (ctx) => {
    const user = ctx.user();
    const { project } = await projectAccess(ctx.deps.prisma, user, ctx.params.projectId!, 'admin', { what: 'create API keys' });
    const expiresAt = ctx.body.expires_at ? new Date(ctx.body.expires_at) : null;
    if (expiresAt && expiresAt <= new Date()) throw new AppError('validation_failed', 'expires_at must be in the future');
    const { key, prefix } = newApiKey();
    const row = await ctx.deps.prisma.$transaction(async (tx) => {
      const created = await tx.apiKey.create({
        data: {
          orgId: project.orgId,
          projectId: project.id,
          name: ctx.body.name.trim(),
          prefix,
          keyHash: hmacHex(ctx.deps.config.secrets.apiKeyPepper, key),
          scopes: ctx.body.scopes,
          createdBy: user.userId,
          expiresAt,
        },
      });
      await ctx.audit(
        { action: 'api_key.create', resourceType: 'api_key', resourceId: created.id, orgId: project.orgId, projectId: project.id, details: { prefix, scopes: ctx.body.scopes } },
        tx,
      );
      return created;
    });
    return { status: 201, body: { ...apiKeyJson(row), secret: key } };
  });

  api.handle('revokeApiKey', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.user(), ctx.params.projectId!, 'admin', { what: 'revoke API keys', allowArchived: true });
    const row = await ctx.deps.prisma.$transaction(async (tx) => {
      const key = await tx.apiKey.findFirst({ where: { id: ctx.params.keyId!, projectId: project.id } });
      if (!key) throw new AppError('not_found', 'API key not found');
      const updated = key.revokedAt ? key : await tx.apiKey.update({ where: { id: key.id }, data: { revokedAt: new Date() } });
      forgetApiKeys(project.id);
      await ctx.audit({ action: 'api_key.revoke', resourceType: 'api_key', resourceId: key.id, orgId: project.orgId, projectId: project.id, details: { prefix: key.prefix } }, tx);
      return updated;
    });
    return { body: apiKeyJson(row) };
  });

  api.handle('getOrgPolicy', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'viewer');
    const rules = await ctx.services.policy.rules(org.id, null);
    return { body: { org_id: org.id, rules: rules ? rulesToJson(rules) : null } };
  });

  api.handle('putOrgPolicy', async (ctx) => {
    const user = ctx.user();
    const { org } = await orgAccess(ctx.deps.prisma, user, ctx.params.orgId!, 'admin', 'change the policy');
    const rules = rulesFromBody(ctx.body);
    await ctx.services.policy.save(org.id, null, rules, user.userId);
    await ctx.audit({ action: 'policy.update', resourceType: 'policy', resourceId: org.id, orgId: org.id, details: rulesToJson(rules) });
    return { body: { org_id: org.id, rules: rulesToJson(rules) } };
  });

  api.handle('getProjectPolicy', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.user(), ctx.params.projectId!, 'viewer');
    return { body: await projectPolicyBody(ctx, project.orgId, project.id) };
  });

  api.handle('putProjectPolicy', async (ctx) => {
    const user = ctx.user();
    const { project } = await projectAccess(ctx.deps.prisma, user, ctx.params.projectId!, 'admin', { what: 'change the policy' });
    const rules = rulesFromBody(ctx.body);
    // Reaching private networks is the organization's decision, not a project admin's.
    if (rules.allowPrivateHttp !== null) throw new AppError('validation_failed', 'allow_private_http is set on the organization policy only');
    await ctx.services.policy.save(project.orgId, project.id, rules, user.userId);
    await ctx.audit({ action: 'policy.update', resourceType: 'policy', resourceId: project.id, orgId: project.orgId, projectId: project.id, details: rulesToJson(rules) });
    return { body: await projectPolicyBody(ctx, project.orgId, project.id) };
  });

  api.handle('checkProjectPolicy', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
    const rules = await ctx.services.policy.effective(project.orgId, project.id);
    const spent = await ctx.services.policy.monthToDateSpend(project.id);
    const violations = policyViolations(rules, { model: ctx.body.model, maxTokens: ctx.body.max_tokens }, spent);
    await ctx.audit({
      action: 'policy.check',
      resourceType: 'policy',
      resourceId: project.id,
      orgId: project.orgId,
      projectId: project.id,
      result: violations.length ? 'denied' : 'success',
      details: { model: ctx.body.model, violations },
    });
    if (violations.length) {
      throw new AppError('policy_violation', violations.map((v) => v.message).join('; '), { details: { violations } });
    }
    return { body: { allowed: true, effective: rulesToJson(rules) } };
  });

  api.handle('listAudit', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'admin', 'read the audit log');
    const q = ctx.query;
    const limit: number = q.limit ?? 20;
    const where: Prisma.AuditLogWhereInput = {
      orgId: org.id,
      ...(q.trace_id ? { traceId: q.trace_id } : {}),
      ...(q.actor_type ? { actorType: q.actor_type } : {}),
      ...(q.actor_id ? { actorId: q.actor_id } : {}),
      ...(q.action ? { action: q.action } : {}),
      ...(q.resource_type ? { resourceType: q.resource_type } : {}),
      ...(q.resource_id ? { resourceId: q.resource_id } : {}),
      ...(q.since || q.until ? { occurredAt: { ...(q.since ? { gte: new Date(q.since) } : {}), ...(q.until ? { lt: new Date(q.until) } : {}) } } : {}),
      ...(q.starting_after ? { id: { lt: BigInt(q.starting_after) } } : {}),
    };
    const rows = await ctx.deps.prisma.auditLog.findMany({ where, orderBy: { id: 'desc' }, take: limit + 1 });
    return { body: { data: rows.slice(0, limit).map(auditJson), has_more: rows.length > limit } };
  });

  api.handle('listProjectUsage', async (ctx) => {
    const { project } = await projectAccess(ctx.deps.prisma, ctx.actorOrThrow(), ctx.params.projectId!, 'viewer');
    const q = ctx.query;
    const limit: number = q.limit ?? 20;
    const base: Prisma.UsageRecordWhereInput = {
      projectId: project.id,
      ...(q.trace_id ? { traceId: q.trace_id } : {}),
      ...(q.since || q.until ? { createdAt: { ...(q.since ? { gte: new Date(q.since) } : {}), ...(q.until ? { lt: new Date(q.until) } : {}) } } : {}),
    };
    let cursorFilter: Prisma.UsageRecordWhereInput = {};
    if (q.starting_after) {
      const anchor = await ctx.deps.prisma.usageRecord.findFirst({ where: { id: q.starting_after, projectId: project.id } });
      if (!anchor) throw new AppError('validation_failed', 'starting_after does not name a usage record of this project');
      cursorFilter = { OR: [{ createdAt: { lt: anchor.createdAt } }, { createdAt: anchor.createdAt, id: { lt: anchor.id } }] };
    }
    const [rows, totals] = await Promise.all([
      ctx.deps.prisma.usageRecord.findMany({ where: { AND: [base, cursorFilter] }, orderBy: [{ createdAt: 'desc' }, { id: 'desc' }], take: limit + 1 }),
      ctx.deps.prisma.usageRecord.aggregate({ where: base, _sum: { costMicros: true, promptTokens: true, completionTokens: true }, _count: true }),
    ]);
    return {
      body: {
        data: rows.slice(0, limit).map(usageJson),
        has_more: rows.length > limit,
        totals: {
          calls: totals._count,
          prompt_tokens: totals._sum.promptTokens ?? 0,
          completion_tokens: totals._sum.completionTokens ?? 0,
          cost_micros: (totals._sum.costMicros ?? 0n).toString(),
        },
      },
    };
  });
}
