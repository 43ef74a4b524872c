// Workflow DSL interpreter throughput: runs/second of a 5-step workflow (five llm steps, each held,
// called, captured and recorded, started through the gateway and interpreted in Temporal) vs the
// same five model calls made straight to the simulator, at the same concurrency in the same run.
// The difference per step is the interpreter's overhead (billing, rows, events, Temporal tasks).
import { Runtime } from '@temporalio/worker';
import { createUpstreamClient } from '@deepspace/core/ai/upstream';
import { signUp } from '../support/api.ts';
import { startTestGateway, startTestWorker } from '../support/stack.ts';
import { measureThroughput, round, type BenchSuite } from './harness.ts';

const RUNS = Number(process.env.BENCH_DSL_RUNS ?? 120);
const WARMUP = 20;
const CONCURRENCY = Number(process.env.BENCH_DSL_CONCURRENCY ?? 20);
const STEPS = 5;

const FIVE_STEPS = `
name: five-steps
inputs:
  type: object
  properties: { n: { type: integer } }
steps:
${Array.from({ length: STEPS }, (_, i) => `  - id: s${i}\n    kind: llm\n    model: gpt-4o-mini\n    prompt: "step ${i} of run \${{ inputs.n }}"\n    max_tokens: 8\n`).join('')}`;

const suite: BenchSuite = {
  name: 'workflow DSL interpreter',
  async run() {
    const limits = { RATE_LIMIT_USER_PER_MINUTE: '100000000', RATE_LIMIT_PROJECT_PER_MINUTE: '100000000' };
    const gateway = await startTestGateway(limits);
    const worker = await startTestWorker(limits);
    try {
      const owner = await signUp(gateway.url, 'bench-wf');
      await gateway.deps.ledger.topup({ orgId: owner.org.id, amountMicros: 1_000_000_000_000n, idempotencyKey: `bench-wf:${owner.org.id}`, reason: 'bench credit', actor: { type: 'system' } });
      const created = await owner.client.post(`/api/v1/projects/${owner.project.id}/workflows`, { source: FIVE_STEPS });
      if (created.status !== 201) throw new Error(`create failed: ${JSON.stringify(created.body)}`);
      const model = await gateway.deps.prisma.model.findUniqueOrThrow({ where: { name: 'gpt-4o-mini' } });
      const upstream = createUpstreamClient(gateway.deps.config);

      const workflowRun = async (n: number) => {
        const res = await owner.client.post(`/api/v1/projects/${owner.project.id}/workflows/${created.body.id}/runs`, { inputs: { n } });
        if (res.status !== 202) throw new Error(`start failed: ${res.status}`);
        await worker.client.workflow.getHandle(res.body.temporal_workflow_id).result();
      };
      const directCalls = async (n: number) => {
        for (let i = 0; i < STEPS; i++) {
          await upstream.chat.completions.create({ model: model.upstreamModel, messages: [{ role: 'user', content: `step ${i} of run ${n}` }], max_tokens: 8 });
        }
      };

      await measureThroughput(workflowRun, { total: WARMUP, concurrency: CONCURRENCY });
      await measureThroughput(directCalls, { total: WARMUP, concurrency: CONCURRENCY });
      const baseline = await measureThroughput((i) => directCalls(1000 + i), { total: RUNS, concurrency: CONCURRENCY });
      const subject = await measureThroughput((i) => workflowRun(1000 + i), { total: RUNS, concurrency: CONCURRENCY });
      if (subject.errors || baseline.errors) throw new Error(`${subject.errors} runs and ${baseline.errors} direct sequences failed`);

      const runs = await gateway.deps.prisma.workflowRun.findMany({ where: { definitionId: created.body.id } });
      const notSucceeded = runs.filter((r) => r.status !== 'succeeded').length;
      if (notSucceeded) throw new Error(`${notSucceeded} runs did not succeed`);
      const holds = await gateway.deps.prisma.hold.count({ where: { runId: { in: runs.map((r) => r.id) }, status: 'captured' } });
      if (holds !== runs.length * STEPS) throw new Error(`expected ${runs.length * STEPS} captured holds, found ${holds}`);

      const overheadPerStepMs = (subject.p50 - baseline.p50) / STEPS;
      return [
        {
          name: 'dsl-workflow-5-step-runs',
          description: `${RUNS} runs of a ${STEPS}-step llm workflow (hold → call → capture + step rows + events per step), ${CONCURRENCY} at a time, started through the gateway; baseline: the same ${STEPS} simulator calls made directly`,
          baseline: { label: `${STEPS} direct simulator calls`, value: round(baseline.perSecond, 1), unit: 'runs/s' },
          subject: { label: `${STEPS}-step workflow runs`, value: round(subject.perSecond, 1), unit: 'runs/s' },
          ratio: round(subject.perSecond / baseline.perSecond, 3),
          ratioMeaning: 'workflow runs per second as a fraction of bare simulator call sequences (target ≥ 20 runs/s absolute)',
          details: {
            p50_ms: { workflow: round(subject.p50), direct: round(baseline.p50) },
            p95_ms: { workflow: round(subject.p95), direct: round(baseline.p95) },
            per_step_overhead_ms_p50: round(overheadPerStepMs),
          },
        },
        {
          name: 'dsl-workflow-per-step-overhead',
          description: `p50 latency per step inside a ${STEPS}-step workflow run vs one direct simulator call (${CONCURRENCY} concurrent)`,
          baseline: { label: 'direct simulator call p50', value: round(baseline.p50 / STEPS), unit: 'ms/step' },
          subject: { label: 'workflow step p50', value: round(subject.p50 / STEPS), unit: 'ms/step' },
          ratio: round(subject.p50 / baseline.p50, 3),
          ratioMeaning: 'step latency relative to a direct call (1 = no interpreter overhead)',
          details: { overhead_ms_per_step: round(overheadPerStepMs) },
        },
      ];
    } finally {
      await worker.stop();
      await gateway.close();
      // The native Temporal runtime keeps the process alive once a worker has run in it.
      await Runtime.instance().shutdown();
    }
  },
};

export default suite;
