// The inline /v1 money path's shortcuts keep every ledger guarantee: captures that trust what the
// caller knows of its hold, settlements that write their audit (and usage) rows themselves,
// pipelined group-commit batches that commit asynchronously behind a flush barrier, visible-only
// holds, leased rate-limit tokens and the cached token count.
import { Tiktoken } from 'js-tiktoken/lite';
import o200k_base from 'js-tiktoken/ranks/o200k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { callCostMicros, countTokens, createPgPool, Ledger, reconcile, warmPool, type PgPool, type SettlementAudit } from '@deepspace/core';
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { RELAXED_APPLICATION_SUFFIX } from '@deepspace/core/billing/index';
import { RateLimiter } from '../../gateway/src/services/rate-limit.ts';
import { testRedis } from '../support/stack.ts';
import { ADMIN, countRows, expectAppError, fundedWallet, key, newModel, testPool, trace } from './billing-fixtures.ts';

let pool: PgPool;
let ledger: Ledger;

beforeAll(() => {
  pool = testPool(10);
  ledger = new Ledger(pool);
});
afterAll(async () => {
  await pool.end();
});

const PRICE = { input: 150_000n, output: 600_000n };
const rates = { inputMicrosPerMillion: PRICE.input, outputMicrosPerMillion: PRICE.output };

function audit(traceId: string, details: Record<string, unknown>): SettlementAudit {
  return {
    traceId, actorType: 'api_key', actorId: 'key-1', action: 'ai.call', resourceType: 'model', resourceId: 'm', orgId: null,
    projectId: null, result: 'success', ip: '127.0.0.1', userAgent: 'test', details,
  };
}

async function heldCall(label: string, amount = 10_000n) {
  const wallet = await fundedWallet(ledger, label, 1_000_000n);
  const model = await newModel(pool, PRICE);
  const t = trace();
  const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: amount, modelId: model.modelId, priceId: model.priceId, idempotencyKey: key('hold'), traceId: t });
  const usage = { promptTokens: 1_000, completionTokens: 2_000, traceId: t, modelName: model.name, upstreamModel: model.upstreamModel };
  return { wallet, model, t, held, usage };
}

describe('captures that say what they know of the hold', () => {
  it('a capture with the right amount and price charges exactly what the general path would, and writes its audit row with it', async () => {
    const { wallet, held, usage, t } = await heldCall('known-ok');
    const result = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('cap'), usage, known: { amountMicros: 10_000n, price: rates }, audit: audit(t, { n: 1 }) });
    // 1000 × 0.15 + 2000 × 0.60 = 150 + 1200 micros.
    expect(result).toMatchObject({ replayed: false, costMicros: 1_350n, chargedMicros: 1_350n, releasedMicros: 8_650n });
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 998_650n, frozenMicros: 0n });
    const rows = await pool.query(`SELECT result, details, org_id FROM audit_logs WHERE trace_id = $1 AND action = 'ai.call'`, [t]);
    expect(rows.rows).toEqual([{ result: 'success', details: { n: 1 }, org_id: wallet.orgId }]);
    expect(await countRows(pool, 'SELECT 1 FROM usage_records WHERE hold_id = $1 AND cost_micros = 1350', [held.hold.id])).toBe(1);
  });

  it('a stale guess (another amount, or other rates) writes nothing by itself and is priced from the hold as stored', async () => {
    for (const known of [{ amountMicros: 20_000n, price: rates }, { amountMicros: 10_000n, price: { inputMicrosPerMillion: 1n, outputMicrosPerMillion: 1n } }]) {
      const { held, usage, t } = await heldCall('known-stale');
      const result = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('cap'), usage, known, audit: audit(t, {}) });
      expect(result).toMatchObject({ replayed: false, costMicros: 1_350n, chargedMicros: 1_350n });
      expect(await countRows(pool, `SELECT 1 FROM audit_logs WHERE trace_id = $1 AND action = 'ai.call'`, [t])).toBe(1);
    }
  });

  it('a replayed capture returns the first one and writes no second audit or usage row', async () => {
    const { held, usage, t } = await heldCall('known-replay');
    const input = { holdId: held.hold.id, idempotencyKey: key('cap'), usage, known: { amountMicros: 10_000n, price: rates }, audit: audit(t, {}) };
    const [a, b] = await Promise.all([ledger.capture(input), ledger.capture(input)]);
    expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
    expect(a.transaction.id).toBe(b.transaction.id);
    expect(await countRows(pool, `SELECT 1 FROM audit_logs WHERE trace_id = $1`, [t])).toBe(1);
    expect(await countRows(pool, `SELECT 1 FROM usage_records WHERE hold_id = $1`, [held.hold.id])).toBe(1);
  });

  it('a cost above the hold still takes the locked overage path', async () => {
    const { held, usage, t } = await heldCall('known-overage', 1_000n);
    const result = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('cap'), usage, known: { amountMicros: 1_000n, price: rates }, audit: audit(t, {}) });
    expect(result).toMatchObject({ costMicros: 1_350n, chargedMicros: 1_350n, uncollectedMicros: 0n });
    expect(await countRows(pool, `SELECT 1 FROM audit_logs WHERE trace_id = $1`, [t])).toBe(1);
  });
});

describe('releases that record the failed call', () => {
  it('the zero-cost usage row and the audit row go with the release, once', async () => {
    const { wallet, held, model, t } = await heldCall('release-record');
    const input = {
      holdId: held.hold.id,
      idempotencyKey: key('rel'),
      reason: 'upstream_error',
      record: { usage: { traceId: t, modelName: model.name, upstreamModel: model.upstreamModel, errorCode: 'upstream_error', latencyMs: 12 }, audit: { ...audit(t, { error: 'upstream_error' }), result: 'failure' as const } },
    };
    const first = await ledger.release(input);
    const again = await ledger.release(input);
    expect([first.replayed, again.replayed]).toEqual([false, true]);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 1_000_000n, frozenMicros: 0n });
    const usage = await pool.query(`SELECT status, error_code, cost_micros::text AS cost, latency_ms FROM usage_records WHERE hold_id = $1`, [held.hold.id]);
    expect(usage.rows).toEqual([{ status: 'error', error_code: 'upstream_error', cost: '0', latency_ms: 12 }]);
    expect(await countRows(pool, `SELECT 1 FROM audit_logs WHERE trace_id = $1 AND result = 'failure'`, [t])).toBe(1);
  });
});

describe('group commit', () => {
  it('a batch with a failing statement is rolled back and re-run write by write: only that write fails', async () => {
    const wallet = await fundedWallet(ledger, 'batch-rerun', 1_000_000n);
    const shared = key('shared');
    const before = ledger.writes.stats.rerunBatches;
    // One write goes at once; the rest queue behind it and form one batch, where the second use of
    // `shared` (other parameters) makes the statement fail.
    const results = await Promise.allSettled([
      ledger.hold({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: key('first') }),
      ledger.hold({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: shared }),
      ledger.hold({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: key('ok-1') }),
      ledger.hold({ orgId: wallet.orgId, amountMicros: 200n, idempotencyKey: shared }),
      ledger.hold({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: key('ok-2') }),
    ]);
    expect(results.map((r) => (r.status === 'fulfilled' ? 'ok' : (r.reason as { code: string }).code))).toEqual(['ok', 'ok', 'ok', 'idempotency_conflict', 'ok']);
    expect(ledger.writes.stats.rerunBatches).toBeGreaterThan(before);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ frozenMicros: 400n });
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('a visible-only hold reserves the money for every other transaction at once', async () => {
    const wallet = await fundedWallet(ledger, 'visible-hold', 1_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 600n, idempotencyKey: key('visible'), durable: false });
    const other = testPool(1);
    try {
      const { rows } = await other.query(`SELECT status FROM holds WHERE id = $1`, [held.hold.id]);
      expect(rows[0]?.status).toBe('active');
      await expectAppError(new Ledger(other).hold({ orgId: wallet.orgId, amountMicros: 600n, idempotencyKey: key('too-much') }), 'insufficient_funds');
    } finally {
      await other.end();
    }
  });

  it('a lone visible-only hold is one autocommit statement on the relaxed connections; durable writes never go there; end() closes them', async () => {
    const name = `hot-path-${randomUUID().slice(0, 8)}`;
    const own = new pg.Pool({ connectionString: process.env.DATABASE_URL!, max: 4, application_name: name });
    const ownLedger = new Ledger(own);
    const relaxedBackends = () =>
      pool.query<{ query: string; state: string }>(
        `SELECT query, state FROM pg_stat_activity WHERE application_name = $1`,
        [name + RELAXED_APPLICATION_SUFFIX],
      ).then((r) => r.rows);
    try {
      const wallet = await fundedWallet(ownLedger, 'relaxed-hold', 10_000n);
      const t = trace();
      const held = await ownLedger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('relaxed'), traceId: t, durable: false });
      expect(held.hold.status).toBe('active');
      let mine = await relaxedBackends();
      // Its last statement is the hold itself, and no transaction is left open (no BEGIN around it).
      expect(mine).toHaveLength(1);
      expect(mine[0]).toMatchObject({ state: 'idle' });
      expect(mine[0]!.query).toMatch(/INSERT INTO holds/);
      // A durable capture takes the normal path: the relaxed connection's last statement is still the hold.
      await ownLedger.capture({ holdId: held.hold.id, idempotencyKey: key('relaxed-cap'), usage: { promptTokens: 1, completionTokens: 1, traceId: t, modelName: 'm', upstreamModel: 'm' }, costMicros: 400n, known: { amountMicros: 1_000n } });
      mine = await relaxedBackends();
      expect(mine).toHaveLength(1);
      expect(mine[0]!.query).toMatch(/INSERT INTO holds/);
      expect(await ownLedger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 9_600n, frozenMicros: 0n });
      await ownLedger.end();
      for (let i = 0; i < 50 && (await relaxedBackends()).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await relaxedBackends()).toEqual([]);
    } finally {
      await ownLedger.end();
      await own.end();
    }
  });

  it('service pools keep their connections, opened up front; so does the ledger’s relaxed pool beside one', async () => {
    const service = createPgPool(process.env.DATABASE_URL!, 3, { keepConnections: true });
    const plain = createPgPool(process.env.DATABASE_URL!, 3);
    try {
      expect(await warmPool(service)).toBe(3);
      expect({ total: service.totalCount, idle: service.idleCount }).toEqual({ total: 3, idle: 3 });
      // No idle timeout: pg closes an idle connection only when this is non-zero.
      expect((service as PgPool & { options: { idleTimeoutMillis: number } }).options.idleTimeoutMillis).toBe(0);
      expect((plain as PgPool & { options: { idleTimeoutMillis: number } }).options.idleTimeoutMillis).toBe(10_000);
    } finally {
      await service.end();
      await plain.end();
    }

    const name = `hot-path-keep-${randomUUID().slice(0, 8)}`;
    const kept = new pg.Pool({ connectionString: process.env.DATABASE_URL!, max: 8, application_name: name, idleTimeoutMillis: 0 });
    const keptLedger = new Ledger(kept);
    try {
      const wallet = await fundedWallet(keptLedger, 'relaxed-keep', 10_000n);
      await keptLedger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('relaxed-keep'), durable: false });
      const count = async () => (await pool.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1`, [name + RELAXED_APPLICATION_SUFFIX])).rows[0].n as number;
      for (let i = 0; i < 50 && (await count()) < 4; i++) await new Promise((r) => setTimeout(r, 20));
      expect(await count()).toBe(4);
    } finally {
      await keptLedger.end();
      await kept.end();
    }
  });

  it('concurrent visible holds and durable captures on one wallet stay exact', async () => {
    const wallet = await fundedWallet(ledger, 'mixed-batches', 100_000n);
    await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const t = trace();
        const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key(`h${i}`), traceId: t, durable: false });
        await ledger.capture({ holdId: held.hold.id, idempotencyKey: key(`c${i}`), usage: { promptTokens: 1, completionTokens: 1, traceId: t, modelName: 'm', upstreamModel: 'm' }, costMicros: 250n, known: { amountMicros: 1_000n } });
      }),
    );
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 90_000n, frozenMicros: 0n });
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });
});

describe('coalesced captures (one statement for many)', () => {
  /** Holds `n` calls of different sizes on one wallet; each capture's cost differs too. */
  async function heldCalls(label: string, n: number, funded = 10_000_000n) {
    const wallet = await fundedWallet(ledger, label, funded);
    const model = await newModel(pool, PRICE);
    const calls = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const t = trace();
        const amount = 5_000n + BigInt(i) * 1_000n;
        const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: amount, modelId: model.modelId, priceId: model.priceId, idempotencyKey: key(`h${i}`), traceId: t, durable: false });
        const usage = { promptTokens: 100 * (i + 1), completionTokens: 50 + i, traceId: t, modelName: model.name, upstreamModel: model.upstreamModel, latencyMs: i };
        const cost = callCostMicros(rates, usage.promptTokens, usage.completionTokens);
        return { i, t, amount, held, usage, cost };
      }),
    );
    return { wallet, model, calls };
  }

  it('captures written together charge each call exactly, keep an unbroken transaction chain and write every usage and audit row', async () => {
    const { wallet, calls } = await heldCalls('coalesced', 30);
    const before = { ...ledger.captures.stats };
    const results = await Promise.all(
      calls.map((c) =>
        ledger.capture({
          holdId: c.held.hold.id, idempotencyKey: key(`c${c.i}`), usage: c.usage, known: { amountMicros: c.amount, price: rates }, orgId: wallet.orgId,
          coalesceMs: 50, ...(c.i % 3 === 0 ? {} : { audit: audit(c.t, { i: c.i }) }),
        }),
      ),
    );
    // All 30 waited for one statement (the window is long enough for them to queue).
    expect(ledger.captures.stats.statements - before.statements).toBe(1);
    expect(ledger.captures.stats.captures - before.captures).toBe(30);
    const totalCost = calls.reduce((sum, c) => sum + c.cost, 0n);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000_000n - totalCost, frozenMicros: 0n });
    results.forEach((r, i) => {
      const c = calls[i]!;
      expect(r).toMatchObject({ replayed: false, costMicros: c.cost, chargedMicros: c.cost, releasedMicros: c.amount - c.cost, uncollectedMicros: 0n });
      expect(r.hold).toMatchObject({ id: c.held.hold.id, status: 'captured', capturedMicros: c.cost });
      expect(r.transaction).toMatchObject({ kind: 'capture', amountMicros: -c.cost, traceId: c.t, holdId: c.held.hold.id });
    });
    // The rows as stored agree with what each call was told, and the chain follows the input order.
    const stored = await pool.query(
      `SELECT t.id::text, t.hold_id, t.balance_after_micros::text AS b, t.frozen_after_micros::text AS f, u.id AS usage_id, u.cost_micros::text AS cost,
              u.latency_ms, u.trace_id
       FROM wallet_transactions t JOIN usage_records u ON u.hold_id = t.hold_id WHERE t.wallet_id = $1 AND t.kind = 'capture' ORDER BY t.id`,
      [wallet.id],
    );
    expect(stored.rows.map((r) => r.hold_id)).toEqual(calls.map((c) => c.held.hold.id));
    stored.rows.forEach((row, i) => {
      const r = results[i]!;
      expect(row).toMatchObject({ id: r.transaction.id, b: r.transaction.balanceAfterMicros.toString(), f: r.transaction.frozenAfterMicros.toString(), usage_id: r.usageRecordId, cost: calls[i]!.cost.toString(), latency_ms: i, trace_id: calls[i]!.t });
    });
    const audited = await pool.query(`SELECT trace_id, details FROM audit_logs WHERE org_id = $1 AND action = 'ai.call' ORDER BY (details->>'i')::int`, [wallet.orgId]);
    expect(audited.rows).toEqual(calls.filter((c) => c.i % 3 !== 0).map((c) => ({ trace_id: c.t, details: { i: c.i } })));
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('in one batch: a replay returns the first capture, a stale guess is priced from the hold, a taken key is a conflict, and the rest are written', async () => {
    const { wallet, calls } = await heldCalls('coalesced-mixed', 6);
    const [done, stale, taken, ...fresh] = calls as [(typeof calls)[0], (typeof calls)[0], (typeof calls)[0], ...(typeof calls)];
    const first = await ledger.capture({ holdId: done.held.hold.id, idempotencyKey: key('first'), usage: done.usage, known: { amountMicros: done.amount, price: rates }, orgId: wallet.orgId });
    const usedKey = key('used');
    await ledger.topup({ orgId: wallet.orgId, amountMicros: 1n, idempotencyKey: usedKey, reason: 'takes the key', actor: ADMIN });
    const statementsBefore = ledger.captures.stats.statements;
    const failedBefore = ledger.captures.stats.failed;
    const capture = (c: (typeof calls)[0], idempotencyKey: string, known: { amountMicros: bigint; price: typeof rates }) =>
      ledger.capture({ holdId: c.held.hold.id, idempotencyKey, usage: c.usage, known, orgId: wallet.orgId, coalesceMs: 30, audit: audit(c.t, {}) });
    const settled = await Promise.allSettled([
      capture(done, first.transaction.idempotencyKey, { amountMicros: done.amount, price: rates }),
      capture(stale, key('stale'), { amountMicros: stale.amount + 1n, price: rates }),
      capture(taken, usedKey, { amountMicros: taken.amount, price: rates }),
      ...fresh.map((c) => capture(c, key('fresh'), { amountMicros: c.amount, price: rates })),
    ]);
    expect(ledger.captures.stats.statements - statementsBefore).toBe(1);
    // The taken key failed the statement; every row then took the one-row path on its own.
    expect(ledger.captures.stats.failed - failedBefore).toBe(1);
    const [replay, priced, conflict, ...written] = settled;
    expect(replay).toMatchObject({ status: 'fulfilled', value: { replayed: true, transaction: { id: first.transaction.id } } });
    expect(priced).toMatchObject({ status: 'fulfilled', value: { replayed: false, chargedMicros: stale.cost } });
    expect(conflict.status).toBe('rejected');
    expect(((conflict as PromiseRejectedResult).reason as { code?: string }).code).toBe('idempotency_conflict');
    for (const w of written) expect(w).toMatchObject({ status: 'fulfilled', value: { replayed: false } });
    const charged = done.cost + stale.cost + fresh.reduce((sum, c) => sum + c.cost, 0n);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000_001n - charged, frozenMicros: taken.amount });
    expect(await countRows(pool, 'SELECT 1 FROM usage_records WHERE org_id = $1', [wallet.orgId])).toBe(5);
    await ledger.release({ holdId: taken.held.hold.id, idempotencyKey: key('rel'), reason: 'test' });
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('a window of captures for two organizations writes one statement per organization, each exact', async () => {
    const a = await heldCalls('coalesced-a', 5);
    const b = await heldCalls('coalesced-b', 7);
    const before = ledger.captures.stats.statements;
    await Promise.all(
      [a, b].flatMap(({ wallet, calls }) =>
        calls.map((c) => ledger.capture({ holdId: c.held.hold.id, idempotencyKey: key('c'), usage: c.usage, known: { amountMicros: c.amount, price: rates }, orgId: wallet.orgId, coalesceMs: 30 })),
      ),
    );
    expect(ledger.captures.stats.statements - before).toBe(2);
    for (const { wallet, calls } of [a, b]) {
      expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000_000n - calls.reduce((sum, c) => sum + c.cost, 0n), frozenMicros: 0n });
    }
    expect((await reconcile(pool, { walletIds: [a.wallet.id, b.wallet.id] })).drift).toEqual([]);
  });
});

describe('many holds in one statement (holds taken ahead)', () => {
  it('freezes all of them with an unbroken chain, each settles like any hold, or none when the wallet cannot cover them all', async () => {
    const wallet = await fundedWallet(ledger, 'hold-many', 100_000n);
    const model = await newModel(pool, PRICE);
    const t = trace();
    const keys = Array.from({ length: 6 }, (_, i) => key(`many${i}`));
    const held = await ledger.holdMany({ orgId: wallet.orgId, amountMicros: 4_000n, modelId: model.modelId, priceId: model.priceId, idempotencyKeys: keys, traceId: t, durable: false, actor: { type: 'api_key', id: 'key-1' } });
    expect(held.map((h) => h.hold.idempotencyKey)).toEqual(keys);
    expect(held.map((h) => h.transaction.frozenAfterMicros)).toEqual([4_000n, 8_000n, 12_000n, 16_000n, 20_000n, 24_000n]);
    expect(held.every((h) => h.hold.status === 'active' && h.hold.amountMicros === 4_000n && h.transaction.balanceAfterMicros === 100_000n)).toBe(true);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 100_000n, frozenMicros: 24_000n });

    // 20 more of 4,000 (80,000) exceed the 76,000 available: refused whole, nothing more frozen.
    await expectAppError(ledger.holdMany({ orgId: wallet.orgId, amountMicros: 4_000n, idempotencyKeys: Array.from({ length: 20 }, () => key('too-many')) }), 'insufficient_funds');
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ frozenMicros: 24_000n });

    // Each one settles on its own: captured (some together), released, or replayed by key.
    const usage = (c: number) => ({ promptTokens: 1_000, completionTokens: c, traceId: trace(), modelName: model.name, upstreamModel: model.upstreamModel });
    await Promise.all(held.slice(0, 4).map((h, i) => ledger.capture({ holdId: h.hold.id, idempotencyKey: key('c'), usage: usage(i), known: { amountMicros: 4_000n, price: rates }, orgId: wallet.orgId, coalesceMs: 20 })));
    await Promise.all(held.slice(4).map((h) => ledger.release({ holdId: h.hold.id, idempotencyKey: key('r'), reason: 'unused_reserve' })));
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ frozenMicros: 0n });
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });
});

describe('group commit across processes', () => {
  it('two ledgers (two processes) writing to 6 shared wallets in opposite orders never deadlock, and stay exact', async () => {
    const wallets = await Promise.all(Array.from({ length: 6 }, (_, i) => fundedWallet(ledger, `shared-${i}`, 1_000_000n)));
    const secondPool = testPool(10);
    const ledgers = [ledger, new Ledger(secondPool)];
    const reruns = () => ledgers.reduce((n, l) => n + l.writes.stats.rerunBatches, 0);
    const before = reruns();
    const rounds = 6;
    try {
      for (let round = 0; round < rounds; round++) {
        // Each ledger queues one write per wallet at once, the two in opposite orders: unsorted,
        // their batches would lock w0…w5 and w5…w0 at the same time.
        await Promise.all(
          ledgers.flatMap((l, side) =>
            (side === 0 ? wallets : [...wallets].reverse()).flatMap((wallet, i) => [0, 1].map(async (copy) => {
              const t = trace();
              const held = await l.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key(`h${round}-${side}-${i}-${copy}`), traceId: t, durable: false });
              await l.capture({
                holdId: held.hold.id, idempotencyKey: key(`c${round}-${side}-${i}-${copy}`), costMicros: 300n, orgId: wallet.orgId,
                usage: { promptTokens: 1, completionTokens: 1, traceId: t, modelName: 'm', upstreamModel: 'm' }, known: { amountMicros: 1_000n },
              });
            })),
          ),
        );
      }
    } finally {
      await secondPool.end();
    }
    // A deadlock would have rolled a batch back (re-run write by write).
    expect(reruns()).toBe(before);
    const calls = BigInt(rounds * 2 * wallets.length * 2);
    const after = await Promise.all(wallets.map((w) => ledger.getWallet(w.orgId)));
    expect(after.reduce((sum, w) => sum + w.balanceMicros, 0n)).toBe(6_000_000n - calls * 300n);
    expect(after.every((w) => w.frozenMicros === 0n)).toBe(true);
    expect((await reconcile(pool, { walletIds: wallets.map((w) => w.id) })).drift).toEqual([]);
  });
});

describe('leased rate-limit tokens', () => {
  it('a high limit never admits more than the bucket holds, and steady traffic costs a few Redis calls', async () => {
    const redis = testRedis();
    try {
      const limiter = new RateLimiter(redis);
      let calls = 0;
      const take = (redis as unknown as { takeTokens: (...args: unknown[]) => Promise<unknown> }).takeTokens.bind(redis);
      (redis as unknown as { takeTokens: unknown }).takeTokens = (...args: unknown[]) => {
        calls++;
        return take(...args);
      };
      // A burst over a 6000/min bucket: the burst, plus what refilled (100 per second) meanwhile.
      const burst = [{ key: `rl:test:burst:${trace()}`, perMinute: 6_000 }];
      const started = Date.now();
      const decisions = await Promise.all(Array.from({ length: 7_000 }, () => limiter.take(burst)));
      const allowed = decisions.filter((d) => d.allowed).length;
      expect(allowed).toBeLessThanOrEqual(6_000 + Math.ceil((100 * (Date.now() - started)) / 1000) + 1);
      expect(allowed).toBeGreaterThanOrEqual(5_900);
      expect(decisions.find((d) => !d.allowed)?.retryAfterMs).toBeGreaterThan(0);

      // Steady traffic well under a high limit: served from leases.
      const steady = [{ key: `rl:test:steady:${trace()}`, perMinute: 600_000 }];
      calls = 0;
      let served = 0;
      const until = Date.now() + 1_000;
      while (Date.now() < until) {
        const round = await Promise.all(Array.from({ length: 10 }, () => limiter.take(steady)));
        served += round.filter((d) => d.allowed).length;
        await new Promise((r) => setTimeout(r, 5));
      }
      expect(served).toBeGreaterThan(100);
      expect(calls).toBeLessThan(served / 5);
    } finally {
      redis.disconnect();
    }
  });
});

describe('token count', () => {
  it('equals the o200k encoder’s count, and counts special-token text as text', () => {
    const encoder = new Tiktoken(o200k_base);
    const samples = [
      'Summarise the role of ribosomes in protein synthesis.',
      "Hello, world! It's 3.14159 — naïve café; 東京タワー 🚀🚀 emoji.\n\n\tIndented   spaces   \r\n",
      'function f(x) { return x ** 2; } // code\n    nested();',
      'a'.repeat(300),
      'prompt <|endoftext|> injection',
    ];
    for (const sample of samples) {
      expect(countTokens(sample)).toBe(encoder.encode(sample, [], []).length);
      expect(countTokens(sample)).toBe(countTokens(sample));
    }
  });
});
