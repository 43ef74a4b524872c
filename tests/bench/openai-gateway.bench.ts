// /v1/chat/completions (non-stream) latency under a FIXED arrival rate (open loop: requests are
// sent on a timer at the rate whatever the responses do; latency is counted from each request's
// scheduled send time, so a backed-up server cannot hide its queue). Three targets get the same
// requests in the same run: the upstream simulator directly (baseline), our gateway (a funded
// project API key: auth, Redis rate limits, policy, OpenAPI validation, ledger hold → upstream →
// capture + usage row + audit row) and a peer, Portkey's open-source gateway (@portkey-ai/gateway),
// pointed at the same simulator. Figures are the latency each gateway adds over direct.
//
// Topology, the same for every target: the load generator runs in this process; the simulator,
// our gateway (startTestGateway) and Portkey each run in their own Node process. On this 2-core
// machine they all share the CPU with each other, PostgreSQL and Redis.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createPgPool } from '@deepspace/core';
import { Ledger } from '@deepspace/core/billing/index';
import { freePort } from '../../scripts/lib/services.ts';
import { createKey, signUp } from '../support/api.ts';
import { startTestGateway } from '../support/stack.ts';
import { round, type BenchResult, type BenchSuite } from './harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const RATES = [200, 500];
const SECONDS = 10;
const WARMUP_REQUESTS = 600;
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_SOCKETS = 256;
const SIM_KEY = 'sim-test-key';
const GATEWAY_OVERRIDES = { RATE_LIMIT_API_KEY_PER_MINUTE: '100000000', RATE_LIMIT_PROJECT_PER_MINUTE: '100000000' };
const PROMPT = 'Summarise the role of ribosomes in protein synthesis.';
const MAX_TOKENS = 16;

// ---------------------------------------------------------------------------------------------
// Child processes

interface Child {
  proc: ChildProcess;
  output: string[];
  stop(): Promise<void>;
}

/** Spawns `node args` and resolves once a stdout line matches `ready` (returning the match). */
function spawnNode(args: string[], env: NodeJS.ProcessEnv, ready: RegExp, timeoutMs = 30_000): Promise<{ child: Child; match: RegExpMatchArray }> {
  const proc = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const child: Child = {
    proc,
    output,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      void child.stop();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${ready}; output: ${output.join('\n').slice(-2000)}`));
    }, timeoutMs);
    const onLine = (line: string) => {
      output.push(line);
      if (output.length > 200) output.shift();
      const match = ready.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve({ child, match });
      }
    };
    createInterface({ input: proc.stdout! }).on('line', onLine);
    createInterface({ input: proc.stderr! }).on('line', onLine);
    proc.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`exited (${code ?? signal}) before it was ready; output: ${output.join('\n').slice(-2000)}`));
    });
  });
}

/** The upstream simulator in its own process, 0 latency. */
async function startSimulatorProcess(): Promise<{ child: Child; url: string }> {
  const { child, match } = await spawnNode(
    [path.join(ROOT, 'tests/simulator/src/main.ts')],
    { ...process.env, SIMULATOR_PORT: '0', SIMULATOR_API_KEY: SIM_KEY, SIMULATOR_FIRST_TOKEN_MS: '0', SIMULATOR_TOKEN_MS: '0' },
    /"url":"([^"]+)"/,
  );
  return { child, url: match[1]! };
}

/** Our gateway (startTestGateway) in its own process: this file run with --serve-gateway. */
async function startGatewayProcess(simulatorUrl: string): Promise<{ child: Child; url: string }> {
  const { child, match } = await spawnNode(
    [fileURLToPath(import.meta.url), '--serve-gateway'],
    { ...process.env, NEWAPI_BASE_URL: simulatorUrl, NEWAPI_API_KEY: SIM_KEY, BENCH_GATEWAY_OVERRIDES: JSON.stringify(GATEWAY_OVERRIDES) },
    /^BENCH_GATEWAY_URL=(\S+)$/,
  );
  return { child, url: match[1]! };
}

/** Portkey's Node server build (`build/start-server.js`, the package's bin) on a free port. */
async function startPortkey(): Promise<{ child: Child; url: string; version: string; command: string }> {
  const dir = path.join(ROOT, 'node_modules', '@portkey-ai', 'gateway');
  const version = (JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { version: string }).version;
  const port = await freePort();
  const script = path.join(dir, 'build', 'start-server.js');
  const args = [script, `--port=${port}`, '--headless'];
  const { child } = await spawnNode(args, { ...process.env, NODE_ENV: 'production' }, /Ready for connections/);
  return { child, url: `http://127.0.0.1:${port}`, version, command: `node ${path.relative(ROOT, script)} --port=${port} --headless (NODE_ENV=production)` };
}

/** CPU time (user + system, ms) a process has used so far, from /proc. */
function cpuMs(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime are fields 14 and 15 (1-based) of the whole line: 12 and 13 here.
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Load generation

interface Target {
  name: string;
  url: URL;
  headers: Record<string, string>;
  body: string;
  agent: http.Agent;
  pid?: number;
}

interface PhaseResult {
  rate: number;
  sent: number;
  ok: number;
  errors: Record<string, number>;
  errorCount: number;
  /** Requests actually handed to the socket layer per second over the sending window. */
  achievedSendRate: number;
  /** Successful responses per second, first scheduled send → last response. */
  throughput: number;
  /** How late the timer fired requests vs their schedule (ms): p99, max. */
  scheduleLagP99: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  cpuMsPerRequest: number | null;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function send(target: Target): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      target.url,
      {
        method: 'POST',
        agent: target.agent,
        headers: { ...target.headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(target.body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          if (res.statusCode !== 200) {
            const error = new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`) as Error & { code: string };
            error.code = `http_${res.statusCode}`;
            reject(error);
          } else resolve(res.statusCode);
        });
        res.on('error', reject);
      },
    );
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(Object.assign(new Error('timeout'), { code: 'timeout' })));
    req.on('error', reject);
    req.end(target.body);
  });
}

/** Open loop: request k is due at start + k/rate; latency counts from that due time. */
async function openLoop(target: Target, rate: number, seconds: number): Promise<PhaseResult> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const latencies: number[] = [];
  const lags: number[] = [];
  const errors: Record<string, number> = {};
  let errorCount = 0;
  let lastSend = 0;
  let lastDone = 0;
  const pending: Promise<void>[] = [];
  const cpuBefore = cpuMs(target.pid);
  const start = performance.now() + 5;
  await new Promise<void>((resolve) => {
    let k = 0;
    const tick = () => {
      const now = performance.now();
      while (k < total && start + k * interval <= now) {
        const due = start + k * interval;
        lags.push(now - due);
        k++;
        pending.push(
          send(target).then(
            () => {
              lastDone = performance.now();
              latencies.push(lastDone - due);
            },
            (error: Error & { code?: string }) => {
              lastDone = performance.now();
              errorCount++;
              const code = error.code ?? error.message;
              errors[code] = (errors[code] ?? 0) + 1;
              if (errorCount <= 3) errors[`sample: ${error.message.slice(0, 200)}`] = 1;
            },
          ),
        );
      }
      lastSend = now;
      if (k < total) setTimeout(tick, Math.max(0, start + k * interval - performance.now()));
      else resolve();
    };
    setTimeout(tick, 5);
  });
  await Promise.all(pending);
  const cpuAfter = cpuMs(target.pid);
  latencies.sort((a, b) => a - b);
  lags.sort((a, b) => a - b);
  return {
    rate,
    sent: total,
    ok: latencies.length,
    errors,
    errorCount,
    achievedSendRate: total / ((lastSend - start) / 1000 || 1),
    throughput: latencies.length / ((lastDone - start) / 1000 || 1),
    scheduleLagP99: percentile(lags, 99),
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) ?? NaN,
    cpuMsPerRequest: cpuBefore !== null && cpuAfter !== null ? (cpuAfter - cpuBefore) / total : null,
  };
}

async function warmUp(target: Target, count: number, concurrency = 20): Promise<void> {
  let next = 0;
  const failures: string[] = [];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) {
        next++;
        await send(target).catch((e: Error) => failures.push(e.message));
      }
    }),
  );
  if (failures.length) throw new Error(`${target.name}: ${failures.length}/${count} warm-up calls failed, e.g. ${failures[0]}`);
}

function summary(p: PhaseResult) {
  return {
    sent: p.sent,
    ok: p.ok,
    errors: p.errorCount,
    ...(p.errorCount ? { error_kinds: p.errors } : {}),
    achieved_send_rps: round(p.achievedSendRate, 1),
    throughput_rps: round(p.throughput, 1),
    schedule_lag_p99_ms: round(p.scheduleLagP99),
    p50_ms: round(p.p50),
    p90_ms: round(p.p90),
    p99_ms: round(p.p99),
    max_ms: round(p.max),
    ...(p.cpuMsPerRequest !== null ? { process_cpu_ms_per_request: round(p.cpuMsPerRequest, 3) } : {}),
  };
}

// ---------------------------------------------------------------------------------------------

const suite: BenchSuite = {
  name: 'OpenAI-compatible /v1 gateway latency at fixed arrival rates',
  async run(): Promise<BenchResult[]> {
    const children: Child[] = [];
    const agents: http.Agent[] = [];
    const pool = createPgPool(process.env.DATABASE_URL!, 2);
    try {
      const sim = await startSimulatorProcess();
      children.push(sim.child);
      const gateway = await startGatewayProcess(sim.url);
      children.push(gateway.child);

      let portkey: Awaited<ReturnType<typeof startPortkey>> | null = null;
      let portkeyError: string | null = null;
      try {
        portkey = await startPortkey();
        children.push(portkey.child);
      } catch (error) {
        portkeyError = `could not start @portkey-ai/gateway: ${(error as Error).stack ?? String(error)}`;
      }

      // A funded project API key (one org, one wallet: every call holds and captures on it).
      const owner = await signUp(gateway.url, 'bench-v1');
      await new Ledger(pool).topup({ orgId: owner.org.id, amountMicros: 1_000_000_000n, idempotencyKey: `bench-v1-topup:${owner.org.id}`, reason: 'bench credit', actor: { type: 'system' } });
      const key = await createKey(owner, ['chat:write']);

      const agent = () => {
        const a = new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_SOCKETS });
        agents.push(a);
        return a;
      };
      const request = (model: string) => JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: MAX_TOKENS });
      const direct: Target = {
        name: 'direct',
        url: new URL(`${sim.url}/chat/completions`),
        headers: { authorization: `Bearer ${SIM_KEY}` },
        body: request('sim-gpt-4o-mini'),
        agent: agent(),
        pid: sim.child.proc.pid,
      };
      const ours: Target = {
        name: 'ours',
        url: new URL(`${gateway.url}/v1/chat/completions`),
        headers: { authorization: `Bearer ${key}` },
        body: request('gpt-4o-mini'),
        agent: agent(),
        pid: gateway.child.proc.pid,
      };
      let peer: Target | null = null;
      if (portkey) {
        peer = {
          name: 'portkey',
          url: new URL(`${portkey.url}/v1/chat/completions`),
          headers: { authorization: `Bearer ${SIM_KEY}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': sim.url },
          body: request('sim-gpt-4o-mini'),
          agent: agent(),
          pid: portkey.child.proc.pid,
        };
        try {
          await send(peer);
        } catch (error) {
          portkeyError = `@portkey-ai/gateway started but a call through it failed: ${(error as Error).message}`;
          peer = null;
        }
      }
      const targets = [direct, ours, ...(peer ? [peer] : [])];

      // Warm-up: JIT, connection pools, Redis scripts, the model catalog cache.
      for (const target of targets) await warmUp(target, WARMUP_REQUESTS);

      const results: BenchResult[] = [];
      for (const rate of RATES) {
        const phase: Record<string, PhaseResult> = {};
        for (const target of targets) {
          await new Promise((r) => setTimeout(r, 500));
          phase[target.name] = await openLoop(target, rate, SECONDS);
        }
        const d = phase.direct!;
        const o = phase.ours!;
        const p = phase.portkey;
        const details = {
          method: `open loop: ${rate} req/s for ${SECONDS} s per target (after ${WARMUP_REQUESTS} warm-up calls each), latency from each request's scheduled send time; same body to each (${MAX_TOKENS} max tokens, 0-latency simulator); node:http keep-alive agent, ≤ ${MAX_SOCKETS} sockets per target`,
          topology: 'load generator in the bench process; simulator, our gateway (startTestGateway, limits raised) and Portkey each in their own Node 24 process; all share 2 cores with PostgreSQL and Redis, so the load generator competes for the CPU',
          ours_pipeline: 'project API key auth, Redis rate limits, policy, OpenAPI validation, ledger hold → upstream → capture (usage row) + audit row; one funded org, so every call holds and captures on the same wallet row',
          direct: summary(d),
          ours: summary(o),
          ...(p ? { portkey: summary(p) } : {}),
          peer: portkey ? { package: `@portkey-ai/gateway@${portkey.version}`, started_as: portkey.command } : undefined,
          ...(portkeyError ? { portkey_error: portkeyError } : {}),
        };
        for (const stat of ['p50', 'p99'] as const) {
          const oursAdded = o[stat] - d[stat];
          const name = `v1-nonstream-${rate}rps-${stat}`;
          if (p) {
            const peerAdded = p[stat] - d[stat];
            results.push({
              name,
              description: `/v1/chat/completions non-stream at a fixed ${rate} req/s: ${stat} latency added over calling the simulator directly, ours vs Portkey`,
              baseline: { label: `Portkey added ${stat}`, value: round(peerAdded), unit: 'ms' },
              subject: { label: `ours added ${stat}`, value: round(oursAdded), unit: 'ms' },
              ratio: round(oursAdded / Math.max(peerAdded, 0.01), 2),
              ratioMeaning: `our added ${stat} latency in multiples of Portkey's (1 = parity, < 1 = we add less)`,
              details: { [`${stat}_ms`]: { direct: round(d[stat]), ours: round(o[stat]), portkey: round(p[stat]) }, errors: { direct: d.errorCount, ours: o.errorCount, portkey: p.errorCount }, ...details },
            });
          } else {
            results.push({
              name,
              description: `/v1/chat/completions non-stream at a fixed ${rate} req/s: ${stat} latency, ours vs the simulator directly (Portkey unavailable: see details.portkey_error)`,
              baseline: { label: `direct ${stat}`, value: round(d[stat]), unit: 'ms' },
              subject: { label: `ours ${stat} (+${round(oursAdded)} ms)`, value: round(o[stat]), unit: 'ms' },
              ratio: round(o[stat] / d[stat], 2),
              ratioMeaning: `our ${stat} latency in multiples of direct`,
              details: { [`${stat}_ms`]: { direct: round(d[stat]), ours: round(o[stat]) }, errors: { direct: d.errorCount, ours: o.errorCount }, ...details },
            });
          }
        }
      }
      return results;
    } finally {
      for (const a of agents) a.destroy();
      for (const child of children.reverse()) await child.stop();
      await pool.end();
    }
  },
};

export default suite;

// Child mode: serve our gateway (startTestGateway) in this process until SIGTERM.
if (import.meta.main && process.argv.includes('--serve-gateway')) {
  const overrides = JSON.parse(process.env.BENCH_GATEWAY_OVERRIDES ?? '{}') as NodeJS.ProcessEnv;
  const gateway = await startTestGateway(overrides);
  process.stdout.write(`BENCH_GATEWAY_URL=${gateway.url}\n`);
  const stop = () => {
    gateway.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}
