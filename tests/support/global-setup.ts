// Real services for the whole test run: a fresh PostgreSQL database (migrated), a Temporal dev
// server on free ports (in-memory), a per-run Redis key prefix and the upstream simulator over
// HTTP. Test files read what they need from process.env (inherited by the test workers).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ensureDatabase, dropDatabase, migrate, createRedis, createPgPool, createPrisma, seedCatalog, reconcile, formatReconcileReport } from '@deepspace/core';
import { startSimulator } from '@deepspace/upstream-simulator';
import { MIGRATIONS_DIR } from '../../scripts/lib/paths.ts';
import { ensurePostgres, ensureRedis, freePort, startTemporalDevServer } from '../../scripts/lib/services.ts';

export default async function setup() {
  const runId = randomBytes(4).toString('hex');
  const baseDb = process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres';
  const dbUrl = new URL(baseDb);
  dbUrl.pathname = `/deepspace_test_${runId}`;
  const databaseUrl = dbUrl.toString();
  const redisUrl = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
  const redisPrefix = `dstest:${runId}:`;

  await ensurePostgres(databaseUrl);
  await ensureRedis(redisUrl);
  await ensureDatabase(databaseUrl);
  await migrate(databaseUrl, MIGRATIONS_DIR);
  // The model catalog and prices (simulator-backed), as `npm start` seeds them.
  const seeder = createPrisma(databaseUrl, { max: 1 });
  await seedCatalog(seeder, { simulated: true }).finally(() => seeder.$disconnect());

  const [temporalPort, uiPort] = [await freePort(), await freePort()];
  const temporal = await startTemporalDevServer({ port: temporalPort, uiPort, ui: false });
  const simulator = await startSimulator({ port: 0, apiKey: 'sim-test-key' });
  // Uploaded files and the knowledge index of this run live in a temporary directory.
  const dataDir = mkdtempSync(path.join(os.tmpdir(), `deepspace-test-${runId}-`));

  Object.assign(process.env, {
    NODE_ENV: 'test',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'silent',
    DATABASE_URL: databaseUrl,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: redisPrefix,
    TEMPORAL_ADDRESS: temporal.address,
    TEMPORAL_NAMESPACE: 'default',
    TEMPORAL_TASK_QUEUE: `deepspace-test-${runId}`,
    NEWAPI_BASE_URL: simulator.url,
    NEWAPI_API_KEY: 'sim-test-key',
    STORAGE_DRIVER: 'local',
    STORAGE_LOCAL_DIR: path.join(dataDir, 'objects'),
    LANCEDB_URI: path.join(dataDir, 'lancedb'),
    DS_TEST_RUN_ID: runId,
    // Suites sign up hundreds of users from 127.0.0.1; the anonymous limit has its own test.
    RATE_LIMIT_ANONYMOUS_PER_MINUTE: '1000000',
    RATE_LIMIT_USER_PER_MINUTE: '1000000',
  });

  return async () => {
    await simulator.close().catch(() => {});
    await temporal.stop().catch(() => {});
    rmSync(dataDir, { recursive: true, force: true });
    const redis = createRedis(redisUrl, '');
    try {
      let cursor = '0';
      do {
        const [next, keys] = await redis.scan(cursor, 'MATCH', `${redisPrefix}*`, 'COUNT', 500);
        cursor = next;
        if (keys.length) await redis.del(...keys);
      } while (cursor !== '0');
    } finally {
      redis.disconnect();
    }
    // The billing invariants must hold over everything every suite did: reconcile the whole test
    // database before it is dropped, and fail the run on any drift.
    const pool = createPgPool(databaseUrl, 2);
    const report = await reconcile(pool).finally(() => pool.end());
    if (!process.env.KEEP_TEST_DB) await dropDatabase(databaseUrl);
    if (report.drift.length > 0) {
      const message = formatReconcileReport(report);
      process.stderr.write(`\n${message}\n(set KEEP_TEST_DB=1 to keep ${dbUrl.pathname.slice(1)} for inspection)\n`);
      throw new Error(`billing reconcile found ${report.drift.length} drift item(s) after the test run:\n${message}`);
    }
  };
}
