// Gateway process: parse config, connect dependencies (Temporal lazily, so the gateway answers
// /healthz and reports /readyz even while Temporal is still starting), serve, stop cleanly.
import { Client, Connection } from '@temporalio/client';
import { createLogger, createPgPool, createPrisma, createRedis, loadConfigOrExit, warmPool, warmTokenizer } from '@deepspace/core';
import { Ledger } from '@deepspace/core/billing/index';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';
import { createUpstreamClient } from '@deepspace/core/ai/upstream';
import { createApp } from './app.ts';
import { settleHealthChecks } from './routes/health.ts';
import { settleAfterResponses } from './services/settlements.ts';
import { releaseHoldReserves } from './services/hold-reserve.ts';
import { closeRelayReaders } from './services/sse.ts';

const config = loadConfigOrExit();
const logger = createLogger('gateway', config.logLevel);
const prisma = createPrisma(config.databaseUrl);
const pool = createPgPool(config.databaseUrl, 20, { keepConnections: true });
// The ledger's connections open before the first model call needs one (see createPgPool).
void warmPool(pool);
const ledger = new Ledger(pool);
const catalog = new ModelCatalog(pool);
const upstream = createUpstreamClient(config);
const redis = createRedis(config.redis.url, config.redis.keyPrefix);
redis.on('error', (err) => logger.warn({ err: err.message }, 'redis error'));
const connection = Connection.lazy({ address: config.temporal.address });
const client = new Client({ connection, namespace: config.temporal.namespace });

// Token counts run before every hold: build the tokenizer's table before the first request.
warmTokenizer();
const app = createApp({ config, logger, prisma, pool, ledger, catalog, upstream, redis, temporal: { connection, client } });
const server = app.listen(config.gateway.port, config.gateway.host, () => {
  logger.info(
    { url: `http://${config.gateway.host}:${config.gateway.port}`, temporal: config.temporal.address, upstream: config.upstream.baseUrl ?? null },
    'gateway listening',
  );
});
server.on('error', (err) => {
  logger.fatal({ err }, 'gateway could not listen');
  process.exit(1);
});
// SSE streams stay open for long; keep-alive sockets must not outlive shutdown.
server.keepAliveTimeout = 65_000;

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  logger.info({ signal }, 'gateway stopping');
  const force = setTimeout(() => process.exit(1), 10_000).unref();
  server.close();
  server.closeAllConnections();
  await settleHealthChecks();
  await settleAfterResponses();
  await releaseHoldReserves(ledger);
  closeRelayReaders(redis);
  await Promise.allSettled([prisma.$disconnect(), ledger.end().then(() => pool.end()), redis.quit(), connection.close()]);
  clearTimeout(force);
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
