/**
 * The OpenAI-compatible upstream simulator server (node:http, no framework).
 *
 * Routes: GET /health (no auth), GET /v1/models, GET /v1/models/:id, POST /v1/chat/completions,
 * POST /v1/embeddings. Everything else is an OpenAI-shaped 404/405.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { conversationSeed, generateCompletion } from './completion.ts';
import type { GeneratedCompletion } from './completion.ts';
import { mergeControls, parseDirectives, parseHeaderControls, stripDirectives } from './controls.ts';
import type { RequestControls } from './controls.ts';
import { embedText, toBase64, toFloatArray, truncateEmbedding } from './embeddings.ts';
import { invalidRequest, modelNotFound, SimHttpError } from './errors.ts';
import { generateStructured } from './structured.ts';
import { readBody, sendError, sendJson, sleep, writeAndFlush, writeChunk } from './http-util.ts';
import { DEFAULT_MODELS, modelObject, validateModels } from './models.ts';
import { countTokens, decode, getEncoder } from './tokenizer.ts';
import type { RecentRequest, RunningSimulator, SimulatedModel, SimulatorOptions, SimulatorStats } from './types.ts';
import { parseChatRequest, parseEmbeddingsRequest } from './validate.ts';
import type { ChatRequest } from './validate.ts';

const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;
const DEFAULT_OUTPUT_TOKENS = 64;
/** `slow` multiplies latencies by this factor... */
const SLOW_FACTOR = 10;
/** ...with these floors, so that `slow` is slow even when the configured latency is 0. */
const SLOW_MIN_FIRST_TOKEN_MS = 1000;
const SLOW_MIN_TOKEN_MS = 20;
/** Content chunks sent before a `disconnect` fault drops a stream. */
const DISCONNECT_AFTER_CHUNKS = 3;
const RECENT_MAX = 200;
const FAULT_COUNTER_MAX = 10_000;
const SYSTEM_FINGERPRINT = 'fp_deepspace_sim';

interface ResolvedConfig {
  host: string;
  port: number;
  apiKey: string | undefined;
  firstTokenLatencyMs: number;
  perTokenLatencyMs: number;
  embeddingLatencyMs: number;
  defaultOutputTokens: number;
  maxBodyBytes: number;
}

interface RequestContext {
  req: IncomingMessage;
  res: ServerResponse;
  abort: AbortController;
  signal: AbortSignal;
  started: number;
  requestId: string;
  routeKey: string;
  model?: string;
  stream?: boolean;
  fault?: string;
  streamState?: 'started' | 'completed';
}

type Handler = (ctx: RequestContext, params: Record<string, string>) => Promise<void> | void;

interface Route {
  /** Key in stats.routes is `${method} ${name}`. */
  name: string;
  match: (path: string) => Record<string, string> | undefined;
  methods: Record<string, Handler>;
  auth: boolean;
}

function nonNegative(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new TypeError(`simulator: ${name} must be a non-negative number`);
  return v;
}

function resolveConfig(o: SimulatorOptions): ResolvedConfig {
  const port = o.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new TypeError('simulator: port must be an integer 0..65535');
  const defaultOutputTokens = nonNegative('defaultOutputTokens', o.defaultOutputTokens, DEFAULT_OUTPUT_TOKENS);
  if (defaultOutputTokens < 1) throw new TypeError('simulator: defaultOutputTokens must be >= 1');
  return {
    host: o.host ?? '127.0.0.1',
    port,
    apiKey: o.apiKey !== undefined && o.apiKey !== '' ? o.apiKey : undefined,
    firstTokenLatencyMs: nonNegative('firstTokenLatencyMs', o.firstTokenLatencyMs, 0),
    perTokenLatencyMs: nonNegative('perTokenLatencyMs', o.perTokenLatencyMs, 0),
    embeddingLatencyMs: nonNegative('embeddingLatencyMs', o.embeddingLatencyMs, 0),
    defaultOutputTokens: Math.floor(defaultOutputTokens),
    maxBodyBytes: nonNegative('maxBodyBytes', o.maxBodyBytes, DEFAULT_MAX_BODY_BYTES),
  };
}

function emptyStats(): SimulatorStats {
  return {
    totalRequests: 0,
    routes: {},
    statuses: {},
    faults: {},
    chat: { stream: 0, nonStream: 0 },
    embeddings: { requests: 0, inputs: 0 },
    streams: { started: 0, completed: 0, aborted: 0 },
    tokens: { prompt: 0, completion: 0, embedding: 0 },
    inFlight: 0,
    recent: [],
  };
}

function bump(map: Record<string, number>, key: string, by = 1): void {
  map[key] = (map[key] ?? 0) + by;
}

function exact(path: string): (p: string) => Record<string, string> | undefined {
  return (p) => (p === path ? {} : undefined);
}

function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '') return '127.0.0.1';
  if (host === '::') return '[::1]';
  return host.includes(':') ? `[${host}]` : host;
}

function newId(prefix: string): string {
  return `${prefix}${randomBytes(12).toString('base64url')}`;
}

function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  return ab.length === bb.length && timingSafeEqual(ab, bb);
}

function faultError(kind: string): SimHttpError {
  const status = Number(kind.slice('http_'.length));
  if (status === 429) {
    return new SimHttpError(429, 'Rate limit reached for requests (simulated http_429). Please try again in 1s.', {
      type: 'requests',
      code: 'rate_limit_exceeded',
      headers: { 'retry-after': '1', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '1s' },
    });
  }
  if (status >= 500) {
    return new SimHttpError(
      status,
      `The server had an error while processing your request. Sorry about that! (simulated ${kind})`,
      { type: 'server_error' },
    );
  }
  return new SimHttpError(status, `Simulated client error (${kind}).`, { type: 'invalid_request_error', code: 'simulated_fault' });
}

export async function startSimulator(options: SimulatorOptions = {}): Promise<RunningSimulator> {
  const cfg = resolveConfig(options);
  const models = validateModels(options.models ?? DEFAULT_MODELS);
  getEncoder(); // build the tokenizer up front so the first request is not slow

  let stats = emptyStats();
  const active = new Set<RequestContext>();
  const faultCounters = new Map<string, number>();
  let closing = false;
  let closePromise: Promise<void> | undefined;

  // ---- helpers bound to this instance -------------------------------------------------------------

  function requireModel(id: string, kind: SimulatedModel['kind']): SimulatedModel {
    const m = models.get(id);
    if (!m) throw modelNotFound(id);
    if (m.kind !== kind) {
      const what = kind === 'chat' ? 'a chat model and thus not supported in the v1/chat/completions endpoint' : 'an embedding model';
      throw new SimHttpError(400, `The model \`${id}\` is not ${what}.`, {
        type: 'invalid_request_error',
        param: 'model',
        code: 'model_not_supported',
      });
    }
    return m;
  }

  /** Decide whether the requested fault fires for this request (honouring fault_times). */
  function effectiveFault(ctx: RequestContext, controls: RequestControls, identity: string): string | undefined {
    const kind = controls.fault;
    if (!kind || kind === 'none') return undefined;
    if (controls.faultTimes !== undefined) {
      const key = `${ctx.routeKey}\u0000${kind}\u0000${identity}`;
      const seen = faultCounters.get(key) ?? 0;
      if (seen >= controls.faultTimes) return undefined;
      if (faultCounters.size >= FAULT_COUNTER_MAX) faultCounters.clear();
      faultCounters.set(key, seen + 1);
    }
    ctx.fault = kind;
    bump(stats.faults, kind);
    return kind;
  }

  /**
   * Apply an immediate fault. Returns true when the request has been dealt with (error sent, socket
   * destroyed, or left hanging), false when the handler should continue (no fault, or `slow`).
   */
  function applyImmediateFault(ctx: RequestContext, fault: string | undefined, streaming: boolean): boolean {
    if (!fault || fault === 'slow') return false;
    if (fault.startsWith('http_')) {
      sendError(ctx.res, faultError(fault));
      return true;
    }
    if (fault === 'timeout') {
      // Never answer; the request ends when the client gives up or the server closes.
      return true;
    }
    if (fault === 'disconnect' && !streaming) {
      ctx.req.socket.destroy();
      return true;
    }
    return false;
  }

  function latencies(controls: RequestControls, fault: string | undefined, baseFirst: number): { first: number; token: number } {
    let first = controls.firstTokenMs ?? baseFirst;
    let token = controls.tokenMs ?? cfg.perTokenLatencyMs;
    if (fault === 'slow') {
      first = Math.max(first * SLOW_FACTOR, SLOW_MIN_FIRST_TOKEN_MS);
      token = Math.max(token * SLOW_FACTOR, SLOW_MIN_TOKEN_MS);
    }
    return { first, token };
  }

  async function readJson(ctx: RequestContext): Promise<unknown> {
    const buf = await readBody(ctx.req, cfg.maxBodyBytes);
    try {
      return JSON.parse(buf.toString('utf8')) as unknown;
    } catch {
      throw invalidRequest(
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
        null,
        'invalid_json',
      );
    }
  }

  // ---- handlers -----------------------------------------------------------------------------------

  const health: Handler = (ctx) => {
    sendJson(ctx.res, 200, { status: 'ok', models: models.size });
  };

  const listModels: Handler = (ctx) => {
    sendJson(ctx.res, 200, { object: 'list', data: [...models.values()].map(modelObject) });
  };

  const getModel: Handler = (ctx, params) => {
    const id = params['id'] ?? '';
    const m = models.get(id);
    if (!m) throw modelNotFound(id);
    sendJson(ctx.res, 200, modelObject(m));
  };

  const chatCompletions: Handler = async (ctx) => {
    const body = await readJson(ctx);
    const chat = parseChatRequest(body);
    const model = requireModel(chat.model, 'chat');
    ctx.model = chat.model;
    ctx.stream = chat.stream;
    bump(stats.chat, chat.stream ? 'stream' : 'nonStream');

    const controls = mergeControls(parseDirectives(chat.lastUserText), parseHeaderControls(ctx.req.headers));
    const window = model.contextWindow ?? 128_000;
    const needed = chat.promptTokens + (chat.maxTokens ?? 0);
    if (needed > window) {
      throw invalidRequest(
        `This model's maximum context length is ${window} tokens. However, you requested ${needed} tokens (${chat.promptTokens} in the messages, ${chat.maxTokens ?? 0} in the completion). Please reduce the length of the messages or completion.`,
        'messages',
        'context_length_exceeded',
      );
    }

    const seedParts = chat.messages.map((m) => `${m.role}\u0000${m.name ?? ''}\u0000${stripDirectives(m.text)}`);
    const fault = effectiveFault(ctx, controls, `${chat.model}\u0000${JSON.stringify(seedParts)}`);
    if (applyImmediateFault(ctx, fault, chat.stream)) return;

    const { first, token } = latencies(controls, fault, cfg.firstTokenLatencyMs);
    const seed = conversationSeed(seedParts);
    const completion =
      chat.responseFormat.type === 'text'
        ? generateCompletion({
            seed,
            lastUserText: stripDirectives(chat.lastUserText),
            naturalTokens: controls.outputTokens ?? cfg.defaultOutputTokens,
            maxTokens: chat.maxTokens,
          })
        : generateStructured({ format: chat.responseFormat, seed, maxTokens: chat.maxTokens });
    const usage = usageObject(chat.promptTokens, completion.completionTokens);
    const id = newId('chatcmpl-');
    const created = Math.floor(Date.now() / 1000);

    if (!chat.stream) {
      const ok = await sleep(first + completion.completionTokens * token, ctx.signal);
      if (!ok) return;
      stats.tokens.prompt += chat.promptTokens;
      stats.tokens.completion += completion.completionTokens;
      sendJson(
        ctx.res,
        200,
        {
          id,
          object: 'chat.completion',
          created,
          model: chat.model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: completion.text, refusal: null, annotations: [] },
              logprobs: null,
              finish_reason: completion.finishReason,
            },
          ],
          usage,
          service_tier: 'default',
          system_fingerprint: SYSTEM_FINGERPRINT,
        },
        { 'openai-processing-ms': String(Date.now() - ctx.started) },
      );
      return;
    }

    await streamCompletion(ctx, chat, completion, { id, created, first, token, disconnect: fault === 'disconnect', usage });
  };

  async function streamCompletion(
    ctx: RequestContext,
    chat: ChatRequest,
    completion: GeneratedCompletion,
    o: { id: string; created: number; first: number; token: number; disconnect: boolean; usage: ReturnType<typeof usageObject> },
  ): Promise<void> {
    const { res, signal } = ctx;
    const base = {
      id: o.id,
      object: 'chat.completion.chunk',
      created: o.created,
      model: chat.model,
      service_tier: 'default',
      system_fingerprint: SYSTEM_FINGERPRINT,
    };
    const chunk = (delta: Record<string, unknown>, finishReason: string | null): string => {
      const c: Record<string, unknown> = { ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] };
      if (chat.includeUsage) c['usage'] = null;
      return `data: ${JSON.stringify(c)}\n\n`;
    };

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
    });
    res.flushHeaders();
    ctx.streamState = 'started';
    stats.streams.started += 1;
    stats.tokens.prompt += chat.promptTokens;

    if (!(await sleep(o.first, signal))) return;
    if (!(await writeChunk(res, chunk({ role: 'assistant', content: '', refusal: null }, null), signal))) return;

    const limit = o.disconnect ? Math.min(DISCONNECT_AFTER_CHUNKS, Math.max(1, completion.pieces.length - 1)) : completion.pieces.length;
    for (let i = 0; i < limit; i++) {
      if (i > 0 && o.token > 0) {
        if (!(await sleep(o.token * (completion.pieceTokens[i] ?? 1), signal))) return;
      }
      const data = chunk({ content: completion.pieces[i] ?? '' }, null);
      const ok = o.disconnect ? await writeAndFlush(res, data, signal) : await writeChunk(res, data, signal);
      if (!ok) return;
      stats.tokens.completion += completion.pieceTokens[i] ?? 0;
    }
    if (o.disconnect) {
      await sleep(20, signal);
      ctx.req.socket.destroy();
      return;
    }
    if (!(await writeChunk(res, chunk({}, completion.finishReason), signal))) return;
    if (chat.includeUsage) {
      const usageChunk = { ...base, choices: [], usage: o.usage };
      if (!(await writeChunk(res, `data: ${JSON.stringify(usageChunk)}\n\n`, signal))) return;
    }
    if (!(await writeChunk(res, 'data: [DONE]\n\n', signal))) return;
    ctx.streamState = 'completed';
    stats.streams.completed += 1;
    res.end();
  }

  const embeddings: Handler = async (ctx) => {
    const body = await readJson(ctx);
    const er = parseEmbeddingsRequest(body);
    const model = requireModel(er.model, 'embedding');
    ctx.model = er.model;
    const maxDims = model.dimensions ?? 0;
    if (er.dimensions !== undefined && er.dimensions > maxDims) {
      throw invalidRequest(
        `Invalid 'dimensions': model \`${er.model}\` supports at most ${maxDims} dimensions, but ${er.dimensions} were requested.`,
        'dimensions',
        'invalid_value',
      );
    }
    let texts = er.inputs;
    let promptTokens = 0;
    if (er.tokenInputs) {
      try {
        texts = er.tokenInputs.map((t) => decode(t));
      } catch {
        throw invalidRequest("'$.input' is invalid: token ids out of range for the tokenizer.", 'input', 'invalid_value');
      }
      promptTokens = er.tokenInputs.reduce((s, t) => s + t.length, 0);
    } else {
      promptTokens = texts.reduce((s, t) => s + countTokens(t), 0);
    }
    bump(stats.embeddings, 'requests');
    bump(stats.embeddings, 'inputs', texts.length);

    const controls = mergeControls(parseDirectives(texts.join('\n')), parseHeaderControls(ctx.req.headers));
    const fault = effectiveFault(ctx, controls, `${er.model}\u0000${JSON.stringify(texts)}`);
    if (applyImmediateFault(ctx, fault, false)) return;
    const { first } = latencies(controls, fault, cfg.embeddingLatencyMs);
    if (!(await sleep(first, ctx.signal))) return;

    const dims = er.dimensions ?? maxDims;
    const data = texts.map((text, index) => {
      const v = truncateEmbedding(embedText(stripDirectives(text), model.id, maxDims), dims);
      return { object: 'embedding', index, embedding: er.encodingFormat === 'base64' ? toBase64(v) : toFloatArray(v) };
    });
    stats.tokens.embedding += promptTokens;
    sendJson(ctx.res, 200, {
      object: 'list',
      data,
      model: er.model,
      usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
    });
  };

  const routes: Route[] = [
    { name: '/health', match: exact('/health'), methods: { GET: health }, auth: false },
    { name: '/v1/models', match: exact('/v1/models'), methods: { GET: listModels }, auth: true },
    {
      name: '/v1/models/:id',
      match: (p) => {
        if (!p.startsWith('/v1/models/')) return undefined;
        try {
          return { id: decodeURIComponent(p.slice('/v1/models/'.length)) };
        } catch {
          return { id: p.slice('/v1/models/'.length) };
        }
      },
      methods: { GET: getModel },
      auth: true,
    },
    { name: '/v1/chat/completions', match: exact('/v1/chat/completions'), methods: { POST: chatCompletions }, auth: true },
    { name: '/v1/embeddings', match: exact('/v1/embeddings'), methods: { POST: embeddings }, auth: true },
  ];

  // ---- dispatcher ---------------------------------------------------------------------------------

  function checkAuth(req: IncomingMessage): void {
    if (!cfg.apiKey) return;
    const header = req.headers.authorization;
    if (!header) {
      throw new SimHttpError(
        401,
        "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        { type: 'invalid_request_error' },
      );
    }
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!m || !safeEqual(m[1] ?? '', cfg.apiKey)) {
      const given = m?.[1] ?? header;
      const shown = given.length > 8 ? `${given.slice(0, 3)}***${given.slice(-4)}` : '***';
      throw new SimHttpError(401, `Incorrect API key provided: ${shown}.`, {
        type: 'invalid_request_error',
        code: 'invalid_api_key',
      });
    }
  }

  async function dispatch(ctx: RequestContext): Promise<void> {
    const { req, res } = ctx;
    const method = (req.method ?? 'GET').toUpperCase();
    let path: string;
    try {
      path = new URL(req.url ?? '/', 'http://simulator.local').pathname;
    } catch {
      path = '/';
    }
    if (path.length > 1 && path.endsWith('/')) path = path.replace(/\/+$/, '');

    if (closing) {
      res.setHeader('connection', 'close');
      throw new SimHttpError(503, 'The simulator is shutting down.', { type: 'server_error' });
    }
    for (const route of routes) {
      const params = route.match(path);
      if (!params) continue;
      const handler = route.methods[method];
      ctx.routeKey = `${method} ${route.name}`;
      bump(stats.routes, handler ? ctx.routeKey : 'method_not_allowed');
      if (route.auth) checkAuth(req);
      if (!handler) {
        throw new SimHttpError(405, `Method ${method} is not allowed for ${path}. Allowed: ${Object.keys(route.methods).join(', ')}.`, {
          type: 'invalid_request_error',
          code: 'method_not_allowed',
          headers: { allow: Object.keys(route.methods).join(', ') },
        });
      }
      await handler(ctx, params);
      return;
    }
    ctx.routeKey = 'unmatched';
    bump(stats.routes, 'unmatched');
    throw new SimHttpError(404, `Invalid URL (${method} ${path})`, { type: 'invalid_request_error' });
  }

  function onRequest(req: IncomingMessage, res: ServerResponse): void {
    const abort = new AbortController();
    const ctx: RequestContext = {
      req,
      res,
      abort,
      signal: abort.signal,
      started: Date.now(),
      requestId: newId('req_'),
      routeKey: 'unmatched',
    };
    active.add(ctx);
    stats.totalRequests += 1;
    res.setHeader('x-request-id', ctx.requestId);
    req.on('error', () => abort.abort());
    res.on('error', () => abort.abort());
    res.on('close', () => {
      active.delete(ctx);
      abort.abort();
      const status = res.headersSent ? res.statusCode : 0;
      if (status) bump(stats.statuses, String(status));
      if (ctx.streamState === 'started') stats.streams.aborted += 1;
      const entry: RecentRequest = {
        at: new Date(ctx.started).toISOString(),
        method: req.method ?? '',
        path: req.url ?? '',
        status,
        durationMs: Date.now() - ctx.started,
      };
      if (ctx.model !== undefined) entry.model = ctx.model;
      if (ctx.stream !== undefined) entry.stream = ctx.stream;
      if (ctx.fault !== undefined) entry.fault = ctx.fault;
      stats.recent.push(entry);
      if (stats.recent.length > RECENT_MAX) stats.recent.splice(0, stats.recent.length - RECENT_MAX);
    });

    dispatch(ctx).catch((err: unknown) => {
      if (res.destroyed || res.writableEnded) return;
      if (err instanceof SimHttpError) {
        if (!res.headersSent) {
          sendError(res, err);
          return;
        }
      } else if (!res.headersSent && !ctx.signal.aborted) {
        const message = err instanceof Error ? err.message : String(err);
        sendError(res, new SimHttpError(500, `Simulator internal error: ${message}`, { type: 'server_error' }));
        return;
      }
      res.destroy();
    });
  }

  const server = http.createServer({ keepAlive: true }, onRequest);
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.on('clientError', (_err, socket) => {
    if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\r\n');
    else socket.destroy();
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen({ port: cfg.port, host: cfg.host }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', () => {});
  const port = (server.address() as AddressInfo).port;

  return {
    url: `http://${urlHost(cfg.host)}:${port}/v1`,
    port,
    host: cfg.host,
    stats(): SimulatorStats {
      const snapshot = structuredClone(stats);
      snapshot.inFlight = active.size;
      return snapshot;
    },
    resetStats(): void {
      stats = emptyStats();
      faultCounters.clear();
    },
    close(): Promise<void> {
      closePromise ??= new Promise<void>((resolve) => {
        closing = true;
        for (const ctx of active) {
          ctx.abort.abort();
          ctx.res.destroy();
          ctx.req.socket.destroy();
        }
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closePromise;
    },
  };
}

function usageObject(promptTokens: number, completionTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: {
      reasoning_tokens: 0,
      audio_tokens: 0,
      accepted_prediction_tokens: 0,
      rejected_prediction_tokens: 0,
    },
  };
}
