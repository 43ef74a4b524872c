// Demo data for `npm start`: one organization, project, platform-admin user, funded wallet,
// models and prices. Idempotent: a second run finds every row and changes nothing.
import type { PrismaClient } from './generated/prisma/client.ts';
import { DEFAULT_CATALOG } from './catalog.ts';
import { hashPassword } from './passwords.ts';

export const DEMO = {
  orgSlug: 'demo-lab',
  orgName: 'Demo Lab',
  projectSlug: 'demo',
  projectName: 'Demo project',
  adminEmail: 'admin@deepspace.local',
  adminPassword: 'deepspace-demo',
  adminName: 'Demo Admin',
  initialCreditMicros: 100_000_000n, // 100.00 USD
} as const;

// Prices seeded at the epoch so every call is priced; admins add newer rows later.
const SEED_PRICE_EFFECTIVE_FROM = new Date('2026-01-01T00:00:00Z');

export interface SeedResult {
  orgId: string;
  projectId: string;
  userId: string;
  walletId: string;
  created: string[];
}

export async function seedDemo(prisma: PrismaClient, options: { simulated: boolean }): Promise<SeedResult> {
  const created: string[] = [];

  let user = await prisma.user.findUnique({ where: { email: DEMO.adminEmail } });
  if (!user) {
    user = await prisma.user.upsert({
      where: { email: DEMO.adminEmail },
      update: {},
      create: {
        email: DEMO.adminEmail,
        name: DEMO.adminName,
        passwordHash: await hashPassword(DEMO.adminPassword),
        isPlatformAdmin: true,
      },
    });
    created.push('user');
  }

  let org = await prisma.organization.findUnique({ where: { slug: DEMO.orgSlug } });
  if (!org) {
    org = await prisma.organization.upsert({
      where: { slug: DEMO.orgSlug },
      update: {},
      create: { slug: DEMO.orgSlug, name: DEMO.orgName },
    });
    created.push('organization');
  }

  await prisma.membership.upsert({
    where: { orgId_userId: { orgId: org.id, userId: user.id } },
    update: {},
    create: { orgId: org.id, userId: user.id, role: 'owner' },
  });

  let project = await prisma.project.findUnique({ where: { orgId_slug: { orgId: org.id, slug: DEMO.projectSlug } } });
  if (!project) {
    project = await prisma.project.upsert({
      where: { orgId_slug: { orgId: org.id, slug: DEMO.projectSlug } },
      update: {},
      create: { orgId: org.id, slug: DEMO.projectSlug, name: DEMO.projectName },
    });
    created.push('project');
  }

  const wallet = await prisma.wallet.upsert({ where: { orgId: org.id }, update: {}, create: { orgId: org.id } });
  // The opening credit is a ledger top-up keyed by idempotency key, so it lands exactly once.
  const topupKey = `seed:demo-credit:${org.id}`;
  await prisma.$transaction(async (tx) => {
    const exists = await tx.walletTransaction.findUnique({ where: { idempotencyKey: topupKey } });
    if (exists) return;
    await tx.$queryRaw`SELECT id FROM wallets WHERE id = ${wallet.id}::uuid FOR UPDATE`;
    const updated = await tx.wallet.update({
      where: { id: wallet.id },
      data: { balanceMicros: { increment: DEMO.initialCreditMicros } },
    });
    await tx.walletTransaction.create({
      data: {
        walletId: wallet.id,
        kind: 'topup',
        amountMicros: DEMO.initialCreditMicros,
        balanceAfterMicros: updated.balanceMicros,
        frozenAfterMicros: updated.frozenMicros,
        idempotencyKey: topupKey,
        actorType: 'system',
        reason: 'demo opening credit',
      },
    });
    created.push('wallet credit');
  });

  created.push(...(await seedCatalog(prisma, options)));

  return { orgId: org.id, projectId: project.id, userId: user.id, walletId: wallet.id, created };
}

/** The default models and their prices (idempotent); returns what it created. */
export async function seedCatalog(prisma: PrismaClient, options: { simulated: boolean }): Promise<string[]> {
  const created: string[] = [];
  for (const entry of DEFAULT_CATALOG) {
    const upstreamModel = options.simulated ? entry.simulatorModel : entry.upstreamModel;
    const model = await prisma.model.upsert({
      where: { name: entry.name },
      update: { upstreamModel, isSimulated: options.simulated },
      create: {
        name: entry.name,
        displayName: entry.displayName,
        kind: entry.kind,
        upstreamModel,
        isSimulated: options.simulated,
        contextWindow: entry.contextWindow,
        maxOutputTokens: entry.maxOutputTokens,
      },
    });
    const price = await prisma.modelPrice.findUnique({
      where: { modelId_effectiveFrom: { modelId: model.id, effectiveFrom: SEED_PRICE_EFFECTIVE_FROM } },
    });
    if (!price) {
      await prisma.modelPrice.create({
        data: {
          modelId: model.id,
          inputMicrosPerMillion: entry.inputMicrosPerMillion,
          outputMicrosPerMillion: entry.outputMicrosPerMillion,
          effectiveFrom: SEED_PRICE_EFFECTIVE_FROM,
        },
      });
      created.push(`price ${entry.name}`);
    }
  }

  return created;
}
