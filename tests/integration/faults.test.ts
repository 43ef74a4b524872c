// Processes killed with SIGKILL mid-stream, then restarted: every call ends with exactly one
// capture or one release, and no hold stays active past its expiry.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/lib/services.ts';
import { createKey, signUp, type Tenant } from '../support/api.ts';
import { sseEvents } from '../support/sse.ts';
import { spawnService, until } from '../support/processes.ts';
import { startTestGateway, startTestWorker, testConfig, type TestGateway } from '../support/stack.ts';
import { reconcile } from '@deepspace/core/billing/index';

const children: ChildProcess[] = [];
const spawnServiceHere = (script: string, env: NodeJS.ProcessEnv) => spawnService(script, env, children);

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await gateway.close();
});

async function funded(label: string): Promise<Tenant> {
  const tenant = await signUp(gateway.url, label);
  await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 5_000_000n, idempotencyKey: `faults:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  return tenant;
}

async function holdTransactions(holdId: string) {
  return gateway.deps.prisma.walletTransaction.findMany({ where: { holdId }, orderBy: { id: 'asc' } });
}

describe('crash faults', () => {
  it('the chat worker is SIGKILLed mid-stream and restarted: the run finishes and is captured exactly once', async () => {
    const taskQueue = `faults-chat-${randomBytes(3).toString('hex')}`;
    const chatGateway = await startTestGateway({ TEMPORAL_TASK_QUEUE: taskQueue });
    try {
      const first = spawnServiceHere('temporal-workers/src/main.ts', { TEMPORAL_TASK_QUEUE: taskQueue });
      await until(async () => first.output().includes('worker started'), 60_000, 'first worker');
      const tenant = await funded('killworker');
      const session = (await tenant.client.post(`/api/v1/projects/${tenant.project.id}/chat/sessions`, {})).body;
      const res = await fetch(`${chatGateway.url}/api/v1/projects/${tenant.project.id}/chat/sessions/${session.id}/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', cookie: tenant.client.cookie! },
        body: JSON.stringify({ content: 'long reply [[sim:output_tokens=80]] [[sim:token_ms=40]]' }),
      });
      const events = [];
      let killed = false;
      let second: ReturnType<typeof spawnServiceHere> | undefined;
      for await (const event of sseEvents(res)) {
        events.push(event);
        if (!killed && event.event === 'message.delta') {
          first.child.kill('SIGKILL');
          killed = true;
          second = spawnServiceHere('temporal-workers/src/main.ts', { TEMPORAL_TASK_QUEUE: taskQueue });
        }
      }
      expect(killed).toBe(true);
      const types = events.map((e) => e.event);
      expect(types).toContain('message.reset');
      expect(types.at(-1)).toBe('message.completed');
      const runId = events[0]!.data.run_id;
      const holds = await gateway.deps.prisma.hold.findMany({ where: { runId } });
      expect(holds).toHaveLength(1);
      expect(holds[0]!.status).toBe('captured');
      const kinds = (await holdTransactions(holds[0]!.id)).map((t) => t.kind);
      expect(kinds).toEqual(['hold', 'capture']);
      const reply = await gateway.deps.prisma.chatMessage.findMany({ where: { runId, role: 'assistant' } });
      expect(reply).toHaveLength(1);
      expect(reply[0]!.completionTokens).toBe(80);
      second?.child.kill('SIGTERM');
    } finally {
      await chatGateway.close();
    }
  }, 120_000);

  it('the gateway is SIGKILLed mid /v1 stream: the hold is returned by the expiry schedule, exactly once', async () => {
    const port = await freePort();
    const proc = spawnServiceHere('gateway/src/main.ts', { GATEWAY_PORT: String(port), UPSTREAM_TIMEOUT_MS: '2000' });
    await until(async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
      } catch {
        return false;
      }
    }, 30_000, 'gateway');
    const tenant = await funded('killgateway');
    const key = await createKey(tenant, ['chat:write']);
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, max_tokens: 100, messages: [{ role: 'user', content: 'stream [[sim:output_tokens=100]] [[sim:token_ms=50]]' }] }),
    });
    const traceId = res.headers.get('x-trace-id')!;
    const reader = res.body!.getReader();
    await reader.read();
    proc.child.kill('SIGKILL');
    await reader.read().catch(() => undefined);

    const hold = await gateway.deps.prisma.hold.findFirstOrThrow({ where: { traceId } });
    expect(hold.status).toBe('active');
    expect(hold.expiresAt.getTime() - hold.createdAt.getTime()).toBeLessThanOrEqual(12_500);
    // After its expiry, the workflow the billing-expire-holds schedule runs returns the money
    // (the schedule itself is exercised by the billing suite).
    const worker = await startTestWorker();
    try {
      await until(async () => Date.now() > hold.expiresAt.getTime() + 100, 20_000, 'hold expiry');
      await worker.client.workflow.execute('expireHoldsWorkflow', {
        taskQueue: testConfig().temporal.taskQueue,
        workflowId: `expire-${traceId}`,
        args: [{}],
      });
      expect((await gateway.deps.prisma.hold.findUniqueOrThrow({ where: { id: hold.id } })).status).toBe('expired');
    } finally {
      await worker.stop();
    }
    const kinds = (await holdTransactions(hold.id)).map((t) => t.kind);
    expect(kinds).toEqual(['hold', 'release']);
    const after = await gateway.deps.ledger.getWallet(tenant.org.id);
    expect(after.balanceMicros).toBe(before.balanceMicros);
    expect(after.frozenMicros).toBe(0n);
  }, 120_000);

  it('the gateway is SIGKILLed holding holds taken ahead for a busy key: the expiry schedule returns each, exactly once', async () => {
    const port = await freePort();
    const proc = spawnServiceHere('gateway/src/main.ts', { GATEWAY_PORT: String(port), UPSTREAM_TIMEOUT_MS: '1000', V1_HOLD_RESERVE: '8' });
    await until(async () => {
      try {
        return (await fetch(`http://127.0.0.1:${port}/healthz`)).ok;
      } catch {
        return false;
      }
    }, 30_000, 'gateway');
    const tenant = await funded('killreserve');
    const key = await createKey(tenant, ['chat:write']);
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    // A busy key: 60 calls, 4 at a time, so the gateway takes holds ahead for it.
    const traces: string[] = [];
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (traces.length < 60) {
          const res = await fetch(`http://127.0.0.1:${port}/v1/chat/completions`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
            body: JSON.stringify({ model: 'gpt-4o-mini', max_tokens: 16, messages: [{ role: 'user', content: 'Name one enzyme.' }] }),
          });
          expect(res.status).toBe(200);
          await res.json();
          traces.push(res.headers.get('x-trace-id')!);
        }
      }),
    );
    const reserve = { orgId: tenant.org.id, idempotencyKey: { startsWith: 'v1:reserve:' } };
    // Every answered call is captured (they commit a moment after their answers); then kill.
    await until(async () => (await gateway.deps.prisma.usageRecord.count({ where: { traceId: { in: traces } } })) === traces.length, 10_000, 'captures');
    await until(async () => (await gateway.deps.prisma.hold.count({ where: { ...reserve, status: 'active' } })) > 0, 5_000, 'holds taken ahead');
    proc.child.kill('SIGKILL');
    // A refill statement sent just before the kill still commits: let it land before counting.
    await new Promise((resolve) => setTimeout(resolve, 500));

    const ready = await gateway.deps.prisma.hold.findMany({ where: { ...reserve, status: 'active' } });
    expect(ready.length).toBeGreaterThan(0);
    // They live for the longest call (1 s) + 10 s margin + 10 s on the shelf.
    for (const hold of ready) expect(hold.expiresAt.getTime() - hold.createdAt.getTime()).toBeLessThanOrEqual(21_500);
    const worker = await startTestWorker();
    try {
      const latest = Math.max(...ready.map((h) => h.expiresAt.getTime()));
      await until(async () => Date.now() > latest + 100, 30_000, 'expiry of the ready holds');
      await worker.client.workflow.execute('expireHoldsWorkflow', { taskQueue: testConfig().temporal.taskQueue, workflowId: `expire-reserve-${tenant.org.id}`, args: [{}] });
    } finally {
      await worker.stop();
    }
    for (const hold of ready) {
      expect((await gateway.deps.prisma.hold.findUniqueOrThrow({ where: { id: hold.id } })).status).toBe('expired');
      expect((await holdTransactions(hold.id)).map((t) => t.kind)).toEqual(['hold', 'release']);
    }
    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { traceId: { in: traces } } });
    const after = await gateway.deps.ledger.getWallet(tenant.org.id);
    expect(after.frozenMicros).toBe(0n);
    expect(after.balanceMicros).toBe(before.balanceMicros - usage.reduce((sum, u) => sum + u.costMicros, 0n));
    expect((await reconcile(gateway.deps.pool, { walletIds: [before.id] })).drift).toEqual([]);
  }, 120_000);
});
