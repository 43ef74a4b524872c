// Everything the gateway needs from the outside world, built once in main.ts and passed to the app.
import type { Client as TemporalClient, Connection as TemporalConnection } from '@temporalio/client';
import type { AppConfig, Logger, PrismaClient, Redis } from '@deepspace/core';

export interface GatewayDeps {
  config: AppConfig;
  logger: Logger;
  prisma: PrismaClient;
  redis: Redis;
  temporal: { connection: TemporalConnection; client: TemporalClient };
}
