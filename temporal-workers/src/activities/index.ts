// Every side effect of the platform runs here, as Temporal activities. Activities receive their
// dependencies through this factory, so tests and the worker build them the same way.
import type { AppConfig, Logger, PgPool, PrismaClient, Redis } from '@deepspace/core';
import type { OpenAI } from '@deepspace/core/ai/upstream';
import { createChatActivities } from './chat.ts';
import { createBillingActivities } from './billing.ts';
import { createSystemActivities } from './system.ts';
import { createDslActivities } from './dsl.ts';
import { createKnowledgeActivities } from './knowledge.ts';
import type { KnowledgeRuntime } from '@deepspace/core/knowledge/runtime';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';

export interface ActivityDeps {
  prisma: PrismaClient;
  /** Raw SQL pool for the billing ledger (row locks, single-statement operations). */
  pool: PgPool;
  logger: Logger;
  workerIdentity: string;
  config: AppConfig;
  /** Run event streams. */
  redis: Redis;
  /** The OpenAI-compatible upstream. */
  upstream: OpenAI;
  /** Uploaded files and the LanceDB index. */
  knowledge: KnowledgeRuntime;
  /** Active models and prices, cached ≤ 10 s; one per worker (createActivities makes it). */
  catalog?: ModelCatalog;
}

export function createActivities(input: ActivityDeps) {
  const deps = { ...input, catalog: input.catalog ?? new ModelCatalog(input.pool) };
  return {
    ...createSystemActivities(deps),
    ...createBillingActivities(deps),
    ...createChatActivities(deps),
    ...createDslActivities(deps),
    ...createKnowledgeActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
