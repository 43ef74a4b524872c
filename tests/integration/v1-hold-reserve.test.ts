// Holds taken ahead for a busy (API key, model) pair (gateway/src/services/hold-reserve.ts): a
// busy key's /v1 calls use holds that stood before they arrived, and the money stays exact — one
// hold, one capture, one usage and one audit row per call; the holds left over are released when
// the pair goes quiet or the gateway stops; calls that find the reserve empty while a refill is on
// its way wait for one of its holds; reconcile finds no drift.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { reconcile } from '@deepspace/core/billing/index';
import { createKey, signUp, type Tenant } from '../support/api.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';
import { settleAfterResponses } from '../../gateway/src/services/settlements.ts';
import { WalletHeadroom } from '@deepspace/core/billing/wallet-headroom';
import { HOT_CALLS_PER_SECOND, HoldReserve, type ReserveKey } from '../../gateway/src/services/hold-reserve.ts';

let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway({ V1_HOLD_RESERVE: '8' });
});
afterAll(async () => {
  await gateway.close();
});

async function busyTenant(g: TestGateway, label: string): Promise<{ tenant: Tenant; key: string }> {
  const tenant = await signUp(g.url, label);
  await g.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 50_000_000n, idempotencyKey: `test-topup:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  return { tenant, key: await createKey(tenant, ['chat:write']) };
}

async function complete(g: TestGateway, key: string, maxTokens = 16): Promise<string> {
  const res = await fetch(`${g.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Name one enzyme.' }], max_tokens: maxTokens }),
  });
  expect(res.status).toBe(200);
  await res.json();
  return res.headers.get('x-trace-id')!;
}

/** `total` calls, `concurrency` at a time; their trace ids. */
async function burst(g: TestGateway, key: string, total: number, concurrency = 4): Promise<string[]> {
  const traces: string[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < total) {
        next++;
        traces.push(await complete(g, key));
      }
    }),
  );
  return traces;
}

async function reserveHolds(g: TestGateway, orgId: string) {
  return g.deps.prisma.hold.findMany({ where: { orgId, idempotencyKey: { startsWith: 'v1:reserve:' } } });
}

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('holds taken ahead for a busy key', () => {
  it('serves a busy key’s calls from holds that stood before them, one hold and one capture per call, and releases the rest once it goes quiet', async () => {
    const { tenant, key } = await busyTenant(gateway, 'reserve-busy');
    const before = await gateway.deps.ledger.getWallet(tenant.org.id);
    const traces = await burst(gateway, key, 3 * HOT_CALLS_PER_SECOND);
    await settleAfterResponses();

    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { traceId: { in: traces } } });
    expect(usage).toHaveLength(traces.length);
    const holdIds = usage.map((u) => u.holdId!);
    expect(new Set(holdIds).size).toBe(traces.length); // one hold per call
    const holds = await gateway.deps.prisma.hold.findMany({ where: { id: { in: holdIds } } });
    expect(holds.every((h) => h.status === 'captured')).toBe(true);
    // Calls after the key got busy used holds taken ahead (by a refill, under its own trace id).
    const servedAhead = holds.filter((h) => h.idempotencyKey.startsWith('v1:reserve:'));
    expect(servedAhead.length).toBeGreaterThanOrEqual(HOT_CALLS_PER_SECOND);
    expect(servedAhead.every((h) => !traces.includes(h.traceId!))).toBe(true);
    // Each call has exactly one capture row and one audit row, under its own trace id.
    const captures = await gateway.deps.prisma.walletTransaction.findMany({ where: { kind: 'capture', traceId: { in: traces } } });
    expect(captures.map((c) => c.holdId).sort()).toEqual([...holdIds].sort());
    expect(await gateway.deps.prisma.auditLog.count({ where: { traceId: { in: traces }, action: 'ai.call' } })).toBe(traces.length);

    // Holds are still ready (frozen) right after the burst; a quiet second releases every one.
    expect((await reserveHolds(gateway, tenant.org.id)).some((h) => h.status === 'active')).toBe(true);
    await until(async () => (await gateway.deps.ledger.getWallet(tenant.org.id)).frozenMicros === 0n, 5_000, 'the ready holds to be released');
    const leftOver = (await reserveHolds(gateway, tenant.org.id)).filter((h) => h.status !== 'captured');
    expect(leftOver.length).toBeGreaterThan(0);
    expect(leftOver.every((h) => h.status === 'released')).toBe(true);
    const releases = await gateway.deps.prisma.walletTransaction.findMany({ where: { holdId: { in: leftOver.map((h) => h.id) } , kind: 'release' } });
    expect(releases).toHaveLength(leftOver.length);
    expect(releases.every((r) => r.reason === 'unused_reserve')).toBe(true);

    const charged = usage.reduce((sum, u) => sum + u.costMicros, 0n);
    expect((await gateway.deps.ledger.getWallet(tenant.org.id)).balanceMicros).toBe(before.balanceMicros - charged);
    expect((await reconcile(gateway.deps.pool, { walletIds: [before.id] })).drift).toEqual([]);
  });

  it('a call larger than the ready holds is not served by them: its hold is taken at its size', async () => {
    const { tenant, key } = await busyTenant(gateway, 'reserve-larger');
    await burst(gateway, key, 2 * HOT_CALLS_PER_SECOND);
    await until(async () => (await reserveHolds(gateway, tenant.org.id)).some((h) => h.status === 'active'), 5_000, 'holds taken ahead');
    const smallAmount = (await reserveHolds(gateway, tenant.org.id)).find((h) => h.status === 'active')!.amountMicros;
    const large = await complete(gateway, key, 4_000);
    await settleAfterResponses();
    const usage = await gateway.deps.prisma.usageRecord.findFirstOrThrow({ where: { traceId: large } });
    const hold = await gateway.deps.prisma.hold.findUniqueOrThrow({ where: { id: usage.holdId! } });
    // Its own, or one of the holds the pair now takes at the larger size (the refill it started).
    expect(hold.status).toBe('captured');
    expect(hold.amountMicros).toBeGreaterThan(smallAmount);
    await until(async () => (await gateway.deps.ledger.getWallet(tenant.org.id)).frozenMicros === 0n, 5_000, 'the ready holds to be released');
    expect((await reconcile(gateway.deps.pool, { walletIds: [(await gateway.deps.ledger.getWallet(tenant.org.id)).id] })).drift).toEqual([]);
  });

  it('a stopping gateway releases its ready holds before it closes', async () => {
    const own = await startTestGateway({ V1_HOLD_RESERVE: '8' });
    let closed = false;
    try {
      const { tenant, key } = await busyTenant(own, 'reserve-stop');
      await burst(own, key, 2 * HOT_CALLS_PER_SECOND);
      await until(async () => (await reserveHolds(own, tenant.org.id)).some((h) => h.status === 'active'), 5_000, 'holds taken ahead');
      await own.close();
      closed = true;
      const wallet = await gateway.deps.ledger.getWallet(tenant.org.id);
      expect(wallet.frozenMicros).toBe(0n);
      expect((await reconcile(gateway.deps.pool, { walletIds: [wallet.id] })).drift).toEqual([]);
    } finally {
      if (!closed) await own.close();
    }
  });

  it('calls that find no ready hold while a refill is on its way get one of its holds, not a statement of their own', async () => {
    const tenant = await signUp(gateway.url, 'reserve-join');
    await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 50_000_000n, idempotencyKey: `test-topup:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
    const wallet = await gateway.deps.ledger.getWallet(tenant.org.id);
    const model = (await gateway.deps.catalog.get('gpt-4o-mini'))!;
    const price = (await gateway.deps.catalog.priceAt(model.id))!;
    const key: ReserveKey = { orgId: tenant.org.id, projectId: tenant.project.id, keyId: 'test-key-join', modelId: model.id, priceId: price.id };
    const headroom = new WalletHeadroom({ factor: 20 });
    headroom.note(tenant.org.id, { balanceAfterMicros: wallet.balanceMicros, frozenAfterMicros: wallet.frozenMicros });
    const reserve = new HoldReserve({ ledger: gateway.deps.ledger, headroom, size: 4, callTtlMs: 60_000, log: gateway.deps.logger });
    try {
      // Not busy yet: every call takes its own.
      for (let i = 1; i < HOT_CALLS_PER_SECOND; i++) expect(reserve.take(key, 1_000n)).toBeNull();
      // The call that makes the pair busy starts a refill of 4; it and the next three wait for it,
      // the fifth (nothing to spare) takes its own.
      const waiting = Array.from({ length: 4 }, () => reserve.take(key, 1_000n));
      expect(waiting.every((w) => w instanceof Promise)).toBe(true);
      expect(reserve.take(key, 1_000n)).toBeNull();
      const served = await Promise.all(waiting);
      const ids = served.map((r) => r!.hold.id);
      expect(new Set(ids).size).toBe(4);
      expect(reserve.readyCount()).toBe(0);
      const holds = await gateway.deps.prisma.hold.findMany({ where: { orgId: tenant.org.id } });
      expect(holds.map((h) => h.id).sort()).toEqual([...ids].sort()); // the refill's holds, none other
      expect(holds.every((h) => h.status === 'active' && h.idempotencyKey.startsWith('v1:reserve:') && h.amountMicros === 1_024n)).toBe(true);
      expect(reserve.stats).toMatchObject({ served: 4, taken: 4 });
      // The calls settle them as their own.
      for (const id of ids) await gateway.deps.ledger.release({ holdId: id, idempotencyKey: `test-release:${id}`, reason: 'test', actor: { type: 'system' } });
    } finally {
      await reserve.close();
    }
    expect((await gateway.deps.ledger.getWallet(tenant.org.id)).frozenMicros).toBe(0n);
    expect((await reconcile(gateway.deps.pool, { walletIds: [wallet.id] })).drift).toEqual([]);
  });

  it('when the refill they wait for is refused, the waiting calls are told to take their own', async () => {
    const tenant = await signUp(gateway.url, 'reserve-join-refused');
    // The wallet looks rich to this process (a stale sighting) but is empty: the refill is refused.
    const model = (await gateway.deps.catalog.get('gpt-4o-mini'))!;
    const price = (await gateway.deps.catalog.priceAt(model.id))!;
    const key: ReserveKey = { orgId: tenant.org.id, projectId: tenant.project.id, keyId: 'test-key-refused', modelId: model.id, priceId: price.id };
    const headroom = new WalletHeadroom({ factor: 20 });
    headroom.note(tenant.org.id, { balanceAfterMicros: 1_000_000_000n, frozenAfterMicros: 0n });
    const reserve = new HoldReserve({ ledger: gateway.deps.ledger, headroom, size: 4, callTtlMs: 60_000, log: gateway.deps.logger });
    try {
      for (let i = 1; i < HOT_CALLS_PER_SECOND; i++) reserve.take(key, 1_000n);
      const waiting = [reserve.take(key, 1_000n), reserve.take(key, 1_000n)];
      expect(waiting.every((w) => w instanceof Promise)).toBe(true);
      expect(await Promise.all(waiting)).toEqual([null, null]);
      expect(reserve.stats).toMatchObject({ served: 0, taken: 0 });
      expect(await gateway.deps.prisma.hold.count({ where: { orgId: tenant.org.id } })).toBe(0);
    } finally {
      await reserve.close();
    }
  });

  it('with V1_HOLD_RESERVE=0 every call takes its own hold', async () => {
    const own = await startTestGateway({ V1_HOLD_RESERVE: '0' });
    try {
      const { tenant, key } = await busyTenant(own, 'reserve-off');
      const traces = await burst(own, key, 2 * HOT_CALLS_PER_SECOND);
      await settleAfterResponses();
      const holds = await own.deps.prisma.hold.findMany({ where: { orgId: tenant.org.id } });
      expect(holds.map((h) => h.traceId).sort()).toEqual([...traces].sort());
    } finally {
      await own.close();
    }
  });
});
