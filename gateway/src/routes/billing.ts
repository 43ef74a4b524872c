// Wallet reads for organization owners/admins, and the platform admins' top-ups and adjustments.
// The ledger writes the transaction and its audit row in one database transaction.
import { AppError } from '@deepspace/core';
import type { TransactionView, WalletView } from '@deepspace/core/billing/index';
import type { ApiRouter, RequestContext } from '../http/router.ts';
import { orgAccess } from '../services/access.ts';

function walletJson(w: WalletView) {
  return {
    id: w.id,
    org_id: w.orgId,
    currency: w.currency,
    balance_micros: w.balanceMicros.toString(),
    frozen_micros: w.frozenMicros.toString(),
    available_micros: w.availableMicros.toString(),
    updated_at: w.updatedAt.toISOString(),
  };
}

function transactionJson(t: TransactionView) {
  return {
    id: t.id,
    kind: t.kind,
    amount_micros: t.amountMicros.toString(),
    balance_after_micros: t.balanceAfterMicros.toString(),
    frozen_after_micros: t.frozenAfterMicros.toString(),
    hold_id: t.holdId,
    trace_id: t.traceId,
    run_id: t.runId,
    step_id: t.stepId,
    actor_type: t.actorType,
    actor_id: t.actorId,
    reason: t.reason,
    details: t.details,
    created_at: t.createdAt.toISOString(),
  };
}

function platformAdmin(ctx: RequestContext) {
  const user = ctx.user();
  if (!user.isPlatformAdmin) throw new AppError('forbidden', 'Only platform admins can move money');
  return user;
}

async function existingOrg(ctx: RequestContext): Promise<string> {
  const org = await ctx.deps.prisma.organization.findUnique({ where: { id: ctx.params.orgId! } });
  if (!org || org.deletedAt) throw new AppError('not_found', 'Organization not found');
  return org.id;
}

export function billingRoutes(api: ApiRouter): void {
  api.handle('getWallet', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'viewer');
    return { body: walletJson(await ctx.deps.ledger.getWallet(org.id)) };
  });

  api.handle('listWalletTransactions', async (ctx) => {
    const { org } = await orgAccess(ctx.deps.prisma, ctx.user(), ctx.params.orgId!, 'admin', 'read the ledger');
    const page = await ctx.deps.ledger.listTransactions(org.id, { limit: ctx.query.limit ?? 20, startingAfter: ctx.query.starting_after });
    return { body: { data: page.data.map(transactionJson), has_more: page.has_more } };
  });

  api.handle('adminTopup', async (ctx) => {
    const admin = platformAdmin(ctx);
    const orgId = await existingOrg(ctx);
    const result = await ctx.deps.ledger.topup({
      orgId,
      amountMicros: BigInt(ctx.body.amount_micros),
      idempotencyKey: `admin-topup:${ctx.req.header('idempotency-key') ?? ctx.traceId}`,
      reason: ctx.body.reason,
      actor: { type: 'user', id: admin.userId },
      traceId: ctx.traceId,
    });
    ctx.auditedByDomain();
    return { status: 201, body: { transaction: transactionJson(result.transaction), wallet: walletJson(await ctx.deps.ledger.getWallet(orgId)) } };
  });

  api.handle('adminAdjust', async (ctx) => {
    const admin = platformAdmin(ctx);
    const orgId = await existingOrg(ctx);
    const result = await ctx.deps.ledger.adjust({
      orgId,
      deltaMicros: BigInt(ctx.body.delta_micros),
      idempotencyKey: `admin-adjust:${ctx.req.header('idempotency-key') ?? ctx.traceId}`,
      reason: ctx.body.reason,
      actor: { type: 'user', id: admin.userId },
      traceId: ctx.traceId,
    });
    ctx.auditedByDomain();
    return { status: 201, body: { transaction: transactionJson(result.transaction), wallet: walletJson(await ctx.deps.ledger.getWallet(orgId)) } };
  });
}
