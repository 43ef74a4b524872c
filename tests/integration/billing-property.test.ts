// Property: whatever sequence of top-ups, adjustments, holds, captures, releases, refunds and
// expiry sweeps runs against a wallet — with idempotency keys reused (same and different
// parameters), exact retries, and operations interleaved concurrently — every invariant holds:
// reconcile finds no drift, the balance equals what the successful operations say it should,
// frozen equals the holds still active, and no key ever wrote two rows.
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AppError, Ledger, reconcile, type HoldView, type PgPool } from '@deepspace/core';
import { ADMIN, fundedWallet, newModel, trace, testPool, type TestModel } from './billing-fixtures.ts';

let pool: PgPool;
let ledger: Ledger;
let model: TestModel;

beforeAll(async () => {
  pool = testPool(10);
  ledger = new Ledger(pool);
  // 1 micro per prompt token, 2 per completion token.
  model = await newModel(pool, { input: 1_000_000n, output: 2_000_000n });
});
afterAll(async () => {
  await pool.end();
});

type Op =
  | { t: 'topup'; k: number; amount: bigint }
  | { t: 'adjust'; k: number; delta: bigint }
  | { t: 'hold'; k: number; amount: bigint; short: boolean }
  | { t: 'capture'; k: number; h: number; prompt: number; completion: number }
  | { t: 'release'; k: number; h: number }
  | { t: 'refund'; k: number; h: number; amount: bigint | null }
  | { t: 'expire' }
  | { t: 'repeat'; i: number };

const keyIndex = fc.integer({ min: 0, max: 11 }); // a small pool: keys collide across kinds
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ t: fc.constant('topup' as const), k: keyIndex, amount: fc.bigInt(1n, 3_000n) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('adjust' as const), k: keyIndex, delta: fc.bigInt(-1_500n, 1_500n).filter((d) => d !== 0n) }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('hold' as const), k: keyIndex, amount: fc.bigInt(1n, 1_000n), short: fc.boolean() }) },
  {
    weight: 3,
    arbitrary: fc.record({ t: fc.constant('capture' as const), k: keyIndex, h: fc.nat(20), prompt: fc.nat(400), completion: fc.nat(400) }),
  },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('release' as const), k: keyIndex, h: fc.nat(20) }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('refund' as const), k: keyIndex, h: fc.nat(20), amount: fc.option(fc.bigInt(1n, 800n), { nil: null }) }) },
  { weight: 1, arbitrary: fc.constant({ t: 'expire' as const }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('repeat' as const), i: fc.nat(100) }) },
);
// Steps run one after another; the operations inside a step run concurrently.
const scenarioArb = fc.record({
  opening: fc.bigInt(0n, 5_000n),
  steps: fc.array(fc.array(opArb, { minLength: 1, maxLength: 4 }), { minLength: 1, maxLength: 10 }),
});

const EXPECTED_REFUSALS = new Set(['insufficient_funds', 'idempotency_conflict', 'conflict']);

interface Outcome {
  kind: string;
  transactionId: string;
  replayed: boolean;
  /** Effect on the balance of a first (non-replayed) result. */
  balanceDelta: bigint;
}

const seen = { runs: 0, ops: 0, replays: 0, refusals: new Map<string, number>(), overages: 0, expired: 0, concurrentSteps: 0 };

async function runScenario(scenario: { opening: bigint; steps: Op[][] }): Promise<void> {
  seen.runs++;
  const wallet = await fundedWallet(ledger, 'prop', scenario.opening);
  const run = `prop-${wallet.id}`;
  const base = Date.now();
  const holds: string[] = []; // ids of holds created, in order
  const calls: Array<() => Promise<Outcome[]>> = []; // every concrete call made, for `repeat`
  const outcomes: Outcome[] = [];
  const k = (i: number) => `${run}:k${i}`;
  const holdAt = (i: number) => (holds.length ? holds[i % holds.length] : undefined);

  const concrete = (op: Op): (() => Promise<Outcome[]>) | undefined => {
    switch (op.t) {
      case 'topup':
        return async () => {
          const r = await ledger.topup({ orgId: wallet.orgId, amountMicros: op.amount, idempotencyKey: k(op.k), reason: 'prop', actor: ADMIN });
          return [{ kind: 'topup', transactionId: r.transaction.id, replayed: r.replayed, balanceDelta: op.amount }];
        };
      case 'adjust':
        return async () => {
          const r = await ledger.adjust({ orgId: wallet.orgId, deltaMicros: op.delta, idempotencyKey: k(op.k), reason: 'prop', actor: ADMIN });
          return [{ kind: 'adjust', transactionId: r.transaction.id, replayed: r.replayed, balanceDelta: op.delta }];
        };
      case 'hold': {
        const expiresAt = new Date(base + (op.short ? 1 : 3) * 3_600_000);
        const traceId = trace();
        return async () => {
          const r = await ledger.hold({
            orgId: wallet.orgId, amountMicros: op.amount, idempotencyKey: k(op.k), traceId, expiresAt, modelId: model.modelId, priceId: model.priceId, runId: run,
          });
          if (!r.replayed) holds.push(r.hold.id);
          return [{ kind: 'hold', transactionId: r.transaction.id, replayed: r.replayed, balanceDelta: 0n }];
        };
      }
      case 'capture': {
        const holdId = holdAt(op.h);
        if (!holdId) return undefined;
        return async () => {
          const r = await ledger.capture({
            holdId, idempotencyKey: k(op.k), usage: { promptTokens: op.prompt, completionTokens: op.completion, latencyMs: 5 },
          });
          expect(r.costMicros).toBe(BigInt(op.prompt + 2 * op.completion));
          expect(r.chargedMicros + r.uncollectedMicros).toBe(r.costMicros);
          if (!r.replayed && r.costMicros > r.hold.amountMicros) seen.overages++;
          return [{ kind: 'capture', transactionId: r.transaction.id, replayed: r.replayed, balanceDelta: -r.chargedMicros }];
        };
      }
      case 'release': {
        const holdId = holdAt(op.h);
        if (!holdId) return undefined;
        return async () => {
          const r = await ledger.release({ holdId, idempotencyKey: k(op.k) });
          return [{ kind: 'release', transactionId: r.transaction.id, replayed: r.replayed, balanceDelta: 0n }];
        };
      }
      case 'refund': {
        const holdId = holdAt(op.h);
        if (!holdId) return undefined;
        return async () => {
          const r = await ledger.refund({ holdId, amountMicros: op.amount ?? undefined, idempotencyKey: k(op.k), reason: 'prop', actor: ADMIN });
          return [{ kind: 'refund', transactionId: r.transaction.id, replayed: r.replayed, balanceDelta: r.transaction.amountMicros }];
        };
      }
      case 'expire':
        return async () => {
          const r = await ledger.expireHolds(new Date(base + 2 * 3_600_000), 50, { orgId: wallet.orgId });
          seen.expired += r.expired.length;
          const rows = await pool.query<{ id: string }>(
            `SELECT id::text FROM wallet_transactions WHERE idempotency_key = ANY($1::text[])`,
            [r.expired.map((h) => `expire:${h.id}`)],
          );
          expect(rows.rows).toHaveLength(r.expired.length);
          return rows.rows.map((row) => ({ kind: 'expire', transactionId: row.id, replayed: false, balanceDelta: 0n }));
        };
      case 'repeat':
        return calls.length ? calls[op.i % calls.length] : undefined;
    }
  };

  const execute = async (op: Op) => {
    const call = concrete(op);
    if (!call) return;
    if (op.t !== 'repeat') calls.push(call);
    seen.ops++;
    try {
      const results = await call();
      outcomes.push(...results);
      seen.replays += results.filter((r) => r.replayed).length;
    } catch (error) {
      // Refusals are fine (that is the ledger saying no); anything else is a bug.
      if (!(error instanceof AppError) || !EXPECTED_REFUSALS.has(error.code)) throw error;
      seen.refusals.set(error.code, (seen.refusals.get(error.code) ?? 0) + 1);
    }
  };

  for (const step of scenario.steps) {
    if (step.length > 1) seen.concurrentSteps++;
    await Promise.all(step.map(execute));
  }

  // 1. No drift, by every invariant reconcile knows.
  const report = await reconcile(pool, { walletIds: [wallet.id], now: new Date(base) });
  expect(report.drift).toEqual([]);

  // 2. The balance is the sum of what the first (non-replayed) results said they did.
  const firsts = outcomes.filter((o) => !o.replayed);
  const after = await ledger.getWallet(wallet.orgId);
  expect(after.balanceMicros).toBe(scenario.opening + firsts.reduce((sum, o) => sum + o.balanceDelta, 0n));

  // 3. Frozen is exactly the holds this run created that are still active; no other hold exists.
  const states: HoldView[] = await Promise.all(holds.map((id) => ledger.getHold(id)));
  expect(after.frozenMicros).toBe(states.filter((h) => h.status === 'active').reduce((sum, h) => sum + h.amountMicros, 0n));
  const { rows } = await pool.query<{ id: string; idempotency_key: string }>(
    'SELECT id::text, idempotency_key FROM wallet_transactions WHERE wallet_id = $1',
    [wallet.id],
  );
  const holdCount = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM holds WHERE wallet_id = $1', [wallet.id]);
  expect(holdCount.rows[0]!.n).toBe(holds.length);

  // 4. One row per first result (plus the opening top-up): a replay never wrote, and every replay
  //    returned a row that exists.
  const firstIds = firsts.map((o) => o.transactionId);
  expect(new Set(firstIds).size).toBe(firstIds.length);
  expect(rows.length).toBe(firstIds.length + (scenario.opening > 0n ? 1 : 0));
  const ids = new Set(rows.map((r) => r.id));
  for (const o of outcomes) expect(ids.has(o.transactionId)).toBe(true);
}

describe('billing ledger properties', () => {
  it('random concurrent operation sequences with reused idempotency keys keep every invariant', async () => {
    await fc.assert(fc.asyncProperty(scenarioArb, runScenario), { numRuns: 50, interruptAfterTimeLimit: 40_000 });
    // The generator really exercised what the property is about.
    expect(seen.runs).toBeGreaterThanOrEqual(20);
    expect(seen.replays).toBeGreaterThan(0);
    expect(seen.refusals.get('idempotency_conflict') ?? 0).toBeGreaterThan(0);
    expect(seen.refusals.get('insufficient_funds') ?? 0).toBeGreaterThan(0);
    expect(seen.refusals.get('conflict') ?? 0).toBeGreaterThan(0);
    expect(seen.overages).toBeGreaterThan(0);
    expect(seen.expired).toBeGreaterThan(0);
    expect(seen.concurrentSteps).toBeGreaterThan(0);
  });
});
