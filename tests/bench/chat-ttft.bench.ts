// Chat time-to-first-token through the durable workflow vs calling the model directly.
// Subject: POST /api/v1/projects/:id/chat/sessions/:sid/messages (SSE) → the first `message.delta`
// event (gateway → Temporal workflow → local activities (prepare + hold, then the streamed model call) → Redis Stream → SSE).
// Baseline: a streaming chat.completions.create sent straight to the simulator with the same
// prompt → its first content chunk. The simulator answers the first token after 50 ms on both
// paths (a directive in the prompt), so the difference is what the platform adds.
// One stream at a time (direct and workflow samples alternate, so machine noise hits both) and 20
// concurrent streams (in alternating blocks). Each workflow sample is then broken down with the
// run's Temporal history, its Redis Stream entry ids (server timestamps) and the gateway's
// workflow.start call, so a miss can be traced to the step that costs it.
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import OpenAI from 'openai';
import { tsToMs } from '@temporalio/common';
import { signUp, type Tenant } from '../support/api.ts';
import { sseEvents } from '../support/sse.ts';
import { startTestGateway, startTestWorker, type TestGateway, type TestWorker } from '../support/stack.ts';
import { round, startWorkerProcess, type BenchResult, type BenchSuite } from './harness.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const SIM_KEY = 'sim-test-key';
const FIRST_TOKEN_MS = 50;
const PROMPT = `Explain what enzymes do in two sentences. [[sim:first_token_ms=${FIRST_TOKEN_MS}]] [[sim:output_tokens=12]]`;
const MAX_TOKENS = 16;
// "20 concurrent streams": 20 replies streaming at once, each as long as a real answer (100 tokens
// at 15 ms each after the first: ~1.5 s, ~65 tokens/s, the pace of a fast hosted model), the 20
// lanes' starts staggered over one reply's length so arrivals spread out. A second block runs the
// 20 lanes back to back with 12-token replies that end right after their first token: that
// measures saturation throughput (a new run whenever one ends), not 20 streams.
const STREAM_OUTPUT_TOKENS = 100;
const STREAM_TOKEN_MS = 15;
const STREAM_PROMPT = `Explain what enzymes do, in detail. [[sim:first_token_ms=${FIRST_TOKEN_MS}]] [[sim:output_tokens=${STREAM_OUTPUT_TOKENS}]] [[sim:token_ms=${STREAM_TOKEN_MS}]]`;
const STREAM_MAX_TOKENS = 128;
const STREAM_MS = FIRST_TOKEN_MS + STREAM_OUTPUT_TOKENS * STREAM_TOKEN_MS;
const STREAM_ROUNDS = Number(process.env.BENCH_TTFT_STREAM_ROUNDS ?? 3);
const STREAM_PER_LANE = 4;
const SINGLE_SAMPLES = Number(process.env.BENCH_TTFT_SAMPLES ?? 150);
const CONCURRENT = 20;
/** Rounds of (direct block, workflow block), each block CONCURRENT lanes × PER_LANE messages. */
const CONCURRENT_ROUNDS = Number(process.env.BENCH_TTFT_ROUNDS ?? 4);
const PER_LANE = 5;
const WARMUP = 15;
const TARGET_ADDED_MS = { p50: 30, p99: 120 } as const;
const INLINE_WORKER = process.env.BENCH_CHAT_WORKER === 'inline';
const TOPOLOGY = INLINE_WORKER
  ? 'gateway (startTestGateway), worker (startTestWorker) and the client share this process; the simulator runs in its own; 2 cores shared with PostgreSQL, Redis and Temporal'
  : 'worker in its own process (temporal-workers/src/main.ts), as deployed; gateway and client in this process; the simulator in its own; 2 cores shared with PostgreSQL, Redis and Temporal';

/** The simulator in its own process, as the real upstream would be. */
async function startSimulatorProcess(): Promise<{ proc: ChildProcess; url: string; stop(): Promise<void> }> {
  const proc = spawn(process.execPath, [path.join(ROOT, 'tests/simulator/src/main.ts')], {
    cwd: ROOT,
    env: { ...process.env, SIMULATOR_PORT: '0', SIMULATOR_API_KEY: SIM_KEY },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const stop = async () => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  const url = await new Promise<string>((resolve, reject) => {
    const lines: string[] = [];
    const timer = setTimeout(() => reject(new Error(`simulator did not start: ${lines.join('\n')}`)), 30_000);
    const onLine = (line: string) => {
      lines.push(line);
      const match = /"url":"([^"]+)"/.exec(line);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    };
    createInterface({ input: proc.stdout! }).on('line', onLine);
    createInterface({ input: proc.stderr! }).on('line', onLine);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`simulator exited (${code}): ${lines.join('\n')}`));
    });
  });
  return { proc, url, stop };
}

// ---------------------------------------------------------------------------------------------

interface WorkflowSample {
  /** Wall clock (ms since the epoch) when the POST was sent. */
  t0: number;
  ttft: number;
  /** The gateway's `run` event (sent after the workflow start), ms after t0. */
  runEvent: number;
  firstDeltaWall: number;
  runStartedRedisMs: number | null;
  firstDeltaRedisMs: number;
  workflowId: string;
  runId: string;
}

// Contiguous steps from the POST to the first delta at the client.
const SEGMENTS = [
  ['gatewayAuthAndLookups', 'POST sent → the run row is inserted (HTTP, auth, rate limit, project/session/model/policy lookups, idempotency check)'],
  ['gatewayMessageTransaction', 'run row inserted → gateway calls workflow.start (rest of the user message + run + session + audit transaction, commit)'],
  ['workflowStartRpc', 'workflow.start called → it returns (StartWorkflowExecution round trip)'],
  ['workflowTaskDispatch', 'workflow.start returned → first workflow task started on the worker'],
  ['prepareReads', 'workflow task started → the run row marked running (workflow activation, local-activity dispatch, cached model, one history read, token counting)'],
  ['prepareWritesAndHold', 'run marked running → both run.started is in Redis and the hold row is inserted (side by side in prepareChatRun)'],
  ['modelCallToFirstToken', `→ first delta appended to the Redis Stream (hold commit, local-activity completion, next activation, chatModelCall local activity, upstream call incl. the simulator's ${FIRST_TOKEN_MS} ms first token)`],
  ['relayToClient', 'first delta in Redis → the client reads the message.delta SSE event (XREAD relay, SSE)'],
] as const;

type Breakdown = Record<(typeof SEGMENTS)[number][0], number>;

/** Machine-wide busy and total jiffies, from /proc/stat. */
function machineJiffies(): { busy: number; total: number } {
  try {
    const values = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = values.reduce((a, b) => a + b, 0);
    return { busy: total - (values[3] ?? 0) - (values[4] ?? 0), total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

/**
 * What this process (gateway + client, and the worker when inline) and the machine did while the
 * workflow samples ran: CPU used (100 % = one core), event-loop delay, machine-wide busy share.
 */
/** CPU seconds so far of this machine's processes, grouped by what they are (from /proc). */
function cpuByProcessGroup(pids: Record<string, number | undefined>): Record<string, number> {
  const groups: Record<string, number> = {};
  const named = new Map(Object.entries(pids).filter(([, pid]) => pid !== undefined).map(([name, pid]) => [pid!, name]));
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc').filter((name) => /^\d+$/.test(name));
  } catch {
    return groups;
  }
  for (const entry of entries) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / 100;
    const group = named.get(Number(entry)) ?? (comm === 'postgres' ? 'postgresql' : comm === 'temporal' ? 'temporal_server' : comm.startsWith('redis') ? 'redis' : null);
    if (group) groups[group] = (groups[group] ?? 0) + seconds;
  }
  return groups;
}

function loadMeter(pids: Record<string, number | undefined> = {}) {
  const loop = monitorEventLoopDelay({ resolution: 5 });
  const cpuSeconds: Record<string, number> = {};
  let groupsAtStart: Record<string, number> = {};
  let cpuMicros = 0;
  let wallMs = 0;
  let busy = 0;
  let total = 0;
  let started: { cpu: NodeJS.CpuUsage; wall: number; machine: { busy: number; total: number } } | null = null;
  return {
    start() {
      loop.enable();
      started = { cpu: process.cpuUsage(), wall: performance.now(), machine: machineJiffies() };
      groupsAtStart = cpuByProcessGroup(pids);
    },
    stop() {
      loop.disable();
      if (!started) return;
      const cpu = process.cpuUsage(started.cpu);
      cpuMicros += cpu.user + cpu.system;
      wallMs += performance.now() - started.wall;
      const machine = machineJiffies();
      busy += machine.busy - started.machine.busy;
      total += machine.total - started.machine.total;
      for (const [group, seconds] of Object.entries(cpuByProcessGroup(pids))) cpuSeconds[group] = (cpuSeconds[group] ?? 0) + seconds - (groupsAtStart[group] ?? seconds);
      started = null;
    },
    /** CPU milliseconds per unit of work (e.g. per run) of each process group, over the measured spans. */
    cpuMsPer(units: number): Record<string, number> {
      return Object.fromEntries(Object.entries(cpuSeconds).map(([group, seconds]) => [group, round((seconds * 1000) / Math.max(1, units), 1)]));
    },
    summary() {
      return {
        bench_process_cpu_pct: round(cpuMicros / 10 / Math.max(1, wallMs), 0),
        event_loop_delay_ms: { p50: round(loop.percentile(50) / 1e6, 1), p99: round(loop.percentile(99) / 1e6, 1), max: round(loop.max / 1e6, 1) },
        machine_busy_pct_of_2_cores: total ? round((100 * busy) / total, 0) : null,
      };
    },
  };
}

const redisMs = (id: string | undefined) => (id ? Number(id.split('-')[0]) : null);

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function stats(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), p95: percentile(sorted, 95), p99: percentile(sorted, 99), n: sorted.length };
}

type HistoryEvent = {
  eventTime?: Parameters<typeof tsToMs>[0];
  workflowExecutionStartedEventAttributes?: unknown;
  workflowTaskStartedEventAttributes?: unknown;
  activityTaskScheduledEventAttributes?: unknown;
  activityTaskStartedEventAttributes?: unknown;
};

const suite: BenchSuite = {
  name: 'chat time-to-first-token through the workflow',
  async run(): Promise<BenchResult[]> {
    const sim = await startSimulatorProcess();
    let gateway: TestGateway | undefined;
    let worker: TestWorker | undefined;
    let workerProcess: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
    try {
      // One task queue named here, shared by the gateway and the worker (in its own process or not).
      const upstreamEnv = { NEWAPI_BASE_URL: sim.url, NEWAPI_API_KEY: SIM_KEY, TEMPORAL_TASK_QUEUE: `bench-chat-${process.pid}-${Date.now()}` };
      gateway = await startTestGateway({ ...upstreamEnv, RATE_LIMIT_API_KEY_PER_MINUTE: '100000000', RATE_LIMIT_PROJECT_PER_MINUTE: '100000000' }, { keepConnections: true });
      // The worker in its own process as deployed; BENCH_CHAT_WORKER=inline shares this one.
      if (INLINE_WORKER) worker = await startTestWorker(upstreamEnv);
      // BENCH_CPU_PROF_DIR=dir writes a CPU profile of the worker process there (for investigations).
      // BENCH_WORKER_NODE_ARGS passes Node flags to the worker process (experiments).
      else {
        workerProcess = await startWorkerProcess(
          { ...upstreamEnv, ...(process.env.BENCH_CPU_PROF_DIR ? { NODE_OPTIONS: `--cpu-prof --cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}` } : {}) },
          (process.env.BENCH_WORKER_NODE_ARGS ?? '').split(' ').filter(Boolean),
        );
      }
      const gw = gateway;
      const tenant: Tenant = await signUp(gw.url, 'bench-chat');
      await gw.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 100_000_000n, idempotencyKey: `bench-chat-topup:${tenant.org.id}`, reason: 'bench credit', actor: { type: 'system' } });
      const projectId = tenant.project.id as string;

      // When the gateway calls workflow.start and when it returns, per workflow id.
      const starts = new Map<string, { called: number; returned: number }>();
      const workflowClient = gw.deps.temporal.client.workflow as unknown as { start: (type: string, options: { workflowId: string }) => Promise<unknown> };
      const originalStart = workflowClient.start.bind(workflowClient);
      workflowClient.start = async (type, options) => {
        const called = Date.now();
        const handle = await originalStart(type, options);
        starts.set(options.workflowId, { called, returned: Date.now() });
        return handle;
      };

      // One fresh session per message (made before the clock starts), so every prompt is the same
      // single user message on both paths.
      const sessionPool: string[] = [];
      const total = WARMUP + SINGLE_SAMPLES + CONCURRENT * PER_LANE * CONCURRENT_ROUNDS + CONCURRENT * STREAM_PER_LANE * STREAM_ROUNDS + CONCURRENT;
      for (let i = 0; i < total; i += 10) {
        const batch = await Promise.all(
          Array.from({ length: Math.min(10, total - i) }, () => tenant.client.post(`/api/v1/projects/${projectId}/chat/sessions`, { model: 'gpt-4o-mini', title: 'bench' })),
        );
        for (const res of batch) {
          if (res.status !== 201) throw new Error(`session creation failed: ${res.status} ${JSON.stringify(res.body)}`);
          sessionPool.push(res.body.id as string);
        }
      }

      const failures: string[] = [];
      const viaWorkflow = async (prompt = PROMPT, maxTokens = MAX_TOKENS): Promise<WorkflowSample | null> => {
        const sessionId = sessionPool.pop()!;
        const t0 = Date.now();
        const p0 = performance.now();
        const res = await fetch(`${gw.url}/api/v1/projects/${projectId}/chat/sessions/${sessionId}/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', cookie: tenant.client.cookie! },
          body: JSON.stringify({ content: prompt, max_tokens: maxTokens }),
        });
        if (res.status !== 200) {
          failures.push(`HTTP ${res.status}: ${(await res.text()).slice(0, 200)}`);
          return null;
        }
        let runEvent = NaN;
        let ttft = NaN;
        let firstDeltaWall = NaN;
        let workflowId = '';
        let runId = '';
        let runStartedId: string | undefined;
        let firstDeltaId: string | undefined;
        let last = '';
        for await (const event of sseEvents(res)) {
          last = event.event;
          if (event.event === 'run') {
            runEvent = performance.now() - p0;
            workflowId = event.data.workflow_id;
            runId = event.data.run_id;
          } else if (event.event === 'run.started') runStartedId = event.id;
          else if (event.event === 'message.delta' && firstDeltaId === undefined) {
            ttft = performance.now() - p0;
            firstDeltaWall = Date.now();
            firstDeltaId = event.id;
          }
          if (['message.completed', 'run.failed', 'run.cancelled'].includes(event.event)) break;
        }
        if (last !== 'message.completed' || firstDeltaId === undefined) {
          failures.push(`run ended with ${last}${firstDeltaId === undefined ? ' and no delta' : ''}`);
          return null;
        }
        return { t0, ttft, runEvent, firstDeltaWall, runStartedRedisMs: redisMs(runStartedId), firstDeltaRedisMs: redisMs(firstDeltaId)!, workflowId, runId };
      };

      const openai = new OpenAI({ baseURL: sim.url, apiKey: SIM_KEY, maxRetries: 0 });
      const direct = async (prompt = PROMPT, maxTokens = MAX_TOKENS): Promise<number | null> => {
        const started = performance.now();
        const stream = await openai.chat.completions.create({
          model: 'sim-gpt-4o-mini',
          messages: [{ role: 'user', content: prompt }],
          max_tokens: maxTokens,
          stream: true,
          stream_options: { include_usage: true },
        });
        let first: number | null = null;
        for await (const chunk of stream) {
          if (first === null && chunk.choices[0]?.delta?.content) first = performance.now() - started;
        }
        if (first === null) failures.push('direct stream had no content');
        return first;
      };

      // Warm-up: JIT, the workflow bundle's first activations, connection pools, caches.
      for (let i = 0; i < WARMUP; i++) {
        await direct();
        await viaWorkflow();
      }
      failures.length = 0;

      // 1 stream: alternate direct and workflow samples.
      const single = { direct: [] as number[], workflow: [] as WorkflowSample[] };
      const singleLoad = loadMeter();
      for (let i = 0; i < SINGLE_SAMPLES; i++) {
        const d = await direct();
        if (d !== null) single.direct.push(d);
        singleLoad.start();
        const w = await viaWorkflow();
        singleLoad.stop();
        if (w) single.workflow.push(w);
      }

      // 20 concurrent streams of real length: alternating blocks of CONCURRENT lanes × STREAM_PER_LANE
      // messages, lane i starting i/CONCURRENT of a reply's length into the block.
      const streams = { direct: [] as number[], workflow: [] as WorkflowSample[] };
      const streamLanes = async <T>(fn: () => Promise<T | null>, into: T[]) => {
        await Promise.all(
          Array.from({ length: CONCURRENT }, async (_, lane) => {
            await new Promise((resolve) => setTimeout(resolve, (lane * STREAM_MS) / CONCURRENT));
            for (let i = 0; i < STREAM_PER_LANE; i++) {
              const sample = await fn();
              if (sample !== null) into.push(sample);
            }
          }),
        );
      };
      let streamWorkflowSeconds = 0;
      const streamLoad = loadMeter({ worker: workerProcess?.pid, simulator: sim.proc.pid, gateway_and_client: process.pid });
      for (let round = 0; round < STREAM_ROUNDS; round++) {
        await streamLanes(() => direct(STREAM_PROMPT, STREAM_MAX_TOKENS), streams.direct);
        const blockStarted = performance.now();
        streamLoad.start();
        await streamLanes(() => viaWorkflow(STREAM_PROMPT, STREAM_MAX_TOKENS), streams.workflow);
        streamLoad.stop();
        streamWorkflowSeconds += (performance.now() - blockStarted) / 1000;
      }

      // 20 lanes back to back with short replies: alternating blocks of CONCURRENT lanes × PER_LANE messages.
      const concurrent = { direct: [] as number[], workflow: [] as WorkflowSample[] };
      const lanes = async <T>(fn: () => Promise<T | null>, into: T[]) => {
        await Promise.all(
          Array.from({ length: CONCURRENT }, async () => {
            for (let i = 0; i < PER_LANE; i++) {
              const sample = await fn();
              if (sample !== null) into.push(sample);
            }
          }),
        );
      };
      let workflowSeconds = 0;
      const concurrentLoad = loadMeter({ worker: workerProcess?.pid, simulator: sim.proc.pid, gateway_and_client: process.pid });
      for (let round = 0; round < CONCURRENT_ROUNDS; round++) {
        await lanes(() => direct(), concurrent.direct);
        const blockStarted = performance.now();
        concurrentLoad.start();
        await lanes(() => viaWorkflow(), concurrent.workflow);
        concurrentLoad.stop();
        workflowSeconds += (performance.now() - blockStarted) / 1000;
      }

      // Break the workflow samples down with each run's Temporal history.
      const breakdownOf = async (sample: WorkflowSample): Promise<Breakdown | null> => {
        const start = starts.get(sample.workflowId);
        if (!start || sample.runStartedRedisMs === null) return null;
        const history = await gw.deps.temporal.client.workflow.getHandle(sample.workflowId).fetchHistory();
        const events = (history.events ?? []) as HistoryEvent[];
        const time = (pick: (e: HistoryEvent) => unknown) => {
          const event = events.find((e) => pick(e));
          return event?.eventTime ? tsToMs(event.eventTime) : null;
        };
        const taskStarted = time((e) => e.workflowTaskStartedEventAttributes);
        if (taskStarted === null) return null;
        const run = await gw.deps.prisma.workflowRun.findUnique({ where: { id: sample.runId } });
        const hold = await gw.deps.prisma.hold.findFirst({ where: { runId: sample.runId } });
        if (!run?.startedAt || !hold) return null;
        return {
          gatewayAuthAndLookups: run.createdAt.getTime() - sample.t0,
          gatewayMessageTransaction: start.called - run.createdAt.getTime(),
          workflowStartRpc: start.returned - start.called,
          workflowTaskDispatch: taskStarted - start.returned,
          prepareReads: run.startedAt.getTime() - taskStarted,
          prepareWritesAndHold: Math.max(sample.runStartedRedisMs, hold.createdAt.getTime()) - run.startedAt.getTime(),
          modelCallToFirstToken: sample.firstDeltaRedisMs - Math.max(sample.runStartedRedisMs, hold.createdAt.getTime()),
          relayToClient: sample.firstDeltaWall - sample.firstDeltaRedisMs,
        };
      };
      const breakdown = async (samples: WorkflowSample[]) => {
        const rows: Breakdown[] = [];
        for (const sample of samples) {
          const row = await breakdownOf(sample).catch(() => null);
          if (row) rows.push(row);
        }
        const out: Record<string, { mean_ms: number; p50_ms: number; p99_ms: number; what: string }> = {};
        const mean = (values: number[]) => values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
        for (const [key, what] of SEGMENTS) {
          const values = rows.map((r) => r[key]);
          const s = stats(values);
          out[key] = { mean_ms: round(mean(values), 1), p50_ms: round(s.p50, 1), p99_ms: round(s.p99, 1), what };
        }
        const runEvent = stats(samples.map((s) => s.runEvent));
        return {
          samples_broken_down: rows.length,
          clock: 'wall-clock ms on this machine: client Date.now, the gateway around workflow.start, row timestamps (workflow_runs created_at/started_at, holds created_at), Temporal history event times, Redis Stream entry ids (1 ms resolution)',
          note: 'segments are contiguous, so their means add up to the mean TTFT (their p50s need not)',
          mean_ttft_ms: round(mean(samples.map((s) => s.ttft)), 1),
          segments: out,
          client_run_event_p50_ms: round(runEvent.p50, 1),
        };
      };

      const results: BenchResult[] = [];
      const report = async (label: string, key: string, data: { direct: number[]; workflow: WorkflowSample[] }, extra: Record<string, unknown>, withTarget = true) => {
        const d = stats(data.direct);
        const w = stats(data.workflow.map((s) => s.ttft));
        const parts = await breakdown(data.workflow);
        for (const stat of ['p50', 'p95', 'p99'] as const) {
          const added = w[stat] - d[stat];
          const target = stat === 'p95' || !withTarget ? null : TARGET_ADDED_MS[stat];
          results.push({
            name: `chat-ttft-${key}-${stat}`,
            description: `chat time to first token, ${label}: POST message (SSE) → first message.delta through the workflow, vs a streaming completion sent straight to the simulator (first token after ${FIRST_TOKEN_MS} ms on both)`,
            baseline: { label: `direct ${stat}`, value: round(d[stat], 1), unit: 'ms' },
            subject: { label: `via workflow ${stat} (+${round(added, 1)} ms${target !== null ? `; target ≤ +${target}` : ''})`, value: round(w[stat], 1), unit: 'ms' },
            ratio: round(w[stat] / d[stat], 2),
            ratioMeaning: `workflow TTFT ${stat} in multiples of direct`,
            details: {
              added_ms: round(added, 1),
              ...(target !== null ? { target_added_ms: target, target_met: added <= target } : {}),
              samples: { direct: d.n, workflow: w.n },
              failures: failures.length,
              ...(failures.length ? { failure_examples: [...new Set(failures)].slice(0, 3) } : {}),
              ...extra,
              ...(stat === 'p50' ? { breakdown: parts } : {}),
            },
          });
        }
      };
      await report('1 stream at a time', '1stream', single, {
        method: `${SINGLE_SAMPLES} samples each, direct and workflow alternating, after ${WARMUP} warm-up pairs`,
        topology: TOPOLOGY,
        load_during_workflow_samples: singleLoad.summary(),
      });
      await report(`${CONCURRENT} concurrent streams`, `${CONCURRENT}streams`, streams, {
        method: `${CONCURRENT} lanes, each streaming one reply after another (${STREAM_OUTPUT_TOKENS} tokens, first after ${FIRST_TOKEN_MS} ms, then one every ${STREAM_TOKEN_MS} ms: ~${STREAM_MS} ms per reply), lane i starting ${round(STREAM_MS / CONCURRENT, 0)}·i ms into each block; ${STREAM_ROUNDS} rounds of a direct block then a workflow block, ${STREAM_PER_LANE} replies per lane per block`,
        workflow_runs_per_second: round(streams.workflow.length / streamWorkflowSeconds, 1),
        cpu_ms_per_run_by_process: streamLoad.cpuMsPer(streams.workflow.length),
        load_during_workflow_blocks: streamLoad.summary(),
      });
      await report(`${CONCURRENT} lanes back to back, short replies (saturation)`, `${CONCURRENT}lanes-saturated`, concurrent, {
        method: `${CONCURRENT} lanes each sending its next message as soon as the previous reply ends; replies of 12 tokens that end right after their first token, so the lanes keep the machine saturated (a throughput measure, not 20 open streams); ${CONCURRENT_ROUNDS} rounds of a direct block then a workflow block, ${PER_LANE} messages per lane per block`,
        workflow_runs_per_second: round(concurrent.workflow.length / workflowSeconds, 1),
        cpu_ms_per_run_by_process: concurrentLoad.cpuMsPer(concurrent.workflow.length),
        load_during_workflow_blocks: concurrentLoad.summary(),
      }, false);
      return results;
    } finally {
      await worker?.stop();
      await workerProcess?.stop();
      await gateway?.close();
      await sim.stop();
    }
  },
};

export default suite;
