// Local infrastructure for `npm start`, `npm test` and `.ci/run`: make PostgreSQL and Redis
// reachable (start the machine's own when down), find or build the Temporal CLI, start a Temporal
// dev server, find free ports. Nothing here is used in production deployments.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { devServerDbFileFlags, devServerFlags } from '@deepspace/core/run-events';

export const TEMPORAL_CLI_VERSION = 'v1.5.1';
export const TEMPORAL_CACHE_DIR = process.env.DEEPSPACE_CACHE_DIR ?? path.join(os.homedir(), '.cache', 'deepspace', 'bin');

export function log(message: string): void {
  process.stdout.write(`[deepspace] ${message}\n`);
}

export function canConnect(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

export async function waitFor(what: string, probe: () => Promise<boolean>, timeoutMs: number, intervalMs = 200): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
  throw new Error(`${what} did not become ready within ${Math.round(timeoutMs / 1000)} s`);
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

function isLocalHost(host: string): boolean {
  return host === '127.0.0.1' || host === 'localhost' || host === '::1';
}

function hasCommand(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function run(command: string, args: string[]): boolean {
  const result = spawnSync(command, args, { stdio: 'inherit' });
  return result.status === 0;
}

function aptInstall(packages: string[]): boolean {
  if (!hasCommand('apt-get') || process.getuid?.() !== 0) return false;
  log(`installing ${packages.join(', ')} with apt-get…`);
  return run('apt-get', ['install', '-y', '--no-install-recommends', ...packages]) ||
    (run('apt-get', ['update']) && run('apt-get', ['install', '-y', '--no-install-recommends', ...packages]));
}

/** Makes PostgreSQL at DATABASE_URL reachable; starts (or installs) the local cluster when it is local. */
export async function ensurePostgres(databaseUrl: string): Promise<void> {
  const url = new URL(databaseUrl);
  const host = url.hostname || '127.0.0.1';
  const port = Number(url.port || 5432);
  if (await canConnect(host, port)) return;
  if (!isLocalHost(host)) {
    throw new Error(`PostgreSQL is not reachable at ${host}:${port}; check DATABASE_URL`);
  }
  if (!existsSync('/etc/postgresql') && !aptInstall(['postgresql'])) {
    throw new Error(`PostgreSQL is not reachable at ${host}:${port} and is not installed; install PostgreSQL 15 or set DATABASE_URL`);
  }
  for (const version of existsSync('/etc/postgresql') ? (await import('node:fs')).readdirSync('/etc/postgresql') : []) {
    log(`starting PostgreSQL ${version}…`);
    run('pg_ctlcluster', ['--skip-systemctl-redirect', version, 'main', 'start']);
  }
  await waitFor(`PostgreSQL at ${host}:${port} (DATABASE_URL)`, () => canConnect(host, port), 30_000).catch(() => {
    throw new Error(`PostgreSQL is not reachable at ${host}:${port} even after starting it; check DATABASE_URL`);
  });
}

/** Makes Redis at REDIS_URL reachable; starts (or installs) a local one when it is local. */
export async function ensureRedis(redisUrl: string): Promise<void> {
  const url = new URL(redisUrl);
  const host = url.hostname || '127.0.0.1';
  const port = Number(url.port || 6379);
  if (await canConnect(host, port)) return;
  if (!isLocalHost(host)) throw new Error(`Redis is not reachable at ${host}:${port}; check REDIS_URL`);
  if (!hasCommand('redis-server') && !aptInstall(['redis-server'])) {
    throw new Error(`Redis is not reachable at ${host}:${port} and redis-server is not installed; install Redis 7 or set REDIS_URL`);
  }
  log('starting Redis…');
  run('redis-server', ['--daemonize', 'yes', '--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no']);
  await waitFor(`Redis at ${host}:${port} (REDIS_URL)`, () => canConnect(host, port), 15_000).catch(() => {
    throw new Error(`Redis is not reachable at ${host}:${port} even after starting it; check REDIS_URL`);
  });
}

/** `temporal` from PATH, else the cached build, else builds it once with the Go module proxy. */
export function ensureTemporalCli(): string {
  const cached = path.join(TEMPORAL_CACHE_DIR, 'temporal');
  if (existsSync(cached)) return cached;
  const onPath = spawnSync('sh', ['-c', 'command -v temporal'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  const go = hasCommand('go') ? 'go' : existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined;
  if (!go) {
    throw new Error(
      'the Temporal CLI is not installed and Go is not available to build it; install `temporal` (https://docs.temporal.io/cli) or Go',
    );
  }
  mkdirSync(TEMPORAL_CACHE_DIR, { recursive: true });
  log(`building the Temporal CLI ${TEMPORAL_CLI_VERSION} into ${TEMPORAL_CACHE_DIR} (once, about 3 minutes)…`);
  const ok = spawnSync(go, ['install', `github.com/temporalio/cli/cmd/temporal@${TEMPORAL_CLI_VERSION}`], {
    stdio: 'inherit',
    env: { ...process.env, GOBIN: TEMPORAL_CACHE_DIR },
  });
  if (ok.status !== 0 || !existsSync(cached)) throw new Error('building the Temporal CLI failed (see the output above)');
  return cached;
}

export interface TemporalDevServer {
  address: string;
  uiUrl: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * Starts `temporal server start-dev`. One task-queue partition: with a single worker process the
 * default four cost about 3× throughput (shared/notes/temporal-dev-server.md).
 */
export async function startTemporalDevServer(options: {
  port: number;
  uiPort: number;
  dbFile?: string;
  logFile?: string;
  ui?: boolean;
}): Promise<TemporalDevServer> {
  const binary = ensureTemporalCli();
  const args = [
    'server', 'start-dev',
    '--ip', '127.0.0.1',
    '--port', String(options.port),
    '--ui-port', String(options.uiPort),
    '--log-level', 'error',
    ...devServerFlags(),
  ];
  if (options.ui === false) args.push('--headless');
  if (options.dbFile) {
    mkdirSync(path.dirname(options.dbFile), { recursive: true });
    args.push(...devServerDbFileFlags(options.dbFile));
  }
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: false });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
  child.stderr?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  try {
    await waitFor('Temporal dev server', async () => {
      if (child.exitCode !== null) throw new Error(`Temporal dev server exited (${child.exitCode}): ${output}`);
      return canConnect('127.0.0.1', options.port);
    }, 60_000);
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    address: `127.0.0.1:${options.port}`,
    uiUrl: `http://127.0.0.1:${options.uiPort}`,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

export const MINIO_VERSION = 'v0.0.0-20260212201848-7aac2a2c5b7c';

/** `minio` from PATH, else the cached build, else builds it once with the Go module proxy. */
export function ensureMinio(): string {
  const onPath = spawnSync('sh', ['-c', 'command -v minio'], { encoding: 'utf8' });
  if (onPath.status === 0 && onPath.stdout.trim()) return onPath.stdout.trim();
  const cached = path.join(TEMPORAL_CACHE_DIR, 'minio');
  if (existsSync(cached)) return cached;
  const go = hasCommand('go') ? 'go' : existsSync('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined;
  if (!go) {
    throw new Error('MinIO is not installed and Go is not available to build it; install `minio` (https://min.io/download) or Go');
  }
  mkdirSync(TEMPORAL_CACHE_DIR, { recursive: true });
  log(`building MinIO ${MINIO_VERSION} into ${TEMPORAL_CACHE_DIR} (once, several minutes)…`);
  const ok = spawnSync(go, ['install', `github.com/minio/minio@${MINIO_VERSION}`], {
    stdio: 'inherit',
    env: { ...process.env, GOBIN: TEMPORAL_CACHE_DIR },
  });
  if (ok.status !== 0 || !existsSync(cached)) throw new Error('building MinIO failed (see the output above)');
  return cached;
}

export interface MinioServer {
  endpoint: string;
  accessKeyId: string;
  secretAccessKey: string;
  stop(): Promise<void>;
}

/** Starts a MinIO server on `dataDir` with fresh root credentials; stop() leaves the data in place. */
export async function startMinio(options: { port: number; consolePort: number; dataDir: string }): Promise<MinioServer> {
  const binary = ensureMinio();
  mkdirSync(options.dataDir, { recursive: true });
  const accessKeyId = 'deepspace';
  const secretAccessKey = globalThis.crypto.randomUUID();
  const endpoint = `http://127.0.0.1:${options.port}`;
  const args = [
    'server', options.dataDir,
    '--address', `127.0.0.1:${options.port}`,
    '--console-address', `127.0.0.1:${options.consolePort}`,
    '--quiet',
  ];
  // Its own process group, so stop() takes down anything MinIO itself started.
  const child = spawn(binary, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true,
    env: { ...process.env, MINIO_ROOT_USER: accessKeyId, MINIO_ROOT_PASSWORD: secretAccessKey, MINIO_UPDATE: 'off' },
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
  child.stderr?.on('data', (d: Buffer) => { output = (output + d.toString()).slice(-4000); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const killGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  // A detached server would outlive a crashed parent; take it down on any exit.
  const onParentExit = () => killGroup('SIGKILL');
  process.once('exit', onParentExit);
  try {
    await waitFor('MinIO', async () => {
      if (child.exitCode !== null) throw new Error(`MinIO exited (${child.exitCode}): ${output}`);
      const response = await fetch(`${endpoint}/minio/health/live`, { signal: AbortSignal.timeout(1_000) }).catch(() => null);
      return response?.ok ?? false;
    }, 60_000);
  } catch (error) {
    killGroup('SIGKILL');
    process.removeListener('exit', onParentExit);
    throw error;
  }
  return {
    endpoint,
    accessKeyId,
    secretAccessKey,
    async stop() {
      process.removeListener('exit', onParentExit);
      if (child.exitCode !== null || child.signalCode !== null) return;
      killGroup('SIGTERM');
      const timer = setTimeout(() => killGroup('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
