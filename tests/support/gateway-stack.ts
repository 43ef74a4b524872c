// The gateway app served on a free port with this run's config, for tests and benches. Kept apart
// from stack.ts (which also builds workers) so that a process serving only the gateway — the /v1
// bench's gateway child — loads what the deployed gateway loads, not the worker SDK, its bundler
// and the activities: their code on the heap made every full collection of that child longer.
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Client, Connection } from '@temporalio/client';
import { createLogger, createPgPool, createPrisma, createRedis, loadConfig, warmPool, type AppConfig } from '@deepspace/core';
import { Ledger } from '@deepspace/core/billing/index';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';
import { createUpstreamClient } from '@deepspace/core/ai/upstream';
import { createApp } from '../../gateway/src/app.ts';
import { settleHealthChecks } from '../../gateway/src/routes/health.ts';
import { settleAfterResponses } from '../../gateway/src/services/settlements.ts';
import { releaseHoldReserves } from '../../gateway/src/services/hold-reserve.ts';
import { closeRelayReaders } from '../../gateway/src/services/sse.ts';
import type { GatewayDeps } from '../../gateway/src/deps.ts';

export function testConfig(overrides: NodeJS.ProcessEnv = {}): AppConfig {
  const env: NodeJS.ProcessEnv = { ...process.env, ...overrides };
  // Each test process has its own task queue: a worker of another suite (started with other
  // settings, and stopped when that suite ends) must never take this suite's tasks.
  if (!overrides.TEMPORAL_TASK_QUEUE) env.TEMPORAL_TASK_QUEUE = `${process.env.TEMPORAL_TASK_QUEUE ?? 'deepspace-test'}-${process.pid}`;
  return loadConfig(env);
}

export interface TestGateway {
  url: string;
  deps: GatewayDeps;
  close(): Promise<void>;
}

/**
 * `keepConnections`: the ledger's pool as gateway/src/main.ts makes it (connections kept, opened
 * before the first request); benches use it. Tests keep the default (connections given back
 * when idle), since many test gateways run side by side.
 */
export async function startTestGateway(overrides: NodeJS.ProcessEnv = {}, options: { keepConnections?: boolean } = {}): Promise<TestGateway> {
  const config = testConfig(overrides);
  const logger = createLogger('gateway-test', config.logLevel);
  const prisma = createPrisma(config.databaseUrl, { max: 5 });
  const redis = createRedis(config.redis.url, config.redis.keyPrefix);
  // A slow connect under load is retried by ioredis; say so instead of an unhandled 'error' event.
  redis.on('error', (error) => logger.warn({ err: error.message }, 'redis error'));
  const connection = Connection.lazy({ address: config.temporal.address });
  const client = new Client({ connection, namespace: config.temporal.namespace });
  const pool = createPgPool(config.databaseUrl, 10, { keepConnections: options.keepConnections });
  if (options.keepConnections) await warmPool(pool);
  const deps: GatewayDeps = {
    config,
    logger,
    prisma,
    pool,
    ledger: new Ledger(pool),
    catalog: new ModelCatalog(pool),
    upstream: createUpstreamClient(config),
    redis,
    temporal: { connection, client },
  };
  const app = createApp(deps);
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    deps,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await settleHealthChecks();
      await settleAfterResponses();
      await releaseHoldReserves(deps.ledger);
      closeRelayReaders(redis);
      await Promise.allSettled([prisma.$disconnect(), pool.end(), redis.quit(), connection.close()]);
    },
  };
}
