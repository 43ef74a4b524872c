// Relays a run's Redis Stream as Server-Sent Events. Event ids are the stream entry ids, so a
// client that reconnects with Last-Event-ID gets exactly the events after it. A client going away
// only stops the relay; the run goes on and its result is saved by the worker.
import type { Response } from 'express';
import { readRunEvents, runEventsExist, TERMINAL_RUN_EVENTS, type Redis } from '@deepspace/core';

const BLOCK_MS = 5_000;
const KEEPALIVE_MS = 15_000;

export function openSse(res: Response): void {
  res.status(200);
  res.setHeader('content-type', 'text/event-stream; charset=utf-8');
  res.setHeader('cache-control', 'no-cache, no-transform');
  res.setHeader('x-accel-buffering', 'no');
  res.flushHeaders();
}

export function writeSse(res: Response, event: string, data: unknown, id?: string): void {
  res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

/**
 * Streams events after `afterId` until a terminal event. `isFinished` is asked when the stream is
 * idle, so a run whose events expired still ends the relay with its final state.
 */
export async function relayRunEvents(
  redis: Redis,
  res: Response,
  runId: string,
  afterId: string,
  isFinished: () => Promise<{ type: string; data: Record<string, unknown> } | null>,
): Promise<void> {
  // Blocking reads hold a connection; each relay uses its own.
  const reader = redis.duplicate();
  let closed = false;
  res.on('close', () => {
    closed = true;
    reader.disconnect();
  });
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
  let after = afterId;
  try {
    // A finished run has all its events already: read without waiting.
    let finished = await isFinished();
    while (!closed) {
      let events;
      try {
        events = await readRunEvents(reader, runId, after, finished ? null : BLOCK_MS);
      } catch (error) {
        if (closed) return;
        throw error;
      }
      for (const event of events) {
        writeSse(res, event.type, event.data, event.id);
        after = event.id;
        if (TERMINAL_RUN_EVENTS.has(event.type)) {
          res.end();
          return;
        }
      }
      if (events.length === 0) {
        finished = finished ?? (await isFinished());
        if (finished) {
          // Events expired: end with the final state from the database. Otherwise the client
          // already has the terminal event (it resumed after it): just end.
          if (!(await runEventsExist(reader, runId))) writeSse(res, finished.type, finished.data);
          res.end();
          return;
        }
        finished = await isFinished();
      }
    }
  } finally {
    clearInterval(keepalive);
    reader.disconnect();
  }
}
