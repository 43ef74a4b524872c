// The run event stream's delta batcher against real Redis: many replies' deltas share a tick's
// pipeline, each run's text arrives whole and in order, a failed append is its run's alone, and a
// discarded run appends nothing more.
import { randomUUID } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { appendRunEvent, readRunEvents, RunDeltaBatcher, runEventsKey } from '@deepspace/core';
import { testRedis } from '../support/stack.ts';

const redis = testRedis();
afterAll(async () => {
  await redis.quit();
});

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function deltasOf(runId: string): Promise<string[]> {
  const events = await readRunEvents(redis, runId, '0', null, 10_000);
  return events.filter((e) => e.type === 'message.delta').map((e) => e.data.content as string);
}

describe('RunDeltaBatcher', () => {
  it('appends 20 interleaved replies whole and in order, a tick at a time', async () => {
    const batcher = new RunDeltaBatcher(redis, 20);
    const runs = Array.from({ length: 20 }, () => randomUUID());
    const sent = new Map(runs.map((r) => [r, [] as string[]]));
    for (const runId of runs) await appendRunEvent(redis, runId, 'message.delta', { content: 'first ' });
    const streamed = Promise.all(
      runs.map(async (runId, lane) => {
        for (let token = 0; token < 30; token++) {
          const text = `r${lane}t${token} `;
          sent.get(runId)!.push(text);
          batcher.queue(runId, text);
          await delay(1 + ((lane + token) % 3));
        }
        await batcher.flushRun(runId);
        await appendRunEvent(redis, runId, 'message.completed', { content: 'done' });
      }),
    );
    await streamed;
    for (const runId of runs) {
      const events = await readRunEvents(redis, runId, '0', null, 10_000);
      const deltas = events.filter((e) => e.type === 'message.delta').map((e) => e.data.content as string);
      expect(deltas[0]).toBe('first ');
      expect(deltas.slice(1).join('')).toBe(sent.get(runId)!.join(''));
      // Coalesced: far fewer events than tokens, and the terminal event comes last.
      expect(deltas.length).toBeLessThan(25);
      expect(events.at(-1)!.type).toBe('message.completed');
    }
    await redis.del(...runs.map(runEventsKey));
  });

  it('a failed append is that run’s alone, and surfaces at its next call', async () => {
    const batcher = new RunDeltaBatcher(redis, 10);
    const good = randomUUID();
    const bad = randomUUID();
    // A plain string under the stream's key: XADD fails with WRONGTYPE for this run only.
    await redis.set(runEventsKey(bad), 'not a stream');
    batcher.queue(good, 'hello ');
    batcher.queue(bad, 'lost ');
    await delay(60);
    expect(() => batcher.queue(bad, 'more')).toThrow(/WRONGTYPE/);
    batcher.queue(good, 'world');
    await batcher.flushRun(good);
    expect((await deltasOf(good)).join('')).toBe('hello world');

    const bad2 = randomUUID();
    await redis.set(runEventsKey(bad2), 'not a stream');
    batcher.queue(bad2, 'x');
    await expect(batcher.flushRun(bad2)).rejects.toThrow(/WRONGTYPE/);
    await redis.del(runEventsKey(good), runEventsKey(bad), runEventsKey(bad2));
  });

  it('a discarded run appends nothing of what it had queued', async () => {
    const batcher = new RunDeltaBatcher(redis, 10);
    const runId = randomUUID();
    batcher.queue(runId, 'never ');
    batcher.discard(runId);
    await delay(50);
    expect(await deltasOf(runId)).toEqual([]);
    // The batcher goes on serving other runs.
    const other = randomUUID();
    batcher.queue(other, 'kept');
    await delay(50);
    expect(await deltasOf(other)).toEqual(['kept']);
    await batcher.flushRun(other);
    await redis.del(runEventsKey(other));
  });
});
