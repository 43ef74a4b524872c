// The one place errors become responses: `{ error: { code, message, trace_id, details? } }`.
// Unknown errors are logged with their stack and answered as a generic 500 (no stack to clients).
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, isAppError, type PrismaClient } from '@deepspace/core';
import { writeAudit } from '../services/audit.ts';

export function errorBody(error: AppError, traceId: string) {
  return {
    error: {
      code: error.code,
      message: error.message,
      trace_id: traceId,
      ...(error.details ? { details: error.details } : {}),
    },
  };
}

const OPENAI_ERROR_TYPES: Record<number, string> = {
  400: 'invalid_request_error',
  401: 'authentication_error',
  402: 'insufficient_quota',
  403: 'permission_error',
  404: 'invalid_request_error',
  409: 'invalid_request_error',
  413: 'invalid_request_error',
  415: 'invalid_request_error',
  429: 'rate_limit_error',
};

/** OpenAI's error shape for the /v1 API (SDKs read `message`/`type`), plus our `code` and `trace_id`. */
export function openAiErrorBody(error: AppError, traceId: string) {
  return {
    error: {
      message: error.message,
      type: OPENAI_ERROR_TYPES[error.status] ?? 'api_error',
      param: (error.details?.param as string | undefined) ?? null,
      code: error.code,
      trace_id: traceId,
      ...(error.details ? { details: error.details } : {}),
    },
  };
}

/** Maps body-parser and other http-errors style failures to stable codes. */
function fromHttpError(error: { type?: string; status?: number; statusCode?: number; message?: string }): AppError | undefined {
  switch (error.type) {
    case 'entity.parse.failed':
      return new AppError('invalid_json', 'Request body is not valid JSON');
    case 'entity.too.large':
      return new AppError('payload_too_large', 'Request body is too large');
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new AppError('unsupported_media_type', 'Unsupported body encoding');
    case 'request.aborted':
      return new AppError('bad_request', 'Request was aborted');
  }
  const status = error.status ?? error.statusCode;
  if (status && status >= 400 && status < 500) return new AppError('bad_request', error.message ?? 'Bad request');
  return undefined;
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * Maps errors to responses. A mutating request that failed before any route audited it (bad JSON,
 * oversized body, unknown route) still leaves an audit row with its trace id.
 */
export function errorHandler(prisma: PrismaClient): ErrorRequestHandler {
  return async (err, req, res, next) => {
    if (MUTATING.has(req.method) && !res.locals.audited) {
      res.locals.audited = true;
      const status = isAppError(err) ? err.status : (fromHttpError(err as object)?.status ?? 500);
      await writeAudit(prisma, { traceId: res.locals.traceId, actor: undefined, ip: req.ip, userAgent: req.header('user-agent') }, {
        action: 'http.rejected',
        resourceType: 'http',
        resourceId: `${req.method} ${req.path}`.slice(0, 200),
        result: status === 401 || status === 403 || status === 429 ? 'denied' : 'failure',
        details: { status },
      }).catch((auditError) => res.locals.log?.error({ err: auditError }, 'audit write failed'));
    }
    respond(err, req, res, next);
  };
}

const respond: ErrorRequestHandler = (err, _req, res, _next) => {
  const traceId = res.locals.traceId ?? 'unknown';
  const appError = isAppError(err) ? err : fromHttpError(err as object);
  if (appError) {
    if (appError.status >= 500) res.locals.log?.error({ err, code: appError.code }, appError.message);
    for (const [name, value] of Object.entries(appError.headers ?? {})) res.setHeader(name, value);
    if (res.headersSent) return void res.end();
    res.status(appError.status).json(_req.path.startsWith('/v1/') ? openAiErrorBody(appError, traceId) : errorBody(appError, traceId));
    return;
  }
  res.locals.log?.error({ err }, 'unhandled error');
  if (res.headersSent) return void res.end();
  const internal = new AppError('internal_error', 'Internal error');
  res.status(500).json(_req.path.startsWith('/v1/') ? openAiErrorBody(internal, traceId) : errorBody(internal, traceId));
};

export const notFoundHandler: RequestHandler = (req, _res, next) => {
  next(new AppError('not_found', `No route for ${req.method} ${req.path}`));
};
