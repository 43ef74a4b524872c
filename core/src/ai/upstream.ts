// The OpenAI-compatible upstream (NewAPI or the simulator). Our own retry policy wraps calls, so
// the SDK's built-in retries are off: a retry must happen only before the first byte is relayed.
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
