// `npm start` end to end: the whole stack comes up on free ports with a fresh database, /readyz is
// 200 with PostgreSQL, Redis and Temporal ok, the apps answer, the demo login works; Ctrl-C
// (SIGINT) stops every child process; a second start reuses what exists (no duplicate seed rows).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { DEFAULT_CATALOG, dropDatabase } from '@deepspace/core';
import { ROOT } from '../../scripts/lib/paths.ts';
import { canConnect, freePort } from '../../scripts/lib/services.ts';

const databaseUrl = `postgresql://postgres@127.0.0.1:5432/deepspace_start_${randomBytes(4).toString('hex')}`;
const dataDir = mkdtempSync(path.join(os.tmpdir(), 'ds-start-'));

afterAll(async () => {
  await dropDatabase(databaseUrl).catch(() => {});
  rmSync(dataDir, { recursive: true, force: true });
});

interface Started {
  child: ChildProcess;
  output: () => string;
  exit: Promise<number | null>;
}

async function start(env: Record<string, string>): Promise<Started> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, DATABASE_URL: databaseUrl, DEEPSPACE_DATA_DIR: dataDir, LOG_LEVEL: 'warn' };
  delete childEnv.NEWAPI_BASE_URL;
  delete childEnv.NEWAPI_API_KEY;
  const child = spawn(path.join(ROOT, 'node_modules/.bin/node'), [path.join(ROOT, 'scripts/start.ts')], {
    cwd: ROOT,
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const deadline = Date.now() + 300_000;
  while (!output.includes('[deepspace] ready (pids:')) {
    if (child.exitCode !== null) throw new Error(`npm start exited early (${child.exitCode}):\n${output.slice(-3000)}`);
    if (Date.now() > deadline) throw new Error(`npm start not ready in time:\n${output.slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  return { child, output: () => output, exit };
}

async function stop(stack: Started): Promise<void> {
  if (stack.child.exitCode !== null || stack.child.signalCode !== null) return;
  stack.child.kill('SIGINT');
  const timer = setTimeout(() => stack.child.kill('SIGKILL'), 20_000);
  await stack.exit;
  clearTimeout(timer);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function ports() {
  return {
    GATEWAY_PORT: String(await freePort()),
    WEB_PORT: String(await freePort()),
    ADMIN_PORT: String(await freePort()),
    TEMPORAL_UI_PORT: String(await freePort()),
    TEMPORAL_ADDRESS: `127.0.0.1:${await freePort()}`,
    SIMULATOR_PORT: String(await freePort()),
    REDIS_KEY_PREFIX: `dsstart:${randomBytes(3).toString('hex')}:`,
  };
}

describe('npm start', () => {
  it('brings the whole stack up, prints the URLs and demo login, and Ctrl-C stops every child', async () => {
    const env = await ports();
    const stack = await start(env);
    try {
      const out = stack.output();
      for (const line of ['web app', 'admin app', 'gateway API', 'Temporal UI', 'upstream', 'demo login']) expect(out).toContain(line);
      expect(out).toContain('NEWAPI_BASE_URL is not set');

      const ready = await fetch(`http://127.0.0.1:${env.GATEWAY_PORT}/readyz`);
      const body = (await ready.json()) as { checks: Record<string, { ok: boolean }> };
      expect(ready.status).toBe(200);
      expect(Object.fromEntries(Object.entries(body.checks).map(([k, v]) => [k, v.ok]))).toEqual({ postgres: true, redis: true, temporal: true });
      expect((await fetch(`http://127.0.0.1:${env.WEB_PORT}/`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${env.ADMIN_PORT}/`)).status).toBe(200);
      expect((await fetch(`http://127.0.0.1:${env.TEMPORAL_UI_PORT}/`)).status).toBe(200);
      const login = await fetch(`http://127.0.0.1:${env.GATEWAY_PORT}/api/v1/auth/login`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ email: 'admin@deepspace.local', password: 'deepspace-demo' }),
      });
      expect(login.status).toBe(200);
      const models = await fetch(`http://127.0.0.1:${env.SIMULATOR_PORT}/health`);
      expect(models.status).toBe(200);

      // Temporal keeps its state in the data dir, in write-ahead-log mode (DEV_SERVER_SQLITE_PRAGMAS).
      expect(existsSync(path.join(dataDir, 'temporal.db'))).toBe(true);
      expect(existsSync(path.join(dataDir, 'temporal.db-wal'))).toBe(true);

      const pids = /ready \(pids: ([\d ]+)\)/.exec(out)![1]!.trim().split(/\s+/).map(Number);
      expect(pids.length).toBe(6); // temporal, upstream simulator, worker, gateway, web, admin
      stack.child.kill('SIGINT');
      expect(await stack.exit).toBe(0);
      for (const pid of pids) expect(alive(pid), `pid ${pid} still alive`).toBe(false);
      for (const port of [env.GATEWAY_PORT, env.WEB_PORT, env.ADMIN_PORT, env.SIMULATOR_PORT]) {
        expect(await canConnect('127.0.0.1', Number(port)), `port ${port} still open`).toBe(false);
      }
    } finally {
      // On a failed assertion: Ctrl-C first, so npm start stops its children (a SIGKILL would orphan them).
      await stop(stack);
    }
  });

  it('a second start reuses the database and Temporal state: no duplicate seed rows', async () => {
    const env = { ...(await ports()), DEEPSPACE_APPS: '0' };
    const stack = await start(env);
    try {
      expect(stack.output()).toContain('demo data already present');
      const client = new pg.Client({ connectionString: databaseUrl });
      await client.connect();
      try {
        const { rows } = await client.query(
          `SELECT (SELECT count(*) FROM users)::int AS users, (SELECT count(*) FROM organizations)::int AS orgs,
                  (SELECT count(*) FROM wallet_transactions)::int AS txs, (SELECT count(*) FROM models)::int AS models`,
        );
        expect(rows[0]).toEqual({ users: 1, orgs: 1, txs: 1, models: DEFAULT_CATALOG.length });
      } finally {
        await client.end();
      }
    } finally {
      stack.child.kill('SIGINT');
      await stack.exit;
    }
  });
});
