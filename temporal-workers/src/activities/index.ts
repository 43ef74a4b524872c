// Every side effect of the platform runs here, as Temporal activities. Activities receive their
// dependencies through this factory, so tests and the worker build them the same way.
import type { Logger, PgPool, PrismaClient } from '@deepspace/core';
import { createBillingActivities } from './billing.ts';
import { createSystemActivities } from './system.ts';

export interface ActivityDeps {
  prisma: PrismaClient;
  /** Raw SQL pool for the billing ledger (row locks, single-statement operations). */
  pool: PgPool;
  logger: Logger;
  workerIdentity: string;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createSystemActivities(deps),
    ...createBillingActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
