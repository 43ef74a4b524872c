// Child processes of the platform for fault tests (killed with SIGKILL, restarted), and polling.
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { ROOT } from '../../scripts/lib/paths.ts';

const NODE = path.join(ROOT, 'node_modules/.bin/node');

export interface ServiceProcess {
  child: ChildProcess;
  output: () => string;
}

/** Starts `script` (relative to the repo) on Node 24 with extra env; `registry` collects it for cleanup. */
export function spawnService(script: string, env: NodeJS.ProcessEnv, registry: ChildProcess[], nodeArgs: readonly string[] = []): ServiceProcess {
  const child = spawn(NODE, [...nodeArgs, path.join(ROOT, script)], { env: { ...process.env, LOG_LEVEL: 'info', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  registry.push(child);
  return { child, output: () => output };
}

/** Polls `fn` every 100 ms until it returns something truthy. */
export async function until<T>(fn: () => Promise<T | null | undefined | false>, timeoutMs = 30_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await fn();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}
