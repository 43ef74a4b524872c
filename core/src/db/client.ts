// Prisma Client over node-postgres (no native engine needed at runtime), plus the raw pg pool
// for the few places that want hand-written SQL (ledger row locks, health checks).
import { PrismaPg } from '@prisma/adapter-pg';
import pg from 'pg';
import { PrismaClient } from '../generated/prisma/client.ts';

export { PrismaClient };
export { Prisma } from '../generated/prisma/client.ts';
export type * as Models from '../generated/prisma/client.ts';

export function createPrisma(databaseUrl: string, options: { max?: number } = {}): PrismaClient {
  const adapter = new PrismaPg({ connectionString: databaseUrl, max: options.max ?? 10 });
  return new PrismaClient({ adapter });
}

export function createPgPool(databaseUrl: string, max = 10): pg.Pool {
  const pool = new pg.Pool({ connectionString: databaseUrl, max });
  // An idle client whose connection the server ends (restart, DROP DATABASE … FORCE) is removed
  // by the pool; without a listener that 'error' would crash the process.
  pool.on('error', () => {});
  return pool;
}
