/**
 * The one client for the DeepSpace gateway. Nothing else in the app calls `fetch`.
 *
 * Every failure comes out as a `GatewayError`: the gateway's own error object
 * `{ error: { code, message, trace_id } }` when it sent one, otherwise a synthetic
 * code for HTTP errors without that shape (`http_404`, …) and for network failures
 * (`gateway_unreachable`, status 0).
 */

export interface GatewayErrorBody {
  error: { code: string, message: string, trace_id?: string, details?: unknown }
}

export class GatewayError extends Error {
  override readonly name = 'GatewayError'
  readonly code: string
  readonly status: number
  readonly traceId: string | undefined

  constructor(init: { code: string, message: string, status: number, traceId?: string }) {
    super(init.message)
    this.code = init.code
    this.status = init.status
    this.traceId = init.traceId
  }
}

export function isGatewayError(value: unknown): value is GatewayError {
  return value instanceof GatewayError
}

function isGatewayErrorBody(data: unknown): data is GatewayErrorBody {
  if (typeof data !== 'object' || data === null || !('error' in data)) return false
  const error = (data as { error: unknown }).error
  return typeof error === 'object' && error !== null
    && typeof (error as { code?: unknown }).code === 'string'
    && typeof (error as { message?: unknown }).message === 'string'
}

const HTTP_MESSAGES: Record<number, string> = {
  401: 'You are not signed in.',
  403: 'You are not allowed to do this.',
  404: 'The gateway does not offer this endpoint yet.',
  429: 'Too many requests; try again in a moment.',
  502: 'The gateway could not reach an upstream service.',
  503: 'The gateway is unavailable.'
}

/** The parts of ofetch's `FetchError` we read (duck-typed: ofetch is nuxt's, not ours). */
interface FetchErrorLike extends Error {
  data?: unknown
  status?: number
  statusCode?: number
}

function isFetchError(value: unknown): value is FetchErrorLike {
  return value instanceof Error && value.name === 'FetchError'
}

/** Turn anything `$fetch` can throw into a `GatewayError`. */
export function toGatewayError(cause: unknown): GatewayError {
  if (cause instanceof GatewayError) return cause
  if (isFetchError(cause)) {
    const status = cause.statusCode ?? cause.status ?? 0
    if (isGatewayErrorBody(cause.data)) {
      const { code, message, trace_id } = cause.data.error
      return new GatewayError({ code, message, status, traceId: trace_id })
    }
    if (!status) {
      return new GatewayError({
        code: 'gateway_unreachable',
        message: 'Cannot reach the gateway. Check that it is running.',
        status: 0
      })
    }
    return new GatewayError({
      code: `http_${status}`,
      message: HTTP_MESSAGES[status] ?? `The gateway answered with HTTP ${status}.`,
      status
    })
  }
  return new GatewayError({
    code: 'client_error',
    message: cause instanceof Error ? cause.message : 'Unexpected error while calling the gateway.',
    status: 0
  })
}

type GatewayFetchOptions = NonNullable<Parameters<typeof $fetch>[1]>

export function useGateway() {
  const baseURL = useRuntimeConfig().public.gatewayUrl

  const client = $fetch.create({
    baseURL,
    credentials: 'include',
    headers: { accept: 'application/json' }
  })

  async function request<T>(path: string, options: GatewayFetchOptions = {}): Promise<T> {
    try {
      return await client<T>(path, options)
    } catch (cause) {
      throw toGatewayError(cause)
    }
  }

  return {
    baseURL,
    request,
    get: <T>(path: string, options: Omit<GatewayFetchOptions, 'method' | 'body'> = {}) =>
      request<T>(path, { ...options, method: 'GET' }),
    post: <T>(path: string, body?: Record<string, unknown>, options: Omit<GatewayFetchOptions, 'method' | 'body'> = {}) =>
      request<T>(path, { ...options, method: 'POST', body })
  }
}
