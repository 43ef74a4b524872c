// The SSE relay (gateway/src/services/sse.ts) over real HTTP and Redis: relays reuse their blocking
// read connections instead of opening one each, a client gone mid-read closes its connection (its
// read still blocks) without breaking the next relay, and a run this request just started is not
// looked up in the database before the first read.
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express from 'express';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appendRunEvent } from '@deepspace/core';
import { closeRelayReaders, openSse, relayRunEvents } from '../../gateway/src/services/sse.ts';
import { collectSse } from '../support/sse.ts';
import { testConfig } from '../support/gateway-stack.ts';

const config = testConfig();
// The relay's base client; its duplicates (the relays' readers) carry the same connection name, so
// the server's CLIENT LIST counts them apart from every other test's connections.
const connectionName = `relay-test-${randomUUID().slice(0, 8)}`;
const base = new Redis(config.redis.url, { keyPrefix: config.redis.keyPrefix, connectionName });
const writer = new Redis(config.redis.url, { keyPrefix: config.redis.keyPrefix });
const finishedLookups: string[] = [];
let server: Server;
let url: string;

beforeAll(async () => {
  const app = express();
  app.get('/runs/:runId/events', async (req, res) => {
    openSse(res);
    await relayRunEvents(base, res, req.params.runId, '0', async () => {
      finishedLookups.push(req.params.runId);
      return null;
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
  closeRelayReaders(base);
  await Promise.allSettled([base.quit(), writer.quit()]);
});

async function relayConnections(): Promise<number> {
  const list = (await writer.client('LIST')) as string;
  // The base client itself is one of them.
  return list.split('\n').filter((line) => line.includes(` name=${connectionName} `)).length - 1;
}

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function relayed(runId: string, justStarted = false) {
  const res = await fetch(`${url}/runs/${runId}/events${justStarted ? '?just_started=1' : ''}`);
  return collectSse(res);
}

describe('SSE relay', () => {
  it('relays runs one after another on one kept connection, each run whole and in order', async () => {
    await base.ping();
    for (let i = 0; i < 6; i++) {
      const runId = randomUUID();
      // The relay blocks on the empty stream first; the events arrive while it waits.
      const events = relayed(runId, true);
      await delay(30);
      await appendRunEvent(writer, runId, 'run.started', { run_id: runId });
      await appendRunEvent(writer, runId, 'message.delta', { content: `hello ${i}` });
      await appendRunEvent(writer, runId, 'message.completed', { content: `hello ${i}` });
      expect((await events).map((e) => [e.event, e.data.content ?? null])).toEqual([
        ['run.started', null],
        ['message.delta', `hello ${i}`],
        ['message.completed', `hello ${i}`],
      ]);
    }
    // One reader served all six (a relay gives it back when its run ends).
    expect(await relayConnections()).toBe(1);
  });

  it('closes the reader of a client that leaves mid-read, and the next relay still works', async () => {
    const before = await relayConnections();
    const runId = randomUUID();
    const controller = new AbortController();
    const res = await fetch(`${url}/runs/${runId}/events?just_started=1`, { signal: controller.signal });
    expect(res.status).toBe(200);
    await delay(50);
    // The relay now blocks in XREAD on the kept connection: leaving closes that connection.
    controller.abort();
    let after = before;
    for (let i = 0; i < 50 && after >= before; i++) {
      await delay(20);
      after = await relayConnections();
    }
    expect(after).toBe(before - 1);

    const next = randomUUID();
    await appendRunEvent(writer, next, 'run.started', { run_id: next });
    await appendRunEvent(writer, next, 'run.failed', { code: 'upstream_error' });
    expect((await relayed(next)).map((e) => e.event)).toEqual(['run.started', 'run.failed']);
  });

  it('asks whether the run finished before the first read, except for a run this request just started', async () => {
    const started = randomUUID();
    const events = relayed(started, true);
    await delay(30);
    await appendRunEvent(writer, started, 'message.completed', { content: 'done' });
    await events;
    expect(finishedLookups).not.toContain(started);

    const resumed = randomUUID();
    await appendRunEvent(writer, resumed, 'message.completed', { content: 'done' });
    await relayed(resumed);
    expect(finishedLookups).toContain(resumed);
  });

  it('closes its idle connections on closeRelayReaders', async () => {
    expect(await relayConnections()).toBeGreaterThan(0);
    closeRelayReaders(base);
    let left = 1;
    for (let i = 0; i < 50 && left > 0; i++) {
      await delay(20);
      left = await relayConnections();
    }
    expect(left).toBe(0);
  });
});
