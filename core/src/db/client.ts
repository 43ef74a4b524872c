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

/**
 * `keepConnections` (services: the gateway, the worker): connections are kept once opened (no idle
 * timeout). Opening one costs PostgreSQL a backend start, measured at 25–100 ms on a busy 2-core
 * host, and with pg's default 10 s idle timeout every burst above the last one reopened them on
 * the requests' path (the ledger's hold among them). Tests keep the default, so their many
 * short-lived pools give connections back.
 */
export function createPgPool(databaseUrl: string, max = 10, options: { keepConnections?: boolean } = {}): pg.Pool {
  const pool = new pg.Pool({ connectionString: databaseUrl, max, ...(options.keepConnections ? { idleTimeoutMillis: 0 } : {}) });
  // An idle client whose connection the server ends (restart, DROP DATABASE … FORCE) is removed
  // by the pool; without a listener that 'error' would crash the process.
  pool.on('error', () => {});
  return pool;
}

/**
 * Opens the pool's connections up to `count` (default: its max) and returns them idle. Never
 * rejects: a database that is down now is found by the first query instead.
 */
export async function warmPool(pool: pg.Pool, count = (pool as pg.Pool & { options: pg.PoolConfig }).options.max ?? 10): Promise<number> {
  const opened = await Promise.allSettled(Array.from({ length: count }, () => pool.connect()));
  for (const r of opened) if (r.status === 'fulfilled') r.value.release();
  return opened.filter((r) => r.status === 'fulfilled').length;
}
