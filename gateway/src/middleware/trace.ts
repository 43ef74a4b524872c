// First in the pipeline: adopt the caller's W3C traceparent or start a new trace, echo it in
// `x-trace-id`, and give the request a logger that stamps trace_id on every line.
import type { RequestHandler } from 'express';
import { newTraceId, traceIdFromTraceparent, type Logger } from '@deepspace/core';

declare global {
  // eslint-disable-next-line @typescript-eslint/no-namespace
  namespace Express {
    interface Locals {
      traceId: string;
      log: Logger;
      startedAt: bigint;
      /** Set once an audit row was written for this request. */
      audited?: boolean;
    }
  }
}

export function traceMiddleware(logger: Logger): RequestHandler {
  return (req, res, next) => {
    const traceId = traceIdFromTraceparent(req.header('traceparent')) ?? newTraceId();
    res.locals.traceId = traceId;
    res.locals.startedAt = process.hrtime.bigint();
    res.locals.log = logger.child({ trace_id: traceId });
    res.setHeader('x-trace-id', traceId);
    res.on('finish', () => {
      const ms = Number(process.hrtime.bigint() - res.locals.startedAt) / 1e6;
      const line = { method: req.method, path: req.path, status: res.statusCode, duration_ms: Math.round(ms * 10) / 10 };
      if (res.statusCode >= 500) res.locals.log.error(line, 'request failed');
      else if (req.path !== '/healthz') res.locals.log.info(line, 'request');
    });
    next();
  };
}
