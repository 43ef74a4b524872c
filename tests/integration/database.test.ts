import { cp, mkdtemp, appendFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createPrisma, DEFAULT_CATALOG, DEMO, migrate, Prisma, seedDemo, type PrismaClient } from '@deepspace/core';
import { MIGRATIONS_DIR } from '../../scripts/lib/paths.ts';

const databaseUrl = process.env.DATABASE_URL!;
let prisma: PrismaClient;
let sql: pg.Client;

beforeAll(async () => {
  prisma = createPrisma(databaseUrl, { max: 3 });
  sql = new pg.Client({ connectionString: databaseUrl });
  await sql.connect();
});
afterAll(async () => {
  await prisma.$disconnect();
  await sql.end();
});

describe('migrations', () => {
  it('are recorded in Prisma’s _prisma_migrations table, and a second run applies nothing', async () => {
    const { rows } = await sql.query('SELECT migration_name, checksum, finished_at FROM _prisma_migrations ORDER BY migration_name');
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.every((r) => r.finished_at !== null && /^[0-9a-f]{64}$/.test(r.checksum))).toBe(true);
    const again = await migrate(databaseUrl, MIGRATIONS_DIR);
    expect(again.applied).toEqual([]);
    expect(again.alreadyApplied).toHaveLength(rows.length);
  });

  it('refuse a migration that was edited after it was applied', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'ds-migrations-'));
    try {
      await cp(MIGRATIONS_DIR, dir, { recursive: true });
      const [first] = (await sql.query('SELECT migration_name FROM _prisma_migrations ORDER BY migration_name LIMIT 1')).rows;
      await appendFile(path.join(dir, first.migration_name, 'migration.sql'), '\n-- edited\n');
      await expect(migrate(databaseUrl, dir)).rejects.toThrow(/was edited after it was applied/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('match the Prisma schema: every model reads from its table and no table lacks a model', async () => {
    const models = Object.values(Prisma.ModelName);
    for (const model of models) {
      const delegate = (prisma as unknown as Record<string, { findFirst(): Promise<unknown> }>)[model[0]!.toLowerCase() + model.slice(1)];
      // Prisma selects every scalar column by name, so a missing table or column fails here.
      await delegate!.findFirst();
    }
    const { rows } = await sql.query(
      `SELECT count(*)::int AS n FROM information_schema.tables
       WHERE table_schema = 'public' AND table_name <> '_prisma_migrations'`,
    );
    expect(rows[0].n).toBe(models.length);
  });
});

describe('database guarantees', () => {
  it('the audit log is append-only', async () => {
    const row = await prisma.auditLog.create({
      data: { traceId: 'a'.repeat(32), actorType: 'system', action: 'test.append_only', resourceType: 'test', result: 'success' },
    });
    await expect(sql.query('UPDATE audit_logs SET action = $1 WHERE id = $2', ['tampered', row.id])).rejects.toThrow(/append-only/);
    await expect(sql.query('DELETE FROM audit_logs WHERE id = $1', [row.id])).rejects.toThrow(/append-only/);
  });

  it('a wallet can never hold a negative balance or freeze more than it has', async () => {
    const org = await prisma.organization.create({ data: { name: 'Constraint Org', slug: `constraint-${Date.now()}` } });
    // Created empty: money only enters a wallet through the ledger (the run's final reconcile checks it).
    const wallet = await prisma.wallet.create({ data: { orgId: org.id } });
    await expect(sql.query('UPDATE wallets SET balance_micros = -1 WHERE id = $1', [wallet.id])).rejects.toThrow(/wallets_balance_non_negative/);
    await expect(sql.query('UPDATE wallets SET frozen_micros = 1 WHERE id = $1', [wallet.id])).rejects.toThrow(/wallets_frozen_within_balance/);
  });
});

describe('demo seed', () => {
  it('creates the demo tenant once; a second run adds no rows', async () => {
    const first = await seedDemo(prisma, { simulated: true });
    expect(first.created).toEqual(expect.arrayContaining(['user', 'organization', 'project', 'wallet credit']));
    // Scoped to the seed's own rows: other suites write to the same database concurrently.
    const catalogNames = DEFAULT_CATALOG.map((m) => m.name);
    const counts = async () => ({
      users: await prisma.user.count({ where: { email: DEMO.adminEmail } }),
      orgs: await prisma.organization.count({ where: { slug: DEMO.orgSlug } }),
      projects: await prisma.project.count({ where: { orgId: first.orgId } }),
      memberships: await prisma.membership.count({ where: { orgId: first.orgId } }),
      models: await prisma.model.count({ where: { name: { in: catalogNames } } }),
      prices: await prisma.modelPrice.count({ where: { model: { name: { in: catalogNames } } } }),
      transactions: await prisma.walletTransaction.count({ where: { walletId: first.walletId } }),
    });
    const before = await counts();
    const second = await seedDemo(prisma, { simulated: true });
    expect(second.created).toEqual([]);
    expect(await counts()).toEqual(before);

    const wallet = await prisma.wallet.findUniqueOrThrow({ where: { id: first.walletId } });
    expect(wallet.balanceMicros).toBe(DEMO.initialCreditMicros);
    const admin = await prisma.user.findUniqueOrThrow({ where: { email: DEMO.adminEmail } });
    expect(admin.isPlatformAdmin).toBe(true);
    expect(admin.passwordHash).toMatch(/^scrypt\$/);
    const simulatedModels = await prisma.model.findMany({ where: { isSimulated: true } });
    expect(simulatedModels.map((m) => m.upstreamModel)).toContain('sim-gpt-4o-mini');
  });
});
