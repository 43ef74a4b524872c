// The model catalog's in-memory cache against the real database: one query for any number of
// concurrent callers, stale copies served while a shared reload runs (no call waits for the
// catalog past its TTL), and a copy too old not served at all.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';
import type { PgPool } from '@deepspace/core';
import { addPrice, newModel, testPool } from './billing-fixtures.ts';

let pool: PgPool;
beforeAll(() => {
  pool = testPool(4);
});
afterAll(async () => {
  await pool.end();
});

/** A pool whose connections count the statements they run (and answer `answerDelayMs` late). */
function countingPool(answerDelayMs = 0): { pool: PgPool; statements: () => number } {
  const counted = testPool(8);
  let statements = 0;
  counted.on('connect', (client) => {
    const query = client.query.bind(client) as (...args: unknown[]) => Promise<unknown>;
    (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
      statements++;
      if (!answerDelayMs) return query(...args);
      const callback = args.at(-1);
      if (typeof callback === 'function') {
        return query(...args.slice(0, -1), (...answer: unknown[]) => setTimeout(() => (callback as (...a: unknown[]) => void)(...answer), answerDelayMs));
      }
      return query(...args).then(async (result) => (await sleep(answerDelayMs), result));
    };
  });
  return { pool: counted, statements: () => statements };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually<T>(read: () => Promise<T | undefined>, timeoutMs = 5_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(10);
  }
}

describe('ModelCatalog cache', () => {
  it('concurrent callers of a cold cache share one query, and a fresh cache runs none', async () => {
    const { pool: counted, statements } = countingPool();
    try {
      const model = await newModel(pool, { input: 1_000_000n, output: 2_000_000n });
      const catalog = new ModelCatalog(counted);
      const maps = await Promise.all(Array.from({ length: 20 }, () => catalog.all()));
      expect(statements()).toBe(1);
      expect(new Set(maps).size).toBe(1);
      expect(maps[0]!.get(model.name)).toMatchObject({ id: model.modelId, upstreamModel: model.upstreamModel });
      const prices = await Promise.all(Array.from({ length: 20 }, () => catalog.priceAt(model.modelId)));
      expect(statements()).toBe(2);
      expect(prices.every((p) => p?.id === model.priceId && p.outputMicrosPerMillion === 2_000_000n)).toBe(true);
      await catalog.all();
      await catalog.priceAt(model.modelId);
      expect(statements()).toBe(2);
    } finally {
      await counted.end();
    }
  });

  it('past its TTL the stale copy answers at once while one shared reload runs; the reload brings the changes', async () => {
    const { pool: counted, statements } = countingPool();
    try {
      const catalog = new ModelCatalog(counted, { ttlMs: 1_000 });
      const first = await newModel(pool, { input: 1_000_000n, output: 1_000_000n });
      const before = await catalog.all();
      const firstPrice = await catalog.priceAt(first.modelId);
      expect(statements()).toBe(2);

      // Changes made after the load: a new model, and a newer price of the first one.
      const added = await newModel(pool, { input: 1_000_000n, output: 1_000_000n });
      const newerPriceId = await addPrice(pool, first.modelId, { input: 3_000_000n, output: 3_000_000n, effectiveFrom: new Date(Date.now() - 1_000) });
      await sleep(1_100);

      // Stale (past the TTL, within twice it): every caller gets the copy it had, and only one reload of each cache starts.
      const stale = await Promise.all(Array.from({ length: 10 }, () => catalog.all()));
      const stalePrices = await Promise.all(Array.from({ length: 10 }, () => catalog.priceAt(first.modelId)));
      expect(stale.every((m) => m === before)).toBe(true);
      expect(before.has(added.name)).toBe(false);
      expect(stalePrices.every((p) => p?.id === firstPrice!.id)).toBe(true);

      const reloaded = await eventually(async () => ((await catalog.all()).has(added.name) ? catalog.all() : undefined));
      expect(reloaded.get(added.name)).toMatchObject({ id: added.modelId });
      const reloadedPrice = await eventually(async () => {
        const price = await catalog.priceAt(first.modelId);
        return price?.id === newerPriceId ? price : undefined;
      });
      expect(reloadedPrice.inputMicrosPerMillion).toBe(3_000_000n);
      expect(statements()).toBe(4);
    } finally {
      await counted.end();
    }
  });

  it('a copy older than twice the TTL is not served: callers wait for the reload', async () => {
    const { pool: counted, statements } = countingPool();
    try {
      const catalog = new ModelCatalog(counted, { ttlMs: 100 });
      await catalog.all();
      const added = await newModel(pool, { input: 1_000_000n, output: 1_000_000n });
      await sleep(250);
      const models = await catalog.all();
      expect(models.has(added.name)).toBe(true);
      expect(statements()).toBe(2);
    } finally {
      await counted.end();
    }
  });

  it('invalidate() drops the copy, and a reload begun before it does not bring the old one back', async () => {
    // Answers arrive 300 ms late: the load reads the catalog before the change and returns after it.
    const { pool: counted } = countingPool(300);
    try {
      const catalog = new ModelCatalog(counted);
      await counted.query('SELECT 1'); // a connection open, so the load's query goes out at once
      const loading = catalog.all();
      await sleep(50);
      const added = await newModel(pool, { input: 1_000_000n, output: 1_000_000n });
      catalog.invalidate();
      expect((await loading).has(added.name)).toBe(false);
      expect((await catalog.all()).has(added.name)).toBe(true);
    } finally {
      await counted.end();
    }
  });
});
