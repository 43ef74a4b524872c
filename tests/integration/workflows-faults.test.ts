// A workflow run survives its worker being SIGKILLed mid llm call: a new worker finishes it and
// every llm step is billed exactly once (one hold, one capture). Plus the SSRF guard's address
// classes, with loopback allowed only by the explicit flag.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addressClass } from '../../temporal-workers/src/activities/dsl.ts';
import { signUp, type Tenant } from '../support/api.ts';
import { sseEvents } from '../support/sse.ts';
import { spawnService, until } from '../support/processes.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

const children: ChildProcess[] = [];
const spawnWorker = (env: NodeJS.ProcessEnv) => spawnService('temporal-workers/src/main.ts', env, children);

const taskQueue = `faults-wf-${randomBytes(3).toString('hex')}`;
let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway({ TEMPORAL_TASK_QUEUE: taskQueue });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await gateway.close();
});

async function funded(label: string): Promise<Tenant> {
  const tenant = await signUp(gateway.url, label);
  await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 5_000_000n, idempotencyKey: `wf-faults:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  return tenant;
}

const THREE_SLOW_STEPS = `
name: three-slow-steps
steps:
  - id: one
    kind: llm
    prompt: "first [[sim:first_token_ms=1500]]"
    max_tokens: 20
  - id: two
    kind: llm
    prompt: "second after \${{ steps.one.output }} [[sim:first_token_ms=1500]]"
    max_tokens: 20
  - id: three
    kind: llm
    prompt: "third [[sim:first_token_ms=1500]]"
    max_tokens: 20
`;

describe('workflow crash faults', () => {
  it('the worker is SIGKILLed mid llm call and replaced: the run finishes, each llm step billed exactly once', async () => {
    const first = spawnWorker({ TEMPORAL_TASK_QUEUE: taskQueue });
    await until(async () => first.output().includes('worker started'), 60_000, 'first worker');
    const tenant = await funded('wf-kill');
    const wf = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflows`, { source: THREE_SLOW_STEPS });
    expect(wf.status).toBe(201);
    const run = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/workflows/${wf.body.id}/runs`, {});
    expect(run.status).toBe(202);
    const res = await fetch(`${gateway.url}/api/v1/projects/${tenant.project.id}/workflow-runs/${run.body.id}/events`, { headers: { cookie: tenant.client.cookie! } });
    const types: string[] = [];
    let killed = false;
    for await (const event of sseEvents(res)) {
      types.push(event.event);
      // Kill while the second step's model call is in flight (its hold is taken).
      if (!killed && event.event === 'step.started' && event.data.step_key === 'two') {
        first.child.kill('SIGKILL');
        killed = true;
        spawnWorker({ TEMPORAL_TASK_QUEUE: taskQueue });
      }
    }
    expect(killed).toBe(true);
    expect(types.at(-1)).toBe('run.completed');
    const holds = await gateway.deps.prisma.hold.findMany({ where: { runId: run.body.id }, orderBy: { createdAt: 'asc' } });
    expect(holds.map((h) => [h.stepId, h.status])).toEqual([
      ['one', 'captured'],
      ['two', 'captured'],
      ['three', 'captured'],
    ]);
    for (const hold of holds) {
      const kinds = (await gateway.deps.prisma.walletTransaction.findMany({ where: { holdId: hold.id }, orderBy: { id: 'asc' } })).map((t) => t.kind);
      expect(kinds, hold.stepId!).toEqual(['hold', 'capture']);
    }
    expect(await gateway.deps.prisma.usageRecord.count({ where: { runId: run.body.id } })).toBe(3);
    const done = await gateway.deps.prisma.workflowRun.findUniqueOrThrow({ where: { id: run.body.id } });
    expect(done.status).toBe('succeeded');
    expect((await gateway.deps.ledger.getWallet(tenant.org.id)).frozenMicros).toBe(0n);
  }, 120_000);

  it('the SSRF guard classifies loopback, private and link-local addresses', () => {
    for (const ip of ['127.0.0.1', '127.8.9.1', '::1', '::ffff:127.0.0.1']) expect(addressClass(ip), ip).toBe('loopback');
    for (const ip of ['10.0.0.1', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1', '0.0.0.0', '::', 'fe80::1', 'fd12::1', 'fc00::1', '::ffff:10.0.0.1', '224.0.0.1']) {
      expect(addressClass(ip), ip).toBe('private');
    }
    for (const ip of ['8.8.8.8', '172.32.0.1', '1.1.1.1', '2606:4700::1111']) expect(addressClass(ip), ip).toBe('public');
  });
});
