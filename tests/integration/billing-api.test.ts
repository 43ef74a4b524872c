import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, missingAuditTraceIds, signUp, type Tenant } from '../support/api.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';
import { forgetSessions } from '../../gateway/src/auth/authenticate.ts';

let gateway: TestGateway;
let admin: Tenant;
beforeAll(async () => {
  gateway = await startTestGateway();
  admin = await signUp(gateway.url, 'platform');
  await gateway.deps.prisma.user.update({ where: { id: admin.user.id }, data: { isPlatformAdmin: true } });
  // A change made straight in the database reaches a gateway's session cache within 5 s; this
  // in-process gateway is told at once.
  forgetSessions({ userId: admin.user.id });
});
afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await gateway.close();
});

describe('wallet API', () => {
  it('platform admins top up once per Idempotency-Key, with an audit row carrying the trace id', async () => {
    const customer = await signUp(gateway.url, 'customer');
    const path = `/api/v1/admin/orgs/${customer.org.id}/wallet/topups`;
    const first = await admin.client.post(path, { amount_micros: '25000000', reason: 'invoice 42' }, { 'idempotency-key': 'inv-42' });
    expect(first.status).toBe(201);
    expect(first.body.wallet).toMatchObject({ balance_micros: '25000000', frozen_micros: '0', available_micros: '25000000' });
    const replay = await admin.client.post(path, { amount_micros: '25000000', reason: 'invoice 42' }, { 'idempotency-key': 'inv-42' });
    expect(replay.status).toBe(201);
    expect(replay.body.transaction.id).toBe(first.body.transaction.id);
    const wallet = await customer.client.get(`/api/v1/orgs/${customer.org.id}/wallet`);
    expect(wallet.body.balance_micros).toBe('25000000');
    const audit = await gateway.deps.prisma.auditLog.findFirstOrThrow({ where: { traceId: first.traceId } });
    expect(audit).toMatchObject({ actorType: 'user', actorId: admin.user.id, orgId: customer.org.id });
    expect(audit.action).toMatch(/topup/);
  });

  it('adjustments are signed and can never take the balance below zero', async () => {
    const customer = await signUp(gateway.url, 'adjust');
    await admin.client.post(`/api/v1/admin/orgs/${customer.org.id}/wallet/topups`, { amount_micros: '1000', reason: 'seed money' });
    const debit = await admin.client.post(`/api/v1/admin/orgs/${customer.org.id}/wallet/adjustments`, { delta_micros: '-400', reason: 'correction' });
    expect(debit.status).toBe(201);
    expect(debit.body.wallet.balance_micros).toBe('600');
    const overdraw = await admin.client.post(`/api/v1/admin/orgs/${customer.org.id}/wallet/adjustments`, { delta_micros: '-601', reason: 'too much' });
    expect(overdraw.status).toBe(402);
    expect(overdraw.body.error.code).toBe('insufficient_funds');
    const txs = await customer.client.get(`/api/v1/orgs/${customer.org.id}/wallet/transactions?limit=1`);
    expect(txs.body.data[0]).toMatchObject({ kind: 'adjust', amount_micros: '-400', balance_after_micros: '600', reason: 'correction' });
    expect(txs.body.has_more).toBe(true);
    const next = await customer.client.get(`/api/v1/orgs/${customer.org.id}/wallet/transactions?limit=1&starting_after=${txs.body.data[0].id}`);
    expect(next.body.data[0].kind).toBe('topup');
  });

  it('organization owners cannot move money, and nobody reads another organization’s wallet', async () => {
    const owner = await signUp(gateway.url, 'owner-money');
    const topup = await owner.client.post(`/api/v1/admin/orgs/${owner.org.id}/wallet/topups`, { amount_micros: '1000000', reason: 'free money' });
    expect(topup.status).toBe(403);
    const stranger = await signUp(gateway.url, 'stranger-money');
    expect((await stranger.client.get(`/api/v1/orgs/${owner.org.id}/wallet`)).status).toBe(404);
    expect((await new ApiClient(gateway.url).get(`/api/v1/orgs/${owner.org.id}/wallet`)).status).toBe(401);
    expect((await owner.client.get(`/api/v1/orgs/${owner.org.id}/wallet`)).body.balance_micros).toBe('0');
  });
});
