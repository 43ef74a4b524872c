// Runs `prisma generate` with no network: the CLI wants to download a native schema engine
// before any command, which fails offline. Pointing PRISMA_SCHEMA_ENGINE_BINARY at any existing
// file skips that download; `generate` itself never calls the engine (see prisma/README.md).
// Plain JS on purpose: postinstall may run before Node 24 is on PATH.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const cli = path.join(root, 'node_modules', 'prisma', 'build', 'index.js');
if (!existsSync(cli) || !existsSync(path.join(root, 'prisma', 'schema.prisma'))) {
  console.log('[prisma-generate] prisma CLI or schema not present yet; skipping');
  process.exit(0);
}
const env = { ...process.env, PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' };
env.PRISMA_SCHEMA_ENGINE_BINARY ??= process.execPath;
const result = spawnSync(process.execPath, [cli, 'generate', '--config', 'prisma/prisma.config.ts'], {
  cwd: root,
  env,
  stdio: 'inherit',
});
process.exit(result.status ?? 1);
