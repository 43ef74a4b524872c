// The SSE relay (gateway/src/services/sse.ts) and its run event hub over real HTTP and Redis: every
// open relay of a process shares one blocking read (one Redis connection, however many streams are
// open), a relay that opens while that read blocks gets its events at once, a client gone mid-run
// only ends its subscription, two clients of one run each get exactly the events after their own
// Last-Event-ID, and a run this request just started is not looked up before the first read.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendRunEvent, createRedis } from '@deepspace/core';
import { closeRunEventHub, openSse, relayRunEvents, runEventHub } from '../../gateway/src/services/sse.ts';
import { collectSse } from '../support/sse.ts';
import { testConfig } from '../support/gateway-stack.ts';

const config = testConfig();
const base = createRedis(config.redis.url, config.redis.keyPrefix);
const writer = createRedis(config.redis.url, config.redis.keyPrefix);
const finishedLookups: string[] = [];
/** Runs the relay's isFinished reports as finished (with this final event). */
const finishedRuns = new Map<string, { type: string; data: Record<string, unknown> }>();
let server: Server;
let url: string;

beforeAll(async () => {
  const app = express();
  app.get('/runs/:runId/events', async (req, res) => {
    const runId = req.params.runId;
    openSse(res);
    const lastEventId = req.header('last-event-id');
    await relayRunEvents(base, res, runId, lastEventId ?? '0', async () => {
      finishedLookups.push(runId);
      return finishedRuns.get(runId) ?? null;
    }, { justStarted: req.query.just_started === '1' }).catch(() => undefined);
  });
  server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  closeRunEventHub(base);
  await Promise.allSettled([base.quit(), writer.quit()]);
});

/** Connections of this process's hub on `base`, from the server's client list. */
async function hubConnections(): Promise<number> {
  const list = (await writer.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string;
  return list.split('\n').filter((line) => line.includes(` name=${runEventHub(base).readerName} `)).length;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until(check: () => boolean | Promise<boolean>, ms = 3_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await delay(10);
  }
}

function relayed(runId: string, options: { justStarted?: boolean; lastEventId?: string } = {}) {
  return fetch(`${url}/runs/${runId}/events${options.justStarted ? '?just_started=1' : ''}`, {
    headers: options.lastEventId ? { 'last-event-id': options.lastEventId } : {},
  }).then((res) => collectSse(res));
}

describe('SSE relay through the run event hub', () => {
  it('relays 20 open runs at once on one Redis connection, each run whole and in order', async () => {
    const runs = Array.from({ length: 20 }, () => randomUUID());
    const streams = runs.map((runId) => relayed(runId, { justStarted: true }));
    await until(() => runEventHub(base).subscriptions === 20);
    expect(await hubConnections()).toBe(1);
    for (let token = 0; token < 5; token++) {
      // As the worker does: one pipeline per tick with every reply's new text.
      const tick = writer.pipeline();
      for (const runId of runs) tick.xadd(`run:${runId}:events`, '*', 'type', 'message.delta', 'data', JSON.stringify({ content: `${runId.slice(0, 4)}-${token} ` }));
      await tick.exec();
      await delay(5);
    }
    for (const runId of runs) await appendRunEvent(writer, runId, 'message.completed', { content: 'done' });
    const results = await Promise.all(streams);
    results.forEach((events, i) => {
      expect(events.map((e) => e.event)).toEqual([...Array(5).fill('message.delta'), 'message.completed']);
      expect(events.slice(0, 5).map((e) => e.data.content).join('')).toBe([0, 1, 2, 3, 4].map((t) => `${runs[i]!.slice(0, 4)}-${t} `).join(''));
    });
    expect(runEventHub(base).subscriptions).toBe(0);
    expect(await hubConnections()).toBe(1);
  });

  it('a relay that opens while the shared read blocks gets its events at once, not when that read times out', async () => {
    const waiting = randomUUID();
    const waitingEvents = relayed(waiting, { justStarted: true });
    await until(() => runEventHub(base).subscriptions === 1);
    await delay(100); // the hub now blocks (up to 5 s) on the first run's stream alone
    const joined = randomUUID();
    const startedAt = Date.now();
    const joinedEvents = relayed(joined, { justStarted: true });
    await until(() => runEventHub(base).subscriptions === 2);
    await appendRunEvent(writer, joined, 'run.started', { run_id: joined });
    await appendRunEvent(writer, joined, 'message.completed', { content: 'quick' });
    expect((await joinedEvents).map((e) => e.event)).toEqual(['run.started', 'message.completed']);
    expect(Date.now() - startedAt).toBeLessThan(1_500);
    await appendRunEvent(writer, waiting, 'run.failed', { code: 'upstream_error' });
    expect((await waitingEvents).map((e) => e.event)).toEqual(['run.failed']);
  });

  it('a client that leaves mid-run only ends its subscription; two clients of one run each resume after their own Last-Event-ID', async () => {
    const runId = randomUUID();
    const controller = new AbortController();
    const res = await fetch(`${url}/runs/${runId}/events?just_started=1`, { signal: controller.signal });
    expect(res.status).toBe(200);
    await until(() => runEventHub(base).subscriptions === 1);
    controller.abort();
    await until(() => runEventHub(base).subscriptions === 0);
    expect(await hubConnections()).toBe(1);

    const first = await appendRunEvent(writer, runId, 'run.started', { run_id: runId });
    const second = await appendRunEvent(writer, runId, 'message.delta', { content: 'a' });
    const fromFirst = relayed(runId, { lastEventId: first });
    const fromSecond = relayed(runId, { lastEventId: second });
    await until(() => runEventHub(base).subscriptions === 2);
    await appendRunEvent(writer, runId, 'message.delta', { content: 'b' });
    await appendRunEvent(writer, runId, 'message.completed', { content: 'ab' });
    expect((await fromFirst).map((e) => e.data.content ?? e.event)).toEqual(['a', 'b', 'ab']);
    expect((await fromSecond).map((e) => e.data.content ?? e.event)).toEqual(['b', 'ab']);
  });

  it('asks whether the run finished before the first read, except for a run this request just started; a finished run is read out at once', async () => {
    const started = randomUUID();
    const events = relayed(started, { justStarted: true });
    await until(() => runEventHub(base).subscriptions === 1);
    await appendRunEvent(writer, started, 'message.completed', { content: 'done' });
    await events;
    expect(finishedLookups).not.toContain(started);

    const finished = randomUUID();
    await appendRunEvent(writer, finished, 'run.started', { run_id: finished });
    await appendRunEvent(writer, finished, 'run.completed', { outputs: {} });
    finishedRuns.set(finished, { type: 'run.completed', data: { outputs: {} } });
    expect((await relayed(finished)).map((e) => e.event)).toEqual(['run.started', 'run.completed']);
    expect(finishedLookups).toContain(finished);
  });

  it('ends a run whose events expired with its final state once it has been quiet for a while', async () => {
    const expired = randomUUID();
    const events = relayed(expired, { justStarted: true });
    await until(() => runEventHub(base).subscriptions === 1);
    finishedRuns.set(expired, { type: 'run.failed', data: { code: 'cancelled' } });
    // The relay asks after 5 s without events; no stream exists, so it sends the final state.
    expect((await events).map((e) => [e.event, e.data.code])).toEqual([['run.failed', 'cancelled']]);
    expect(runEventHub(base).subscriptions).toBe(0);
  }, 15_000);

  it('keeps relaying when its connection drops: the read resumes on the new connection, and a relay that opens then still joins at once', async () => {
    const before = randomUUID();
    const beforeEvents = relayed(before, { justStarted: true });
    await until(() => runEventHub(base).subscriptions === 1);
    await delay(100);
    const list = (await writer.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string;
    const line = list.split('\n').find((l) => l.includes(` name=${runEventHub(base).readerName} `))!;
    const readerId = /(?:^|\s)id=(\d+)/.exec(line)![1]!;
    await writer.call('CLIENT', 'KILL', 'ID', readerId);
    await until(async () => {
      const now = (await writer.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string;
      return now.split('\n').some((l) => l.includes(` name=${runEventHub(base).readerName} `) && !l.includes(`id=${readerId} `));
    });
    const after = randomUUID();
    const startedAt = Date.now();
    const afterEvents = relayed(after, { justStarted: true });
    await until(() => runEventHub(base).subscriptions === 2);
    await appendRunEvent(writer, after, 'message.completed', { content: 'after' });
    expect((await afterEvents).map((e) => e.event)).toEqual(['message.completed']);
    expect(Date.now() - startedAt).toBeLessThan(1_500);
    await appendRunEvent(writer, before, 'message.completed', { content: 'before' });
    expect((await beforeEvents).map((e) => e.event)).toEqual(['message.completed']);
    expect(await hubConnections()).toBe(1);
  });

  it('closes its connection on closeRunEventHub', async () => {
    expect(await hubConnections()).toBe(1);
    const name = runEventHub(base).readerName;
    closeRunEventHub(base);
    await until(async () => !((await writer.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string).includes(` name=${name} `));
  });
});
