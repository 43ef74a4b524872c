// Request-independent services the router and handlers share, built once per app.
import type { GatewayDeps } from '../deps.ts';
import { IdempotencyService } from '../services/idempotency.ts';
import { PolicyService } from '../services/policy.ts';
import { RateLimiter } from '../services/rate-limit.ts';
import { WalletHeadroom } from '@deepspace/core/billing/wallet-headroom';
import { HOLD_TTL_MARGIN_MS, HoldReserve } from '../services/hold-reserve.ts';

export interface GatewayServices {
  rateLimiter: RateLimiter;
  policy: PolicyService;
  idempotency: IdempotencyService;
  /** Each org's available balance as this process last saw it (speculative /v1 upstream start). */
  walletHeadroom: WalletHeadroom;
  /** Holds taken ahead for busy (API key, model) pairs (V1_HOLD_RESERVE). */
  holdReserve: HoldReserve;
  /** The organization of a project (immutable, so cached in memory); undefined when it doesn't exist. */
  projectOrg(projectId: string): Promise<string | undefined>;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PROJECT_ORG_CACHE_MAX = 10_000;

export function createServices(deps: GatewayDeps): GatewayServices {
  const projectOrgCache = new Map<string, string>();
  const walletHeadroom = new WalletHeadroom({ factor: deps.config.v1.speculativeHeadroom });
  return {
    rateLimiter: new RateLimiter(deps.redis),
    policy: new PolicyService(deps.prisma, deps.redis),
    idempotency: new IdempotencyService(deps.prisma),
    walletHeadroom,
    holdReserve: new HoldReserve({
      ledger: deps.ledger,
      headroom: walletHeadroom,
      size: deps.config.v1.holdReserve,
      callTtlMs: deps.config.upstream.timeoutMs + HOLD_TTL_MARGIN_MS,
      log: deps.logger,
    }),
    async projectOrg(projectId) {
      if (!UUID.test(projectId)) return undefined;
      const cached = projectOrgCache.get(projectId);
      if (cached) return cached;
      const project = await deps.prisma.project.findUnique({ where: { id: projectId }, select: { orgId: true } });
      if (!project) return undefined;
      if (projectOrgCache.size >= PROJECT_ORG_CACHE_MAX) projectOrgCache.clear();
      projectOrgCache.set(projectId, project.orgId);
      return project.orgId;
    },
  };
}
