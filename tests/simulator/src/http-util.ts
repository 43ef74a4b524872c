/** Small node:http helpers: bounded body reading, JSON responses, abortable sleeps. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { SimHttpError } from './errors.ts';

/**
 * Read the whole request body, up to `limit` bytes. Over the limit, the rest is drained (so keep-alive
 * clients get a clean 413) unless it goes on far beyond the limit, in which case the 413 is raised at once.
 */
export function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise<Buffer>((resolve, reject) => {
    const tooLarge = () =>
      new SimHttpError(413, `Request body too large: the limit is ${limit} bytes.`, {
        type: 'invalid_request_error',
        code: 'request_too_large',
      });
    const declared = Number(req.headers['content-length']);
    if (Number.isFinite(declared) && declared > limit * 4) {
      req.resume();
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('close', onClose);
      fn();
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        if (size > limit * 4) {
          // keep the stream flowing (discarding) but answer now
          req.on('data', () => {});
          finish(() => reject(tooLarge()));
        }
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => finish(() => (over ? reject(tooLarge()) : resolve(Buffer.concat(chunks, size))));
    const onError = (err: Error) => finish(() => reject(err));
    const onClose = () => finish(() => reject(new Error('client closed the connection before sending the body')));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('close', onClose);
  });
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.destroyed) return;
  const payload = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(payload),
    ...headers,
  });
  res.end(payload);
}

export function sendError(res: ServerResponse, err: SimHttpError): void {
  sendJson(res, err.status, err.toBody(), err.headers);
}

/** Resolve after `ms` (true) or as soon as `signal` aborts (false). Never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  if (!(ms > 0)) return Promise.resolve(true);
  return new Promise<boolean>((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Write and wait for the data to be flushed (or for backpressure to clear); false if the client went away. */
export function writeAndFlush(res: ServerResponse, data: string, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted || res.destroyed || res.writableEnded) return Promise.resolve(false);
  return new Promise<boolean>((resolve) => {
    let done = false;
    const settle = (ok: boolean) => {
      if (done) return;
      done = true;
      signal.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = () => settle(false);
    signal.addEventListener('abort', onAbort, { once: true });
    res.write(data, (err) => settle(!err && !signal.aborted));
  });
}

/** Write; if the socket buffer is full, wait for 'drain'. False if the client went away. */
export async function writeChunk(res: ServerResponse, data: string, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted || res.destroyed || res.writableEnded) return false;
  if (res.write(data)) return true;
  return new Promise<boolean>((resolve) => {
    const settle = (ok: boolean) => {
      res.off('drain', onDrain);
      signal.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onDrain = () => settle(true);
    const onAbort = () => settle(false);
    res.once('drain', onDrain);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
