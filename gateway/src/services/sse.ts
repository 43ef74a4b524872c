// Relays a run's Redis Stream as Server-Sent Events. Event ids are the stream entry ids, so a
// client that reconnects with Last-Event-ID gets exactly the events after it. A client going away
// only stops the relay; the run goes on and its result is saved by the worker.
import type { Response } from 'express';
import { readRunEvents, runEventsExist, TERMINAL_RUN_EVENTS, type Redis, type RunEvent } from '@deepspace/core';
import { RunEventHub } from './run-event-hub.ts';

/** A relay that heard nothing for this long asks whether its run finished (its events may have expired). */
const IDLE_CHECK_MS = 5_000;
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

const hubs = new WeakMap<Redis, RunEventHub>();

/** The process's run event hub on `redis` (one blocking connection for every relay). */
export function runEventHub(redis: Redis): RunEventHub {
  let hub = hubs.get(redis);
  if (!hub) hubs.set(redis, (hub = new RunEventHub(redis)));
  return hub;
}

/** Closes the hub's connection (at shutdown, beside closing `redis` itself). */
export function closeRunEventHub(redis: Redis): void {
  hubs.get(redis)?.close();
  hubs.delete(redis);
}

type FinalEvent = { type: string; data: Record<string, unknown> };

/**
 * Streams events after `afterId` until a terminal event. A run that has finished is read out
 * without waiting; otherwise the relay follows the run through the process's hub, and when it has
 * heard nothing for a while asks `isFinished`, so a run whose events expired still ends the relay
 * with its final state. `isFinished` is asked first too, unless the run was `justStarted` by this
 * request (it has no events yet and cannot have ended without them).
 */
export async function relayRunEvents(
  redis: Redis,
  res: Response,
  runId: string,
  afterId: string,
  isFinished: () => Promise<FinalEvent | null>,
  options: { justStarted?: boolean } = {},
): Promise<void> {
  let after = afterId;
  let closed = false;
  res.on('close', () => {
    closed = true;
  });
  const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
  /** Writes events; true once the terminal one is out. */
  const write = (events: RunEvent[]): boolean => {
    for (const event of events) {
      writeSse(res, event.type, event.data, event.id);
      after = event.id;
      if (TERMINAL_RUN_EVENTS.has(event.type)) return true;
    }
    return false;
  };
  /** A finished run: what is left of its stream, then its final state if the stream expired. */
  const drain = async (finished: FinalEvent): Promise<void> => {
    for (;;) {
      const events = await readRunEvents(redis, runId, after, null);
      if (write(events)) return;
      if (events.length === 0) break;
    }
    // Events expired: end with the final state from the database. Otherwise the client already
    // has the terminal event (it resumed after it).
    if (!(await runEventsExist(redis, runId))) writeSse(res, finished.type, finished.data);
  };
  try {
    const finishedAtStart = options.justStarted ? null : await isFinished();
    if (finishedAtStart) return await drain(finishedAtStart);
    if (closed) return;
    const finishedLater = await new Promise<FinalEvent | null>((resolve, reject) => {
      let idleTimer: NodeJS.Timeout | undefined;
      let unsubscribe = () => {};
      const end = (outcome: { finished: FinalEvent | null } | { error: unknown }) => {
        clearTimeout(idleTimer);
        unsubscribe();
        res.off('close', onClose);
        if ('error' in outcome) reject(outcome.error);
        else resolve(outcome.finished);
      };
      const onClose = () => end({ finished: null });
      const armIdleCheck = () => {
        clearTimeout(idleTimer);
        idleTimer = setTimeout(() => {
          isFinished().then(
            (finished) => (finished ? end({ finished }) : armIdleCheck()),
            (error: unknown) => end({ error }),
          );
        }, IDLE_CHECK_MS);
      };
      res.on('close', onClose);
      unsubscribe = runEventHub(redis).subscribe(
        runId,
        after,
        (events) => {
          if (write(events)) end({ finished: null });
          else armIdleCheck();
        },
        (error) => end({ error }),
      );
      armIdleCheck();
    });
    if (finishedLater && !closed) await drain(finishedLater);
  } finally {
    clearInterval(keepalive);
    if (!res.writableEnded) res.end();
  }
}
