// Entry point of every root npm script. Plain JavaScript that runs on any Node >= 18, because on
// a fresh clone the project's Node 24 (the npm package `node`) is not installed yet: this file
// runs `npm ci` when node_modules is missing, then re-runs the real TypeScript script on Node 24.
import { spawnSync, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const commands = {
  start: 'scripts/start.ts',
  test: 'scripts/test.ts',
  bench: 'scripts/bench.ts',
  migrate: 'scripts/migrate.ts',
  seed: 'scripts/seed.ts',
  reconcile: 'scripts/reconcile.ts',
  'eval-rag': 'scripts/eval-rag.ts',
};
const [command, ...args] = process.argv.slice(2);
const script = commands[command];
if (!script) {
  console.error(`usage: node scripts/bootstrap.mjs <${Object.keys(commands).join('|')}> [args]`);
  process.exit(2);
}

const node24 = path.join(root, 'node_modules', '.bin', 'node');
const installed = existsSync(node24) && existsSync(path.join(root, 'node_modules', '.package-lock.json'));
if (!installed) {
  console.log('[deepspace] dependencies missing: running `npm ci` (first start only)…');
  const result = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) {
    console.error('[deepspace] `npm ci` failed; fix the error above and run the command again.');
    process.exit(result.status ?? 1);
  }
}

const binDir = path.join(root, 'node_modules', '.bin');
const env = { ...process.env, PATH: `${binDir}${path.delimiter}${process.env.PATH ?? ''}` };
const child = spawn(node24, [path.join(root, script), ...args], { cwd: root, env, stdio: 'inherit' });
// Ctrl-C reaches the whole foreground process group; the child handles it. Forward TERM too.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
