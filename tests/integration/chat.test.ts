// Chat as a one-step durable workflow: browser → gateway → Temporal → upstream → SSE, with money
// and audit right, resumable event streams, cancellation and failures that end well.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countChatPromptTokens } from '@deepspace/core';
import { createKey, missingAuditTraceIds, signUp, type Tenant } from '../support/api.ts';
import { collectSse, sseEvents } from '../support/sse.ts';
import { until } from '../support/processes.ts';
import { startTestGateway, startTestWorker, type TestGateway, type TestWorker } from '../support/stack.ts';
import { startSimulator } from '@deepspace/upstream-simulator';

let gateway: TestGateway;
let worker: TestWorker;

beforeAll(async () => {
  gateway = await startTestGateway();
  worker = await startTestWorker();
});
afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await worker.stop();
  await gateway.close();
});

async function fundedTenant(label: string, micros = 5_000_000n): Promise<Tenant> {
  const tenant = await signUp(gateway.url, label);
  if (micros > 0n) {
    await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: micros, idempotencyKey: `chat-test:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  }
  return tenant;
}

async function newSession(tenant: Tenant, body: Record<string, unknown> = {}) {
  const res = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/chat/sessions`, body);
  expect(res.status).toBe(201);
  return res.body;
}

function send(tenant: Tenant, sessionId: string, body: Record<string, unknown>, headers: Record<string, string> = {}, signal?: AbortSignal) {
  return fetch(`${gateway.url}/api/v1/projects/${tenant.project.id}/chat/sessions/${sessionId}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', cookie: tenant.client.cookie!, ...headers },
    body: JSON.stringify(body),
    signal,
  });
}


describe('chat', () => {
  it('a message streams back over SSE from a durable run; money, usage, audit and the messages agree', async () => {
    const tenant = await fundedTenant('chat');
    const session = await newSession(tenant, { model: 'gpt-4o-mini' });
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const res = await send(tenant, session.id, { content: 'What do mitochondria do?', max_tokens: 40 });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const events = await collectSse(res);
    const types = events.map((e) => e.event);
    expect(types[0]).toBe('run');
    expect(types).toContain('run.started');
    expect(types.filter((t) => t === 'message.delta').length).toBeGreaterThan(0);
    expect(types.at(-1)).toBe('message.completed');
    const streamed = events.filter((e) => e.event === 'message.delta').map((e) => e.data.content).join('');
    const completed = events.at(-1)!.data;
    expect(completed.content).toBe(streamed);
    const { run_id: runId, trace_id: traceId } = events[0]!.data;

    const run = await tenant.client.get(`/api/v1/projects/${tenant.project.id}/chat/runs/${runId}`);
    expect(run.body).toMatchObject({ status: 'succeeded', trace_id: traceId, cost_micros: completed.cost_micros });
    const after = await gateway.deps.ledger.getWallet(tenant.org.id);
    expect(after.balanceMicros).toBe(before.balanceMicros - BigInt(completed.cost_micros));
    expect(after.frozenMicros).toBe(0n);
    const usage = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { runId } });
    expect(usage).toMatchObject({ traceId, status: 'success', completionTokens: completed.usage.completion_tokens });
    const audit = await gateway.deps.prisma.auditLog.findMany({ where: { traceId } });
    expect(audit.map((a) => a.action)).toEqual(expect.arrayContaining(['chat.message.create', 'ai.call']));

    const messages = await tenant.client.get(`/api/v1/projects/${tenant.project.id}/chat/sessions/${session.id}/messages`);
    expect(messages.body.data.map((m: { role: string }) => m.role)).toEqual(['user', 'assistant']);
    expect(messages.body.data[1]).toMatchObject({ content: streamed, usage: { cost_micros: completed.cost_micros } });

    // Operators find the run in Temporal by trace id (a search attribute).
    const found = await until(async () => {
      for await (const wf of worker.client.workflow.list({ query: `DsTraceId = "${traceId}"` })) return wf;
      return null;
    });
    expect(found.workflowId).toBe(run.body.temporal_workflow_id);
    // The run row names the Temporal run too (written by the worker with the running mark).
    const row = await gateway.deps.prisma.workflowRun.findUniqueOrThrow({ where: { id: runId } });
    expect(row.temporalRunId).toBe(found.runId);
  });

  it('a reconnect with Last-Event-ID resumes with no loss and no duplicates', async () => {
    const tenant = await fundedTenant('resume');
    const session = await newSession(tenant);
    const all = await collectSse(await send(tenant, session.id, { content: 'Tell me about enzymes [[sim:output_tokens=30]] [[sim:token_ms=15]]' }));
    const runId = all[0]!.data.run_id;
    const withIds = all.filter((e) => e.id);
    expect(withIds.length).toBeGreaterThan(5);
    const cut = withIds[2]!;
    const resumed = await collectSse(
      await fetch(`${gateway.url}/api/v1/projects/${tenant.project.id}/chat/runs/${runId}/events`, { headers: { cookie: tenant.client.cookie!, 'last-event-id': cut.id! } }),
    );
    expect(resumed.map((e) => e.id)).toEqual(withIds.slice(3).map((e) => e.id));
    const fromStart = await collectSse(await fetch(`${gateway.url}/api/v1/projects/${tenant.project.id}/chat/runs/${runId}/events`, { headers: { cookie: tenant.client.cookie! } }));
    expect(fromStart.map((e) => e.id)).toEqual(withIds.map((e) => e.id));
    // Resuming after the terminal event ends at once, with nothing repeated.
    const afterEnd = await collectSse(
      await fetch(`${gateway.url}/api/v1/projects/${tenant.project.id}/chat/runs/${runId}/events`, { headers: { cookie: tenant.client.cookie!, 'last-event-id': withIds.at(-1)!.id! } }),
    );
    expect(afterEnd).toEqual([]);
  });

  it('a client that disconnects does not stop the run: the reply is saved when it finishes', async () => {
    const tenant = await fundedTenant('gone');
    const session = await newSession(tenant);
    const abort = new AbortController();
    const res = await send(tenant, session.id, { content: 'slow answer [[sim:output_tokens=40]] [[sim:token_ms=25]]' }, {}, abort.signal);
    let runId = '';
    for await (const event of sseEvents(res)) {
      if (event.event === 'run') runId = event.data.run_id;
      if (event.event === 'message.delta') break;
    }
    abort.abort();
    const run = await until(async () => {
      const r = await gateway.deps.prisma.workflowRun.findUnique({ where: { id: runId } });
      return r?.status === 'succeeded' ? r : null;
    });
    expect(run.costMicros).toBeGreaterThan(0n);
    const reply = await gateway.deps.prisma.chatMessage.findFirstOrThrow({ where: { runId, role: 'assistant' } });
    expect(reply.completionTokens).toBe(40);
  });

  it('cancel stops a running reply; the hold is released and nothing is charged', async () => {
    const tenant = await fundedTenant('cancel');
    const session = await newSession(tenant);
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const res = await send(tenant, session.id, { content: 'very slow [[sim:output_tokens=200]] [[sim:token_ms=50]]' });
    const events = [];
    for await (const event of sseEvents(res)) {
      events.push(event);
      if (event.event === 'message.delta' && events.filter((e) => e.event === 'message.delta').length === 1) {
        const cancel = await tenant.client.post(`/api/v1/projects/${tenant.project.id}/chat/runs/${events[0]!.data.run_id}/cancel`);
        expect(cancel.status).toBe(202);
      }
    }
    expect(events.at(-1)!.event).toBe('run.cancelled');
    const runId = events[0]!.data.run_id;
    const hold = await gateway.deps.prisma.hold.findFirstOrThrow({ where: { runId } });
    expect(hold.status).toBe('released');
    const after = await gateway.deps.ledger.getWallet(tenant.org.id);
    expect(after.balanceMicros).toBe(before.balanceMicros);
    expect(after.frozenMicros).toBe(0n);
    expect((await gateway.deps.prisma.workflowRun.findUniqueOrThrow({ where: { id: runId } })).status).toBe('cancelled');
  });

  it('a long session sends its newest turns, ending with the new message (not its oldest 2,000)', async () => {
    const tenant = await fundedTenant('long-history');
    const session = await newSession(tenant);
    // 2,100 earlier turns, a second apart, straight into the table (the API would take minutes).
    await gateway.deps.pool.query(
      `INSERT INTO chat_messages (session_id, org_id, project_id, role, content, created_at)
       SELECT $1::uuid, $2::uuid, $3::uuid, CASE WHEN i % 2 = 0 THEN 'user' ELSE 'assistant' END, 'earlier turn ' || i, now() - (2101 - i) * interval '1 second'
       FROM generate_series(1, 2100) AS i`,
      [session.id, tenant.org.id, tenant.project.id],
    );
    const events = await collectSse(await send(tenant, session.id, { content: 'newest question about zebras [[sim:output_tokens=12]]' }));
    const completed = events.at(-1)!;
    expect(completed.event).toBe('message.completed');
    // The simulator echoes the last user message it was sent: the new one, so it was in the prompt.
    expect(completed.data.content).toContain('zebras');
    // What was sent is the newest 2,000 messages up to the new one (all fit gpt-4o-mini's window):
    // the simulator's prompt count says so, token for token.
    const runId = events[0]!.data.run_id;
    const { rows } = await gateway.deps.pool.query<{ role: string; content: string }>(
      `SELECT role, content FROM chat_messages
       WHERE session_id = $1::uuid AND created_at <= (SELECT created_at FROM chat_messages WHERE run_id = $2 AND role = 'user')
       ORDER BY created_at DESC, id DESC LIMIT 2000`,
      [session.id, runId],
    );
    expect(rows[0]!.content).toContain('zebras');
    expect(rows.at(-1)!.content).toBe('earlier turn 102');
    const usage = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { runId } });
    expect(usage.promptTokens).toBe(countChatPromptTokens(rows.reverse()));
  }, 60_000);

  it('an upstream that keeps failing ends in run.failed with the hold released', async () => {
    const tenant = await fundedTenant('fail');
    const session = await newSession(tenant);
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const events = await collectSse(await send(tenant, session.id, { content: 'break [[sim:fault=http_500]]' }));
    expect(events.at(-1)).toMatchObject({ event: 'run.failed', data: { code: 'upstream_error' } });
    const hold = await gateway.deps.prisma.hold.findFirstOrThrow({ where: { runId: events[0]!.data.run_id } });
    expect(hold.status).toBe('released');
    expect((await gateway.deps.ledger.getWallet(tenant.org.id)).balanceMicros).toBe(before.balanceMicros);
  });

  it('an empty wallet ends in run.failed insufficient_funds, with no hold', async () => {
    const tenant = await fundedTenant('broke', 0n);
    const session = await newSession(tenant);
    const events = await collectSse(await send(tenant, session.id, { content: 'hello' }));
    expect(events.at(-1)).toMatchObject({ event: 'run.failed', data: { code: 'insufficient_funds' } });
    expect(await gateway.deps.prisma.hold.count({ where: { orgId: tenant.org.id } })).toBe(0);
  });

  it('a retried POST with the same Idempotency-Key attaches to the same run and stores one message', async () => {
    const tenant = await fundedTenant('idem');
    const session = await newSession(tenant);
    const first = await collectSse(await send(tenant, session.id, { content: 'once' }, { 'idempotency-key': 'msg-1' }));
    const second = await collectSse(await send(tenant, session.id, { content: 'once' }, { 'idempotency-key': 'msg-1' }));
    expect(second[0]!.data.run_id).toBe(first[0]!.data.run_id);
    expect(second.at(-1)!.event).toBe('message.completed');
    expect(await gateway.deps.prisma.chatMessage.count({ where: { sessionId: session.id, role: 'user' } })).toBe(1);
    expect(await gateway.deps.prisma.hold.count({ where: { runId: first[0]!.data.run_id } })).toBe(1);
    // The retry replays the finished run's events; it does not run the model again.
    expect(second.filter((e) => e.event !== 'run').map((e) => e.id)).toEqual(first.filter((e) => e.event !== 'run').map((e) => e.id));
    expect(await gateway.deps.prisma.usageRecord.count({ where: { runId: first[0]!.data.run_id } })).toBe(1);
  });

  it('API keys with chat:write chat too; sessions list, rename and delete', async () => {
    const tenant = await fundedTenant('keychat');
    const key = tenant.client.withApiKey(await createKey(tenant, ['chat:write']));
    const session = await key.post(`/api/v1/projects/${tenant.project.id}/chat/sessions`, { title: 'From a key', params: { temperature: 0.2 } });
    expect(session.status).toBe(201);
    const renamed = await key.patch(`/api/v1/projects/${tenant.project.id}/chat/sessions/${session.body.id}`, { title: 'Renamed' });
    expect(renamed.body.title).toBe('Renamed');
    const list = await key.get(`/api/v1/projects/${tenant.project.id}/chat/sessions`);
    expect(list.body.data.map((s: { id: string }) => s.id)).toContain(session.body.id);
    expect((await key.delete(`/api/v1/projects/${tenant.project.id}/chat/sessions/${session.body.id}`)).status).toBe(204);
    expect((await key.get(`/api/v1/projects/${tenant.project.id}/chat/sessions/${session.body.id}`)).status).toBe(404);
  });
});

describe('chat: the upstream call beside the hold (CHAT_SPECULATIVE_HEADROOM)', () => {
  /** Own simulator, gateway and worker on their own task queue, so the simulator's log is this test's alone. */
  async function ownStack(env: NodeJS.ProcessEnv = {}) {
    const sim = await startSimulator({ port: 0, apiKey: 'sim-test-key' });
    const stackEnv = { NEWAPI_BASE_URL: sim.url, NEWAPI_API_KEY: 'sim-test-key', TEMPORAL_TASK_QUEUE: `chat-speculation-${process.pid}-${Date.now()}`, ...env };
    const gw = await startTestGateway(stackEnv);
    const wk = await startTestWorker(stackEnv);
    const tenant = await signUp(gw.url, 'chat-speculate');
    await gw.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 5_000_000n, idempotencyKey: `chat-spec:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
    const session = (await tenant.client.post(`/api/v1/projects/${tenant.project.id}/chat/sessions`, { model: 'gpt-4o-mini' })).body;
    const ask = async (content: string) =>
      collectSse(
        await fetch(`${gw.url}/api/v1/projects/${tenant.project.id}/chat/sessions/${session.id}/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', cookie: tenant.client.cookie! },
          body: JSON.stringify({ content, max_tokens: 30 }),
        }),
      );
    const chatRequests = () => sim.stats().recent.filter((r) => r.path.endsWith('/chat/completions'));
    return {
      sim, gw, tenant, ask, chatRequests,
      async close() {
        await wk.stop();
        await gw.close();
        await sim.close();
      },
    };
  }

  it('billed like a held-first run when the hold stands; a hold refused meanwhile fails the run, aborts the call and charges nothing', async () => {
    const stack = await ownStack();
    const { gw, tenant, ask, chatRequests } = stack;
    try {
      // Nothing seen of this wallet yet: hold first. The hold's answer shows a rich wallet.
      const first = await ask('first question [[sim:output_tokens=8]]');
      expect(first.at(-1)!.event).toBe('message.completed');
      // Now the call starts beside the hold: same money, usage and reply as a held-first run.
      const second = await ask('second question [[sim:output_tokens=8]]');
      expect(second.at(-1)!.event).toBe('message.completed');
      const runId = second[0]!.data.run_id as string;
      const hold = await gw.deps.prisma.hold.findFirstOrThrow({ where: { runId } });
      const usage = await gw.deps.prisma.usageRecord.findFirstOrThrow({ where: { runId, status: 'success' } });
      expect(hold.status).toBe('captured');
      expect(hold.capturedMicros).toBe(usage.costMicros);
      expect(usage.completionTokens).toBe(8);
      const types = second.map((e) => e.event);
      expect(types.indexOf('run.started')).toBeLessThan(types.indexOf('message.delta'));
      expect(chatRequests()).toHaveLength(2);

      // Another process drains the wallet behind this worker's back.
      const seen = await gw.deps.ledger.getWallet(tenant.org.id);
      await gw.deps.ledger.adjust({
        orgId: tenant.org.id, deltaMicros: -(seen.balanceMicros - seen.frozenMicros), idempotencyKey: `chat-drain:${tenant.org.id}`, reason: 'test: spent elsewhere', actor: { type: 'system' },
      });
      const drained = await gw.deps.ledger.getWallet(tenant.org.id);
      const refused = await ask('third question [[sim:first_token_ms=2000]]');
      expect(refused.at(-1)).toMatchObject({ event: 'run.failed', data: { code: 'insufficient_funds' } });
      expect(refused.some((e) => e.event === 'message.delta')).toBe(false);
      // The upstream saw the request (it started beside the hold) and it was cut off long before its first token.
      await expect.poll(() => chatRequests().length, { timeout: 5_000 }).toBe(3);
      expect(chatRequests()[2]!.durationMs).toBeLessThan(1_500);
      const refusedRun = refused[0]!.data.run_id as string;
      expect(await gw.deps.prisma.hold.count({ where: { runId: refusedRun } })).toBe(0);
      expect(await gw.deps.prisma.usageRecord.count({ where: { runId: refusedRun, status: 'success' } })).toBe(0);
      expect(await gw.deps.ledger.getWallet(tenant.org.id)).toMatchObject({ balanceMicros: drained.balanceMicros, frozenMicros: 0n });

      // The refusal told the worker the wallet is empty: the next run holds first and the upstream never sees it.
      const again = await ask('fourth question');
      expect(again.at(-1)).toMatchObject({ event: 'run.failed', data: { code: 'insufficient_funds' } });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(chatRequests()).toHaveLength(3);
    } finally {
      await stack.close();
    }
  });

  it('CHAT_SPECULATIVE_HEADROOM=0 never calls the upstream before the hold', async () => {
    const stack = await ownStack({ CHAT_SPECULATIVE_HEADROOM: '0' });
    const { gw, tenant, ask, chatRequests } = stack;
    try {
      expect((await ask('warm up [[sim:output_tokens=4]]')).at(-1)!.event).toBe('message.completed');
      const seen = await gw.deps.ledger.getWallet(tenant.org.id);
      await gw.deps.ledger.adjust({
        orgId: tenant.org.id, deltaMicros: -(seen.balanceMicros - seen.frozenMicros), idempotencyKey: `chat-drain0:${tenant.org.id}`, reason: 'test: spent elsewhere', actor: { type: 'system' },
      });
      expect((await ask('refused')).at(-1)).toMatchObject({ event: 'run.failed', data: { code: 'insufficient_funds' } });
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(chatRequests()).toHaveLength(1);
    } finally {
      await stack.close();
    }
  });
});
