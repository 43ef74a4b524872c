// The OpenAI-compatible API, driven by the official `openai` SDK pointed at the gateway with a
// project key, against the upstream simulator over HTTP. Money, usage and audit must agree.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, signUp, type Tenant } from '../support/api.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';
import { startSimulator } from '@deepspace/upstream-simulator';
import { pendingAfterResponse, settleAfterResponses } from '../../gateway/src/services/settlements.ts';

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway.close();
});

async function fundedTenant(label: string, micros = 5_000_000n): Promise<{ tenant: Tenant; client: OpenAI; key: string }> {
  const tenant = await signUp(gateway.url, label);
  await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: micros, idempotencyKey: `test-topup:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  const key = await createKey(tenant, ['chat:write', 'usage:read']);
  return { tenant, key, client: new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 }) };
}

const wallet = (orgId: string) => gateway.deps.ledger.getWallet(orgId);

describe('OpenAI-compatible /v1 API', () => {
  it('lists the models, labelled simulated when the simulator serves them', async () => {
    const { client } = await fundedTenant('models');
    const models = await client.models.list();
    const ids = models.data.map((m) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['gpt-4o-mini', 'text-embedding-3-small']));
    const mini = models.data.find((m) => m.id === 'gpt-4o-mini') as unknown as { deepspace: { simulated: boolean } };
    expect(mini.deepspace.simulated).toBe(true);
  });

  it('a non-stream completion is held, captured at the real usage, recorded and audited under one trace id', async () => {
    const { tenant, client } = await fundedTenant('nonstream');
    const before = await wallet(tenant.org.id);
    const { data: completion, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Summarise the role of ribosomes.' }], max_tokens: 40 })
      .withResponse();
    const traceId = response.headers.get('x-trace-id')!;
    expect(completion.model).toBe('gpt-4o-mini');
    expect(completion.usage!.completion_tokens).toBeGreaterThan(0);
    // By default the capture commits right after the answer (V1_SETTLE_BEFORE_RESPONSE=false).
    await settleAfterResponses();

    const usage = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId } });
    expect(usage).toMatchObject({ status: 'success', promptTokens: completion.usage!.prompt_tokens, completionTokens: completion.usage!.completion_tokens, modelName: 'gpt-4o-mini', upstreamModel: 'sim-gpt-4o-mini' });
    // gpt-4o-mini: 0.15 USD / 1M input, 0.60 USD / 1M output, rounded up per side.
    const expected = BigInt(Math.ceil((completion.usage!.prompt_tokens * 150_000) / 1e6) + Math.ceil((completion.usage!.completion_tokens * 600_000) / 1e6));
    expect(usage.costMicros).toBe(expected);
    const after = await wallet(tenant.org.id);
    expect(after.balanceMicros).toBe(before.balanceMicros - expected);
    expect(after.frozenMicros).toBe(0n);
    const hold = await gateway.deps.prisma.hold.findFirstOrThrow({ where: { traceId } });
    expect(hold.status).toBe('captured');
    const audit = await gateway.deps.prisma.auditLog.findFirstOrThrow({ where: { traceId, action: 'ai.call' } });
    expect(audit.result).toBe('success');
  });

  it('answers say where the time went: Server-Timing phases and the gateway overhead', async () => {
    const { client } = await fundedTenant('timing');
    const phasesOf = (header: string | null) =>
      Object.fromEntries((header ?? '').split(', ').map((entry) => {
        const [name, dur] = entry.split(';dur=');
        return [name!, Number(dur)];
      }));
    // The simulator holds its answer 60 ms, so a phase measured in the wrong place shows.
    const { response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Time me. [[sim:first_token_ms=60]]' }], max_tokens: 8 })
      .withResponse();
    const phases = phasesOf(response.headers.get('server-timing'));
    expect(Object.keys(phases)).toEqual(['pre', 'hold', 'upstream', 'hold_wait', 'total']);
    for (const value of Object.values(phases)) expect(value).toBeGreaterThanOrEqual(0);
    expect(phases.upstream).toBeGreaterThanOrEqual(60);
    expect(phases.hold).toBeGreaterThan(0);
    expect(phases.total).toBeGreaterThanOrEqual(phases.pre! + phases.upstream!);
    const overhead = Number(response.headers.get('x-deepspace-overhead-ms'));
    expect(Math.abs(overhead - (phases.total! - phases.upstream!))).toBeLessThan(0.02);
    expect(overhead).toBeLessThan(phases.total! - 59);

    // A stream's headers leave when the upstream's do: its phase is upstream_open.
    const { data: stream, response: streamed } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Stream and time me.' }], max_tokens: 8, stream: true })
      .withResponse();
    for await (const chunk of stream) void chunk;
    const streamPhases = phasesOf(streamed.headers.get('server-timing'));
    expect(Object.keys(streamPhases)).toEqual(['pre', 'hold', 'upstream_open', 'hold_wait', 'total']);
    // Streams hold first: the call waits for the whole hold.
    expect(streamPhases.hold_wait).toBeGreaterThanOrEqual(streamPhases.hold!);
    expect(streamPhases.total).toBeGreaterThanOrEqual(streamPhases.pre! + streamPhases.hold! + streamPhases.upstream_open!);
    await settleAfterResponses();
  });

  it('streams a completion through the SDK with include_usage, and bills it', async () => {
    const { tenant, client } = await fundedTenant('stream');
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Stream me a short answer.' }], max_tokens: 30, stream: true, stream_options: { include_usage: true } })
      .withResponse();
    let text = '';
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of stream) {
      expect(chunk.model).toBe('gpt-4o-mini');
      text += chunk.choices[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text.length).toBeGreaterThan(0);
    expect(usage?.completion_tokens).toBeGreaterThan(0);
    const traceId = response.headers.get('x-trace-id')!;
    const record = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId } });
    expect(record.completionTokens).toBe(usage!.completion_tokens);
    expect((await wallet(tenant.org.id)).frozenMicros).toBe(0n);
  });

  it('without include_usage the client gets no usage chunk, yet the call is billed', async () => {
    const { client } = await fundedTenant('nousage');
    const { data: stream, response } = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Hi' }], max_tokens: 10, stream: true })
      .withResponse();
    let sawUsage = false;
    for await (const chunk of stream) if (chunk.usage) sawUsage = true;
    expect(sawUsage).toBe(false);
    const record = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId: response.headers.get('x-trace-id')! } });
    expect(record.status).toBe('success');
    expect(record.costMicros).toBeGreaterThan(0n);
  });

  it('upstream 500s are retried, then a clear 502; the hold is released and nothing is charged', async () => {
    const { tenant, client } = await fundedTenant('fault500');
    const before = await wallet(tenant.org.id);
    const error = await client.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'fail please [[sim:fault=http_500]]' }], max_tokens: 10 })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect((error as InstanceType<typeof OpenAI.APIError>).status).toBe(502);
    const traceId = (error as InstanceType<typeof OpenAI.APIError>).headers?.get('x-trace-id');
    expect(traceId).toBeTruthy();
    const after = await wallet(tenant.org.id);
    expect(after.balanceMicros).toBe(before.balanceMicros);
    expect(after.frozenMicros).toBe(0n);
    const hold = await gateway.deps.prisma.hold.findFirstOrThrow({ where: { traceId: traceId! } });
    expect(hold.status).toBe('released');
    expect((await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId: traceId! } })).status).toBe('error');
  });

  it('a transient upstream 429 is retried and the call succeeds', async () => {
    const { client } = await fundedTenant('retry');
    const completion = await client.chat.completions.create({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: `retry me ${Date.now()} [[sim:fault=http_429]] [[sim:fault_times=1]]` }],
      max_tokens: 10,
    });
    expect(completion.choices[0]!.message.content).toBeTruthy();
  });

  it('an empty wallet gets 402 insufficient_quota and no hold; a disallowed model gets 403', async () => {
    const poor = await signUp(gateway.url, 'poor');
    const key = await createKey(poor, ['chat:write']);
    const client = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0 });
    const error = (await client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(error.status).toBe(402);
    expect(error.type).toBe('insufficient_quota');
    expect((error.error as { code: string }).code).toBe('insufficient_funds');
    expect(await gateway.deps.prisma.hold.count({ where: { orgId: poor.org.id } })).toBe(0);

    const { tenant, client: rich } = await fundedTenant('policy');
    await tenant.client.put(`/api/v1/projects/${tenant.project.id}/policy`, { allowed_models: ['gpt-4o-mini'] });
    const denied = (await rich.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(denied.status).toBe(403);
    expect((denied.error as { code: string }).code).toBe('policy_violation');
    const unknown = (await rich.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }).catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
    expect(unknown.status).toBe(404);
  });

  it('a client that disconnects mid-stream is billed for what was delivered; the rest of the hold is released', async () => {
    const { tenant, key } = await fundedTenant('disconnect');
    const abort = new AbortController();
    const res = await fetch(`${gateway.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', stream: true, max_tokens: 200, messages: [{ role: 'user', content: 'long answer [[sim:output_tokens=200]] [[sim:token_ms=20]]' }] }),
      signal: abort.signal,
    });
    const traceId = res.headers.get('x-trace-id')!;
    const reader = res.body!.getReader();
    let received = '';
    expect(res.status).toBe(200);
    while (received.split('data: ').length < 6) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`stream ended early: ${received}`);
      received += new TextDecoder().decode(value);
    }
    abort.abort();
    let hold;
    for (let i = 0; i < 50; i++) {
      hold = await gateway.deps.prisma.hold.findFirst({ where: { traceId } });
      if (hold && hold.status !== 'active') break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(hold!.status).toBe('captured');
    const usage = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId } });
    expect(usage.completionTokens).toBeGreaterThan(0);
    expect(usage.completionTokens).toBeLessThan(200);
    expect(hold!.capturedMicros).toBeLessThan(hold!.amountMicros);
    expect((await wallet(tenant.org.id)).frozenMicros).toBe(0n);
  });

  it('embeddings are billed per input token', async () => {
    const { client } = await fundedTenant('embed');
    const { data: result, response } = await client.embeddings.create({ model: 'text-embedding-3-small', input: ['alpha beta', 'gamma delta'] }).withResponse();
    expect(result.data).toHaveLength(2);
    expect(result.data[0]!.embedding.length).toBeGreaterThan(10);
    await settleAfterResponses();
    const usage = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId: response.headers.get('x-trace-id')! } });
    expect(usage.promptTokens).toBe(result.usage.prompt_tokens);
    expect(usage.modelName).toBe('text-embedding-3-small');
  });

  it('signed-in users are sent to API keys; keys without chat:write are refused', async () => {
    const { tenant } = await fundedTenant('session');
    const res = await tenant.client.post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    expect(res.status).toBe(403);
    expect(res.body.error.type).toBe('permission_error');
    const readOnly = tenant.client.withApiKey(await createKey(tenant, ['usage:read']));
    const denied = await readOnly.post('/v1/chat/completions', { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'x' }] });
    expect(denied.status).toBe(403);
  });
});

describe('/v1 latency features: speculative upstream start, capture after the answer', () => {
  async function ownStack(env: NodeJS.ProcessEnv = {}) {
    const sim = await startSimulator({ port: 0, apiKey: 'sim-test-key' });
    const gw = await startTestGateway({ NEWAPI_BASE_URL: sim.url, NEWAPI_API_KEY: 'sim-test-key', ...env });
    const tenant = await signUp(gw.url, 'speculate');
    await gw.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 5_000_000n, idempotencyKey: `test-topup:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
    const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: await createKey(tenant, ['chat:write']), maxRetries: 0 });
    return {
      sim,
      gw,
      tenant,
      client,
      ask: (content: string) => client.chat.completions.create({ model: 'gpt-4o-mini', messages: [{ role: 'user', content }], max_tokens: 20 }).withResponse(),
      async close() {
        await gw.close();
        await sim.close();
      },
    };
  }

  it('a wallet seen rich starts the upstream call beside the hold; a hold refused meanwhile still answers 402, aborts the call and charges nothing', async () => {
    const stack = await ownStack();
    const { sim, gw, tenant } = stack;
    try {
      // Nothing seen of this wallet yet: hold first, then the call; its answer shows a rich wallet.
      await stack.ask('first call');
      await settleAfterResponses();
      expect(sim.stats().chat.nonStream).toBe(1);
      const seen = await gw.deps.ledger.getWallet(tenant.org.id);
      // Another process drains the wallet behind this gateway's back.
      await gw.deps.ledger.adjust({
        orgId: tenant.org.id, deltaMicros: -(seen.balanceMicros - seen.frozenMicros), idempotencyKey: `drain:${tenant.org.id}`, reason: 'test: spent elsewhere', actor: { type: 'system' },
      });
      const drained = await gw.deps.ledger.getWallet(tenant.org.id);

      const refused = (await stack.ask('speculated [[sim:first_token_ms=2000]]').catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(refused.status).toBe(402);
      expect((refused.error as { code: string }).code).toBe('insufficient_funds');
      // The upstream saw the request (it started beside the hold) and it was cut off unanswered.
      await expect.poll(() => sim.stats().chat.nonStream, { timeout: 5_000 }).toBe(2);
      await expect.poll(() => sim.stats().recent.filter((r) => r.path.endsWith('/chat/completions') && r.status === 0).length, { timeout: 5_000 }).toBe(1);
      const traceId = refused.headers!.get('x-trace-id')!;
      expect(await gw.deps.prisma.hold.count({ where: { traceId } })).toBe(0);
      expect(await gw.deps.prisma.usageRecord.count({ where: { traceId, status: 'success' } })).toBe(0);
      expect(await gw.deps.ledger.getWallet(tenant.org.id)).toMatchObject({ balanceMicros: drained.balanceMicros, frozenMicros: 0n });

      // The refusal told this gateway the wallet is empty: the next call holds first and the
      // upstream never sees it.
      const again = (await stack.ask('not speculated').catch((e: unknown) => e)) as InstanceType<typeof OpenAI.APIError>;
      expect(again.status).toBe(402);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(sim.stats().chat.nonStream).toBe(2);
    } finally {
      await stack.close();
    }
  });

  it('speculative calls that succeed are billed exactly like held-first ones; V1_SPECULATIVE_HEADROOM=0 never speculates', async () => {
    for (const headroom of ['20', '0']) {
      const stack = await ownStack({ V1_SPECULATIVE_HEADROOM: headroom });
      try {
        const traces: string[] = [];
        for (let i = 0; i < 4; i++) traces.push((await stack.ask(`call ${i}`)).response.headers.get('x-trace-id')!);
        await settleAfterResponses();
        const usage = await stack.gw.deps.prisma.usageRecord.findMany({ where: { traceId: { in: traces } } });
        expect(usage.map((u) => u.status)).toEqual(['success', 'success', 'success', 'success']);
        const holds = await stack.gw.deps.prisma.hold.findMany({ where: { traceId: { in: traces } } });
        expect(holds.map((h) => h.status)).toEqual(['captured', 'captured', 'captured', 'captured']);
        const w = await stack.gw.deps.ledger.getWallet(stack.tenant.org.id);
        expect(w.frozenMicros).toBe(0n);
        expect(w.balanceMicros).toBe(5_000_000n - usage.reduce((sum, u) => sum + u.costMicros, 0n));
        // With headroom 0 a drained wallet never reaches the upstream.
        if (headroom === '0') {
          await stack.gw.deps.ledger.adjust({ orgId: stack.tenant.org.id, deltaMicros: -w.balanceMicros, idempotencyKey: `drain0:${stack.tenant.org.id}`, reason: 'test', actor: { type: 'system' } });
          expect(((await stack.ask('refused').catch((e: unknown) => e)) as { status: number }).status).toBe(402);
          await new Promise((resolve) => setTimeout(resolve, 200));
          expect(stack.sim.stats().chat.nonStream).toBe(4);
        }
      } finally {
        await stack.close();
      }
    }
  });

  it('V1_SETTLE_BEFORE_RESPONSE=true: money, usage and audit are committed when the answer arrives', async () => {
    const stack = await ownStack({ V1_SETTLE_BEFORE_RESPONSE: 'true' });
    try {
      const { data, response } = await stack.ask('settled first');
      // No waiting for work after the response: there is none.
      expect(pendingAfterResponse()).toBe(0);
      const traceId = response.headers.get('x-trace-id')!;
      const usage = await stack.gw.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId } });
      expect(usage).toMatchObject({ status: 'success', completionTokens: data.usage!.completion_tokens });
      expect((await stack.gw.deps.prisma.hold.findFirstOrThrow({ where: { traceId } })).status).toBe('captured');
      expect(await stack.gw.deps.prisma.auditLog.count({ where: { traceId, action: 'ai.call', result: 'success' } })).toBe(1);
    } finally {
      await stack.close();
    }
  });

  it('after the answer, the capture commits once with one audit row; a stopping gateway finishes it first', async () => {
    const stack = await ownStack();
    let closed = false;
    try {
      const traces: string[] = [];
      // Answers arrive before their captures commit; closing the gateway right away must still settle them all.
      const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => stack.ask(`burst ${i}`)));
      for (const { response } of answers) traces.push(response.headers.get('x-trace-id')!);
      await stack.close();
      closed = true;
      // Read through the suite's other gateway: this one's connections are closed.
      const { prisma, ledger } = gateway.deps;
      expect((await prisma.hold.findMany({ where: { traceId: { in: traces } } })).map((h) => h.status)).toEqual(Array(8).fill('captured'));
      expect(await prisma.usageRecord.count({ where: { traceId: { in: traces }, status: 'success' } })).toBe(8);
      expect(await prisma.auditLog.count({ where: { traceId: { in: traces }, action: 'ai.call' } })).toBe(8);
      expect((await ledger.getWallet(stack.tenant.org.id)).frozenMicros).toBe(0n);
    } finally {
      if (!closed) await stack.close();
    }
  });
});
