// Organization and project rules (allowed models, max tokens per request, monthly budget cap,
// rate limits). Rows live in PostgreSQL; each row is cached in Redis and dropped on change.
// The effective policy of a project is its own non-null rules over the organization's.
import type { PrismaClient, Redis } from '@deepspace/core';
import { AppError } from '@deepspace/core';
import { SingleFlight } from './single-flight.ts';

export interface PolicyRules {
  allowedModels: string[] | null;
  maxTokensPerRequest: number | null;
  monthlyBudgetMicros: bigint | null;
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  maxUploadBytes: bigint | null;
  allowPrivateHttp: boolean | null;
}

/** Uploads larger than this are refused unless a policy says otherwise. */
export const DEFAULT_MAX_UPLOAD_BYTES = 50n * 1024n * 1024n;

export const EMPTY_RULES: PolicyRules = {
  allowedModels: null,
  maxTokensPerRequest: null,
  monthlyBudgetMicros: null,
  requestsPerMinute: null,
  tokensPerMinute: null,
  maxUploadBytes: null,
  allowPrivateHttp: null,
};

const CACHE_TTL_SECONDS = 300;
// Effective policies are read on every project request; this process keeps them briefly too.
// save() clears them here at once; other replicas follow within LOCAL_TTL_MS.
const LOCAL_TTL_MS = 2_000;

interface CachedRow {
  allowedModels: string[] | null;
  maxTokensPerRequest: number | null;
  monthlyBudgetMicros: string | null;
  requestsPerMinute: number | null;
  tokensPerMinute: number | null;
  maxUploadBytes?: string | null;
  allowPrivateHttp?: boolean | null;
}

export class PolicyService {
  private readonly prisma: PrismaClient;
  private readonly redis: Redis;
  private readonly local = new Map<string, { rules: PolicyRules; at: number }>();
  /** Requests that find the local entry expired share its reload. */
  private readonly loads = new SingleFlight<PolicyRules>();
  constructor(prisma: PrismaClient, redis: Redis) {
    this.prisma = prisma;
    this.redis = redis;
  }

  private cacheKey(orgId: string, projectId: string | null) {
    return projectId ? `policy:project:${projectId}` : `policy:org:${orgId}`;
  }

  /** The rules stored for the organization (projectId null) or for one project; null when none. */
  async rules(orgId: string, projectId: string | null): Promise<PolicyRules | null> {
    const key = this.cacheKey(orgId, projectId);
    const cached = await this.redis.get(key).catch(() => null);
    if (cached !== null) {
      const row = JSON.parse(cached) as CachedRow | null;
      return row
        ? {
            ...row,
            monthlyBudgetMicros: row.monthlyBudgetMicros === null ? null : BigInt(row.monthlyBudgetMicros),
            maxUploadBytes: row.maxUploadBytes == null ? null : BigInt(row.maxUploadBytes),
            allowPrivateHttp: row.allowPrivateHttp ?? null,
          }
        : null;
    }
    const row = await this.prisma.policy.findFirst({ where: { orgId, projectId } });
    const rules: PolicyRules | null = row
      ? {
          allowedModels: row.allowedModels.length ? row.allowedModels : null,
          maxTokensPerRequest: row.maxTokensPerRequest,
          monthlyBudgetMicros: row.monthlyBudgetMicros,
          requestsPerMinute: row.requestsPerMinute,
          tokensPerMinute: row.tokensPerMinute,
          maxUploadBytes: row.maxUploadBytes,
          allowPrivateHttp: row.allowPrivateHttp,
        }
      : null;
    const toCache: CachedRow | null = rules
      ? { ...rules, monthlyBudgetMicros: rules.monthlyBudgetMicros?.toString() ?? null, maxUploadBytes: rules.maxUploadBytes?.toString() ?? null }
      : null;
    await this.redis.set(key, JSON.stringify(toCache), 'EX', CACHE_TTL_SECONDS).catch(() => {});
    return rules;
  }

  async effective(orgId: string, projectId: string | null): Promise<PolicyRules> {
    const localKey = `${orgId}:${projectId ?? ''}`;
    const hit = this.local.get(localKey);
    if (hit && Date.now() - hit.at < LOCAL_TTL_MS) return hit.rules;
    const rules = await this.loads.run(localKey, () => this.loadEffective(orgId, projectId));
    if (this.local.size > 10_000) this.local.clear();
    this.local.set(localKey, { rules, at: Date.now() });
    return rules;
  }

  private async loadEffective(orgId: string, projectId: string | null): Promise<PolicyRules> {
    const [org, project] = await Promise.all([this.rules(orgId, null), projectId ? this.rules(orgId, projectId) : null]);
    const merged: PolicyRules = { ...EMPTY_RULES };
    for (const source of [org, project]) {
      if (!source) continue;
      for (const key of Object.keys(merged) as Array<keyof PolicyRules>) {
        if (source[key] !== null) (merged as unknown as Record<string, unknown>)[key] = source[key];
      }
    }
    return merged;
  }

  async save(orgId: string, projectId: string | null, rules: PolicyRules, updatedBy: string | null): Promise<void> {
    const data = {
      allowedModels: rules.allowedModels ?? [],
      maxTokensPerRequest: rules.maxTokensPerRequest,
      monthlyBudgetMicros: rules.monthlyBudgetMicros,
      requestsPerMinute: rules.requestsPerMinute,
      tokensPerMinute: rules.tokensPerMinute,
      maxUploadBytes: rules.maxUploadBytes,
      allowPrivateHttp: rules.allowPrivateHttp,
      updatedBy,
    };
    await this.prisma.$transaction(async (tx) => {
      // One row per (org, project); the partial unique index guards the organization-wide row.
      const existing = await tx.policy.findFirst({ where: { orgId, projectId } });
      if (existing) await tx.policy.update({ where: { id: existing.id }, data });
      else await tx.policy.create({ data: { orgId, projectId, ...data } });
    });
    // Drop the caches only after the commit, so no reader re-caches the old row. Organization
    // rules shape every project's effective policy, so drop all of that organization's entries.
    await this.redis.del(this.cacheKey(orgId, projectId));
    // A reload already running may have read the old row: later callers start their own.
    this.loads.clear();
    for (const key of this.local.keys()) if (key.startsWith(`${orgId}:`)) this.local.delete(key);
  }

  /** Month-to-date spend of a project (UTC calendar month), from usage records. */
  async monthToDateSpend(projectId: string, now = new Date()): Promise<bigint> {
    const monthStart = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
    const result = await this.prisma.usageRecord.aggregate({
      where: { projectId, createdAt: { gte: monthStart } },
      _sum: { costMicros: true },
    });
    return result._sum.costMicros ?? 0n;
  }
}

export interface ModelRequest {
  model: string;
  maxTokens?: number | undefined;
  estimateMicros?: bigint | undefined;
}

/** Rules a model request breaks; empty when allowed. */
export function policyViolations(rules: PolicyRules, request: ModelRequest, spentMicros: bigint): Array<{ rule: string; message: string }> {
  const violations: Array<{ rule: string; message: string }> = [];
  if (rules.allowedModels && rules.allowedModels.length > 0 && !rules.allowedModels.includes(request.model)) {
    violations.push({ rule: 'allowed_models', message: `model "${request.model}" is not allowed by policy` });
  }
  if (rules.maxTokensPerRequest !== null && request.maxTokens !== undefined && request.maxTokens > rules.maxTokensPerRequest) {
    violations.push({
      rule: 'max_tokens_per_request',
      message: `max_tokens ${request.maxTokens} exceeds the policy limit of ${rules.maxTokensPerRequest}`,
    });
  }
  if (rules.monthlyBudgetMicros !== null && spentMicros + (request.estimateMicros ?? 0n) > rules.monthlyBudgetMicros) {
    violations.push({ rule: 'monthly_budget', message: 'the monthly budget cap of this project is reached' });
  }
  return violations;
}

export function assertPolicyAllows(rules: PolicyRules, request: ModelRequest, spentMicros: bigint): void {
  const violations = policyViolations(rules, request, spentMicros);
  if (violations.length) {
    throw new AppError('policy_violation', violations.map((v) => v.message).join('; '), { details: { violations } });
  }
}

export function rulesToJson(rules: PolicyRules) {
  return {
    allowed_models: rules.allowedModels,
    max_tokens_per_request: rules.maxTokensPerRequest,
    monthly_budget_micros: rules.monthlyBudgetMicros?.toString() ?? null,
    requests_per_minute: rules.requestsPerMinute,
    tokens_per_minute: rules.tokensPerMinute,
    max_upload_bytes: rules.maxUploadBytes?.toString() ?? null,
    allow_private_http: rules.allowPrivateHttp,
  };
}
