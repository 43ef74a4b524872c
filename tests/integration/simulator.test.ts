// The upstream simulator driven over real HTTP by the official openai SDK (unchanged), plus raw fetch
// for the HTTP-level edge cases the SDK never produces.
import http from 'node:http';
import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import OpenAI, {
  APIConnectionError,
  APIConnectionTimeoutError,
  APIError,
  AuthenticationError,
  BadRequestError,
  InternalServerError,
  NotFoundError,
  RateLimitError,
} from 'openai';
import { getEncoding } from 'js-tiktoken';
import { startSimulator } from '@deepspace/upstream-simulator';
import type { RunningSimulator } from '@deepspace/upstream-simulator';

// An independent tokenizer instance (the full js-tiktoken entry, not the simulator's lite one).
const enc = getEncoding('o200k_base');
const count = (text: string) => enc.encode(text, [], []).length;

type Msg = { role: 'system' | 'user' | 'assistant'; content: string };
/** OpenAI's chat accounting for gpt-4o style models: 3 tokens per message + role + content, +3 priming. */
function expectedPromptTokens(messages: Msg[]): number {
  return messages.reduce((sum, m) => sum + 3 + count(m.role) + count(m.content), 3);
}

function cosine(a: number[], b: number[]): number {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    na += a[i]! ** 2;
    nb += b[i]! ** 2;
  }
  return dot / Math.sqrt(na * nb);
}

function norm(v: number[]): number {
  return Math.sqrt(v.reduce((s, x) => s + x * x, 0));
}

async function catchError(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (err) {
    return err;
  }
  throw new Error('expected the call to fail, but it succeeded');
}

const MESSAGES: Msg[] = [
  { role: 'system', content: 'You are a careful research assistant.' },
  { role: 'user', content: 'Summarise the findings of the catalyst stability study in two sentences.' },
];

let sim: RunningSimulator;
let client: OpenAI;

beforeAll(async () => {
  sim = await startSimulator({ port: 0 });
  client = new OpenAI({ baseURL: sim.url, apiKey: 'x', maxRetries: 0 });
});

afterAll(async () => {
  await sim?.close();
});

describe('upstream simulator: models', () => {
  it('serves the default model list in OpenAI list shape', async () => {
    expect(sim.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    const ids: string[] = [];
    for await (const m of client.models.list()) {
      expect(m.object).toBe('model');
      expect(m.owned_by).toBe('deepspace-simulator');
      ids.push(m.id);
    }
    expect(ids.sort()).toEqual(
      ['sim-embedding-large', 'sim-embedding-small', 'sim-gpt-4o', 'sim-gpt-4o-mini', 'sim-reasoner'].sort(),
    );
    const one = await client.models.retrieve('sim-gpt-4o');
    expect(one.id).toBe('sim-gpt-4o');
    const err = await catchError(client.models.retrieve('no-such-model'));
    expect(err).toBeInstanceOf(NotFoundError);
    expect((err as NotFoundError).status).toBe(404);
    expect((err as NotFoundError).code).toBe('model_not_found');
  });
});

describe('upstream simulator: chat completions', () => {
  it('answers deterministically with usage that matches an independent token count', async () => {
    const a = await client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages: MESSAGES });
    expect(a.object).toBe('chat.completion');
    expect(a.model).toBe('sim-gpt-4o-mini');
    expect(a.choices).toHaveLength(1);
    const content = a.choices[0]!.message.content!;
    expect(a.choices[0]!.message.role).toBe('assistant');
    expect(content.startsWith('Simulated reply to: Summarise the findings of the catalyst')).toBe(true);
    expect(a.choices[0]!.finish_reason).toBe('stop');
    expect(a.usage!.completion_tokens).toBe(count(content));
    expect(a.usage!.completion_tokens).toBe(64); // the default natural length
    expect(a.usage!.prompt_tokens).toBe(expectedPromptTokens(MESSAGES));
    expect(a.usage!.total_tokens).toBe(a.usage!.prompt_tokens + a.usage!.completion_tokens);

    const b = await client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages: MESSAGES });
    expect(b.choices[0]!.message.content).toBe(content);
    expect(b.id).not.toBe(a.id);

    const other = await client.chat.completions.create({
      model: 'sim-gpt-4o-mini',
      messages: [{ role: 'user', content: 'Something entirely different about lasers' }],
    });
    expect(other.choices[0]!.message.content).not.toBe(content);
    expect(other.choices[0]!.message.content).toMatch(/^Simulated reply to: Something entirely different about lasers/);
  });

  it('accepts content as an array of text parts and counts it', async () => {
    const res = await client.chat.completions.create({
      model: 'sim-gpt-4o',
      messages: [{ role: 'user', content: [{ type: 'text', text: 'Hello' }, { type: 'text', text: 'world of parts' }] }],
    });
    expect(res.usage!.prompt_tokens).toBe(3 + count('user') + count('Hello\nworld of parts') + 3);
    expect(res.choices[0]!.message.content).toMatch(/^Simulated reply to: Hello world of parts/);
  });

  it('streams the same text as the non-stream call and ends with a usage chunk when include_usage is set', async () => {
    const full = await client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES });
    const stream = await client.chat.completions.create({
      model: 'sim-gpt-4o',
      messages: MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);

    expect(chunks.length).toBeGreaterThan(5);
    for (const c of chunks) expect(c.object).toBe('chat.completion.chunk');
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
    expect(chunks[0]!.choices[0]!.delta.role).toBe('assistant');

    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toMatchObject({
      prompt_tokens: full.usage!.prompt_tokens,
      completion_tokens: full.usage!.completion_tokens,
      total_tokens: full.usage!.total_tokens,
    });
    const finishChunk = chunks.at(-2)!;
    expect(finishChunk.choices[0]!.finish_reason).toBe('stop');
    // only the final chunk carries usage
    for (const c of chunks.slice(0, -1)) expect(c.usage ?? null).toBeNull();

    const text = chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
    expect(text).toBe(full.choices[0]!.message.content);
  });

  it('sends no usage chunk without include_usage', async () => {
    const stream = await client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, stream: true });
    const chunks: OpenAI.Chat.Completions.ChatCompletionChunk[] = [];
    for await (const c of stream) chunks.push(c);
    expect(chunks.length).toBeGreaterThan(2);
    expect(chunks.every((c) => c.usage === undefined || c.usage === null)).toBe(true);
    expect(chunks.every((c) => c.choices.length === 1)).toBe(true);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
  });

  it('cuts at max_tokens with finish_reason length, as a prefix of the uncut reply', async () => {
    const uncut = await client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages: MESSAGES });
    for (const maxTokens of [1, 7, 23]) {
      const cut = await client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages: MESSAGES, max_tokens: maxTokens });
      const content = cut.choices[0]!.message.content!;
      expect(cut.choices[0]!.finish_reason).toBe('length');
      expect(cut.usage!.completion_tokens).toBe(maxTokens);
      expect(count(content)).toBe(maxTokens);
      expect(uncut.choices[0]!.message.content!.startsWith(content)).toBe(true);
    }
    const viaNewParam = await client.chat.completions.create({
      model: 'sim-reasoner',
      messages: MESSAGES,
      max_completion_tokens: 12,
    });
    expect(viaNewParam.choices[0]!.finish_reason).toBe('length');
    expect(viaNewParam.usage!.completion_tokens).toBe(12);

    // a cap above the natural length does not cut
    const roomy = await client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages: MESSAGES, max_tokens: 500 });
    expect(roomy.choices[0]!.finish_reason).toBe('stop');
    expect(roomy.usage!.completion_tokens).toBe(64);

    const stream = await client.chat.completions.create({
      model: 'sim-gpt-4o-mini',
      messages: MESSAGES,
      max_tokens: 9,
      stream: true,
      stream_options: { include_usage: true },
    });
    const finish: (string | null)[] = [];
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const c of stream) {
      if (c.choices[0]?.finish_reason) finish.push(c.choices[0].finish_reason);
      if (c.usage) usage = c.usage;
    }
    expect(finish).toEqual(['length']);
    expect(usage?.completion_tokens).toBe(9);
  });

  it('lets x-sim-output-tokens and [[sim:output_tokens=N]] choose the natural length', async () => {
    const viaHeader = await client.chat.completions.create(
      { model: 'sim-gpt-4o-mini', messages: MESSAGES },
      { headers: { 'x-sim-output-tokens': '200' } },
    );
    expect(viaHeader.usage!.completion_tokens).toBe(200);
    expect(count(viaHeader.choices[0]!.message.content!)).toBe(200);
    expect(viaHeader.choices[0]!.finish_reason).toBe('stop');

    const viaDirective = await client.chat.completions.create({
      model: 'sim-gpt-4o-mini',
      messages: [{ role: 'user', content: 'Give me a short one [[sim:output_tokens=10]]' }],
    });
    expect(viaDirective.usage!.completion_tokens).toBe(10);
    expect(viaDirective.choices[0]!.message.content).not.toContain('[[sim:');
  });

  it('answers response_format json_schema / json_object with parseable, schema-shaped JSON', async () => {
    const schema = {
      type: 'object',
      properties: {
        title: { type: 'string' },
        score: { type: 'integer', minimum: 1, maximum: 5 },
        verdict: { type: 'string', enum: ['accept', 'reject'] },
        tags: { type: 'array', items: { type: 'string' }, minItems: 2 },
        author: { $ref: '#/$defs/person' },
        optional: { type: 'string' },
      },
      required: ['title', 'score', 'verdict', 'tags', 'author'],
      additionalProperties: false,
      $defs: { person: { type: 'object', properties: { name: { type: 'string' } }, required: ['name'] } },
    };
    const req = {
      model: 'sim-gpt-4o',
      messages: MESSAGES,
      response_format: { type: 'json_schema' as const, json_schema: { name: 'review', schema, strict: true } },
    };
    const res = await client.chat.completions.create(req);
    const content = res.choices[0]!.message.content!;
    const parsed = JSON.parse(content) as Record<string, unknown>;
    expect(Object.keys(parsed).sort()).toEqual(['author', 'score', 'tags', 'title', 'verdict']);
    expect(typeof parsed['title']).toBe('string');
    expect(Number.isInteger(parsed['score'])).toBe(true);
    expect(parsed['score']).toBeGreaterThanOrEqual(1);
    expect(parsed['score']).toBeLessThanOrEqual(5);
    expect(parsed['verdict']).toBe('accept');
    expect((parsed['tags'] as unknown[]).length).toBeGreaterThanOrEqual(2);
    expect(typeof (parsed['author'] as Record<string, unknown>)['name']).toBe('string');
    expect(res.usage!.completion_tokens).toBe(count(content));

    const stream = await client.chat.completions.create({ ...req, stream: true });
    let streamed = '';
    for await (const c of stream) streamed += c.choices[0]?.delta.content ?? '';
    expect(streamed).toBe(content);

    const cut = await client.chat.completions.create({ ...req, max_tokens: 4 });
    expect(cut.choices[0]!.finish_reason).toBe('length');
    expect(cut.usage!.completion_tokens).toBe(4);
    expect(content.startsWith(cut.choices[0]!.message.content!)).toBe(true);

    const obj = await client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, response_format: { type: 'json_object' } });
    expect(JSON.parse(obj.choices[0]!.message.content!)).toHaveProperty('reply');
  });

  it('rejects invalid requests with OpenAI-shaped 400/404 errors', async () => {
    const unknownModel = await catchError(client.chat.completions.create({ model: 'gpt-nope', messages: MESSAGES }));
    expect(unknownModel).toBeInstanceOf(NotFoundError);
    expect((unknownModel as APIError).code).toBe('model_not_found');
    expect((unknownModel as APIError).param).toBe('model');

    const embeddingAsChat = await catchError(client.chat.completions.create({ model: 'sim-embedding-small', messages: MESSAGES }));
    expect(embeddingAsChat).toBeInstanceOf(BadRequestError);

    const badRole = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: [{ role: 'wizard', content: 'hi' }] as never }),
    );
    expect(badRole).toBeInstanceOf(BadRequestError);
    expect((badRole as APIError).param).toBe('messages[0].role');

    const badContent = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: [{ role: 'user', content: 42 }] as never }),
    );
    expect(badContent).toBeInstanceOf(BadRequestError);
    expect((badContent as APIError).param).toBe('messages[0].content');

    const empty = await catchError(client.chat.completions.create({ model: 'sim-gpt-4o', messages: [] }));
    expect(empty).toBeInstanceOf(BadRequestError);

    const nTwo = await catchError(client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, n: 2 }));
    expect(nTwo).toBeInstanceOf(BadRequestError);
    expect((nTwo as APIError).param).toBe('n');

    const badMax = await catchError(client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, max_tokens: 0 }));
    expect(badMax).toBeInstanceOf(BadRequestError);
    expect((badMax as APIError).param).toBe('max_tokens');

    // unknown fields (tools, metadata, ...) are accepted
    const withTools = await client.chat.completions.create({
      model: 'sim-gpt-4o',
      messages: MESSAGES,
      tools: [{ type: 'function', function: { name: 'lookup', parameters: { type: 'object', properties: {} } } }],
      metadata: { run: 'x' },
      temperature: 0.2,
    });
    expect(withTools.choices[0]!.finish_reason).toBe('stop');
  });
});

describe('upstream simulator: embeddings', () => {
  it('returns deterministic unit vectors through the SDK (base64 on the wire) and as floats', async () => {
    const a = await client.embeddings.create({ model: 'sim-embedding-small', input: 'catalyst stability at high temperature' });
    expect(a.object).toBe('list');
    expect(a.model).toBe('sim-embedding-small');
    const va = a.data[0]!.embedding;
    expect(Array.isArray(va)).toBe(true); // the SDK decoded the base64 payload into numbers
    expect(va.every((x) => typeof x === 'number' && Number.isFinite(x))).toBe(true);
    expect(va).toHaveLength(256);
    expect(norm(Array.from(va))).toBeCloseTo(1, 4);
    expect(a.usage.prompt_tokens).toBe(count('catalyst stability at high temperature'));

    const asFloat = await client.embeddings.create({
      model: 'sim-embedding-small',
      input: 'catalyst stability at high temperature',
      encoding_format: 'float',
    });
    const vf = asFloat.data[0]!.embedding;
    expect(Array.isArray(vf)).toBe(true);
    expect(Array.from(vf)).toEqual(Array.from(va)); // float32 values either way

    // on the wire, base64 is little-endian float32
    const raw = await fetch(`${sim.url}/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'sim-embedding-small', input: 'catalyst stability at high temperature', encoding_format: 'base64' }),
    });
    const rawBody = (await raw.json()) as { data: { embedding: unknown }[] };
    expect(typeof rawBody.data[0]!.embedding).toBe('string');
    const buf = Buffer.from(rawBody.data[0]!.embedding as string, 'base64');
    const decoded = Array.from({ length: buf.length / 4 }, (_, i) => buf.readFloatLE(i * 4));
    expect(decoded).toEqual(Array.from(va));

    const large = await client.embeddings.create({ model: 'sim-embedding-large', input: ['one', 'two'] });
    expect(large.data.map((d) => d.index)).toEqual([0, 1]);
    expect(large.data[0]!.embedding).toHaveLength(1024);
    expect(cosine(Array.from(large.data[0]!.embedding), Array.from(large.data[1]!.embedding))).toBeLessThan(0.5);
  });

  it('honours dimensions and rejects more than the model has', async () => {
    const res = await client.embeddings.create({ model: 'sim-embedding-large', input: 'truncate me', dimensions: 64 });
    const v = Array.from(res.data[0]!.embedding);
    expect(v).toHaveLength(64);
    expect(norm(v)).toBeCloseTo(1, 4);
    const full = await client.embeddings.create({ model: 'sim-embedding-large', input: 'truncate me' });
    // Matryoshka-style: the short vector is the normalised prefix of the full one
    expect(cosine(v, Array.from(full.data[0]!.embedding).slice(0, 64))).toBeCloseTo(1, 4);

    const err = await catchError(client.embeddings.create({ model: 'sim-embedding-small', input: 'x', dimensions: 257 }));
    expect(err).toBeInstanceOf(BadRequestError);
    expect((err as APIError).param).toBe('dimensions');
    const chatModel = await catchError(client.embeddings.create({ model: 'sim-gpt-4o', input: 'x' }));
    expect(chatModel).toBeInstanceOf(BadRequestError);
    const unknown = await catchError(client.embeddings.create({ model: 'nope', input: 'x' }));
    expect(unknown).toBeInstanceOf(NotFoundError);
  });

  it('puts texts that share words closer than unrelated texts', async () => {
    const texts = [
      'The catalyst degrades quickly at high temperature in the reactor.',
      'At high temperature the reactor catalyst degrades.',
      'Quarterly marketing budget for the sales conference in Lisbon.',
    ];
    const res = await client.embeddings.create({ model: 'sim-embedding-small', input: texts, encoding_format: 'float' });
    const [q, near, far] = res.data.map((d) => Array.from(d.embedding));
    const simNear = cosine(q!, near!);
    const simFar = cosine(q!, far!);
    expect(simNear).toBeGreaterThan(0.6);
    expect(simFar).toBeLessThan(0.4);
    expect(simNear).toBeGreaterThan(simFar + 0.3);
    // deterministic across calls
    const again = await client.embeddings.create({ model: 'sim-embedding-small', input: texts[2]!, encoding_format: 'float' });
    expect(Array.from(again.data[0]!.embedding)).toEqual(far);
    expect(res.usage.prompt_tokens).toBe(texts.reduce((s, t) => s + count(t), 0));
  });
});

describe('upstream simulator: faults', () => {
  it('http_500 and http_429 surface as SDK APIErrors with those statuses (header and directive)', async () => {
    sim.resetStats();
    const e500 = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES }, { headers: { 'x-sim-fault': 'http_500' } }),
    );
    expect(e500).toBeInstanceOf(InternalServerError);
    expect((e500 as APIError).status).toBe(500);
    expect((e500 as APIError).type).toBe('server_error');

    const e429 = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES }, { headers: { 'x-sim-fault': 'http_429' } }),
    );
    expect(e429).toBeInstanceOf(RateLimitError);
    expect((e429 as APIError).status).toBe(429);
    expect((e429 as APIError).headers?.get('retry-after')).toBe('1');

    const d500 = await catchError(
      client.chat.completions.create({
        model: 'sim-gpt-4o',
        messages: [{ role: 'user', content: 'please fail [[sim:fault=http_500]]' }],
      }),
    );
    expect(d500).toBeInstanceOf(InternalServerError);
    const d429 = await catchError(
      client.chat.completions.create({
        model: 'sim-gpt-4o',
        messages: [{ role: 'user', content: '[[sim:fault=http_429]] rate limit me' }],
        stream: true,
      }),
    );
    expect(d429).toBeInstanceOf(RateLimitError);

    // the directive only counts in the LAST user message
    const earlier = await client.chat.completions.create({
      model: 'sim-gpt-4o',
      messages: [
        { role: 'user', content: 'old turn [[sim:fault=http_500]]' },
        { role: 'assistant', content: 'ok' },
        { role: 'user', content: 'new turn' },
      ],
    });
    expect(earlier.choices[0]!.finish_reason).toBe('stop');

    const embFault = await catchError(
      client.embeddings.create({ model: 'sim-embedding-small', input: 'x' }, { headers: { 'x-sim-fault': 'http_503' } }),
    );
    expect((embFault as APIError).status).toBe(503);

    const stats = sim.stats();
    expect(stats.faults['http_500']).toBe(2);
    expect(stats.faults['http_429']).toBe(2);
    expect(stats.faults['http_503']).toBe(1);
    expect(stats.statuses['500']).toBe(2);
    expect(stats.statuses['429']).toBe(2);
  });

  it('fault_times injects the fault only for the first N identical requests', async () => {
    const messages: Msg[] = [{ role: 'user', content: 'flaky upstream [[sim:fault=http_500]] [[sim:fault_times=2]]' }];
    for (let i = 0; i < 2; i++) {
      const err = await catchError(client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages }));
      expect((err as APIError).status).toBe(500);
    }
    const ok = await client.chat.completions.create({ model: 'sim-gpt-4o-mini', messages });
    expect(ok.choices[0]!.message.content).toMatch(/^Simulated reply to: flaky upstream/);
  });

  it('timeout never answers, so the SDK gives up with its timeout error', async () => {
    const before = sim.stats().faults['timeout'] ?? 0;
    const started = Date.now();
    const viaHeader = await catchError(
      client.chat.completions.create(
        { model: 'sim-gpt-4o', messages: MESSAGES },
        { headers: { 'x-sim-fault': 'timeout' }, timeout: 300 },
      ),
    );
    expect(viaHeader).toBeInstanceOf(APIConnectionTimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);

    const viaDirective = await catchError(
      client.chat.completions.create(
        { model: 'sim-gpt-4o', messages: [{ role: 'user', content: 'hang [[sim:fault=timeout]]' }], stream: true },
        { timeout: 300 },
      ),
    );
    expect(viaDirective).toBeInstanceOf(APIConnectionTimeoutError);
    expect(sim.stats().faults['timeout']).toBe(before + 2);

    // the abandoned requests are cleaned up on the server side
    await new Promise((r) => setTimeout(r, 100));
    expect(sim.stats().inFlight).toBe(0);
  });

  it('disconnect mid-stream makes the SDK iterator throw after some chunks', async () => {
    for (const how of ['header', 'directive'] as const) {
      const stream = await client.chat.completions.create(
        {
          model: 'sim-gpt-4o',
          messages: [{ role: 'user', content: how === 'directive' ? 'drop me [[sim:fault=disconnect]]' : 'drop me' }],
          stream: true,
        },
        how === 'header' ? { headers: { 'x-sim-fault': 'disconnect' } } : {},
      );
      const received: string[] = [];
      let finished = false;
      const err = await catchError(
        (async () => {
          for await (const c of stream) received.push(c.choices[0]?.delta.content ?? '');
          finished = true;
        })(),
      );
      expect(finished).toBe(false);
      expect(err).toBeInstanceOf(Error);
      expect(received.length).toBeGreaterThanOrEqual(2);
      expect(received.join('')).toMatch(/^Simulated reply to:/);
    }
    // non-stream: the socket is dropped before any response
    const nonStream = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES }, { headers: { 'x-sim-fault': 'disconnect' } }),
    );
    expect(nonStream).toBeInstanceOf(APIConnectionError);
    expect(nonStream).not.toBeInstanceOf(APIConnectionTimeoutError);
    // the server is fine afterwards
    const ok = await client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES });
    expect(ok.choices[0]!.finish_reason).toBe('stop');
  });

  it('slow makes a request take about ten times the latency (at least 1s to first token)', async () => {
    const started = Date.now();
    const res = await client.chat.completions.create(
      { model: 'sim-gpt-4o-mini', messages: MESSAGES, max_tokens: 2 },
      { headers: { 'x-sim-fault': 'slow' } },
    );
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(res.usage!.completion_tokens).toBe(2);
  });

  it('rejects unknown fault kinds and bad control values with 400', async () => {
    const bad = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES }, { headers: { 'x-sim-fault': 'explode' } }),
    );
    expect(bad).toBeInstanceOf(BadRequestError);
    expect((bad as APIError).param).toBe('x-sim-fault');
    const badDirective = await catchError(
      client.chat.completions.create({ model: 'sim-gpt-4o', messages: [{ role: 'user', content: '[[sim:token_ms=fast]]' }] }),
    );
    expect(badDirective).toBeInstanceOf(BadRequestError);
  });
});

describe('upstream simulator: latency', () => {
  let slowSim: RunningSimulator;
  let slowClient: OpenAI;
  beforeAll(async () => {
    slowSim = await startSimulator({ port: 0, firstTokenLatencyMs: 200, perTokenLatencyMs: 2 });
    slowClient = new OpenAI({ baseURL: slowSim.url, apiKey: 'x', maxRetries: 0 });
  });
  afterAll(async () => {
    await slowSim?.close();
  });

  it('delays the first streamed token by the configured first-token latency', async () => {
    const started = performance.now();
    const stream = await slowClient.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, stream: true });
    let firstAt: number | undefined;
    let n = 0;
    for await (const c of stream) {
      if (firstAt === undefined && c.choices[0]?.delta) firstAt = performance.now();
      n++;
    }
    const total = performance.now() - started;
    expect(firstAt! - started).toBeGreaterThanOrEqual(195);
    expect(n).toBeGreaterThan(3);
    // 64 tokens at 2 ms after the first piece
    expect(total).toBeGreaterThanOrEqual(200 + 2 * 50);
  });

  it('delays non-stream responses by first-token + tokens x per-token, and headers/directives override', async () => {
    let started = performance.now();
    await slowClient.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, max_tokens: 10 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(200 + 10 * 2 - 5);

    started = performance.now();
    await client.chat.completions.create(
      { model: 'sim-gpt-4o', messages: MESSAGES, max_tokens: 10 },
      { headers: { 'x-sim-first-token-ms': '150', 'x-sim-token-ms': '10' } },
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(150 + 10 * 10 - 5);

    started = performance.now();
    await client.chat.completions.create({
      model: 'sim-gpt-4o',
      messages: [{ role: 'user', content: 'wait [[sim:first_token_ms=180]]' }],
      max_tokens: 3,
    });
    expect(performance.now() - started).toBeGreaterThanOrEqual(175);

    // a header overrides the configured latency of the instance
    started = performance.now();
    await slowClient.chat.completions.create(
      { model: 'sim-gpt-4o', messages: MESSAGES, max_tokens: 3 },
      { headers: { 'x-sim-first-token-ms': '450', 'x-sim-token-ms': '0' } },
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(445);
  });

  it('survives a client aborting mid-stream and counts it', async () => {
    const before = slowSim.stats().streams.aborted;
    const controller = new AbortController();
    const stream = await slowClient.chat.completions.create(
      { model: 'sim-gpt-4o', messages: MESSAGES, stream: true },
      { signal: controller.signal, headers: { 'x-sim-first-token-ms': '0', 'x-sim-token-ms': '20' } },
    );
    let n = 0;
    try {
      for await (const _ of stream) {
        if (++n === 3) controller.abort();
      }
    } catch {
      // the SDK may end the iterator quietly or throw an abort error; either is fine here
    }
    expect(n).toBeGreaterThanOrEqual(3);
    expect(n).toBeLessThan(10); // ~66 chunks would arrive without the abort
    await new Promise((r) => setTimeout(r, 100));
    expect(slowSim.stats().streams.aborted).toBe(before + 1);
    expect(slowSim.stats().inFlight).toBe(0);
    const ok = await slowClient.chat.completions.create(
      { model: 'sim-gpt-4o', messages: MESSAGES, max_tokens: 2 },
      { headers: { 'x-sim-first-token-ms': '0' } },
    );
    expect(ok.usage!.completion_tokens).toBe(2);
  });
});

describe('upstream simulator: HTTP robustness', () => {
  const post = (path: string, body: string, headers: Record<string, string> = {}) =>
    fetch(`${sim.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body });

  async function expectOpenAIError(res: Response, status: number) {
    expect(res.status).toBe(status);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    const body = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(body)).toEqual(['error']);
    expect(typeof body.error['message']).toBe('string');
    expect(typeof body.error['type']).toBe('string');
    expect('param' in body.error && 'code' in body.error).toBe(true);
    return body.error;
  }

  it('answers bad JSON 400, unknown route 404, wrong method 405, oversized body 413', async () => {
    const badJson = await expectOpenAIError(await post('/chat/completions', '{"model": "sim-gpt-4o", '), 400);
    expect(badJson['type']).toBe('invalid_request_error');
    await expectOpenAIError(await post('/chat/completions', '[1,2]'), 400);
    await expectOpenAIError(await post('/embeddings', ''), 400);

    const unknownModel = await expectOpenAIError(
      await post('/chat/completions', JSON.stringify({ model: 'zzz', messages: [{ role: 'user', content: 'hi' }] })),
      404,
    );
    expect(unknownModel['code']).toBe('model_not_found');

    await expectOpenAIError(await fetch(`${sim.url}/completions-nope`), 404);
    const notAllowed = await fetch(`${sim.url}/chat/completions`);
    expect(notAllowed.headers.get('allow')).toBe('POST');
    await expectOpenAIError(notAllowed, 405);

    const big = 'x'.repeat(5 * 1024 * 1024);
    const tooLarge = await post(
      '/chat/completions',
      JSON.stringify({ model: 'sim-gpt-4o', messages: [{ role: 'user', content: big }] }),
    );
    await expectOpenAIError(tooLarge, 413);

    const health = await fetch(sim.url.replace(/\/v1$/, '/health'));
    expect(health.status).toBe(200);
  });

  it('keeps connections alive across requests', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const reused: boolean[] = [];
    const url = new URL(`${sim.url}/models`);
    for (let i = 0; i < 3; i++) {
      await new Promise<void>((resolve, reject) => {
        const req = http.get(url, { agent }, (res) => {
          res.resume();
          res.on('end', () => resolve());
        });
        req.on('error', reject);
        reused.push(req.reusedSocket);
      });
    }
    agent.destroy();
    expect(reused).toEqual([false, true, true]);
  });

  it('counts requests per route in stats()', async () => {
    sim.resetStats();
    await client.models.list();
    await client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES });
    const s = await client.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, stream: true });
    for await (const _ of s) {
      // drain
    }
    await client.embeddings.create({ model: 'sim-embedding-small', input: ['a', 'b', 'c'] });
    await fetch(`${sim.url}/nowhere`);
    const stats = sim.stats();
    expect(stats.totalRequests).toBe(5);
    expect(stats.routes).toEqual({
      'GET /v1/models': 1,
      'POST /v1/chat/completions': 2,
      'POST /v1/embeddings': 1,
      unmatched: 1,
    });
    expect(stats.chat).toEqual({ stream: 1, nonStream: 1 });
    expect(stats.embeddings).toEqual({ requests: 1, inputs: 3 });
    expect(stats.streams).toMatchObject({ started: 1, completed: 1, aborted: 0 });
    expect(stats.tokens.prompt).toBe(2 * expectedPromptTokens(MESSAGES));
    expect(stats.tokens.completion).toBe(128);
    expect(stats.statuses).toEqual({ '200': 4, '404': 1 });
    expect(stats.recent.map((r) => r.path)).toEqual([
      '/v1/models',
      '/v1/chat/completions',
      '/v1/chat/completions',
      '/v1/embeddings',
      '/v1/nowhere',
    ]);
    expect(stats.faults).toEqual({});
  });

  it('close() ends hanging requests and open streams', async () => {
    const tmp = await startSimulator({ port: 0 });
    const tmpClient = new OpenAI({ baseURL: tmp.url, apiKey: 'x', maxRetries: 0, timeout: 30_000 });
    const hanging = catchError(
      tmpClient.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES }, { headers: { 'x-sim-fault': 'timeout' } }),
    );
    const stream = await tmpClient.chat.completions.create(
      { model: 'sim-gpt-4o', messages: MESSAGES, stream: true },
      { headers: { 'x-sim-token-ms': '1000' } },
    );
    const streaming = catchError(
      (async () => {
        for await (const _ of stream) {
          // wait
        }
      })(),
    );
    await new Promise((r) => setTimeout(r, 100));
    expect(tmp.stats().inFlight).toBe(2);
    const started = Date.now();
    await tmp.close();
    const [e1, e2] = await Promise.all([hanging, streaming]);
    expect(Date.now() - started).toBeLessThan(2000);
    expect(e1).toBeInstanceOf(APIConnectionError);
    expect(e2).toBeInstanceOf(Error);
    await tmp.close(); // idempotent
  });
});

describe('upstream simulator: auth', () => {
  let authSim: RunningSimulator;
  beforeAll(async () => {
    authSim = await startSimulator({ port: 0, apiKey: 'sim-secret-key' });
  });
  afterAll(async () => {
    await authSim?.close();
  });

  it('requires Authorization: Bearer <apiKey> when configured', async () => {
    const good = new OpenAI({ baseURL: authSim.url, apiKey: 'sim-secret-key', maxRetries: 0 });
    const res = await good.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES, max_tokens: 3 });
    expect(res.usage!.completion_tokens).toBe(3);

    const bad = new OpenAI({ baseURL: authSim.url, apiKey: 'wrong-key-123456', maxRetries: 0 });
    const err = await catchError(bad.chat.completions.create({ model: 'sim-gpt-4o', messages: MESSAGES }));
    expect(err).toBeInstanceOf(AuthenticationError);
    expect((err as APIError).status).toBe(401);
    expect((err as APIError).code).toBe('invalid_api_key');
    const listErr = await catchError(bad.models.list());
    expect(listErr).toBeInstanceOf(AuthenticationError);

    const none = await fetch(`${authSim.url}/models`);
    expect(none.status).toBe(401);
    const body = (await none.json()) as { error: { message: string; type: string } };
    expect(body.error.type).toBe('invalid_request_error');
    expect(body.error.message).toMatch(/API key/);

    // the unauthenticated simulator accepts any key
    expect((await client.models.retrieve('sim-gpt-4o')).id).toBe('sim-gpt-4o');
  });
});
