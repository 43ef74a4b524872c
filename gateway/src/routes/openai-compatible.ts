// The OpenAI-compatible API for project API keys: /v1/models, /v1/chat/completions (stream and
// non-stream) and /v1/embeddings. Calls are stateless for the caller, so they run inline (no
// workflow per request) through the same ledger: hold → upstream call → capture, or release on
// failure. The hold carries an expiry; if this process dies mid-call, the Temporal schedule that
// expires holds is the compensation of last resort.
import type { Response } from 'express';
import { AppError, countTokens, type Logger } from '@deepspace/core';
import type { CachedPrice, CatalogEntry } from '@deepspace/core/ai/catalog-cache';
import { classifyUpstreamError, leanUpstream, withUpstreamRetry, type OpenAI } from '@deepspace/core/ai/upstream';
import type { ApiRouter, Reply, RequestContext } from '../http/router.ts';
import { assertPolicyAllows } from '../services/policy.ts';
import { settlementAudit } from '../services/audit.ts';
import { HOLD_TTL_MARGIN_MS } from '../services/hold-reserve.ts';
import { estimateHoldMicros, type HoldEstimate, type HoldResult } from '@deepspace/core/billing/index';


type ApiKeyActor = { type: 'api_key'; keyId: string; orgId: string; projectId: string };

/**
 * Where a call's time went, answered as `Server-Timing` (browsers' dev tools show it; the /v1
 * bench reads it) and as `x-deepspace-overhead-ms`, the gateway's own share (total − upstream,
 * what LiteLLM reports as x-litellm-overhead-duration-ms). Phases, in ms:
 *   pre       arrival → the model call starts (auth, rate limit, policy, validation, pricing)
 *   hold      the ledger hold's round trip
 *   upstream  the model call, retries included (stream: until the upstream's response headers)
 *   hold_wait how long the answer waited for the hold (the hold runs beside the call when the
 *             wallet was seen rich, else before it)
 *   total     arrival → the answer handed to HTTP (the capture commits after it)
 */
class CallTiming {
  /** performance.now() at the request's arrival (the trace middleware's clock). */
  private readonly arrivedAt: number;
  preMs = 0;
  holdMs = 0;
  upstreamMs = 0;
  holdWaitMs = 0;

  constructor(ctx: RequestContext) {
    const startedAt = ctx.res.locals.startedAt as bigint | undefined;
    this.arrivedAt = startedAt === undefined ? performance.now() : performance.now() - Number(process.hrtime.bigint() - startedAt) / 1e6;
  }

  sinceArrival(at = performance.now()): number {
    return at - this.arrivedAt;
  }

  headers(upstreamPhase: 'upstream' | 'upstream_open' = 'upstream'): Record<string, string> {
    const total = this.sinceArrival();
    const ms = (value: number) => Math.max(0, value).toFixed(2);
    return {
      'server-timing': `pre;dur=${ms(this.preMs)}, hold;dur=${ms(this.holdMs)}, ${upstreamPhase};dur=${ms(this.upstreamMs)}, hold_wait;dur=${ms(this.holdWaitMs)}, total;dur=${ms(total)}`,
      'x-deepspace-overhead-ms': ms(total - this.upstreamMs),
    };
  }
}

function apiKeyOf(ctx: RequestContext): ApiKeyActor {
  const actor = ctx.actorOrThrow();
  if (actor.type !== 'api_key') throw new AppError('insufficient_scope', 'The OpenAI-compatible API takes a project API key (Authorization: Bearer ds_…)');
  return actor;
}

async function resolveModel(ctx: RequestContext, name: string, kind: 'chat' | 'embedding'): Promise<CatalogEntry> {
  const model = await ctx.deps.catalog.get(name);
  if (!model || model.kind !== kind) {
    throw new AppError('not_found', `The model "${name}" does not exist or is not a ${kind} model`, { details: { param: 'model' } });
  }
  return model;
}

async function enforcePolicy(ctx: RequestContext, projectId: string, model: string, maxTokens: number | undefined, estimateMicros?: bigint) {
  const policy = ctx.policy;
  if (!policy) return;
  const spent = policy.monthlyBudgetMicros !== null ? await ctx.services.policy.monthToDateSpend(projectId) : 0n;
  assertPolicyAllows(policy, { model, maxTokens, estimateMicros }, spent);
}

interface Settlement {
  hold: HoldResult & { estimate: { promptTokens: number } | null; price: CachedPrice };
  key: ApiKeyActor;
  model: CatalogEntry;
  startedAt: number;
}

/** The one audit row of a model call, carrying the request's trace id; the settling statement writes it. */
function callAudit(ctx: RequestContext, s: Settlement, result: 'success' | 'failure', details: Record<string, unknown>) {
  return settlementAudit(ctx.auditInfo, {
    action: 'ai.call',
    resourceType: 'model',
    resourceId: s.model.name,
    orgId: s.key.orgId,
    projectId: s.key.projectId,
    result,
    details: { route: ctx.operation.operationId, hold_id: s.hold.hold.id, ...details },
  });
}

/** `coalesceMs`: the capture may wait that long to be written with the org's others (capture-batch.ts). */
async function capture(ctx: RequestContext, s: Settlement, promptTokens: number, completionTokens: number, note: Record<string, unknown> = {}, coalesceMs?: number) {
  const latencyMs = Math.round(performance.now() - s.startedAt);
  // Money, usage record and audit row in one statement and one commit; `known` lets the ledger
  // skip re-reading the hold this request just took (the statement checks it is unchanged).
  const result = await ctx.deps.ledger.capture({
    holdId: s.hold.hold.id,
    idempotencyKey: `v1:${ctx.traceId}:capture`,
    usage: {
      promptTokens,
      completionTokens,
      traceId: ctx.traceId,
      modelId: s.model.id,
      modelName: s.model.name,
      upstreamModel: s.model.upstreamModel,
      latencyMs,
      status: 'success',
      projectId: s.key.projectId,
      apiKeyId: s.key.keyId,
    },
    actor: { type: 'api_key', id: s.key.keyId },
    known: { amountMicros: s.hold.hold.amountMicros, price: s.hold.price },
    orgId: s.key.orgId,
    ...(coalesceMs ? { coalesceMs } : {}),
    audit: callAudit(ctx, s, 'success', { prompt_tokens: promptTokens, completion_tokens: completionTokens, latency_ms: latencyMs, ...note }),
  });
  ctx.auditedByDomain();
  if (!result.replayed) ctx.services.walletHeadroom.note(s.key.orgId, result.transaction);
  return result;
}

async function release(ctx: RequestContext, s: Settlement, errorCode: string, log: Logger) {
  const latencyMs = Math.round(performance.now() - s.startedAt);
  try {
    // A failed call leaves a zero-cost usage row, so usage and audit tell the same story; both go
    // with the release, in its statement.
    await ctx.deps.ledger.release({
      holdId: s.hold.hold.id,
      idempotencyKey: `v1:${ctx.traceId}:release`,
      orgId: s.key.orgId,
      reason: errorCode,
      actor: { type: 'api_key', id: s.key.keyId },
      record: {
        usage: {
          traceId: ctx.traceId,
          projectId: s.key.projectId,
          apiKeyId: s.key.keyId,
          modelId: s.model.id,
          modelName: s.model.name,
          upstreamModel: s.model.upstreamModel,
          latencyMs,
          status: 'error',
          errorCode,
        },
        audit: callAudit(ctx, s, 'failure', { error: errorCode, latency_ms: latencyMs }),
      },
    });
    ctx.auditedByDomain();
  } catch (error) {
    // The hold's expiry (and the expiry schedule) still returns the money if this fails.
    log.error({ err: error, hold_id: s.hold.hold.id }, 'release after a failed model call failed');
  }
}

type CallSize = { messages: Array<{ role: string; content: any }>; maxTokens: number } | { promptTokens: number; maxTokens: number };

/** The estimate of a call, priced with the price in force now (cached catalog). */
async function priceCall(ctx: RequestContext, model: CatalogEntry, size: CallSize): Promise<{ price: CachedPrice; estimate: HoldEstimate }> {
  const price = await ctx.deps.catalog.priceAt(model.id);
  if (!price) throw new AppError('service_unavailable', `The model "${model.name}" has no price in force`);
  const estimate = 'messages' in size
    ? estimateHoldMicros({ price, messages: size.messages, maxTokens: size.maxTokens })
    : estimateHoldMicros({ price, promptTokens: size.promptTokens, maxTokens: size.maxTokens });
  return { price, estimate };
}

/** Holds the estimate in one ledger write; what the wallet looks like after it feeds WalletHeadroom. */
async function takeHold(ctx: RequestContext, key: ApiKeyActor, model: CatalogEntry, priced: { price: CachedPrice; estimate: HoldEstimate }): Promise<Settlement['hold']> {
  try {
    const result = await ctx.deps.ledger.hold({
      orgId: key.orgId,
      projectId: key.projectId,
      amountMicros: priced.estimate.amountMicros,
      modelId: model.id,
      priceId: priced.price.id,
      idempotencyKey: `v1:${ctx.traceId}:hold`,
      traceId: ctx.traceId,
      ttlMs: ctx.deps.config.upstream.timeoutMs + HOLD_TTL_MARGIN_MS,
      actor: { type: 'api_key', id: key.keyId },
      // Visible (reserving the money) is what the call needs; the capture or release after it is
      // durable, and makes the hold durable with it (see HoldInput).
      durable: false,
    });
    ctx.services.walletHeadroom.note(key.orgId, result.transaction);
    return { ...result, estimate: priced.estimate, price: priced.price };
  } catch (error) {
    const available = error instanceof AppError && error.code === 'insufficient_funds' ? (error.details as { available_micros?: string } | undefined)?.available_micros : undefined;
    if (available !== undefined) ctx.services.walletHeadroom.noteAvailable(key.orgId, BigInt(available));
    throw error;
  }
}

/**
 * The hold and the upstream call. Normally the hold comes first. When this process saw the org's
 * wallet moments ago with room for many calls like this one (V1_SPECULATIVE_HEADROOM) and no
 * monthly budget needs checking against the estimate, the call starts beside the hold, which takes
 * the hold's round trip off the caller's latency. Either way nothing is answered unless the hold
 * stands: a refused hold aborts the call and the caller gets the hold's error. (The upstream may
 * bill the platform for an aborted request; the headroom rule keeps that to races.)
 */
async function heldCall<T>(
  ctx: RequestContext,
  key: ApiKeyActor,
  model: CatalogEntry,
  size: CallSize,
  requestedMax: number | undefined,
  timing: CallTiming,
  call: (signal: AbortSignal) => Promise<T>,
): Promise<{ settlement: Settlement; result: T }> {
  const startedAt = performance.now();
  const priced = await priceCall(ctx, model, size);
  const capped = ctx.policy?.monthlyBudgetMicros != null;
  const abort = new AbortController();

  if (!capped && ctx.services.walletHeadroom.allows(key.orgId, priced.estimate.amountMicros)) {
    const reserved = ctx.services.holdReserve.take(
      { orgId: key.orgId, projectId: key.projectId, keyId: key.keyId, modelId: model.id, priceId: priced.price.id },
      priced.estimate.amountMicros,
    );
    if (reserved && !(reserved instanceof Promise)) {
      // A hold of this pair's taken ahead (hold-reserve.ts) already stands for this call.
      const callAt = performance.now();
      timing.preMs = timing.sinceArrival(callAt);
      const settlement: Settlement = { hold: { ...reserved, estimate: priced.estimate, price: priced.price }, key, model, startedAt };
      try {
        const result = await call(abort.signal);
        timing.upstreamMs = performance.now() - callAt;
        return { settlement, result };
      } catch (error) {
        const appError = upstreamAppError(error);
        await release(ctx, settlement, appError.code, ctx.log);
        throw appError;
      }
    }
    const callAt = performance.now();
    timing.preMs = timing.sinceArrival(callAt);
    let answeredAt = 0;
    const upstream = call(abort.signal).then((result) => {
      answeredAt = performance.now();
      return result;
    });
    upstream.catch(() => undefined); // awaited below, or abandoned with a refused hold
    let hold: Settlement['hold'];
    try {
      // One of the holds a refill in flight is taking (hold-reserve.ts), else this call's own.
      hold = await (reserved
        ? reserved.then((result) => (result ? { ...result, estimate: priced.estimate, price: priced.price } : takeHold(ctx, key, model, priced)))
        : takeHold(ctx, key, model, priced));
      const heldAt = performance.now();
      timing.holdMs = heldAt - callAt;
      if (answeredAt) timing.holdWaitMs = heldAt - answeredAt;
    } catch (error) {
      abort.abort();
      ctx.log.warn({ code: error instanceof AppError ? error.code : 'internal_error', org_id: key.orgId }, 'hold refused: the speculative upstream call was aborted');
      throw error;
    }
    const settlement: Settlement = { hold, key, model, startedAt };
    try {
      const result = await upstream;
      timing.upstreamMs = answeredAt - callAt;
      return { settlement, result };
    } catch (error) {
      const appError = upstreamAppError(error);
      await release(ctx, settlement, appError.code, ctx.log);
      throw appError;
    }
  }

  const holdAt = performance.now();
  timing.preMs = timing.sinceArrival(holdAt);
  const hold = await takeHold(ctx, key, model, priced);
  timing.holdMs = performance.now() - holdAt;
  const settlement: Settlement = { hold, key, model, startedAt };
  if (capped) {
    // The estimate is known only now; re-check the cap with it and undo the hold when over.
    try {
      await enforcePolicy(ctx, key.projectId, model.name, requestedMax, hold.hold.amountMicros);
    } catch (error) {
      await release(ctx, settlement, 'policy_violation', ctx.log);
      throw error;
    }
  }
  const callAt = performance.now();
  // The call began only once the hold (and the cap's re-check) stood.
  timing.holdWaitMs = callAt - holdAt;
  try {
    const result = await call(abort.signal);
    timing.upstreamMs = performance.now() - callAt;
    return { settlement, result };
  } catch (error) {
    const appError = upstreamAppError(error);
    await release(ctx, settlement, appError.code, ctx.log);
    throw appError;
  }
}

/**
 * The reply of a settled non-stream call. With V1_SETTLE_BEFORE_RESPONSE the capture commits
 * first; otherwise the answer goes out as soon as the upstream answered and the hold stands, and
 * the capture (money, usage record and audit row, one statement) commits right after it. A
 * graceful stop waits for those captures; a hard kill in that millisecond leaves the hold to its
 * expiry, which returns the money — the same outcome as a kill mid-call.
 */
async function settledReply(ctx: RequestContext, body: unknown, timing: CallTiming, settle: (coalesceMs?: number) => Promise<unknown>): Promise<Reply> {
  if (ctx.deps.config.v1.settleBeforeResponse) {
    await settle();
    return { body, headers: timing.headers() };
  }
  ctx.auditedByDomain(); // the capture's statement writes this call's audit row
  return {
    body,
    headers: timing.headers(),
    afterSend: async () => {
      // The capture is idempotent by key: a retry after a lost connection settles it once.
      for (let attempt = 1; ; attempt++) {
        try {
          // Nobody waits for it now: it may wait a few ms to share a statement with others.
          await settle(ctx.deps.config.v1.captureBatchMs);
          return;
        } catch (error) {
          if (attempt >= 3 || error instanceof AppError) {
            ctx.log.error({ err: error }, 'capture after the response failed; the hold expiry will return the money');
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 100 * attempt));
        }
      }
    },
  };
}

function upstreamAppError(error: unknown): AppError {
  const failure = classifyUpstreamError(error);
  const code = failure.code === 'bad_request' ? 'bad_request' : failure.code;
  return new AppError(code, failure.message, failure.retryAfterMs ? { headers: { 'retry-after': String(Math.ceil(failure.retryAfterMs / 1000)) } } : {});
}

function messagesText(messages: Array<{ content?: unknown }>): string {
  return messages.map((m) => (typeof m.content === 'string' ? m.content : '')).join('\n');
}

export function openAiRoutes(api: ApiRouter): void {
  api.handle('listModels', async (ctx) => {
    ctx.actorOrThrow();
    const allowed = ctx.policy?.allowedModels;
    const models = [...(await ctx.deps.catalog.all()).values()].filter((m) => !allowed || allowed.includes(m.name));
    return {
      body: {
        object: 'list',
        data: models.map((m) => ({
          id: m.name,
          object: 'model',
          created: Math.floor(m.createdAt.getTime() / 1000),
          owned_by: 'deepspace',
          deepspace: { display_name: m.displayName, kind: m.kind, simulated: m.isSimulated, context_window: m.contextWindow },
        })),
      },
    };
  });

  api.handle('createChatCompletion', async (ctx) => {
    const key = apiKeyOf(ctx);
    const body = ctx.body as Record<string, any>;
    const model = await resolveModel(ctx, body.model, 'chat');
    const requestedMax: number | undefined = body.max_completion_tokens ?? body.max_tokens ?? undefined;
    await enforcePolicy(ctx, key.projectId, model.name, requestedMax);
    const maxTokens = Math.min(requestedMax ?? model.maxOutputTokens, model.maxOutputTokens);
    const upstreamBody: Record<string, unknown> = { ...body, model: model.upstreamModel, max_tokens: maxTokens };
    delete upstreamBody.max_completion_tokens;

    const timing = new CallTiming(ctx);
    if (!body.stream) {
      const lean = leanUpstream(ctx.deps.upstream);
      const request = { ...upstreamBody, stream: false };
      const { settlement, result: completion } = await heldCall(ctx, key, model, { messages: body.messages, maxTokens }, requestedMax, timing, (signal) =>
        withUpstreamRetry(
          () =>
            lean
              ? lean.postJson<OpenAI.Chat.Completions.ChatCompletion>('chat/completions', request, signal)
              : (ctx.deps.upstream.chat.completions.create(request as never, { signal }) as Promise<OpenAI.Chat.Completions.ChatCompletion>),
          undefined,
          signal,
        ),
      );
      const usage = completion.usage;
      const promptTokens = usage?.prompt_tokens ?? settlement.hold.estimate?.promptTokens ?? 0;
      const completionTokens = usage?.completion_tokens ?? countTokens(completion.choices.map((c) => c.message?.content ?? '').join(''));
      return settledReply(ctx, { ...completion, model: model.name }, timing, (coalesceMs) => capture(ctx, settlement, promptTokens, completionTokens, {}, coalesceMs));
    }

    const startedAt = performance.now();
    const priced = await priceCall(ctx, model, { messages: body.messages, maxTokens });
    const holdAt = performance.now();
    timing.preMs = timing.sinceArrival(holdAt);
    const hold = await takeHold(ctx, key, model, priced);
    timing.holdMs = performance.now() - holdAt;
    const settlement: Settlement = { hold, key, model, startedAt };
    if (ctx.policy?.monthlyBudgetMicros != null) {
      // The estimate is known only now; re-check the cap with it and undo the hold when over.
      try {
        await enforcePolicy(ctx, key.projectId, model.name, requestedMax, hold.hold.amountMicros);
      } catch (error) {
        await release(ctx, settlement, 'policy_violation', ctx.log);
        throw error;
      }
    }
    timing.holdWaitMs = performance.now() - holdAt;
    await streamCompletion(ctx, settlement, upstreamBody, Boolean(body.stream_options?.include_usage), timing);
  });

  api.handle('createEmbeddings', async (ctx) => {
    const key = apiKeyOf(ctx);
    const body = ctx.body as { model: string; input: string | string[]; encoding_format?: string; dimensions?: number; user?: string };
    const model = await resolveModel(ctx, body.model, 'embedding');
    await enforcePolicy(ctx, key.projectId, model.name, undefined);
    const inputs = Array.isArray(body.input) ? body.input : [body.input];
    const promptTokens = inputs.reduce((sum, text) => sum + countTokens(text), 0);
    const timing = new CallTiming(ctx);
    const { settlement, result } = await heldCall(ctx, key, model, { promptTokens, maxTokens: 0 }, undefined, timing, (signal) =>
      withUpstreamRetry(
        () => ctx.deps.upstream.embeddings.create({ ...body, model: model.upstreamModel } as OpenAI.Embeddings.EmbeddingCreateParams, { signal }),
        undefined,
        signal,
      ),
    );
    return settledReply(ctx, { ...result, model: model.name }, timing, (coalesceMs) => capture(ctx, settlement, result.usage?.prompt_tokens ?? promptTokens, 0, {}, coalesceMs));
  });
}

/**
 * Relays the upstream SSE stream. Retries happen only before the first chunk is relayed. When the
 * client goes away mid-stream, the upstream call is aborted and the tokens already delivered are
 * captured (the upstream generated them and bills for them; the caller received them); the rest
 * of the hold is released. An upstream failure before any content is released in full.
 */
async function streamCompletion(ctx: RequestContext, s: Settlement, upstreamBody: Record<string, unknown>, wantsUsage: boolean, timing: CallTiming): Promise<void> {
  const res: Response = ctx.res;
  const abort = new AbortController();
  let clientGone = false;
  res.on('close', () => {
    if (!res.writableFinished) {
      clientGone = true;
      abort.abort();
    }
  });

  let stream: AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>;
  const callAt = performance.now();
  try {
    const request = { ...upstreamBody, stream: true, stream_options: { include_usage: true } };
    const lean = leanUpstream(ctx.deps.upstream);
    stream = await withUpstreamRetry(
      () =>
        lean
          ? lean.streamJson<OpenAI.Chat.Completions.ChatCompletionChunk>('chat/completions', request, abort.signal)
          : (ctx.deps.upstream.chat.completions.create(request as never, { signal: abort.signal }) as unknown as Promise<AsyncIterable<OpenAI.Chat.Completions.ChatCompletionChunk>>),
      undefined,
      abort.signal,
    );
  } catch (error) {
    const appError = upstreamAppError(error);
    await release(ctx, s, clientGone ? 'client_disconnected' : appError.code, ctx.log);
    if (clientGone) return;
    throw appError;
  }

  timing.upstreamMs = performance.now() - callAt;
  res.status(200);
  for (const [name, value] of Object.entries(timing.headers('upstream_open'))) res.setHeader(name, value);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache, no-transform');
  res.setHeader('x-accel-buffering', 'no');
  res.flushHeaders();

  let delivered = '';
  let usage: OpenAI.Completions.CompletionUsage | undefined;
  let failure: AppError | undefined;
  try {
    for await (const chunk of stream) {
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices ?? []) if (choice.delta?.content) delivered += choice.delta.content;
      if (chunk.choices?.length === 0 && chunk.usage && !wantsUsage) continue;
      const relayed = wantsUsage ? chunk : { ...chunk, usage: undefined };
      res.write(`data: ${JSON.stringify({ ...relayed, model: s.model.name })}\n\n`);
    }
  } catch (error) {
    if (!clientGone) failure = upstreamAppError(error);
  }

  const promptTokens = usage?.prompt_tokens ?? s.hold.estimate?.promptTokens ?? countTokens(messagesText((upstreamBody.messages as Array<{ content?: unknown }>) ?? []));
  if (usage && !clientGone && !failure) {
    await capture(ctx, s, promptTokens, usage.completion_tokens);
    res.write('data: [DONE]\n\n');
    res.end();
    return;
  }
  // Cut short (client gone, or upstream failed mid-stream): bill what was delivered, if anything.
  const deliveredTokens = countTokens(delivered);
  const reason = clientGone ? 'client_disconnected' : (failure?.code ?? 'upstream_error');
  if (deliveredTokens > 0) await capture(ctx, s, promptTokens, deliveredTokens, { cut_short: reason });
  else await release(ctx, s, reason, ctx.log);
  if (!clientGone) {
    const error = failure ?? new AppError('upstream_error', 'The model stream ended without usage');
    res.write(`data: ${JSON.stringify({ error: { message: error.message, type: 'api_error', code: error.code, trace_id: ctx.traceId } })}\n\n`);
    res.end();
  }
}
