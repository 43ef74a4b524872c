// Workflow DSL interpreter throughput: runs/second of a 5-step workflow (five llm steps, each held,
// called, captured and recorded, started through the gateway and interpreted in Temporal) vs the
// same five model calls made straight to the simulator, at the same concurrency in the same run.
// The difference per step is the interpreter's overhead (billing, rows, events, Temporal tasks).
//
// Topology: the worker runs in its own process, as deployed (docker-compose `worker`), so it does
// not share one event loop with the gateway, the simulator and this client. BENCH_DSL_WORKER=inline
// runs it in this process instead (startTestWorker), as earlier versions of this bench did.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Runtime } from '@temporalio/worker';
import { tsToMs } from '@temporalio/common';
import { createUpstreamClient } from '@deepspace/core/ai/upstream';
import { signUp } from '../support/api.ts';
import { startTestGateway, startTestWorker, type TestWorker } from '../support/stack.ts';
import { measureThroughput, processCpuSeconds, round, startWorkerProcess, type BenchSuite } from './harness.ts';

// Enough runs for about half a minute at the target rate: throughput "sustained", not a burst.
const RUNS = Number(process.env.BENCH_DSL_RUNS ?? 600);
const WARMUP = 20;
const CONCURRENCY = Number(process.env.BENCH_DSL_CONCURRENCY ?? 20);
const INLINE_WORKER = process.env.BENCH_DSL_WORKER === 'inline';
const STEPS = 5;
const IDLE_RUNS = 10;
/** Histories read after the subject phase, for tasks and events per run. */
const HISTORY_SAMPLES = 5;

const FIVE_STEPS = `
name: five-steps
inputs:
  type: object
  properties: { n: { type: integer } }
steps:
${Array.from({ length: STEPS }, (_, i) => `  - id: s${i}\n    kind: llm\n    model: gpt-4o-mini\n    prompt: "step ${i} of run \${{ inputs.n }}"\n    max_tokens: 8\n`).join('')}`;

/** Machine-wide busy share between two samples: the box is shared, so say how loaded it was. */
function machineJiffies(): { busy: number; total: number } {
  try {
    const values = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = values.reduce((a, b) => a + b, 0);
    return { busy: total - (values[3] ?? 0) - (values[4] ?? 0), total };
  } catch {
    return { busy: 0, total: 0 };
  }
}

const suite: BenchSuite = {
  name: 'workflow DSL interpreter',
  async run() {
    const env = {
      RATE_LIMIT_USER_PER_MINUTE: '100000000',
      RATE_LIMIT_PROJECT_PER_MINUTE: '100000000',
      TEMPORAL_TASK_QUEUE: `bench-dsl-${randomBytes(3).toString('hex')}`,
    };
    const gateway = await startTestGateway(env);
    let inline: TestWorker | undefined;
    let child: Awaited<ReturnType<typeof startWorkerProcess>> | undefined;
    try {
      if (INLINE_WORKER) inline = await startTestWorker(env);
      else child = await startWorkerProcess(env);
      const temporal = gateway.deps.temporal.client;
      const owner = await signUp(gateway.url, 'bench-wf');
      await gateway.deps.ledger.topup({ orgId: owner.org.id, amountMicros: 1_000_000_000_000n, idempotencyKey: `bench-wf:${owner.org.id}`, reason: 'bench credit', actor: { type: 'system' } });
      const created = await owner.client.post(`/api/v1/projects/${owner.project.id}/workflows`, { source: FIVE_STEPS });
      if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
      const model = await gateway.deps.prisma.model.findUniqueOrThrow({ where: { name: 'gpt-4o-mini' } });
      const upstream = createUpstreamClient(gateway.deps.config);

      const startLatencies: number[] = [];
      const workflowIds: string[] = [];
      const workflowRun = async (n: number) => {
        const t = performance.now();
        const res = await owner.client.post(`/api/v1/projects/${owner.project.id}/workflows/${created.body.id}/runs`, { inputs: { n } });
        startLatencies.push(performance.now() - t);
        if (res.status !== 202) throw new Error(`start failed: ${res.status}`);
        workflowIds.push(res.body.temporal_workflow_id);
        await temporal.workflow.getHandle(res.body.temporal_workflow_id).result();
      };
      const directCalls = async (n: number) => {
        for (let i = 0; i < STEPS; i++) {
          await upstream.chat.completions.create({ model: model.upstreamModel, messages: [{ role: 'user', content: `step ${i} of run ${n}` }], max_tokens: 8 });
        }
      };

      await measureThroughput(workflowRun, { total: WARMUP, concurrency: CONCURRENCY });
      await measureThroughput(directCalls, { total: WARMUP, concurrency: CONCURRENCY });
      // One at a time: the per-step overhead without queueing for CPU.
      const idleDirect = await measureThroughput((i) => directCalls(500 + i), { total: IDLE_RUNS, concurrency: 1 });
      const idleWorkflow = await measureThroughput((i) => workflowRun(500 + i), { total: IDLE_RUNS, concurrency: 1 });
      const baseline = await measureThroughput((i) => directCalls(1000 + i), { total: RUNS, concurrency: CONCURRENCY });
      startLatencies.length = 0;
      workflowIds.length = 0;
      const cpu0 = { bench: process.cpuUsage(), worker: child ? processCpuSeconds(child.pid) : 0, machine: machineJiffies() };
      const subject = await measureThroughput((i) => workflowRun(1000 + i), { total: RUNS, concurrency: CONCURRENCY });
      const benchCpu = process.cpuUsage(cpu0.bench);
      const workerCpuSeconds = child ? processCpuSeconds(child.pid) - cpu0.worker : null;
      const machine = machineJiffies();
      if (subject.errors || baseline.errors || idleWorkflow.errors) throw new Error(`${subject.errors + idleWorkflow.errors} runs and ${baseline.errors} direct sequences failed`);

      const runs = await gateway.deps.prisma.workflowRun.findMany({ where: { definitionId: created.body.id } });
      const notSucceeded = runs.filter((r) => r.status !== 'succeeded').length;
      if (notSucceeded) throw new Error(`${notSucceeded} runs did not succeed`);
      const holds = await gateway.deps.prisma.hold.count({ where: { runId: { in: runs.map((r) => r.id) }, status: 'captured' } });
      if (holds !== runs.length * STEPS) throw new Error(`expected ${runs.length * STEPS} captured holds, found ${holds}`);
      const stepRows = await gateway.deps.prisma.workflowRunStep.count({ where: { runId: { in: runs.map((r) => r.id) }, status: 'succeeded' } });
      if (stepRows !== runs.length * STEPS) throw new Error(`expected ${runs.length * STEPS} succeeded step rows, found ${stepRows}`);

      // What Temporal did per run: workflow tasks, activity tasks, local-activity markers, events.
      const shapes = await Promise.all(
        workflowIds.slice(-HISTORY_SAMPLES).map(async (id) => {
          const events = (await temporal.workflow.getHandle(id).fetchHistory()).events ?? [];
          const times = events.map((e) => (e.eventTime ? tsToMs(e.eventTime) : 0));
          return {
            events: events.length,
            workflowTasks: events.filter((e) => e.workflowTaskCompletedEventAttributes).length,
            activityTasks: events.filter((e) => e.activityTaskScheduledEventAttributes).length,
            localActivities: events.filter((e) => e.markerRecordedEventAttributes?.markerName === 'core_local_activity').length,
            durationMs: times.at(-1)! - times[0]!,
          };
        }),
      );
      const mean = (pick: (s: (typeof shapes)[number]) => number) => round(shapes.reduce((sum, s) => sum + pick(s), 0) / shapes.length, 1);
      startLatencies.sort((a, b) => a - b);
      const subjectSeconds = RUNS / subject.perSecond;

      const overheadPerStepMs = (subject.p50 - baseline.p50) / STEPS;
      const details = {
        p50_ms: { workflow: round(subject.p50), direct: round(baseline.p50) },
        p95_ms: { workflow: round(subject.p95), direct: round(baseline.p95) },
        per_step_overhead_ms_p50: round(overheadPerStepMs),
        start_request_ms: { p50: round(startLatencies[Math.floor(startLatencies.length / 2)] ?? 0), p95: round(startLatencies[Math.floor(startLatencies.length * 0.95)] ?? 0) },
        per_run_history: {
          events: mean((s) => s.events),
          workflow_tasks: mean((s) => s.workflowTasks),
          activity_tasks: mean((s) => s.activityTasks),
          local_activities: mean((s) => s.localActivities),
          duration_ms: mean((s) => s.durationMs),
        },
        cpu_ms_per_run: {
          ...(workerCpuSeconds !== null ? { worker_process: round((workerCpuSeconds * 1000) / RUNS, 1) } : {}),
          [INLINE_WORKER ? 'gateway_worker_simulator_client' : 'gateway_simulator_client']: round((benchCpu.user + benchCpu.system) / 1000 / RUNS, 1),
        },
        machine_busy_share: machine.total > cpu0.machine.total ? round((machine.busy - cpu0.machine.busy) / (machine.total - cpu0.machine.total), 2) : null,
        subject_seconds: round(subjectSeconds, 1),
        topology: INLINE_WORKER
          ? 'gateway, worker, simulator and client in this process'
          : 'worker in its own process (temporal-workers/src/main.ts); gateway, simulator and client in this process',
      };
      return [
        {
          name: 'dsl-workflow-5-step-runs',
          description: `${RUNS} runs of a ${STEPS}-step llm workflow (hold → call → capture + step rows + events per step), ${CONCURRENCY} at a time, started through the gateway; baseline: the same ${STEPS} simulator calls made directly`,
          baseline: { label: `${STEPS} direct simulator calls`, value: round(baseline.perSecond, 1), unit: 'runs/s' },
          subject: { label: `${STEPS}-step workflow runs`, value: round(subject.perSecond, 1), unit: 'runs/s' },
          ratio: round(subject.perSecond / baseline.perSecond, 3),
          ratioMeaning: 'workflow runs per second as a fraction of bare simulator call sequences (target ≥ 20 runs/s absolute)',
          details,
        },
        {
          name: 'dsl-workflow-per-step-overhead',
          description: `p50 latency per step inside a ${STEPS}-step workflow run vs one direct simulator call (${CONCURRENCY} concurrent)`,
          baseline: { label: 'direct simulator call p50', value: round(baseline.p50 / STEPS), unit: 'ms/step' },
          subject: { label: 'workflow step p50', value: round(subject.p50 / STEPS), unit: 'ms/step' },
          ratio: round(subject.p50 / baseline.p50, 3),
          ratioMeaning: 'step latency relative to a direct call (1 = no interpreter overhead)',
          details: {
            overhead_ms_per_step: round(overheadPerStepMs),
            one_at_a_time: {
              p50_ms: { workflow: round(idleWorkflow.p50), direct: round(idleDirect.p50) },
              overhead_ms_per_step: round((idleWorkflow.p50 - idleDirect.p50) / STEPS),
            },
          },
        },
      ];
    } finally {
      await child?.stop();
      await inline?.stop();
      await gateway.close();
      // The native Temporal runtime keeps the process alive once a worker has run in it.
      if (inline) await Runtime.instance().shutdown();
    }
  },
};

export default suite;
