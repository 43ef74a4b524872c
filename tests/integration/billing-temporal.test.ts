import { randomUUID } from 'node:crypto';
import { ApplicationFailure } from '@temporalio/common';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, createPrisma, Ledger, reconcile, type PgPool, type PrismaClient } from '@deepspace/core';
import { createBillingActivities } from '../../temporal-workers/src/activities/billing.ts';
import { ensureSchedules } from '../../temporal-workers/src/schedules.ts';
import { startTestWorker, testConfig, type TestWorker } from '../support/stack.ts';
import { fundedWallet, key, newModel, testPool, trace } from './billing-fixtures.ts';

let pool: PgPool;
let ledger: Ledger;

// Expected failures would otherwise be logged as WARN by the mock environment.
const quietEnv = () => new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') });

/** Runs an activity in a mock activity context (as Temporal would, including re-runs for retries). */
function inActivity<A extends unknown[], R>(env: MockActivityEnvironment, fn: (...args: A) => Promise<R>, ...args: A): Promise<R> {
  return env.run(fn, ...args) as Promise<R>;
}

beforeAll(() => {
  pool = testPool(5);
  ledger = new Ledger(pool);
});
afterAll(async () => {
  await pool.end();
});

describe('billing activities', () => {
  let prisma: PrismaClient;
  let activities: ReturnType<typeof createBillingActivities>;
  beforeAll(() => {
    prisma = createPrisma(process.env.DATABASE_URL!, { max: 1 });
    activities = createBillingActivities({ prisma, pool, logger: createLogger('billing-test', 'silent'), workerIdentity: 'test' });
  });
  afterAll(async () => {
    await prisma.$disconnect();
  });

  it('hold → capture through the activities: a retried activity never charges twice', async () => {
    const model = await newModel(pool, { input: 2_000_000n, output: 4_000_000n });
    const wallet = await fundedWallet(ledger, 'activity', 1_000_000n);
    const env = quietEnv();
    const holdInput = {
      orgId: wallet.orgId, model: model.name, messages: [{ role: 'user', content: 'hello world' }], maxTokens: 100,
      traceId: trace(), runId: 'wf-activity', stepId: 'llm-1', idempotencyKey: key('wf-activity:llm-1:hold'),
    };
    const held = await inActivity(env, activities.billingHold, holdInput);
    // 9 prompt tokens × 2 + 100 × 4 micros.
    expect(held).toMatchObject({ amountMicros: '418', promptTokens: 9, modelName: model.name, priceId: model.priceId, replayed: false });
    expect(await inActivity(env, activities.billingHold, holdInput)).toMatchObject({ holdId: held.holdId, replayed: true });

    const captureInput = { holdId: held.holdId, idempotencyKey: key('wf-activity:llm-1:capture'), usage: { promptTokens: 9, completionTokens: 20, latencyMs: 300 } };
    const first = await inActivity(env, activities.billingCapture, captureInput);
    const retried = await inActivity(env, activities.billingCapture, captureInput);
    expect(first).toMatchObject({ chargedMicros: '98', releasedMicros: '320', uncollectedMicros: '0', replayed: false });
    expect(retried).toMatchObject({ transactionId: first.transactionId, replayed: true });
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 1_000_000n - 98n, frozenMicros: 0n });
    // A compensation arriving after the capture is refused, not applied.
    const failure = await inActivity(env, activities.billingRelease, { holdId: held.holdId, idempotencyKey: key('rel') }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'conflict', nonRetryable: true });
    expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('an unaffordable hold is a non-retryable insufficient_funds failure; release compensates a failed call', async () => {
    const model = await newModel(pool, { input: 1_000_000n, output: 1_000_000n });
    const wallet = await fundedWallet(ledger, 'activity-poor', 500n);
    const env = quietEnv();
    const base = { orgId: wallet.orgId, model: model.name, promptTokens: 100, traceId: trace() };
    const failure = await inActivity(env, activities.billingHold, { ...base, maxTokens: 1_000, idempotencyKey: key('h') }).catch((e: unknown) => e);
    expect(failure).toBeInstanceOf(ApplicationFailure);
    expect(failure).toMatchObject({ type: 'insufficient_funds', nonRetryable: true });
    const held = await inActivity(env, activities.billingHold, { ...base, maxTokens: 300, idempotencyKey: key('h') });
    const released = await inActivity(env, activities.billingRelease, { holdId: held.holdId, idempotencyKey: key('r'), reason: 'upstream failed' });
    expect(released).toMatchObject({ status: 'released', releasedMicros: '400', replayed: false });
    expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 500n, frozenMicros: 0n });
  });
});

describe('billing-expire-holds schedule', () => {
  let worker: TestWorker;
  beforeAll(async () => {
    worker = await startTestWorker();
  });
  afterAll(async () => {
    await worker?.stop();
  });

  it('is created idempotently, and a triggered run releases a hold whose run died', async () => {
    const config = testConfig();
    // Its own id: parallel suites (and worker processes) must not share this run's schedule.
    const scheduleId = `billing-expire-holds-test-${randomUUID().slice(0, 8)}`;
    expect(await ensureSchedules(worker.client, config, { expireHoldsScheduleId: scheduleId })).toEqual({ created: [scheduleId], updated: [] });
    expect(await ensureSchedules(worker.client, config, { expireHoldsScheduleId: scheduleId })).toEqual({ created: [], updated: [scheduleId] });
    const handle = worker.client.schedule.getHandle(scheduleId);
    try {
      const description = await handle.describe();
      expect(description.spec.intervals).toEqual([expect.objectContaining({ every: 60_000 })]);
      expect(description.action).toMatchObject({ type: 'startWorkflow', workflowType: 'expireHoldsWorkflow', taskQueue: config.temporal.taskQueue });

      const wallet = await fundedWallet(ledger, 'schedule', 10_000n);
      const dead = await ledger.hold({ orgId: wallet.orgId, amountMicros: 4_000n, idempotencyKey: key('dead-run'), traceId: trace(), expiresAt: new Date(Date.now() - 1_000) });
      const alive = await ledger.hold({ orgId: wallet.orgId, amountMicros: 1_000n, idempotencyKey: key('live-run'), traceId: trace(), ttlMs: 3_600_000 });
      expect((await ledger.getWallet(wallet.orgId)).availableMicros).toBe(5_000n);

      await handle.trigger();
      const deadline = Date.now() + 30_000;
      while ((await ledger.getHold(dead.hold.id)).status === 'active') {
        if (Date.now() > deadline) throw new Error('the triggered sweep did not expire the hold within 30 s');
        await new Promise((r) => setTimeout(r, 200));
      }
      expect(await ledger.getHold(dead.hold.id)).toMatchObject({ status: 'expired' });
      expect(await ledger.getHold(alive.hold.id)).toMatchObject({ status: 'active' });
      expect(await ledger.getWallet(wallet.orgId)).toMatchObject({ balanceMicros: 10_000n, frozenMicros: 1_000n, availableMicros: 9_000n });
      const expiry = await ledger.listTransactions(wallet.orgId, { limit: 1 });
      expect(expiry.data[0]).toMatchObject({ kind: 'release', holdId: dead.hold.id, amountMicros: 4_000n, idempotencyKey: `expire:${dead.hold.id}`, actorType: 'system' });
      expect((await reconcile(pool, { walletIds: [wallet.id] })).drift).toEqual([]);

      const runs = (await handle.describe()).info.recentActions;
      expect(runs.length).toBeGreaterThanOrEqual(1);
    } finally {
      await handle.delete();
    }
  });
});
