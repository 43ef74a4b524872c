// /v1/chat/completions (non-stream) latency under a FIXED arrival rate (open loop: requests are
// sent on a timer at the rate whatever the responses do; latency is counted from each request's
// scheduled send time, so a backed-up server cannot hide its queue). Three targets get the same
// requests in the same run: the upstream simulator directly (baseline), our gateway (a funded
// project API key: auth, Redis rate limits, policy, OpenAPI validation, ledger hold → upstream →
// capture + usage row + audit row) and a peer, Portkey's open-source gateway (@portkey-ai/gateway),
// pointed at the same simulator. Figures are the latency each gateway adds over direct, at the
// issue's 200 and 500 req/s and at a light 25 req/s. A request unanswered 5 s after its due time
// is abandoned and counted at 5 s, which bounds a suite whose target cannot keep up.
//
// Topology, the same for every target: the load generator runs in this process; the simulator,
// our gateway (startTestGateway) and Portkey each run in their own Node process. On this 2-core
// machine they all share the CPU with each other, PostgreSQL and Redis.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createPgPool } from '@deepspace/core';
import { Ledger } from '@deepspace/core/billing/index';
import { freePort } from '../../scripts/lib/services.ts';
import { createKey, signUp } from '../support/api.ts';
import { GATEWAY_NODE_FLAGS } from '../../gateway/src/node-flags.ts';
import { round, type BenchResult, type BenchSuite } from './harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// 200 and 500 req/s are the issue's rates, one target at a time (together they would overload
// the machine), in short blocks taken in turn so that slow stretches of the machine hit all targets. 25 req/s is a light load every target here sustains, where the added latency is
// the pipeline's own cost rather than queueing: the three targets run side by side (25 req/s
// each, staggered), so the same machine noise hits all of them.
const PHASES: Array<{ rate: number; seconds: number; together: boolean }> = [
  { rate: 25, seconds: 12, together: true },
  { rate: 200, seconds: 8, together: false },
  { rate: 500, seconds: 8, together: false },
].map((p) => ({ ...p, seconds: Number(process.env.BENCH_V1_SECONDS ?? p.seconds) }));
/** A request still unanswered this long after its due time is abandoned (and counted at this value). */
const DEADLINE_MS = 5_000;
/** The phases run alone are split into this many blocks per target, taken in turn. */
const BLOCKS = Math.max(1, Number(process.env.BENCH_V1_BLOCKS ?? 4));
const WARMUP_REQUESTS = 200;
const CAPACITY_SECONDS = 3;
const REQUEST_TIMEOUT_MS = 30_000;
const MAX_SOCKETS = 64;
const ORGS = Math.max(1, Number(process.env.BENCH_V1_ORGS ?? 1));
const SIM_KEY = 'sim-test-key';
const GATEWAY_OVERRIDES = { RATE_LIMIT_API_KEY_PER_MINUTE: '100000000', RATE_LIMIT_PROJECT_PER_MINUTE: '100000000' };
const STRICT_SETTINGS = { V1_SPECULATIVE_HEADROOM: '0', V1_SETTLE_BEFORE_RESPONSE: 'true' };
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
    // BENCH_CHILD_LOG_DIR=dir keeps every line of each child's output there (e.g. with --trace-gc).
    const log = process.env.BENCH_CHILD_LOG_DIR ? path.join(process.env.BENCH_CHILD_LOG_DIR, `child-${proc.pid}.log`) : null;
    const onLine = (line: string) => {
      if (log) appendFileSync(log, `${line}\n`);
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

/** Our gateway (startTestGateway) in its own process: v1-gateway-server.ts, which loads only the gateway. */
async function startGatewayProcess(simulatorUrl: string, env: NodeJS.ProcessEnv = {}): Promise<{ child: Child; url: string }> {
  const { child, match } = await spawnNode(
    // BENCH_CPU_PROF_DIR=dir writes a CPU profile of our gateway process there (for investigations).
    [
      ...(process.env.BENCH_CPU_PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`] : []),
      // The flags the gateway runs with everywhere; BENCH_GATEWAY_NODE_ARGS, when set (even empty),
      // replaces them for an experiment.
      ...(process.env.BENCH_GATEWAY_NODE_ARGS ?? GATEWAY_NODE_FLAGS.join(' ')).split(' ').filter(Boolean),
      path.join(ROOT, 'tests/bench/v1-gateway-server.ts'),
    ],
    { ...process.env, NEWAPI_BASE_URL: simulatorUrl, NEWAPI_API_KEY: SIM_KEY, BENCH_GATEWAY_OVERRIDES: JSON.stringify({ ...GATEWAY_OVERRIDES, ...env }) },
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
  /** Headers per request (round-robin), e.g. one API key per org. */
  headers: Array<Record<string, string>>;
  body: string;
  agent: http.Agent;
  pid?: number;
}

interface PhaseResult {
  rate: number;
  sent: number;
  ok: number;
  /** Requests not answered within DEADLINE_MS of their due time (aborted; counted in the percentiles at DEADLINE_MS). */
  timeouts: number;
  /** Other failures (HTTP status ≠ 200, connection errors): not in the percentiles. */
  errors: Record<string, number>;
  errorCount: number;
  /** Requests fired per second over the sending window. */
  achievedSendRate: number;
  /** Successful responses per second, first due time → last response. */
  throughput: number;
  /** How late the timer fired requests vs their schedule (ms). */
  scheduleLagP99: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Latency from when the request was actually fired (without the timer's lag), answered requests only. */
  fromSendP50: number;
  fromSendP99: number;
  cpuMsPerRequest: number | null;
  /** Share of the machine's 2 cores busy during the phase (all processes, including ones not ours). */
  machineBusyPct: number | null;
  servicesCpuMsPerRequest: { postgresql: number; redis: number };
  /** p50 of each phase of the answers' Server-Timing header (our gateway only: where its added time goes). */
  serverTimingP50: Record<string, number> | null;
  /** p99 of each phase: whether a tail is the gateway's own (total) or before it (queued to be read). */
  serverTimingP99: Record<string, number> | null;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Machine-wide busy and total jiffies, from /proc/stat. */
function machineJiffies(): { busy: number; total: number } | null {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const values = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = (values[3] ?? 0) + (values[4] ?? 0);
    const total = values.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return null;
  }
}

/** CPU ms so far of every PostgreSQL and Redis server process (what a phase costs them, by difference). */
function serviceCpuMs(): { postgresql: number; redis: number } {
  const sums = { postgresql: 0, redis: 0 };
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return sums;
  }
  for (const entry of entries) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const group = comm === 'postgres' ? 'postgresql' : comm.startsWith('redis') ? 'redis' : null;
      if (!group) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      // utime + stime, plus cutime + cstime: the postmaster carries its exited backends' CPU there.
      sums[group] += ((Number(fields[11]) + Number(fields[12]) + Number(fields[13]) + Number(fields[14])) * 1000) / 100;
    } catch {
      // exited meanwhile
    }
  }
  return sums;
}

type SendError = Error & { code?: string };

let sendCounter = 0;

/** One POST; resolves with the answer's Server-Timing header; rejects on a status ≠ 200, a connection error or when `deadline` (performance.now() time) passes. */
function send(target: Target, deadline = performance.now() + REQUEST_TIMEOUT_MS): Promise<string | undefined> {
  const headers = target.headers[sendCounter++ % target.headers.length]!;
  return new Promise((resolve, reject) => {
    const req = http.request(
      target.url,
      {
        method: 'POST',
        agent: target.agent,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(target.body) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          if (res.statusCode !== 200) {
            reject(Object.assign(new Error(`HTTP ${res.statusCode}: ${Buffer.concat(chunks).toString('utf8').slice(0, 300)}`), { code: `http_${res.statusCode}` }));
          } else resolve(res.headers['server-timing'] as string | undefined);
        });
        res.on('error', reject);
      },
    );
    // Past the deadline the request is abandoned: if it still waits for a socket it is never sent.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('deadline passed'), { code: 'timeout' })), Math.max(0, deadline - performance.now()));
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(target.body);
  });
}

/** What one open-loop block recorded for one target (blocks of a phase are merged by summarize). */
interface RawBlock {
  rate: number;
  sent: number;
  /** Targets sharing the block (services' CPU is shared by all of them). */
  sharedBy: number;
  latencies: number[];
  fromSend: number[];
  lags: number[];
  errors: Record<string, number>;
  errorCount: number;
  timeouts: number;
  /** First due time → last send, and → last answer (ms). */
  sendWindowMs: number;
  answerWindowMs: number;
  cpuMs: number | null;
  machine: { busy: number; total: number } | null;
  services: { postgresql: number; redis: number };
  serverTimings: Map<string, number[]>;
}

/**
 * Open loop: request k to each target is due at start + k/rate (targets staggered within the
 * interval); its latency counts from that due time. Several targets at once share the same
 * moments of machine noise, which a light-load comparison needs on a shared 2-core box.
 */
async function openLoop(targets: Target[], rate: number, seconds: number): Promise<Record<string, RawBlock>> {
  const total = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const n = targets.length;
  const per = targets.map((target) => ({
    target,
    latencies: [] as number[],
    fromSend: [] as number[],
    lags: [] as number[],
    errors: {} as Record<string, number>,
    errorCount: 0,
    timeouts: 0,
    lastDone: 0,
    cpuBefore: cpuMs(target.pid),
    serverTimings: new Map<string, number[]>(),
  }));
  let lastSend = 0;
  const pending: Promise<void>[] = [];
  const machineBefore = machineJiffies();
  const servicesBefore = serviceCpuMs();
  const start = performance.now() + 5;
  const dueAt = (slot: number) => start + Math.floor(slot / n) * interval + (slot % n) * (interval / n);
  await new Promise<void>((resolve) => {
    let slot = 0;
    const tick = () => {
      const now = performance.now();
      while (slot < total * n && dueAt(slot) <= now) {
        const due = dueAt(slot);
        const s = per[slot % n]!;
        slot++;
        s.lags.push(now - due);
        pending.push(
          send(s.target, due + DEADLINE_MS).then(
            (serverTiming) => {
              // "pre;dur=0.29, hold;dur=1.57, …"
              for (const entry of serverTiming ? serverTiming.split(', ') : []) {
                const [name, dur] = entry.split(';dur=');
                if (name && dur !== undefined) (s.serverTimings.get(name) ?? s.serverTimings.set(name, []).get(name)!).push(Number(dur));
              }
              s.lastDone = performance.now();
              s.latencies.push(s.lastDone - due);
              s.fromSend.push(s.lastDone - now);
            },
            (error: SendError) => {
              if (error.code === 'timeout') {
                s.timeouts++;
                s.latencies.push(DEADLINE_MS);
                return;
              }
              s.errorCount++;
              const code = error.code ?? 'error';
              s.errors[code] = (s.errors[code] ?? 0) + 1;
              if (s.errorCount <= 3) s.errors[`e.g. ${error.message.slice(0, 200)}`] = 1;
            },
          ),
        );
      }
      lastSend = now;
      if (slot < total * n) setTimeout(tick, Math.max(0, dueAt(slot) - performance.now()));
      else resolve();
    };
    setTimeout(tick, 5);
  });
  await Promise.all(pending);
  const machineAfter = machineJiffies();
  const servicesAfter = serviceCpuMs();
  const blocks: Record<string, RawBlock> = {};
  for (const s of per) {
    const cpuAfter = cpuMs(s.target.pid);
    blocks[s.target.name] = {
      rate,
      sent: total,
      sharedBy: n,
      latencies: s.latencies,
      fromSend: s.fromSend,
      lags: s.lags,
      errors: s.errors,
      errorCount: s.errorCount,
      timeouts: s.timeouts,
      sendWindowMs: lastSend - start,
      answerWindowMs: s.lastDone - start,
      cpuMs: s.cpuBefore !== null && cpuAfter !== null ? cpuAfter - s.cpuBefore : null,
      machine: machineBefore && machineAfter ? { busy: machineAfter.busy - machineBefore.busy, total: machineAfter.total - machineBefore.total } : null,
      services: { postgresql: servicesAfter.postgresql - servicesBefore.postgresql, redis: servicesAfter.redis - servicesBefore.redis },
      serverTimings: s.serverTimings,
    };
  }
  return blocks;
}

/** One target's blocks of a phase, merged: percentiles over all their requests, rates and CPU over their sum. */
function summarize(blocks: RawBlock[]): PhaseResult {
  const sum = (f: (b: RawBlock) => number) => blocks.reduce((a, b) => a + f(b), 0);
  const sorted = (f: (b: RawBlock) => number[]) => blocks.flatMap(f).sort((a, b) => a - b);
  const latencies = sorted((b) => b.latencies);
  const fromSend = sorted((b) => b.fromSend);
  const lags = sorted((b) => b.lags);
  const sent = sum((b) => b.sent);
  const timeouts = sum((b) => b.timeouts);
  const ok = latencies.length - timeouts;
  const errors: Record<string, number> = {};
  for (const b of blocks) for (const [k, v] of Object.entries(b.errors)) errors[k] = (errors[k] ?? 0) + v;
  const serverTimings = new Map<string, number[]>();
  for (const b of blocks) for (const [k, v] of b.serverTimings) (serverTimings.get(k) ?? serverTimings.set(k, []).get(k)!).push(...v);
  for (const values of serverTimings.values()) values.sort((a, b) => a - b);
  const cpu = blocks.every((b) => b.cpuMs !== null) ? sum((b) => b.cpuMs!) : null;
  const machine = blocks.every((b) => b.machine) ? { busy: sum((b) => b.machine!.busy), total: sum((b) => b.machine!.total) } : null;
  const shared = sum((b) => b.sent * b.sharedBy);
  return {
    rate: blocks[0]!.rate,
    sent,
    ok,
    timeouts,
    errors,
    errorCount: sum((b) => b.errorCount),
    achievedSendRate: sent / (sum((b) => b.sendWindowMs) / 1000 || 1),
    throughput: ok / (sum((b) => b.answerWindowMs) / 1000 || 1),
    scheduleLagP99: percentile(lags, 99),
    p50: percentile(latencies, 50),
    p90: percentile(latencies, 90),
    p99: percentile(latencies, 99),
    max: latencies.at(-1) ?? NaN,
    fromSendP50: percentile(fromSend, 50),
    fromSendP99: percentile(fromSend, 99),
    cpuMsPerRequest: cpu !== null ? cpu / sent : null,
    machineBusyPct: machine ? (100 * machine.busy) / Math.max(1, machine.total) : null,
    // Shared by every target of a block: meaningful per target when it ran alone.
    servicesCpuMsPerRequest: {
      postgresql: sum((b) => b.services.postgresql) / shared,
      redis: sum((b) => b.services.redis) / shared,
    },
    serverTimingP50: serverTimings.size ? Object.fromEntries([...serverTimings].map(([name, values]) => [name, percentile(values, 50)])) : null,
    serverTimingP99: serverTimings.size ? Object.fromEntries([...serverTimings].map(([name, values]) => [name, percentile(values, 99)])) : null,
  };
}

/** Closed loop, `concurrency` at a time, `count` calls or for `seconds`: warms up, and measures the most a target completes per second. */
async function closedLoop(target: Target, options: { count?: number; seconds?: number; concurrency?: number }): Promise<{ perSecond: number; failures: number; example?: string }> {
  const count = options.count ?? Infinity;
  const until = performance.now() + (options.seconds ?? Infinity) * 1000;
  let next = 0;
  let failures = 0;
  let example: string | undefined;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency ?? 20 }, async () => {
      while (next < count && performance.now() < until) {
        next++;
        await send(target).catch((e: Error) => {
          failures++;
          example ??= e.message;
        });
      }
    }),
  );
  return { perSecond: (next - failures) / ((performance.now() - started) / 1000), failures, ...(example ? { example } : {}) };
}

/** Waits until a lone request comes back quickly: abandoned requests still being served have drained. */
async function drain(target: Target): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < 60_000) {
    const t = performance.now();
    await send(target).catch(() => {});
    if (performance.now() - t < 250) break;
  }
  await new Promise((r) => setTimeout(r, 300));
  return performance.now() - started;
}

function summary(p: PhaseResult) {
  return {
    sent: p.sent,
    ok: p.ok,
    timeouts: p.timeouts,
    errors: p.errorCount,
    ...(p.errorCount ? { error_kinds: p.errors } : {}),
    achieved_send_rps: round(p.achievedSendRate, 1),
    throughput_rps: round(p.throughput, 1),
    schedule_lag_p99_ms: round(p.scheduleLagP99),
    p50_ms: round(p.p50),
    p90_ms: round(p.p90),
    p99_ms: round(p.p99),
    max_ms: round(p.max),
    from_send_ms: { p50: round(p.fromSendP50), p99: round(p.fromSendP99) },
    ...(p.cpuMsPerRequest !== null ? { process_cpu_ms_per_request: round(p.cpuMsPerRequest, 3) } : {}),
    ...(p.machineBusyPct !== null ? { machine_busy_pct: round(p.machineBusyPct, 0) } : {}),
    services_cpu_ms_per_request: { postgresql: round(p.servicesCpuMsPerRequest.postgresql, 3), redis: round(p.servicesCpuMsPerRequest.redis, 3) },
    // Our gateway's own account of each answer (Server-Timing): pre = arrival → model call starts,
    // hold = the ledger hold's round trip (beside the call), hold_wait = how long the answer waited for it.
    ...(p.serverTimingP50 ? { server_timing_p50_ms: Object.fromEntries(Object.entries(p.serverTimingP50).map(([k, v]) => [k, round(v, 3)])) } : {}),
    ...(p.serverTimingP99 ? { server_timing_p99_ms: Object.fromEntries(Object.entries(p.serverTimingP99).map(([k, v]) => [k, round(v, 3)])) } : {}),
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
      // The same gateway with both /v1 latency features off (hold, then call, then a durable
      // capture before the answer), so one run shows what they buy. BENCH_V1_STRICT=0 skips it.
      const strictGateway = process.env.BENCH_V1_STRICT === '0' ? null : await startGatewayProcess(sim.url, STRICT_SETTINGS);
      if (strictGateway) children.push(strictGateway.child);

      let portkey: Awaited<ReturnType<typeof startPortkey>> | null = null;
      let portkeyError: string | null = null;
      try {
        portkey = await startPortkey();
        children.push(portkey.child);
      } catch (error) {
        portkeyError = `could not start @portkey-ai/gateway: ${(error as Error).stack ?? String(error)}`;
      }

      // Funded project API keys: one org by default (so every call holds and captures on the same
      // wallet row, as one customer's traffic would); BENCH_V1_ORGS=n spreads calls over n orgs.
      const ledger = new Ledger(pool);
      const keys: string[] = [];
      for (let i = 0; i < ORGS; i++) {
        const owner = await signUp(gateway.url, `bench-v1-${i}`);
        await ledger.topup({ orgId: owner.org.id, amountMicros: 1_000_000_000n, idempotencyKey: `bench-v1-topup:${owner.org.id}`, reason: 'bench credit', actor: { type: 'system' } });
        keys.push(await createKey(owner, ['chat:write']));
      }

      const agent = () => {
        const a = new http.Agent({ keepAlive: true, maxSockets: MAX_SOCKETS, maxFreeSockets: MAX_SOCKETS });
        agents.push(a);
        return a;
      };
      const request = (model: string) => JSON.stringify({ model, messages: [{ role: 'user', content: PROMPT }], max_tokens: MAX_TOKENS });
      const direct: Target = {
        name: 'direct',
        url: new URL(`${sim.url}/chat/completions`),
        headers: [{ authorization: `Bearer ${SIM_KEY}` }],
        body: request('sim-gpt-4o-mini'),
        agent: agent(),
        pid: sim.child.proc.pid,
      };
      const ours: Target = {
        name: 'ours',
        url: new URL(`${gateway.url}/v1/chat/completions`),
        headers: keys.map((key) => ({ authorization: `Bearer ${key}` })),
        body: request('gpt-4o-mini'),
        agent: agent(),
        pid: gateway.child.proc.pid,
      };
      const strict: Target | null = strictGateway
        ? { ...ours, name: 'ours-strict', url: new URL(`${strictGateway.url}/v1/chat/completions`), agent: agent(), pid: strictGateway.child.proc.pid }
        : null;
      let peer: Target | null = null;
      if (portkey) {
        peer = {
          name: 'portkey',
          url: new URL(`${portkey.url}/v1/chat/completions`),
          headers: [{ authorization: `Bearer ${SIM_KEY}`, 'x-portkey-provider': 'openai', 'x-portkey-custom-host': sim.url }],
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
      const targets = [direct, ours, ...(strict ? [strict] : []), ...(peer ? [peer] : [])];

      // Warm-up (JIT, connection pools, Redis scripts, the model catalog cache), which doubles as a
      // closed-loop measure of the most each target completes per second here.
      const capacity: Record<string, { perSecond: number; failures: number; example?: string }> = {};
      for (const target of targets) {
        const warm = await closedLoop(target, { count: WARMUP_REQUESTS });
        if (warm.failures) throw new Error(`${target.name}: ${warm.failures}/${WARMUP_REQUESTS} warm-up calls failed, e.g. ${warm.example}`);
        capacity[target.name] = await closedLoop(target, { seconds: CAPACITY_SECONDS, concurrency: 32 });
        await drain(target);
      }

      const results: BenchResult[] = [];
      for (const { rate, seconds, together } of PHASES) {
        const blocks: Record<string, RawBlock[]> = Object.fromEntries(targets.map((t) => [t.name, []]));
        const drained: Record<string, number> = {};
        if (together) {
          const block = await openLoop(targets, rate, seconds);
          for (const target of targets) {
            blocks[target.name]!.push(block[target.name]!);
            drained[target.name] = round(await drain(target), 0);
          }
        } else {
          // Alone, in short blocks taken in turn (each round starts with the next target), so a
          // slow stretch of this shared machine lands on every target rather than on one.
          const blockSeconds = seconds / BLOCKS;
          for (let b = 0; b < BLOCKS; b++) {
            for (let i = 0; i < targets.length; i++) {
              const target = targets[(b + i) % targets.length]!;
              blocks[target.name]!.push((await openLoop([target], rate, blockSeconds))[target.name]!);
              drained[target.name] = Math.max(drained[target.name] ?? 0, round(await drain(target), 0));
            }
          }
        }
        const phase: Record<string, PhaseResult> = Object.fromEntries(Object.entries(blocks).map(([name, list]) => [name, summarize(list)]));
        const d = phase.direct!;
        const o = phase.ours!;
        const p = phase.portkey;
        const details = {
          method: `open loop: ${rate} req/s for ${seconds} s per target, ${together ? 'all targets side by side (staggered)' : `one target at a time, in ${BLOCKS} blocks of ${round(seconds / BLOCKS, 2)} s taken in turn (the order rotating each round)`}, latency from each request's scheduled send time; a request not answered ${DEADLINE_MS} ms after its due time is abandoned and counted at ${DEADLINE_MS} ms (a "timeout"); same body to each (${MAX_TOKENS} max tokens; 0-latency simulator); node:http keep-alive agent, ≤ ${MAX_SOCKETS} sockets per target`,
          topology: 'load generator in the bench process; simulator, our gateway (startTestGateway: Prisma pool 5, pg pool 10, limits raised) and Portkey each in their own Node 24 process; all share the 2 cores with PostgreSQL, Redis and Temporal, and the load generator competes for the CPU',
          ours_pipeline: `project API key auth, Redis rate limits, policy, OpenAPI validation, ledger hold → upstream → capture (usage row) + audit row, with the default settings (upstream call beside the hold once the wallet was seen rich; capture committed right after the answer; "ours_strict": hold, call and capture in sequence, the capture durable before the answer); ${ORGS === 1 ? 'one funded org, so every call holds and captures on the same wallet row' : `calls spread over ${ORGS} funded orgs`}`,
          closed_loop_capacity: `most calls/s each target completed with 32 in flight for ${CAPACITY_SECONDS} s, after the warm-up`,
          closed_loop_capacity_rps: Object.fromEntries(Object.entries(capacity).map(([k, v]) => [k, round(v.perSecond, 0)])),
          direct: summary(d),
          ours: summary(o),
          ...(phase['ours-strict'] ? { ours_strict: summary(phase['ours-strict']), ours_strict_settings: STRICT_SETTINGS } : {}),
          ...(p ? { portkey: summary(p) } : {}),
          drain_after_block_ms_max: drained,
          ...(portkey ? { peer: { package: `@portkey-ai/gateway@${portkey.version}`, started_as: portkey.command } } : {}),
          ...(portkeyError ? { portkey_error: portkeyError } : {}),
          load_average_at_end: readFileSync('/proc/loadavg', 'utf8').trim(),
        };
        for (const stat of ['p50', 'p99'] as const) {
          const oursAdded = o[stat] - d[stat];
          const name = `v1-nonstream-${rate}rps-${stat}`;
          const censored = (x: PhaseResult) => (x[stat] >= DEADLINE_MS ? ` (≥ ${DEADLINE_MS} ms: timeouts)` : '');
          if (p) {
            const peerAdded = p[stat] - d[stat];
            results.push({
              name,
              description: `/v1/chat/completions non-stream at a fixed ${rate} req/s: ${stat} latency added over calling the simulator directly, ours vs Portkey`,
              baseline: { label: `Portkey added ${stat}${censored(p)}`, value: round(peerAdded), unit: 'ms' },
              subject: { label: `ours added ${stat}${censored(o)}`, value: round(oursAdded), unit: 'ms' },
              ratio: round(oursAdded / Math.max(peerAdded, 1), 2),
              ratioMeaning: `our added ${stat} latency in multiples of Portkey's, floored at 1 ms (1 = parity, < 1 = we add less)`,
              details: {
                [`${stat}_ms`]: { direct: round(d[stat]), ours: round(o[stat]), portkey: round(p[stat]), ...(phase['ours-strict'] ? { ours_strict: round(phase['ours-strict'][stat]) } : {}) },
                timeouts: { direct: d.timeouts, ours: o.timeouts, portkey: p.timeouts },
                errors: { direct: d.errorCount, ours: o.errorCount, portkey: p.errorCount },
                ...details,
              },
            });
          } else {
            results.push({
              name,
              description: `/v1/chat/completions non-stream at a fixed ${rate} req/s: ${stat} latency, ours vs the simulator directly (Portkey unavailable: see details.portkey_error)`,
              baseline: { label: `direct ${stat}`, value: round(d[stat]), unit: 'ms' },
              subject: { label: `ours ${stat} (+${round(oursAdded)} ms)${censored(o)}`, value: round(o[stat]), unit: 'ms' },
              ratio: round(o[stat] / d[stat], 2),
              ratioMeaning: `our ${stat} latency in multiples of direct`,
              details: {
                [`${stat}_ms`]: { direct: round(d[stat]), ours: round(o[stat]) },
                timeouts: { direct: d.timeouts, ours: o.timeouts },
                errors: { direct: d.errorCount, ours: o.errorCount },
                ...details,
              },
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
