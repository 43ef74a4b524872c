// Worker process: exits non-zero when Temporal is unreachable at start (a supervisor restarts
// it), logs its task queue, and drains in-flight tasks on SIGINT/SIGTERM (the SDK's default).
import { Client } from '@temporalio/client';
import { DefaultLogger, Runtime, makeTelemetryFilterString } from '@temporalio/worker';
import { createLogger, createPgPool, createPrisma, loadConfigOrExit, warmTokenizer } from '@deepspace/core';
import { closeLedgerConnections } from '@deepspace/core/billing/index';
import { ensureSchedules } from './schedules.ts';
import { connectToTemporal, createWorker } from './worker.ts';

const config = loadConfigOrExit();
const logger = createLogger('worker', config.logLevel);
// The SDK's own logger stays at WARN (its INFO lines are the workflow bundler's webpack report).
Runtime.install({
  logger: new DefaultLogger('WARN'),
  telemetryOptions: { logging: { filter: makeTelemetryFilterString({ core: 'WARN' }), forward: {} } },
});

let connection;
try {
  connection = await connectToTemporal(config.temporal.address);
} catch (error) {
  logger.fatal({ address: config.temporal.address, err: (error as Error).message }, 'Temporal is unreachable; worker exits');
  process.exit(1);
}
const prisma = createPrisma(config.databaseUrl);
const pool = createPgPool(config.databaseUrl, 10, { keepConnections: true });
warmTokenizer();
const worker = await createWorker({ config, connection, prisma, pool, logger });
// The schedules this worker's workflows serve (billing-expire-holds), created or updated.
const schedules = await ensureSchedules(new Client({ connection, namespace: config.temporal.namespace }), config);
logger.info(schedules, 'schedules ensured');
logger.info(
  { task_queue: config.temporal.taskQueue, namespace: config.temporal.namespace, temporal: config.temporal.address },
  'worker started',
);
try {
  await worker.run();
} finally {
  await prisma.$disconnect();
  await closeLedgerConnections(pool);
  await pool.end();
  await connection.close();
  logger.info('worker stopped');
}
process.exit(0);
