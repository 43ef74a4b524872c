// The lean upstream client's SSE streams (LeanUpstream.streamJson), against the simulator over
// HTTP and side by side with the official SDK: the same chunks, and the SDK's error classes for
// every way a stream can fail, so retries and error mapping treat both alike.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulator } from '@deepspace/upstream-simulator';
import { leanUpstream, type LeanUpstream } from '@deepspace/core/ai/upstream';

type Chunk = OpenAI.Chat.Completions.ChatCompletionChunk;
let sim: Awaited<ReturnType<typeof startSimulator>>;
let sdk: OpenAI;
let lean: LeanUpstream;

beforeAll(async () => {
  sim = await startSimulator({ port: 0, apiKey: 'sim-lean-key' });
  sdk = new OpenAI({ baseURL: sim.url, apiKey: 'sim-lean-key', maxRetries: 0, timeout: 2_000 });
  lean = leanUpstream(sdk)!;
});
afterAll(async () => {
  await sim.close();
});

const request = (content: string, extra: Record<string, unknown> = {}) => ({
  model: 'sim-gpt-4o',
  messages: [{ role: 'user' as const, content }],
  max_tokens: 12,
  stream: true as const,
  stream_options: { include_usage: true },
  ...extra,
});

async function collect(stream: AsyncIterable<Chunk>): Promise<{ text: string; chunks: number; usage: OpenAI.CompletionUsage | undefined; finish: string | null }> {
  let text = '';
  let chunks = 0;
  let usage: OpenAI.CompletionUsage | undefined;
  let finish: string | null = null;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, chunks, usage, finish };
}

async function failure(run: () => Promise<unknown>): Promise<unknown> {
  try {
    await run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
}

describe('LeanUpstream.streamJson', () => {
  it('yields the same chunks as the SDK, usage included, and ends at [DONE]', async () => {
    const body = request('Explain enzymes in one sentence. [[sim:output_tokens=9]]');
    const viaSdk = await collect(await sdk.chat.completions.create(body));
    const viaLean = await collect(await lean.streamJson<Chunk>('chat/completions', body));
    expect(viaLean).toEqual(viaSdk);
    expect(viaLean.usage?.completion_tokens).toBe(9);
    expect(viaLean.finish).toBe('stop');
  });

  it('reads what other upstreams send: comments, CRLF line ends, split writes, multi-line data, a last event without a blank line', async () => {
    const server = http.createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(': keep-alive\r\n\r\n');
      res.write('data: {"id":"a","choices":[{"index":0,"delta":{"content":"Hel');
      res.write('lo"}}]}\r\n\r\nevent: message\ndata: {"id":"b",\ndata: "choices":[{"index":0,"delta":{"content":" there"}}]}\n\n');
      res.end('data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const other = leanUpstream(new OpenAI({ baseURL: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`, apiKey: 'k', maxRetries: 0 }))!;
      const chunks: Chunk[] = [];
      for await (const chunk of await other.streamJson<Chunk>('chat/completions', request('hi'))) chunks.push(chunk);
      expect(chunks.map((c) => c.id)).toEqual(['a', 'b', 'c']);
      expect(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('')).toBe('Hello there');
      expect(chunks[2]!.usage?.completion_tokens).toBe(2);
    } finally {
      server.close();
    }
  });

  it('an HTTP error before the stream is the SDK’s error class with its status and retry-after', async () => {
    for (const fault of ['http_500', 'http_429']) {
      const body = request(`fail [[sim:fault=${fault}]]`);
      const fromSdk = (await failure(async () => collect(await sdk.chat.completions.create(body)))) as InstanceType<typeof OpenAI.APIError>;
      const fromLean = (await failure(() => lean.streamJson<Chunk>('chat/completions', body))) as InstanceType<typeof OpenAI.APIError>;
      expect(fromLean.constructor).toBe(fromSdk.constructor);
      expect(fromLean.status).toBe(fromSdk.status);
      expect(fromLean.message).toBe(fromSdk.message);
      expect(fromLean.headers?.get('retry-after') ?? null).toBe(fromSdk.headers?.get('retry-after') ?? null);
    }
  });

  it('a connection dropped mid-stream fails the loop with APIConnectionError after the chunks that came', async () => {
    const stream = await lean.streamJson<Chunk>('chat/completions', request('drop me [[sim:fault=disconnect]] [[sim:output_tokens=40]] [[sim:token_ms=5]]', { max_tokens: 60 }));
    let received = 0;
    const error = await failure(async () => {
      for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) received++;
    });
    expect(error).toBeInstanceOf(OpenAI.APIConnectionError);
    expect(received).toBeGreaterThan(0);
  });

  it('an abort mid-stream ends it with APIUserAbortError and closes the request', async () => {
    const abort = new AbortController();
    const before = sim.stats();
    const stream = await lean.streamJson<Chunk>('chat/completions', request('long one [[sim:output_tokens=200]] [[sim:token_ms=10]]', { max_tokens: 300 }), abort.signal);
    let received = 0;
    const error = await failure(async () => {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta?.content && ++received === 3) abort.abort();
      }
    });
    expect(error).toBeInstanceOf(OpenAI.APIUserAbortError);
    expect(received).toBe(3);
    // The simulator saw the stream end early (it stops generating).
    await expect.poll(() => sim.stats().streams.aborted, { timeout: 2_000 }).toBe(before.streams.aborted + 1);
  });

  it('leaving the loop early closes the request; an upstream that never answers times out with the SDK’s class', async () => {
    const before = sim.stats();
    const stream = await lean.streamJson<Chunk>('chat/completions', request('long one [[sim:output_tokens=200]] [[sim:token_ms=10]]', { max_tokens: 300 }));
    for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) break;
    await expect.poll(() => sim.stats().streams.aborted, { timeout: 2_000 }).toBe(before.streams.aborted + 1);

    const slow = new OpenAI({ baseURL: sim.url, apiKey: 'sim-lean-key', maxRetries: 0, timeout: 300 });
    const started = Date.now();
    const error = await failure(() => leanUpstream(slow)!.streamJson<Chunk>('chat/completions', request('hang [[sim:fault=timeout]]')));
    expect(error).toBeInstanceOf(OpenAI.APIConnectionTimeoutError);
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
  });
});
