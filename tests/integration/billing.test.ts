import { Tiktoken } from 'js-tiktoken/lite';
import o200k_base from 'js-tiktoken/ranks/o200k_base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  AppError,
  costOf,
  createPrisma,
  estimateHoldMicros,
  Ledger,
  OVERAGE_RULE,
  priceInForce,
  reconcile,
  settleCapture,
  tokenCostMicros,
  withSerializationRetry,
  type PgPool,
} from '@deepspace/core';
import { addPrice, ADMIN, countRows, expectAppError, fundedWallet, key, newModel, newOrganization, testPool, trace } from './billing-fixtures.ts';
import { ModelCatalog } from '@deepspace/core/ai/catalog-cache';

let pool: PgPool;
let ledger: Ledger;

beforeAll(() => {
  pool = testPool(8);
  ledger = new Ledger(pool);
});
afterAll(async () => {
  await pool.end();
});

const usage = (promptTokens: number, completionTokens: number, extra: Record<string, unknown> = {}) => ({
  promptTokens,
  completionTokens,
  modelName: 'test-model',
  upstreamModel: 'sim-test-model',
  latencyMs: 42,
  ...extra,
});

async function expectNoDrift(...walletIds: string[]) {
  const report = await reconcile(pool, { walletIds });
  expect(report.drift).toEqual([]);
  expect(report.wallets).toBe(walletIds.length);
}

describe('top-ups and adjustments', () => {
  it('a top-up credits the balance with one transaction and one audit row; a replay writes nothing', async () => {
    const wallet = await fundedWallet(ledger, 'topup', 0n);
    const k = key('topup');
    const first = await ledger.topup({ orgId: wallet.orgId, amountMicros: 5_000_000n, idempotencyKey: k, reason: 'invoice 42', actor: ADMIN });
    const again = await ledger.topup({ orgId: wallet.orgId, amountMicros: 5_000_000n, idempotencyKey: k, reason: 'invoice 42', actor: ADMIN });
    expect(first.replayed).toBe(false);
    expect(again.replayed).toBe(true);
    expect(again.transaction.id).toBe(first.transaction.id);
    expect(first.transaction).toMatchObject({ kind: 'topup', amountMicros: 5_000_000n, balanceAfterMicros: 5_000_000n, reason: 'invoice 42', actorType: 'user', actorId: ADMIN.id });
    expect((await ledger.getWallet(wallet.orgId)).balanceMicros).toBe(5_000_000n);
    expect(await countRows(pool, 'SELECT 1 FROM wallet_transactions WHERE wallet_id = $1', [wallet.id])).toBe(1);
    const audit = await pool.query(`SELECT action, actor_id, details FROM audit_logs WHERE resource_type = 'wallet' AND resource_id = $1`, [wallet.id]);
    expect(audit.rows).toEqual([
      { action: 'billing.topup', actor_id: ADMIN.id, details: expect.objectContaining({ transaction_id: first.transaction.id, amount_micros: '5000000', reason: 'invoice 42' }) },
    ]);
    await expectNoDrift(wallet.id);
  });

  it('the same key with a different amount, or for another kind of operation, is an idempotency conflict', async () => {
    const wallet = await fundedWallet(ledger, 'topup-conflict', 0n);
    const k = key('topup');
    await ledger.topup({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: k, reason: 'x', actor: ADMIN });
    const conflict = await expectAppError(ledger.topup({ orgId: wallet.orgId, amountMicros: 101n, idempotencyKey: k, reason: 'x', actor: ADMIN }), 'idempotency_conflict');
    expect(conflict.status).toBe(409);
    await expectAppError(ledger.hold({ orgId: wallet.orgId, amountMicros: 50n, idempotencyKey: k, traceId: trace() }), 'idempotency_conflict');
    await expectAppError(ledger.adjust({ orgId: wallet.orgId, deltaMicros: 100n, idempotencyKey: k, reason: 'x', actor: ADMIN }), 'idempotency_conflict');
    expect((await ledger.getWallet(wallet.orgId)).balanceMicros).toBe(100n);
    await expectNoDrift(wallet.id);
  });

  it('an adjustment is signed and cannot take the balance below what is frozen', async () => {
    const wallet = await fundedWallet(ledger, 'adjust', 1_000n);
    await ledger.hold({ orgId: wallet.orgId, amountMicros: 600n, idempotencyKey: key('hold'), traceId: trace() });
    const credit = await ledger.adjust({ orgId: wallet.orgId, deltaMicros: 50n, idempotencyKey: key('adj'), reason: 'goodwill', actor: ADMIN });
    expect(credit.transaction.balanceAfterMicros).toBe(1_050n);
    const refused = await expectAppError(
      ledger.adjust({ orgId: wallet.orgId, deltaMicros: -451n, idempotencyKey: key('adj'), reason: 'correction', actor: ADMIN }),
      'insufficient_funds',
    );
    expect(refused.details).toMatchObject({ available_micros: '450' });
    const debit = await ledger.adjust({ orgId: wallet.orgId, deltaMicros: -450n, idempotencyKey: key('adj'), reason: 'correction', actor: ADMIN });
    expect(debit.transaction).toMatchObject({ amountMicros: -450n, balanceAfterMicros: 600n, frozenAfterMicros: 600n });
    await expectAppError(ledger.adjust({ orgId: wallet.orgId, deltaMicros: 0n, idempotencyKey: key('adj'), reason: 'x', actor: ADMIN }), 'validation_failed');
    await expectAppError(ledger.topup({ orgId: wallet.orgId, amountMicros: 10n, idempotencyKey: key('t'), reason: ' ', actor: ADMIN }), 'validation_failed');
    await expectNoDrift(wallet.id);
  });

  it('a wallet that does not exist is not_found, not insufficient funds', async () => {
    const orgId = await newOrganization(pool, 'no-wallet');
    await expectAppError(ledger.hold({ orgId, amountMicros: 1n, idempotencyKey: key('hold') }), 'not_found');
    await expectAppError(ledger.topup({ orgId, amountMicros: 1n, idempotencyKey: key('t'), reason: 'x', actor: ADMIN }), 'not_found');
  });
});

describe('holds', () => {
  it('a hold freezes the amount: available drops, the balance does not', async () => {
    const wallet = await fundedWallet(ledger, 'hold', 10_000n);
    const t = trace();
    const result = await ledger.hold({ orgId: wallet.orgId, amountMicros: 2_500n, idempotencyKey: key('hold'), traceId: t, runId: 'run-1', stepId: 'step-1' });
    expect(result.hold).toMatchObject({ status: 'active', amountMicros: 2_500n, capturedMicros: 0n, traceId: t, runId: 'run-1', stepId: 'step-1', walletId: wallet.id });
    expect(result.transaction).toMatchObject({ kind: 'hold', amountMicros: 2_500n, balanceAfterMicros: 10_000n, frozenAfterMicros: 2_500n, holdId: result.hold.id, traceId: t });
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000n, frozenMicros: 2_500n, availableMicros: 7_500n });
    await expectNoDrift(wallet.id);
  });

  it('an out-of-funds wallet gets insufficient_funds (402) and no hold', async () => {
    const wallet = await fundedWallet(ledger, 'no-funds', 1_000n);
    await ledger.hold({ orgId: wallet.orgId, amountMicros: 700n, idempotencyKey: key('hold') });
    const error = await expectAppError(ledger.hold({ orgId: wallet.orgId, amountMicros: 301n, idempotencyKey: key('hold') }), 'insufficient_funds');
    expect(error.status).toBe(402);
    expect(error.details).toEqual({ available_micros: '300', requested_micros: '301' });
    expect(await countRows(pool, 'SELECT 1 FROM holds WHERE wallet_id = $1', [wallet.id])).toBe(1);
    await ledger.hold({ orgId: wallet.orgId, amountMicros: 300n, idempotencyKey: key('hold') });
    expect((await ledger.getWallet(wallet.orgId)).availableMicros).toBe(0n);
    await expectNoDrift(wallet.id);
  });

  it('a replayed hold returns the first hold, even once the wallet could no longer afford it', async () => {
    const wallet = await fundedWallet(ledger, 'hold-replay', 1_000n);
    const k = key('hold');
    const first = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: k, traceId: 'a'.repeat(32) });
    const again = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: k, traceId: 'a'.repeat(32) });
    expect(again).toMatchObject({ replayed: true, hold: { id: first.hold.id }, transaction: { id: first.transaction.id } });
    await expectAppError(ledger.hold({ orgId: wallet.orgId, amountMicros: 999n, idempotencyKey: k, traceId: 'a'.repeat(32) }), 'idempotency_conflict');
    expect((await ledger.getWallet(wallet.orgId)).frozenMicros).toBe(1_000n);
    await expectNoDrift(wallet.id);
  });
});

describe('capture', () => {
  it('charges the actual cost at the hold’s price, releases the rest, and writes the usage record with the same trace id', async () => {
    const model = await newModel(pool, { input: 1_000_000n, output: 2_000_000n }); // 1 and 2 micros per token
    const wallet = await fundedWallet(ledger, 'capture', 1_000_000n);
    const t = trace();
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 5_000n, idempotencyKey: key('hold'), traceId: t, modelId: model.modelId, priceId: model.priceId, runId: 'wf-1', stepId: 's1' });
    const result = await ledger.capture({
      holdId: held.hold.id,
      idempotencyKey: key('capture'),
      usage: { promptTokens: 1_000, completionTokens: 500, latencyMs: 1234, apiKeyId: null },
    });
    expect(result).toMatchObject({ costMicros: 2_000n, chargedMicros: 2_000n, releasedMicros: 3_000n, uncollectedMicros: 0n, replayed: false });
    expect(result.hold).toMatchObject({ status: 'captured', capturedMicros: 2_000n });
    expect(result.transaction).toMatchObject({ kind: 'capture', amountMicros: -2_000n, balanceAfterMicros: 998_000n, frozenAfterMicros: 0n, traceId: t, runId: 'wf-1', stepId: 's1' });
    const usageRow = (await pool.query('SELECT * FROM usage_records WHERE id = $1', [result.usageRecordId])).rows[0];
    expect(usageRow).toMatchObject({
      trace_id: t, org_id: wallet.orgId, hold_id: held.hold.id, model_id: model.modelId, model_name: model.name, upstream_model: model.upstreamModel,
      price_id: model.priceId, prompt_tokens: 1_000, completion_tokens: 500, cost_micros: '2000', latency_ms: 1234, status: 'success', run_id: 'wf-1', step_id: 's1',
    });
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 998_000n, frozenMicros: 0n });
    await expectNoDrift(wallet.id);
  });

  it('a retried capture with the same key charges once, also when the retries run concurrently', async () => {
    const wallet = await fundedWallet(ledger, 'capture-retry', 100_000n);
    const holds = await Promise.all([1, 2].map(() => ledger.hold({ orgId: wallet.orgId, amountMicros: 10_000n, idempotencyKey: key('hold'), traceId: trace() })));
    // Sequential retry.
    const k1 = key('capture');
    const input1 = { holdId: holds[0]!.hold.id, idempotencyKey: k1, usage: usage(10, 10), costMicros: 4_000n };
    const first = await ledger.capture(input1);
    const retry = await ledger.capture(input1);
    expect(retry).toMatchObject({ replayed: true, chargedMicros: 4_000n, usageRecordId: first.usageRecordId, transaction: { id: first.transaction.id } });
    // A retry that re-measured the latency is still the same capture.
    const remeasured = await ledger.capture({ ...input1, usage: { ...input1.usage, latencyMs: 999 } });
    expect(remeasured).toMatchObject({ replayed: true, transaction: { id: first.transaction.id } });
    // Ten concurrent deliveries of the same capture.
    const k2 = key('capture');
    const input2 = { holdId: holds[1]!.hold.id, idempotencyKey: k2, usage: usage(10, 10), costMicros: 7_000n };
    const results = await Promise.all(Array.from({ length: 10 }, () => ledger.capture(input2)));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    expect(new Set(results.map((r) => r.transaction.id)).size).toBe(1);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 100_000n - 11_000n, frozenMicros: 0n });
    expect(await countRows(pool, `SELECT 1 FROM wallet_transactions WHERE wallet_id = $1 AND kind = 'capture'`, [wallet.id])).toBe(2);
    expect(await countRows(pool, `SELECT 1 FROM usage_records WHERE org_id = $1`, [wallet.orgId])).toBe(2);
    await expectNoDrift(wallet.id);
  });

  it('is idempotent by hold id: the same capture under a new key returns the first; different usage is a conflict', async () => {
    const wallet = await fundedWallet(ledger, 'capture-by-hold', 10_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), traceId: trace() });
    const first = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('capture'), usage: usage(1, 1), costMicros: 600n });
    const second = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('capture'), usage: usage(1, 1), costMicros: 600n });
    expect(second).toMatchObject({ replayed: true, transaction: { id: first.transaction.id } });
    await expectAppError(ledger.capture({ holdId: held.hold.id, idempotencyKey: key('capture'), usage: usage(1, 2), costMicros: 700n }), 'conflict');
    // The first capture's key reused for another hold is an idempotency conflict.
    const other = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), traceId: trace() });
    await expectAppError(ledger.capture({ holdId: other.hold.id, idempotencyKey: first.transaction.idempotencyKey, usage: usage(1, 1), costMicros: 600n }), 'idempotency_conflict');
    expect((await ledger.getHold(other.hold.id)).status).toBe('active');
    expect((await ledger.getWallet(wallet.orgId)).balanceMicros).toBe(9_400n);
    await expectNoDrift(wallet.id);
  });

  it('capturing a released hold is a conflict, and releasing a captured hold is a conflict', async () => {
    const wallet = await fundedWallet(ledger, 'settled', 10_000n);
    const a = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), traceId: trace() });
    const b = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), traceId: trace() });
    await ledger.release({ holdId: a.hold.id, idempotencyKey: key('release') });
    const e1 = await expectAppError(ledger.capture({ holdId: a.hold.id, idempotencyKey: key('capture'), usage: usage(1, 1), costMicros: 1n }), 'conflict');
    expect(e1.details).toMatchObject({ status: 'released' });
    await ledger.capture({ holdId: b.hold.id, idempotencyKey: key('capture'), usage: usage(1, 1), costMicros: 10n });
    await expectAppError(ledger.release({ holdId: b.hold.id, idempotencyKey: key('release') }), 'conflict');
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 9_990n, frozenMicros: 0n });
    await expectNoDrift(wallet.id);
  });

  it('a hold without a price needs an explicit cost, and every capture needs a trace id', async () => {
    const wallet = await fundedWallet(ledger, 'no-price', 10_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold') });
    await expectAppError(ledger.capture({ holdId: held.hold.id, idempotencyKey: key('c'), usage: usage(1, 1, { traceId: trace() }) }), 'validation_failed');
    await expectAppError(ledger.capture({ holdId: held.hold.id, idempotencyKey: key('c'), usage: usage(1, 1), costMicros: 5n }), 'validation_failed');
    const t = trace();
    const ok = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('c'), usage: usage(1, 1, { traceId: t }), costMicros: 5n });
    expect(ok.transaction.traceId).toBe(t);
    await expectNoDrift(wallet.id);
  });
});

describe('overage rule', () => {
  it(`is "${OVERAGE_RULE}": charge min(cost, hold + available), release the rest, never below zero`, () => {
    expect(settleCapture(300n, 1_000n, 0n)).toEqual({ chargedMicros: 300n, releasedMicros: 700n, uncollectedMicros: 0n });
    expect(settleCapture(1_000n, 1_000n, 0n)).toEqual({ chargedMicros: 1_000n, releasedMicros: 0n, uncollectedMicros: 0n });
    expect(settleCapture(1_500n, 1_000n, 2_000n)).toEqual({ chargedMicros: 1_500n, releasedMicros: 0n, uncollectedMicros: 0n });
    expect(settleCapture(1_500n, 1_000n, 200n)).toEqual({ chargedMicros: 1_200n, releasedMicros: 0n, uncollectedMicros: 300n });
    expect(settleCapture(0n, 1_000n, 0n)).toEqual({ chargedMicros: 0n, releasedMicros: 1_000n, uncollectedMicros: 0n });
  });

  it('a capture above its hold takes the overage from available money only, and records what it could not collect', async () => {
    const wallet = await fundedWallet(ledger, 'overage', 3_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), traceId: trace() });
    const other = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_500n, idempotencyKey: key('hold'), traceId: trace() });
    // available = 3000 − 2500 = 500: a 2000 cost collects 1000 + 500 and leaves 500 uncollected.
    const result = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('capture'), usage: usage(5, 5), costMicros: 2_000n });
    expect(result).toMatchObject({ costMicros: 2_000n, chargedMicros: 1_500n, releasedMicros: 0n, uncollectedMicros: 500n });
    expect(result.transaction.amountMicros).toBe(-1_500n);
    expect(result.transaction.details).toEqual({
      cost_micros: '2000', charged_micros: '1500', released_micros: '0', uncollected_micros: '500', overage_rule: OVERAGE_RULE,
    });
    expect(result.transaction.reason).toContain('500 micros uncollected');
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 1_500n, frozenMicros: 1_500n, availableMicros: 0n });
    // The other hold's frozen money was untouched and can still be captured in full.
    const second = await ledger.capture({ holdId: other.hold.id, idempotencyKey: key('capture'), usage: usage(5, 5), costMicros: 1_500n });
    expect(second.chargedMicros).toBe(1_500n);
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 0n, frozenMicros: 0n });
    const replay = await ledger.capture({ holdId: held.hold.id, idempotencyKey: result.transaction.idempotencyKey, usage: usage(5, 5), costMicros: 2_000n });
    expect(replay).toMatchObject({ replayed: true, chargedMicros: 1_500n, uncollectedMicros: 500n, costMicros: 2_000n });
    await expectNoDrift(wallet.id);
  });
});

describe('release, expiry, refunds', () => {
  it('release returns the whole hold; a second release under any key returns the first', async () => {
    const wallet = await fundedWallet(ledger, 'release', 5_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 4_000n, idempotencyKey: key('hold'), traceId: trace() });
    const first = await ledger.release({ holdId: held.hold.id, idempotencyKey: key('release'), reason: 'upstream failed' });
    expect(first).toMatchObject({ replayed: false, releasedMicros: 4_000n, hold: { status: 'released' } });
    expect(first.transaction).toMatchObject({ kind: 'release', amountMicros: 4_000n, balanceAfterMicros: 5_000n, frozenAfterMicros: 0n, reason: 'upstream failed' });
    const again = await ledger.release({ holdId: held.hold.id, idempotencyKey: key('release') });
    expect(again).toMatchObject({ replayed: true, transaction: { id: first.transaction.id } });
    expect(await countRows(pool, `SELECT 1 FROM wallet_transactions WHERE hold_id = $1`, [held.hold.id])).toBe(2);
    await expectNoDrift(wallet.id);
  });

  it('expireHolds releases only holds past their expiry, returns their money, and only once', async () => {
    const wallet = await fundedWallet(ledger, 'expire', 10_000n);
    const now = Date.now();
    // Expiries an hour ahead: the real schedule (sweeping at real time) never touches them.
    const soon = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), expiresAt: new Date(now + 3_600_000) });
    const later = await ledger.hold({ orgId: wallet.orgId, amountMicros: 2_000n, idempotencyKey: key('hold'), expiresAt: new Date(now + 3 * 3_600_000) });
    const at = new Date(now + 2 * 3_600_000);
    const [a, b] = await Promise.all([ledger.expireHolds(at, 10, { orgId: wallet.orgId }), ledger.expireHolds(at, 10, { orgId: wallet.orgId })]);
    expect([...a.expired, ...b.expired].map((h) => h.id)).toEqual([soon.hold.id]);
    expect(await ledger.getHold(soon.hold.id)).toMatchObject({ status: 'expired' });
    expect(await ledger.getHold(later.hold.id)).toMatchObject({ status: 'active' });
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000n, frozenMicros: 2_000n });
    // A late release (the run's compensation) finds the money already back: idempotent, no second row.
    const late = await ledger.release({ holdId: soon.hold.id, idempotencyKey: key('release') });
    expect(late).toMatchObject({ replayed: true, hold: { status: 'expired' }, releasedMicros: 1_000n });
    await expectAppError(ledger.capture({ holdId: soon.hold.id, idempotencyKey: key('c'), usage: usage(1, 1, { traceId: trace() }), costMicros: 1n }), 'conflict');
    await expectNoDrift(wallet.id);
    // Reconcile judged at a time past the second hold's expiry reports it as stuck.
    const future = await reconcile(pool, { walletIds: [wallet.id], now: new Date(now + 4 * 3_600_000) });
    expect(future.drift.map((d) => [d.check, d.holdId])).toEqual([['hold_active_past_expiry', later.hold.id]]);
  });

  it('a refund gives back part of a capture and never more than was captured', async () => {
    const wallet = await fundedWallet(ledger, 'refund', 10_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 5_000n, idempotencyKey: key('hold'), traceId: trace() });
    await expectAppError(ledger.refund({ holdId: held.hold.id, idempotencyKey: key('r'), reason: 'x', actor: ADMIN }), 'conflict');
    await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('capture'), usage: usage(1, 1), costMicros: 3_000n });
    const k = key('refund');
    const part = await ledger.refund({ holdId: held.hold.id, amountMicros: 1_000n, idempotencyKey: k, reason: 'bad answer', actor: ADMIN });
    expect(part.transaction).toMatchObject({ kind: 'refund', amountMicros: 1_000n, balanceAfterMicros: 8_000n, holdId: held.hold.id });
    expect(await ledger.refund({ holdId: held.hold.id, amountMicros: 1_000n, idempotencyKey: k, reason: 'bad answer', actor: ADMIN })).toMatchObject({ replayed: true });
    await expectAppError(ledger.refund({ holdId: held.hold.id, amountMicros: 2_001n, idempotencyKey: key('r'), reason: 'x', actor: ADMIN }), 'conflict');
    const rest = await ledger.refund({ holdId: held.hold.id, idempotencyKey: key('r'), reason: 'all of it', actor: ADMIN });
    expect(rest.transaction.amountMicros).toBe(2_000n);
    expect((await ledger.getWallet(wallet.orgId)).balanceMicros).toBe(10_000n);
    expect(await countRows(pool, `SELECT 1 FROM audit_logs WHERE action = 'billing.refund' AND resource_id = $1`, [held.hold.id])).toBe(2);
    await expectNoDrift(wallet.id);
  });
});

describe('results of the hot statements', () => {
  // hold() and capture() build part of their answer from their own input (the statements return
  // only the columns the database made): what they return must be exactly what was stored.
  it('hold and capture (known, general and above-the-hold paths) return the rows as stored', async () => {
    const model = await newModel(pool, { input: 1_000_000n, output: 2_000_000n });
    const wallet = await fundedWallet(ledger, 'views', 1_000_000n);
    const projectId = (
      await pool.query<{ id: string }>('INSERT INTO projects (org_id, name, slug) VALUES ($1, $2, $3) RETURNING id', [wallet.orgId, 'p', `p-${key('s')}`])
    ).rows[0]!.id;
    const stored = async (transactionId: string) => (await ledger.listTransactions(wallet.orgId, { limit: 100 })).data.find((t) => t.id === transactionId);
    const actor = { type: 'api_key' as const, id: 'key-123' };
    const t = trace();
    // Upper-case uuids in, the database's lower-case ones out.
    const held = await ledger.hold({
      orgId: wallet.orgId.toUpperCase(), amountMicros: 5_000n, idempotencyKey: key('hold'), traceId: t, projectId: projectId.toUpperCase(),
      modelId: model.modelId.toUpperCase(), priceId: model.priceId.toUpperCase(), runId: 'run-1', stepId: 'step-1', actor, ttlMs: 60_000,
    });
    expect(held.hold).toEqual(await ledger.getHold(held.hold.id));
    expect(held.transaction).toEqual(await stored(held.transaction.id));
    expect(held.hold).toMatchObject({ orgId: wallet.orgId, projectId, modelId: model.modelId, priceId: model.priceId, status: 'active' });

    // Known path (one statement), with the caller's trace and without a run of its own.
    const known = await ledger.capture({
      holdId: held.hold.id, orgId: wallet.orgId, idempotencyKey: key('capture'), actor,
      known: { amountMicros: 5_000n, price: { inputMicrosPerMillion: 1_000_000n, outputMicrosPerMillion: 2_000_000n } },
      usage: { promptTokens: 1_000, completionTokens: 500, traceId: t, modelName: model.name, upstreamModel: model.upstreamModel },
    });
    expect(known.hold).toEqual(await ledger.getHold(held.hold.id));
    expect(known.transaction).toEqual(await stored(known.transaction.id));
    expect(known.transaction).toMatchObject({ runId: 'run-1', stepId: 'step-1', reason: null, actorType: 'api_key', actorId: 'key-123' });

    // General path, usage naming its own run and step.
    const second = await ledger.hold({ orgId: wallet.orgId, amountMicros: 4_000n, idempotencyKey: key('hold'), traceId: trace(), modelId: model.modelId, priceId: model.priceId });
    const general = await ledger.capture({ holdId: second.hold.id, idempotencyKey: key('capture'), usage: usage(1_000, 1_000, { runId: 'run-2', stepId: 'step-2' }) });
    expect(general.hold).toEqual(await ledger.getHold(second.hold.id));
    expect(general.transaction).toEqual(await stored(general.transaction.id));

    // Above the hold: the overage details and reason come back as written.
    const third = await ledger.hold({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: key('hold'), traceId: trace(), modelId: model.modelId, priceId: model.priceId });
    const over = await ledger.capture({ holdId: third.hold.id, idempotencyKey: key('capture'), usage: usage(1_000, 0) });
    expect(over.transaction.details).toMatchObject({ overage_rule: OVERAGE_RULE });
    expect(over.transaction).toEqual(await stored(over.transaction.id));
    expect(over.hold).toEqual(await ledger.getHold(third.hold.id));
    await expectNoDrift(wallet.id);
  });
});

describe('reads', () => {
  it('lists transactions newest first with cursor pagination { data, has_more }', async () => {
    const wallet = await fundedWallet(ledger, 'list', 0n);
    for (let i = 1; i <= 5; i++) await ledger.topup({ orgId: wallet.orgId, amountMicros: BigInt(i), idempotencyKey: key('t'), reason: `t${i}`, actor: ADMIN });
    const page1 = await ledger.listTransactions(wallet.orgId, { limit: 2 });
    expect(page1.has_more).toBe(true);
    expect(page1.data.map((t) => t.amountMicros)).toEqual([5n, 4n]);
    const page2 = await ledger.listTransactions(wallet.orgId, { limit: 2, startingAfter: page1.data[1]!.id });
    expect(page2.data.map((t) => t.amountMicros)).toEqual([3n, 2n]);
    const page3 = await ledger.listTransactions(wallet.orgId, { limit: 2, startingAfter: page2.data[1]!.id });
    expect(page3).toMatchObject({ has_more: false, data: [{ amountMicros: 1n }] });
    await expectAppError(ledger.listTransactions(wallet.orgId, { startingAfter: 'abc' }), 'validation_failed');
  });
});

describe('pricing and estimates', () => {
  it('a price row added later with a newer effective_from does not change the cost of a hold taken before it', async () => {
    const model = await newModel(pool, { input: 1_000_000n, output: 1_000_000n, effectiveFrom: new Date(Date.now() - 60_000) });
    const wallet = await fundedWallet(ledger, 'price-version', 1_000_000n);
    const before = await ledger.holdForModel({ orgId: wallet.orgId, model: model.name, promptTokens: 100, maxTokens: 100, idempotencyKey: key('hold'), traceId: trace() });
    expect(before.hold.priceId).toBe(model.priceId);
    expect(before.hold.amountMicros).toBe(200n);
    const newer = await addPrice(pool, model.modelId, { input: 10_000_000n, output: 10_000_000n, effectiveFrom: new Date() });
    expect((await priceInForce(pool, model.modelId))!.id).toBe(newer);
    expect((await priceInForce(pool, model.modelId, new Date(Date.now() - 30_000)))!.id).toBe(model.priceId);
    expect(await priceInForce(pool, model.modelId, new Date('2000-01-01T00:00:00Z'))).toBeNull();
    // The same lookup through Prisma (admin routes use it) gives the same row.
    const prisma = createPrisma(process.env.DATABASE_URL!, { max: 1 });
    try {
      expect(await priceInForce(prisma, model.modelId, new Date(Date.now() - 30_000))).toEqual(await priceInForce(pool, model.modelId, new Date(Date.now() - 30_000)));
      expect((await priceInForce(prisma, model.modelId))!).toMatchObject({ id: newer, inputMicrosPerMillion: 10_000_000n, outputMicrosPerMillion: 10_000_000n });
    } finally {
      await prisma.$disconnect();
    }

    const captured = await ledger.capture({ holdId: before.hold.id, idempotencyKey: key('c'), usage: { promptTokens: 100, completionTokens: 50 } });
    expect(captured.costMicros).toBe(150n); // the old price: 1 micro per token
    const usageRow = (await pool.query('SELECT price_id, model_name FROM usage_records WHERE id = $1', [captured.usageRecordId])).rows[0];
    expect(usageRow).toEqual({ price_id: model.priceId, model_name: model.name });

    const after = await ledger.holdForModel({ orgId: wallet.orgId, model: model.name, promptTokens: 100, maxTokens: 100, idempotencyKey: key('hold'), traceId: trace() });
    expect(after.hold.priceId).toBe(newer);
    expect(after.hold.amountMicros).toBe(2_000n);
    const capturedAfter = await ledger.capture({ holdId: after.hold.id, idempotencyKey: key('c'), usage: { promptTokens: 100, completionTokens: 50 } });
    expect(capturedAfter.costMicros).toBe(1_500n);
    await expectNoDrift(wallet.id);
  });

  it('estimates count prompt tokens like an independent js-tiktoken count, plus max_tokens of output', () => {
    const messages = [
      { role: 'system', content: 'You are a careful research assistant. Cite sources.' },
      { role: 'user', content: 'Summarise the 2023 results on 量子纠错 (quantum error correction) in three bullet points, please.' },
      { role: 'user', content: [{ type: 'text', text: 'Also: what is 17 × 23?' }], name: 'alice' },
    ];
    // Its own encoder instance and its own accounting (not core's countChatPromptTokens).
    const enc = new Tiktoken(o200k_base);
    const text = (c: (typeof messages)[number]['content']) => (typeof c === 'string' ? c : c.map((p) => p.text).join(''));
    // OpenAI's chat accounting: 3 per message + role + content (+1 + name), and 3 to prime the reply.
    const independent = messages.reduce(
      (n, m) => n + 3 + enc.encode(m.role).length + enc.encode(text(m.content)).length + ('name' in m && m.name ? 1 + enc.encode(m.name).length : 0),
      3,
    );
    const price = { inputMicrosPerMillion: 150_000n, outputMicrosPerMillion: 600_000n };
    const estimate = estimateHoldMicros({ price, messages, maxTokens: 1_000 });
    expect(estimate.promptTokens).toBe(independent);
    expect(estimate.amountMicros).toBe(tokenCostMicros(independent, 150_000n) + tokenCostMicros(1_000, 600_000n));
    expect(estimateHoldMicros({ price, promptTokens: 0, maxTokens: 0 }).amountMicros).toBe(1n); // holds are never zero
    // The estimate bounds the cost of any completion within max_tokens.
    expect(costOf(price, { promptTokens: independent, completionTokens: 1_000 })).toBeLessThanOrEqual(estimate.amountMicros);
    expect(() => estimateHoldMicros({ price, promptTokens: 1, maxTokens: -1 })).toThrow(AppError);
  });

  it('holdForModel replays the first hold for its key even after the price changed', async () => {
    const model = await newModel(pool, { input: 1_000_000n, output: 1_000_000n, effectiveFrom: new Date(Date.now() - 60_000) });
    const wallet = await fundedWallet(ledger, 'hold-model-replay', 100_000n);
    const input = { orgId: wallet.orgId, model: model.name, messages: [{ role: 'user', content: 'hello world' }], maxTokens: 10, idempotencyKey: key('hold'), traceId: trace() };
    const first = await ledger.holdForModel(input);
    expect(first.estimate!.promptTokens).toBe(3 + 3 + 1 + 2);
    await addPrice(pool, model.modelId, { input: 5_000_000n, output: 5_000_000n, effectiveFrom: new Date() });
    const again = await ledger.holdForModel(input);
    expect(again).toMatchObject({ replayed: true, hold: { id: first.hold.id, amountMicros: first.hold.amountMicros } });
    await expectAppError(ledger.holdForModel({ ...input, model: 'no-such-model' }), 'not_found');
    await expectNoDrift(wallet.id);
  });
});

describe('holdForModel with a cached catalog', () => {
  it('holds with the cached model and price in one statement, and tells replays from conflicts as the uncached path does', async () => {
    const model = await newModel(pool, { input: 1_000_000n, output: 1_000_000n, effectiveFrom: new Date(Date.now() - 60_000) });
    const other = await newModel(pool, { input: 1_000_000n, output: 1_000_000n, effectiveFrom: new Date(Date.now() - 60_000) });
    const wallet = await fundedWallet(ledger, 'hold-catalog', 100_000n);
    const catalog = new ModelCatalog(pool);
    // A ledger on its own pool whose connections count the statements they send.
    const counted = testPool();
    let statements = 0;
    counted.on('connect', (client) => {
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as unknown as { query: (...args: unknown[]) => unknown }).query = (...args: unknown[]) => {
        statements++;
        return query(...args);
      };
    });
    const countedLedger = new Ledger(counted);
    const input = { orgId: wallet.orgId, model: model.name, messages: [{ role: 'user', content: 'hello world' }], maxTokens: 10, idempotencyKey: key('hold'), traceId: trace(), catalog };
    await catalog.all(); // warm: what a worker's catalog is after its first call
    await catalog.priceAt(model.modelId);
    await counted.query('SELECT 1'); // a connection open before counting
    statements = 0;

    const first = await countedLedger.holdForModel(input);
    expect(statements).toBe(1);
    await counted.end();
    expect(first).toMatchObject({ replayed: false, model: { id: model.modelId, name: model.name }, price: { id: model.priceId }, estimate: { promptTokens: 9 } });
    expect(first.hold).toMatchObject({ priceId: model.priceId, modelId: model.modelId, amountMicros: 19n, status: 'active' });

    // The same call again: the first hold. A different estimate for the same key (a newer price,
    // a longer prompt) is still this org's hold for this model: a replay, as without a catalog.
    expect(await ledger.holdForModel(input)).toMatchObject({ replayed: true, hold: { id: first.hold.id, amountMicros: 19n } });
    const longer = await ledger.holdForModel({ ...input, messages: [{ role: 'user', content: 'hello world, and much more than that' }] });
    expect(longer).toMatchObject({ replayed: true, hold: { id: first.hold.id, amountMicros: 19n } });
    // The key for another model, or another org, is a conflict.
    await expectAppError(ledger.holdForModel({ ...input, model: other.name }), 'idempotency_conflict');
    const stranger = await fundedWallet(ledger, 'hold-catalog-other', 100_000n);
    await expectAppError(ledger.holdForModel({ ...input, orgId: stranger.orgId }), 'idempotency_conflict');
    // Not enough money and unknown models are refused the same way.
    await expectAppError(ledger.holdForModel({ ...input, idempotencyKey: key('big'), maxTokens: 1_000_000 }), 'insufficient_funds');
    await expectAppError(ledger.holdForModel({ ...input, idempotencyKey: key('none'), model: 'no-such-model' }), 'not_found');
    expect(await countRows(pool, `SELECT 1 FROM holds WHERE wallet_id = $1`, [wallet.id])).toBe(1);

    // A model deactivated after the cache was filled: the cache may hold for it ≤ 10 s (as /v1
    // does); once refreshed, the model is refused.
    await pool.query('UPDATE models SET is_active = false WHERE id = $1', [model.modelId]);
    catalog.invalidate();
    await expectAppError(ledger.holdForModel({ ...input, idempotencyKey: key('inactive') }), 'policy_violation');
    await ledger.release({ holdId: first.hold.id, idempotencyKey: key('rel') });
    await expectNoDrift(wallet.id);
  });
});

describe('retries', () => {
  it('serialization failures and deadlocks are retried a bounded number of times; other errors are not', async () => {
    const failing = (codes: string[]) => {
      let calls = 0;
      const fn = async () => {
        const code = codes[calls++];
        if (code) throw Object.assign(new Error(code), { code });
        return calls;
      };
      return { fn, calls: () => calls };
    };
    const transient = failing(['40001', '40P01', '40001']);
    expect(await withSerializationRetry(transient.fn)).toBe(4);
    const forever = failing(Array(10).fill('40P01'));
    await expect(withSerializationRetry(forever.fn, 3)).rejects.toMatchObject({ code: '40P01' });
    expect(forever.calls()).toBe(3);
    const other = failing(['23514']);
    await expect(withSerializationRetry(other.fn)).rejects.toMatchObject({ code: '23514' });
    expect(other.calls()).toBe(1);
  });
});

describe('reconcile', () => {
  it('reports a hold still active after its run finished', async () => {
    const wallet = await fundedWallet(ledger, 'run-over', 10_000n);
    const workflowId = `wf-${trace()}`;
    await pool.query(
      `INSERT INTO workflow_runs (org_id, project_id, kind, temporal_workflow_id, status, trace_id, actor_type, finished_at)
       VALUES ($1, gen_random_uuid(), 'workflow', $2, 'failed', $3, 'system', now() - interval '1 hour')`,
      [wallet.orgId, workflowId, trace()],
    );
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 100n, idempotencyKey: key('hold'), traceId: trace(), runId: workflowId });
    const report = await reconcile(pool, { walletIds: [wallet.id] });
    expect(report.drift.map((d) => [d.check, d.holdId])).toEqual([['hold_active_after_run', held.hold.id]]);
    await ledger.release({ holdId: held.hold.id, idempotencyKey: key('release'), reason: 'run failed' });
    await expectNoDrift(wallet.id);
  });

  it('reports drift when the wallet row, a hold or a usage record disagrees with the ledger', async () => {
    const wallet = await fundedWallet(ledger, 'drift', 10_000n);
    const held = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('hold'), traceId: trace() });
    const active = await ledger.hold({ orgId: wallet.orgId, amountMicros: 500n, idempotencyKey: key('hold'), traceId: trace() });
    const captured = await ledger.capture({ holdId: held.hold.id, idempotencyKey: key('c'), usage: usage(1, 1), costMicros: 400n });
    await expectNoDrift(wallet.id);
    const checks = async () => (await reconcile(pool, { walletIds: [wallet.id] })).drift.map((d) => d.check).sort();
    // Each tampering is undone in `finally`, so the run's final reconcile stays clean.
    try {
      await pool.query('UPDATE wallets SET balance_micros = balance_micros + 7 WHERE id = $1', [wallet.id]);
      expect(await checks()).toEqual(['balance_equals_ledger', 'last_transaction_matches_wallet']);
    } finally {
      await pool.query('UPDATE wallets SET balance_micros = balance_micros - 7 WHERE id = $1', [wallet.id]);
    }
    try {
      await pool.query(`UPDATE holds SET status = 'released', settled_at = now() WHERE id = $1`, [active.hold.id]);
      expect(await checks()).toEqual(['frozen_equals_active_holds', 'hold_settlement']);
    } finally {
      await pool.query(`UPDATE holds SET status = 'active', settled_at = NULL WHERE id = $1`, [active.hold.id]);
    }
    try {
      await pool.query('UPDATE usage_records SET trace_id = $2, cost_micros = 1 WHERE id = $1', [captured.usageRecordId, trace()]);
      expect(await checks()).toEqual(['capture_usage_cost', 'capture_usage_trace']);
      await pool.query('UPDATE usage_records SET hold_id = NULL WHERE id = $1', [captured.usageRecordId]);
      expect(await checks()).toEqual(['capture_usage_record']);
    } finally {
      await pool.query('UPDATE usage_records SET trace_id = $2, cost_micros = 400, hold_id = $3 WHERE id = $1', [captured.usageRecordId, captured.transaction.traceId, held.hold.id]);
    }
    await expectNoDrift(wallet.id);
  });
});
