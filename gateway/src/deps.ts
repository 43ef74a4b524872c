// Everything the gateway needs from the outside world, built once in main.ts and passed to the app.
import type { Client as TemporalClient, Connection as TemporalConnection } from '@temporalio/client';
import type { AppConfig, Logger, PgPool, PrismaClient, Redis } from '@deepspace/core';
import type { Ledger } from '@deepspace/core/billing/index';
import type { ModelCatalog } from '@deepspace/core/ai/catalog-cache';
import type { OpenAI } from '@deepspace/core/ai/upstream';
import type { KnowledgeRuntime } from '@deepspace/core/knowledge/runtime';

export interface GatewayDeps {
  config: AppConfig;
  logger: Logger;
  prisma: PrismaClient;
  /** node-postgres pool of the billing ledger (raw SQL, row locks). */
  pool: PgPool;
  ledger: Ledger;
  catalog: ModelCatalog;
  /** The OpenAI-compatible upstream (NewAPI or the simulator). */
  upstream: OpenAI;
  redis: Redis;
  temporal: { connection: TemporalConnection; client: TemporalClient };
  /** Uploaded files and the knowledge index; built from config by createApp when absent. */
  knowledge?: KnowledgeRuntime;
}
