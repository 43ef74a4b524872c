// `npm start`: the whole stack on one machine. Checks config, makes PostgreSQL and Redis
// reachable, creates/migrates/seeds the database, then starts Temporal (dev server, SQLite file
// under .data/), the upstream simulator when no NEWAPI_BASE_URL is set, the worker, the gateway,
// and the web and admin apps. Ctrl-C stops every child process.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { createPrisma, DEMO, ensureDatabase, loadConfigOrExit, migrate, devServerDbFileFlags, devServerFlags, seedDemo } from '@deepspace/core';
import { DATA_DIR, MIGRATIONS_DIR, ROOT } from './lib/paths.ts';
import { ensureNuxtBuild, nuxtServerEntry } from './lib/nuxt.ts';
import { canConnect, ensurePostgres, ensureRedis, ensureTemporalCli, log, waitFor } from './lib/services.ts';
import { Supervisor } from './lib/supervisor.ts';
import { GATEWAY_NODE_FLAGS } from '../gateway/src/node-flags.ts';

const config = loadConfigOrExit();
const dataDir = process.env.DEEPSPACE_DATA_DIR ? path.resolve(process.env.DEEPSPACE_DATA_DIR) : DATA_DIR;
const withApps = process.env.DEEPSPACE_APPS !== '0';
const simulatorPort = Number(process.env.SIMULATOR_PORT ?? 4010);
mkdirSync(dataDir, { recursive: true });

const supervisor = new Supervisor();
let shuttingDown = false;
async function shutdown(code: number): Promise<never> {
  if (!shuttingDown) {
    shuttingDown = true;
    log('stopping…');
    await supervisor.stopAll();
    log('stopped');
  }
  process.exit(code);
}
process.on('SIGINT', () => void shutdown(0));
process.on('SIGTERM', () => void shutdown(0));
supervisor.onUnexpectedExit = (proc, code) => {
  log(`${proc.name} exited unexpectedly (code ${code}); stopping the stack`);
  void shutdown(1);
};

try {
  await ensurePostgres(config.databaseUrl);
  await ensureRedis(config.redis.url);
  const db = await ensureDatabase(config.databaseUrl);
  if (db.created) log(`created database ${db.name}`);
  const migrations = await migrate(config.databaseUrl, MIGRATIONS_DIR);
  log(`database ${db.name}: ${migrations.applied.length} migrations applied, ${migrations.alreadyApplied.length} already present`);

  const simulated = !config.upstream.baseUrl;
  const prisma = createPrisma(config.databaseUrl, { max: 2 });
  const seed = await seedDemo(prisma, { simulated }).finally(() => prisma.$disconnect());
  log(seed.created.length ? `seeded demo data: ${seed.created.join(', ')}` : 'demo data already present');

  const node = process.execPath;
  const childEnv: NodeJS.ProcessEnv = { ...process.env };

  // Temporal: reuse a reachable server, else run the dev server with its state under .data/.
  const [temporalHost, temporalPortText] = config.temporal.address.split(':') as [string, string];
  if (await canConnect(temporalHost, Number(temporalPortText))) {
    log(`using the Temporal server already at ${config.temporal.address}`);
  } else {
    const binary = ensureTemporalCli();
    supervisor.start('temporal', binary, [
      'server', 'start-dev',
      '--ip', temporalHost === 'localhost' ? '127.0.0.1' : temporalHost,
      '--port', temporalPortText,
      '--ui-port', String(config.ports.temporalUi),
      ...devServerDbFileFlags(path.join(dataDir, 'temporal.db')),
      '--log-level', 'warn',
      ...devServerFlags(),
    ]);
    await waitFor(`Temporal at ${config.temporal.address}`, () => canConnect(temporalHost, Number(temporalPortText)), 60_000);
  }

  if (simulated) {
    log(`NEWAPI_BASE_URL is not set: models are served by the built-in upstream simulator on :${simulatorPort} (labelled "simulated")`);
    supervisor.start('upstream', node, [path.join(ROOT, 'tests/simulator/src/main.ts')], {
      env: { ...process.env, SIMULATOR_PORT: String(simulatorPort), SIMULATOR_API_KEY: 'simulated' },
    });
    childEnv.NEWAPI_BASE_URL = `http://127.0.0.1:${simulatorPort}/v1`;
    childEnv.NEWAPI_API_KEY = 'simulated';
    childEnv.UPSTREAM_SIMULATED = '1';
    await waitFor('upstream simulator', () => canConnect('127.0.0.1', simulatorPort), 20_000);
  }

  supervisor.start('worker', node, [path.join(ROOT, 'temporal-workers/src/main.ts')], {
    env: childEnv,
    quiet: /^\s*(asset|runtime modules|modules by path|\.\/|webpack|orphan modules|cacheable modules)|\[INFO\] (Workflow bundle created|asset)/,
  });
  supervisor.start('gateway', node, [...GATEWAY_NODE_FLAGS, path.join(ROOT, 'gateway/src/main.ts')], { env: childEnv });
  const gatewayUrl = `http://${config.gateway.host}:${config.gateway.port}`;
  await waitFor('gateway /readyz', async () => {
    try {
      return (await fetch(`${gatewayUrl}/readyz`)).status === 200;
    } catch {
      return false;
    }
  }, 60_000);

  if (withApps) {
    for (const [name, port] of [['web', config.ports.web], ['admin', config.ports.admin]] as const) {
      const appDir = path.join(ROOT, name);
      ensureNuxtBuild(appDir, process.env);
      supervisor.start(name, node, [nuxtServerEntry(appDir)], {
        env: { ...process.env, PORT: String(port), HOST: '127.0.0.1', NITRO_HOST: '127.0.0.1', NUXT_PUBLIC_GATEWAY_URL: gatewayUrl },
      });
      await waitFor(`${name} app on :${port}`, () => canConnect('127.0.0.1', port), 30_000);
    }
  }

  const lines = [
    '',
    'DeepSpace Workflows is running:',
    withApps ? `  web app        http://127.0.0.1:${config.ports.web}` : '  web app        (skipped: DEEPSPACE_APPS=0)',
    withApps ? `  admin app      http://127.0.0.1:${config.ports.admin}` : '  admin app      (skipped: DEEPSPACE_APPS=0)',
    `  gateway API    ${gatewayUrl}   (readiness: ${gatewayUrl}/readyz)`,
    `  Temporal UI    http://127.0.0.1:${config.ports.temporalUi}   (gRPC ${config.temporal.address})`,
    `  upstream       ${simulated ? `simulator http://127.0.0.1:${simulatorPort}/v1 (simulated models)` : config.upstream.baseUrl}`,
    `  demo login     ${DEMO.adminEmail} / ${DEMO.adminPassword}`,
    '',
    'Press Ctrl-C to stop everything.',
    '',
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  log(`ready (pids: ${supervisor.pids().join(' ')})`);
} catch (error) {
  process.stderr.write(`[deepspace] start failed: ${(error as Error).message}\n`);
  await shutdown(1);
}
