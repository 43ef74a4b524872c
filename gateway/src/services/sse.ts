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
 * Idle connections for the relays' blocking reads, per base client. A blocking XREAD holds its
 * connection, so each relay reads on one of its own; a new one per relay (connect, ready check)
 * cost ~0.85 ms of the gateway's CPU and 0.15 ms of Redis's here (probe, 500 each), against
 * ~0.06 and 0.03 ms for a read on a connection kept. A relay takes an idle one and gives it back
 * when it ends between reads; one whose client went away mid-read is closed (its read still blocks).
 */
const idleReaders = new WeakMap<Redis, Redis[]>();
const MAX_IDLE_READERS = 64;

function takeReader(redis: Redis): Redis {
  const idle = idleReaders.get(redis);
  while (idle?.length) {
    const reader = idle.pop()!;
    if (reader.status === 'ready') return reader;
    reader.disconnect();
  }
  return redis.duplicate();
}

function giveBackReader(redis: Redis, reader: Redis): void {
  let idle = idleReaders.get(redis);
  if (!idle) idleReaders.set(redis, (idle = []));
  if (reader.status !== 'ready' || idle.length >= MAX_IDLE_READERS) reader.disconnect();
  else idle.push(reader);
}

/** Closes the idle relay connections of `redis` (at shutdown, beside closing `redis` itself). */
export function closeRelayReaders(redis: Redis): void {
  for (const reader of idleReaders.get(redis)?.splice(0) ?? []) reader.disconnect();
}

/**
 * Streams events after `afterId` until a terminal event. `isFinished` is asked when the stream is
 * idle, so a run whose events expired still ends the relay with its final state; and first, unless
 * the run was `justStarted` by this request (it has no events yet and cannot have ended without them).
 */
export async function relayRunEvents(
  redis: Redis,
  res: Response,
  runId: string,
  afterId: string,
  isFinished: () => Promise<{ type: string; data: Record<string, unknown> } | null>,
  options: { justStarted?: boolean } = {},
): Promise<void> {
  const reader = takeReader(redis);
  let closed = false;
  let reading = false;
  let released = false;
  res.on('close', () => {
    closed = true;
    // A blocked read would hold the connection until its timeout: close it. Between reads, the
    // relay gives it back itself.
    if (reading && !released) {
      released = true;
      reader.disconnect();
    }
  });
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
  let after = afterId;
  let healthy = true;
  try {
    // A finished run has all its events already: read without waiting.
    let finished = options.justStarted ? null : await isFinished();
    while (!closed) {
      let events;
      try {
        reading = true;
        events = await readRunEvents(reader, runId, after, finished ? null : BLOCK_MS);
      } catch (error) {
        healthy = false;
        if (closed) return;
        throw error;
      } finally {
        reading = false;
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
  } catch (error) {
    healthy = false;
    throw error;
  } finally {
    clearInterval(keepalive);
    if (!released) {
      released = true;
      if (healthy) giveBackReader(redis, reader);
      else reader.disconnect();
    }
  }
}
