import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, Ledger, reconcile, type PgPool } from '@deepspace/core';
import { ADMIN, countRows, fundedWallet, key, trace, testPool } from './billing-fixtures.ts';

let pool: PgPool;
let ledger: Ledger;

beforeAll(() => {
  // Enough connections that the callers really do meet at the wallet row, not in the pool queue.
  pool = testPool(20);
  ledger = new Ledger(pool);
});
afterAll(async () => {
  await pool.end();
});

const settle = (promises: Promise<unknown>[]) => Promise.allSettled(promises);
const codeOf = (r: PromiseSettledResult<unknown>) => (r.status === 'rejected' ? ((r.reason as AppError).code ?? String(r.reason)) : 'ok');

describe('billing under concurrency', () => {
  it('50 concurrent holds against a wallet that can afford 10: exactly 10 succeed, 40 get insufficient_funds, nothing overspent', async () => {
    const wallet = await fundedWallet(ledger, 'hold-race', 10_000n);
    const results = await settle(
      Array.from({ length: 50 }, (_, i) => ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key(`race-${i}`), traceId: trace() })),
    );
    const codes = results.map(codeOf);
    expect(codes.filter((c) => c === 'ok')).toHaveLength(10);
    expect(codes.filter((c) => c === 'insufficient_funds')).toHaveLength(40);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000n, frozenMicros: 10_000n, availableMicros: 0n });
    expect(await countRows(pool, `SELECT 1 FROM holds WHERE wallet_id = $1 AND status = 'active'`, [wallet.id])).toBe(10);
    expect(await countRows(pool, `SELECT 1 FROM wallet_transactions WHERE wallet_id = $1`, [wallet.id])).toBe(11);
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('a hot wallet stays exact under concurrent holds, captures, releases, retries and top-ups', async () => {
    const wallet = await fundedWallet(ledger, 'hot-wallet', 40_000n);
    const charged: bigint[] = [];
    const toppedUp: bigint[] = [];
    const outcomes: string[] = [];
    await Promise.all(
      Array.from({ length: 50 }, async (_, i) => {
        const amount = BigInt(500 + ((i * 137) % 1_500));
        try {
          const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: amount, idempotencyKey: key(`hot-hold-${i}`), traceId: trace() });
          if (i % 3 === 0) {
            await ledger.release({ holdId: held.hold.id, idempotencyKey: key(`hot-release-${i}`) });
            outcomes.push('released');
          } else {
            // Some calls cost more than they held (overage), and every capture is delivered twice at once.
            const cost = i % 5 === 0 ? amount + 300n : amount / 2n;
            const input = { holdId: held.hold.id, idempotencyKey: key(`hot-capture-${i}`), usage: { promptTokens: 1, completionTokens: 1, modelName: 'm', upstreamModel: 'm' }, costMicros: cost };
            const [a, b] = await Promise.all([ledger.capture(input), ledger.capture(input)]);
            expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
            expect(a.transaction.id).toBe(b.transaction.id);
            charged.push(a.chargedMicros);
            outcomes.push('captured');
          }
        } catch (error) {
          if ((error as AppError).code !== 'insufficient_funds') throw error;
          outcomes.push('refused');
        }
        if (i % 10 === 0) {
          await ledger.topup({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key(`hot-topup-${i}`), reason: 'refill', actor: ADMIN });
          toppedUp.push(1_000n);
        }
      }),
    );
    const sum = (xs: bigint[]) => xs.reduce((a, b) => a + b, 0n);
    expect(outcomes).toHaveLength(50);
    expect(outcomes.filter((o) => o === 'captured').length).toBeGreaterThan(5);
    const after = await ledger.getWallet(wallet.orgId);
    expect(after.frozenMicros).toBe(0n);
    expect(after.balanceMicros).toBe(40_000n + sum(toppedUp) - sum(charged));
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('an expiry sweep racing captures and releases settles every hold exactly once', async () => {
    const wallet = await fundedWallet(ledger, 'sweep-race', 100_000n);
    const base = Date.now() + 3_600_000; // an hour ahead: only this test's sweeps (at base + 1 min) see them as expired
    const holds = await Promise.all(
      Array.from({ length: 30 }, (_, i) =>
        ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key(`sweep-${i}`), traceId: trace(), expiresAt: new Date(base) }),
      ),
    );
    const at = new Date(base + 60_000);
    const results = await settle([
      ledger.expireHolds(at, 100, { orgId: wallet.orgId }),
      ...holds.map((h, i) =>
        i % 2 === 0
          ? ledger.capture({ holdId: h.hold.id, idempotencyKey: key('c'), usage: { promptTokens: 1, completionTokens: 1, modelName: 'm', upstreamModel: 'm' }, costMicros: 400n })
          : ledger.release({ holdId: h.hold.id, idempotencyKey: key('r') }),
      ),
      ledger.expireHolds(at, 100, { orgId: wallet.orgId }),
    ]);
    // A capture that lost the race to the sweep is a conflict; nothing else may fail.
    expect(results.map(codeOf).filter((c) => c !== 'ok' && c !== 'conflict')).toEqual([]);
    const statuses = await pool.query<{ status: string; n: number }>(
      'SELECT status, count(*)::int AS n FROM holds WHERE wallet_id = $1 GROUP BY status',
      [wallet.id],
    );
    expect(statuses.rows.reduce((n, r) => n + r.n, 0)).toBe(30);
    expect(statuses.rows.find((r) => r.status === 'active')).toBeUndefined();
    const settlements = await countRows(pool, `SELECT 1 FROM wallet_transactions WHERE wallet_id = $1 AND kind IN ('capture', 'release')`, [wallet.id]);
    expect(settlements).toBe(30);
    expect((await ledger.getWallet(wallet.orgId)).frozenMicros).toBe(0n);
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });
});
