// `npm test`: every suite against real services. Type-checks, then runs the integration suites
// (vitest; tests/support/global-setup.ts makes a fresh database, its own Temporal dev server, a
// Redis key prefix and the upstream simulator) and the browser end-to-end suites.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ROOT } from './lib/paths.ts';
import { ensurePostgres, ensureRedis, ensureTemporalCli, log } from './lib/services.ts';

const args = process.argv.slice(2);
const only = args.filter((a) => !a.startsWith('--'));

function step(name: string, command: string, commandArgs: string[]): void {
  log(`── ${name}`);
  const started = Date.now();
  const result = spawnSync(command, commandArgs, { cwd: ROOT, stdio: 'inherit', env: process.env });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  if (result.status !== 0) {
    log(`✗ ${name} failed after ${seconds} s`);
    process.exit(result.status ?? 1);
  }
  log(`✓ ${name} (${seconds} s)`);
}

await ensurePostgres(process.env.TEST_DATABASE_BASE_URL ?? 'postgresql://postgres@127.0.0.1:5432/postgres');
await ensureRedis(process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0');
ensureTemporalCli();

if (!args.includes('--no-typecheck') && only.length === 0) step('typecheck', 'npx', ['tsc', '-p', 'tsconfig.json', '--noEmit']);
step('integration suites', 'npx', ['vitest', 'run', ...only]);
if (!args.includes('--no-e2e') && only.length === 0) {
  if (!existsSync('/usr/bin/chromium')) {
    log('✗ /usr/bin/chromium is missing: install it with `apt-get install -y chromium` (the e2e suites need it)');
    process.exit(1);
  }
  step('browser end-to-end suites', 'npx', ['vitest', 'run', '--config', 'tests/e2e/vitest.config.ts']);
}
