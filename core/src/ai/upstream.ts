// The OpenAI-compatible upstream (NewAPI or the simulator). Our own retry policy wraps calls, so
// the SDK's built-in retries are off: a retry must happen only before the first byte is relayed.
import http from 'node:http';
import https from 'node:https';
import OpenAI from 'openai';
import type { AppConfig } from '../config.ts';

export { OpenAI };

export function createUpstreamClient(config: AppConfig, options: { timeoutMs?: number } = {}): OpenAI {
  if (!config.upstream.baseUrl) throw new Error('NEWAPI_BASE_URL is not set (npm start sets it to the simulator)');
  return new OpenAI({
    baseURL: config.upstream.baseUrl,
    apiKey: config.upstream.apiKey ?? 'unset',
    timeout: options.timeoutMs ?? config.upstream.timeoutMs,
    maxRetries: 0,
  });
}

export const RETRYABLE_STATUS = new Set([408, 409, 429, 500, 502, 503, 504]);

export interface UpstreamFailure {
  status: number;
  code: 'upstream_error' | 'upstream_timeout' | 'rate_limited' | 'bad_request';
  message: string;
  retryable: boolean;
  retryAfterMs?: number;
}

/** Classifies an error thrown by the openai SDK (or the network) for retries and for callers. */
export function classifyUpstreamError(error: unknown): UpstreamFailure {
  if (error instanceof OpenAI.APIConnectionTimeoutError) {
    return { status: 504, code: 'upstream_timeout', message: 'The model upstream did not answer in time', retryable: true };
  }
  if (error instanceof OpenAI.APIUserAbortError) {
    return { status: 499, code: 'upstream_error', message: 'The request was aborted', retryable: false };
  }
  if (error instanceof OpenAI.APIConnectionError) {
    return { status: 502, code: 'upstream_error', message: 'The model upstream could not be reached or dropped the connection', retryable: true };
  }
  if (error instanceof OpenAI.APIError && typeof error.status === 'number') {
    const retryAfter = Number(error.headers?.get?.('retry-after'));
    if (error.status === 429) {
      return {
        status: 429,
        code: 'rate_limited',
        message: 'The model upstream is rate limiting; retry later',
        retryable: true,
        ...(Number.isFinite(retryAfter) ? { retryAfterMs: retryAfter * 1000 } : {}),
      };
    }
    if (error.status >= 400 && error.status < 500) {
      return { status: 400, code: 'bad_request', message: `The model upstream refused the request: ${error.message}`, retryable: false };
    }
    return { status: 502, code: 'upstream_error', message: `The model upstream failed (${error.status})`, retryable: RETRYABLE_STATUS.has(error.status) };
  }
  return { status: 502, code: 'upstream_error', message: `The model upstream failed: ${(error as Error)?.message ?? 'unknown error'}`, retryable: true };
}

export interface RetryPolicy {
  /** Total attempts including the first. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_UPSTREAM_RETRY: RetryPolicy = { attempts: 3, baseDelayMs: 100, maxDelayMs: 2_000 };

/** Runs `call` with exponential backoff on retryable upstream failures (honouring Retry-After). */
export async function withUpstreamRetry<T>(call: (attempt: number) => Promise<T>, policy: RetryPolicy = DEFAULT_UPSTREAM_RETRY, signal?: AbortSignal): Promise<T> {
  let lastError: unknown;
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    try {
      return await call(attempt);
    } catch (error) {
      lastError = error;
      const failure = classifyUpstreamError(error);
      if (!failure.retryable || attempt === policy.attempts || signal?.aborted) throw error;
      const backoff = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (attempt - 1));
      const delay = Math.min(policy.maxDelayMs, Math.max(backoff, failure.retryAfterMs ?? 0));
      await new Promise((r) => setTimeout(r, delay));
    }
  }
  throw lastError;
}

// ───────────────────── lean JSON calls (the hot non-stream path) ─────────────────────

/**
 * One JSON POST to the upstream the `client` points at (its base URL, key, organization, project
 * and timeout), over a keep-alive node:http(s) agent instead of the SDK's fetch stack: on the
 * inline /v1 path the SDK and undici cost more CPU than the rest of the call's HTTP. Failures are
 * the SDK's own error classes (APIError.generate for a status, APIConnectionError,
 * APIConnectionTimeoutError, APIUserAbortError), so classifyUpstreamError and withUpstreamRetry
 * treat them exactly as before. Returns undefined when the client cannot be mirrored (an API key
 * supplied by a function): call the SDK then.
 */
export function leanUpstream(client: OpenAI): LeanUpstream | undefined {
  let lean = leanClients.get(client);
  if (lean === undefined && !leanClients.has(client)) {
    lean = typeof client.apiKey === 'string' && typeof client.baseURL === 'string' ? new LeanUpstream(client) : undefined;
    leanClients.set(client, lean);
  }
  return lean;
}

const leanClients = new WeakMap<OpenAI, LeanUpstream | undefined>();

export class LeanUpstream {
  private readonly base: URL;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;
  private readonly urls = new Map<string, URL>();

  constructor(client: OpenAI) {
    this.base = new URL(client.baseURL.endsWith('/') ? client.baseURL : `${client.baseURL}/`);
    this.headers = { authorization: `Bearer ${client.apiKey}`, 'content-type': 'application/json', accept: 'application/json' };
    if (client.organization) this.headers['openai-organization'] = client.organization;
    if (client.project) this.headers['openai-project'] = client.project;
    this.timeoutMs = client.timeout;
    const secure = this.base.protocol === 'https:';
    // Sockets are reused across calls; the pool is bounded by the gateway's own concurrency.
    this.agent = secure ? new https.Agent({ keepAlive: true }) : new http.Agent({ keepAlive: true });
    this.request = secure ? https.request : http.request;
  }

  /** POST `path` (relative to the base URL, e.g. 'chat/completions') with a JSON body; resolves the parsed JSON of a 2xx. */
  postJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<T> {
    const payload = Buffer.from(JSON.stringify(body));
    let url = this.urls.get(path);
    if (!url) this.urls.set(path, (url = new URL(path, this.base)));
    return new Promise<T>((resolve, reject) => {
      if (signal?.aborted) return reject(new OpenAI.APIUserAbortError());
      let settled = false;
      const fail = (error: unknown) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        req.destroy();
        reject(error);
      };
      const req = this.request(url, { method: 'POST', agent: this.agent, headers: { ...this.headers, 'content-length': String(payload.length) } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => fail(new OpenAI.APIConnectionError({ cause: error })));
        res.on('end', () => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          const text = Buffer.concat(chunks).toString('utf8');
          const status = res.statusCode ?? 0;
          if (status >= 200 && status < 300) {
            try {
              resolve(JSON.parse(text) as T);
            } catch (error) {
              reject(error);
            }
            return;
          }
          reject(statusError(status, text, res.headers));
        });
      });
      const timer = setTimeout(() => fail(new OpenAI.APIConnectionTimeoutError()), this.timeoutMs);
      const onAbort = () => fail(new OpenAI.APIUserAbortError());
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (error) => fail(new OpenAI.APIConnectionError({ cause: error })));
      req.end(payload);
    });
  }

  /**
   * POST `path` with a JSON body asking for a stream; resolves once a 2xx's headers arrive, with the
   * `data:` events' JSON in order (until `[DONE]`). Instead of the SDK's fetch + web-streams stack:
   * a reply streams a chunk every few ms, and a worker relays many replies at once. Failures before
   * the headers are the SDK's classes, as postJson's (so withUpstreamRetry retries them); an error
   * event is an APIError, a connection lost mid-stream an APIConnectionError, an abort an
   * APIUserAbortError. Leaving the loop early closes the request.
   */
  streamJson<T>(path: string, body: unknown, signal?: AbortSignal): Promise<AsyncIterable<T>> {
    const payload = Buffer.from(JSON.stringify(body));
    let url = this.urls.get(path);
    if (!url) this.urls.set(path, (url = new URL(path, this.base)));
    return new Promise<AsyncIterable<T>>((resolve, reject) => {
      if (signal?.aborted) return reject(new OpenAI.APIUserAbortError());
      let answered = false;
      const fail = (error: unknown) => {
        clearTimeout(timer);
        req.destroy();
        if (!answered) {
          answered = true;
          signal?.removeEventListener('abort', onAbort);
          reject(error);
        }
      };
      const req = this.request(url, { method: 'POST', agent: this.agent, headers: { ...this.headers, accept: 'text/event-stream', 'content-length': String(payload.length) } }, (res) => {
        clearTimeout(timer); // as the SDK: the timeout covers the wait for the response, not the stream
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 300) {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('error', (error) => fail(new OpenAI.APIConnectionError({ cause: error })));
          res.on('end', () => fail(statusError(status, Buffer.concat(chunks).toString('utf8'), res.headers)));
          return;
        }
        answered = true;
        resolve(sseEvents<T>(res, req, signal, onAbort));
      });
      const timer = setTimeout(() => fail(new OpenAI.APIConnectionTimeoutError()), this.timeoutMs);
      const onAbort = () => fail(new OpenAI.APIUserAbortError());
      signal?.addEventListener('abort', onAbort, { once: true });
      req.on('error', (error) => fail(new OpenAI.APIConnectionError({ cause: error })));
      req.end(payload);
    });
  }
}

/** The SDK's error for a non-2xx answer: the parsed error body (wrapped in { error } when bare), else the text. */
function statusError(status: number, text: string, raw: http.IncomingHttpHeaders): InstanceType<typeof OpenAI.APIError> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const normalized = json && typeof json === 'object' && (json as { error?: unknown }).error == null ? { error: json } : json;
  return OpenAI.APIError.generate(status, normalized as object | undefined, json === undefined ? text : undefined, headersOf(raw));
}

function headersOf(raw: http.IncomingHttpHeaders): Headers {
  const headers = new Headers();
  for (const [name, value] of Object.entries(raw)) if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  return headers;
}

/** The JSON of each `data:` event of an SSE body, until `[DONE]` or its end. */
async function* sseEvents<T>(res: http.IncomingMessage, req: http.ClientRequest, signal: AbortSignal | undefined, onAbort: () => void): AsyncGenerator<T> {
  res.setEncoding('utf8');
  let pending = '';
  let finished = false;
  /** Yields the complete events buffered in `pending`; returns true at `[DONE]`. */
  function* complete(): Generator<T, boolean> {
    let boundary: number;
    while ((boundary = pending.indexOf('\n\n')) !== -1) {
      const event = pending.slice(0, boundary);
      pending = pending.slice(boundary + 2);
      let data: string | undefined;
      let name: string | undefined;
      for (const line of event.split('\n')) {
        if (line.startsWith('data:')) {
          const value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
          data = data === undefined ? value : `${data}\n${value}`;
        } else if (line.startsWith('event:')) name = line.slice(6).trim();
      }
      if (data === undefined) continue;
      if (data === '[DONE]') return true;
      const parsed = JSON.parse(data) as T & { error?: unknown };
      // As the SDK: an event carrying `error` (or named `error`) fails the stream.
      if (name === 'error' || (parsed && typeof parsed === 'object' && parsed.error)) {
        throw new OpenAI.APIError(undefined, (parsed as { error?: object }).error ?? parsed, undefined, headersOf(res.headers));
      }
      yield parsed;
    }
    return false;
  }
  try {
    let done = false;
    for await (const text of res as AsyncIterable<string>) {
      if (done) continue; // read to the end after [DONE], so the keep-alive socket is reused
      pending += text.includes('\r') ? text.replace(/\r\n?/g, '\n') : text;
      done = yield* complete();
    }
    // A last event the upstream did not close with a blank line still counts.
    if (!done && pending) {
      pending += '\n\n';
      yield* complete();
    }
    finished = true;
  } catch (error) {
    if (signal?.aborted) throw new OpenAI.APIUserAbortError();
    if (error instanceof OpenAI.APIError || error instanceof SyntaxError) throw error;
    throw new OpenAI.APIConnectionError({ cause: error as Error });
  } finally {
    signal?.removeEventListener('abort', onAbort);
    // Left early (or failed): close the request so the upstream stops generating.
    if (!finished) req.destroy();
  }
}
