// The web and admin apps run from their production build (`nuxt build` output). The build is
// redone only when a source file is newer than the last build, so a second start is quick.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { log } from './services.ts';

// `layers` holds the shell layer both apps extend (web/layers/shell); admin reaches it from
// outside its own folder, so its build also depends on ../web/layers.
const SOURCE_ENTRIES = ['app', 'public', 'nuxt.config.ts', 'package.json', 'app.config.ts', 'layers'];
const EXTRA_SOURCE_ENTRIES: Record<string, string[]> = { admin: ['../web/layers'] };

function newestMtime(entry: string): number {
  if (!existsSync(entry)) return 0;
  const stat = statSync(entry);
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs;
  for (const child of readdirSync(entry)) newest = Math.max(newest, newestMtime(path.join(entry, child)));
  return newest;
}

export function nuxtBuildIsStale(appDir: string): boolean {
  const marker = path.join(appDir, '.output', 'nitro.json');
  if (!existsSync(marker)) return true;
  const built = statSync(marker).mtimeMs;
  const entries = [...SOURCE_ENTRIES, ...(EXTRA_SOURCE_ENTRIES[path.basename(appDir)] ?? [])];
  return entries.some((entry) => newestMtime(path.join(appDir, entry)) > built);
}

export function ensureNuxtBuild(appDir: string, env: NodeJS.ProcessEnv): void {
  if (!nuxtBuildIsStale(appDir)) return;
  const name = path.basename(appDir);
  log(`building the ${name} app (nuxt build, first start or after changes)…`);
  const started = Date.now();
  const result = spawnSync('npx', ['nuxt', 'build'], { cwd: appDir, env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (result.status !== 0) throw new Error(`nuxt build failed for ${name}`);
  log(`${name} built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

export function nuxtServerEntry(appDir: string): string {
  return path.join(appDir, '.output', 'server', 'index.mjs');
}
