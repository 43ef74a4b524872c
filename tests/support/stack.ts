// Helpers for test files: the config of this run (from global-setup's env), real clients, the
// gateway app served on a free port (gateway-stack.ts), and an in-process Temporal worker on this
// run's task queue.
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Runtime, DefaultLogger, type Worker, type WorkerOptions } from '@temporalio/worker';
import { createLogger, createPgPool, createPrisma, createRedis, type AppConfig, type PgPool, type PrismaClient, type Redis } from '@deepspace/core';
import { createWorker } from '../../temporal-workers/src/worker.ts';
import { testConfig } from './gateway-stack.ts';

export { startTestGateway, testConfig, type TestGateway } from './gateway-stack.ts';

let runtimeInstalled = false;

export interface TestWorker {
  worker: Worker;
  client: Client;
  prisma: PrismaClient;
  pool: PgPool;
  stop(): Promise<void>;
}

/** Runs a real worker in this test process until stop(); `workerOverrides` replace createWorker's options (e.g. a fixture's workflowsPath). */
export async function startTestWorker(overrides: NodeJS.ProcessEnv = {}, workerOverrides?: Partial<WorkerOptions>): Promise<TestWorker> {
  if (!runtimeInstalled) {
    Runtime.install({ logger: new DefaultLogger('ERROR') });
    runtimeInstalled = true;
  }
  const config = testConfig(overrides);
  const logger = createLogger('worker-test', config.logLevel);
  const prisma = createPrisma(config.databaseUrl, { max: 10 });
  const pool = createPgPool(config.databaseUrl, 10);
  const connection = await NativeConnection.connect({ address: config.temporal.address });
  const redis = createRedis(config.redis.url, config.redis.keyPrefix);
  redis.on('error', (error) => logger.warn({ err: error.message }, 'redis error'));
  const worker = await createWorker({ config, connection, prisma, pool, logger, redis, ...(workerOverrides ? { overrides: workerOverrides } : {}) });
  const running = worker.run();
  const clientConnection = await Connection.connect({ address: config.temporal.address });
  const client = new Client({ connection: clientConnection, namespace: config.temporal.namespace });
  return {
    worker,
    client,
    prisma,
    pool,
    async stop() {
      worker.shutdown();
      await running;
      await Promise.allSettled([connection.close(), clientConnection.close(), prisma.$disconnect(), pool.end(), redis.quit()]);
    },
  };
}

export function testRedis(config: AppConfig = testConfig()): Redis {
  return createRedis(config.redis.url, config.redis.keyPrefix);
}
