// Each API key scope allows exactly its routes: for every operation, a key holding only scope S
// is refused with insufficient_scope unless the operation requires S (or any key); routes without
// `x-scope` refuse every key.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createKey, missingAuditTraceIds, signUp, type Tenant } from '../support/api.ts';
import { exampleBody, OPERATIONS, pathFor, type RouteIds } from '../support/operations.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';
import { SCOPES } from '../../gateway/src/auth/actor.ts';

let gateway: TestGateway;
let owner: Tenant;
let ids: RouteIds;

beforeAll(async () => {
  gateway = await startTestGateway();
  owner = await signUp(gateway.url, 'scopes');
  const invitation = await owner.client.post(`/api/v1/orgs/${owner.org.id}/invitations`, { email: 'scoped@example.test', role: 'viewer' });
  const key = await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys`, { name: 'target', scopes: ['usage:read'] });
  ids = { orgId: owner.org.id, projectId: owner.project.id, userId: owner.user.id, invitationId: invitation.body.id, keyId: key.body.id, sessionId: randomUUID(), runId: randomUUID(), workflowId: randomUUID(), version: '1', workflowRunId: randomUUID(), knowledgeBaseId: randomUUID(), documentId: randomUUID() };
});
afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await gateway.close();
});

describe('API key scopes', () => {
  it('every scope the spec requires is a scope keys can be given', () => {
    const used = new Set(OPERATIONS.map((op) => op.scope).filter((s): s is string => Boolean(s) && s !== 'any'));
    expect([...used].filter((s) => !(SCOPES as readonly string[]).includes(s))).toEqual([]);
    expect(used.has('usage:read')).toBe(true);
  });

  for (const scope of SCOPES) {
    it(`a key with only "${scope}" is allowed exactly the routes needing "${scope}" or any key`, async () => {
      const client = owner.client.withApiKey(await createKey(owner, [scope]));
      const wrong: string[] = [];
      for (const op of OPERATIONS) {
        if (op.auth === 'public') continue;
        const res = await client.request(op.method.toUpperCase(), pathFor(op, ids), { body: exampleBody(op) });
        const refused = res.status === 403 && res.body?.error?.code === 'insufficient_scope';
        const shouldPass = op.auth === 'any' && (op.scope === 'any' || op.scope === scope);
        if (shouldPass && refused) wrong.push(`${op.operationId} refused`);
        if (!shouldPass && !refused) wrong.push(`${op.operationId} answered ${res.status} instead of insufficient_scope`);
        if (shouldPass && res.status >= 500) wrong.push(`${op.operationId} failed with ${res.status}`);
      }
      expect(wrong).toEqual([]);
    });
  }

  it('usage:read lists the project’s usage with totals; without it the key gets 403 naming the scope', async () => {
    const reader = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    const ok = await reader.get(`/api/v1/projects/${owner.project.id}/usage`);
    expect(ok.status).toBe(200);
    expect(ok.body).toMatchObject({ data: [], has_more: false, totals: { calls: 0, cost_micros: '0' } });
    const other = owner.client.withApiKey(await createKey(owner, ['kb:read']));
    const denied = await other.get(`/api/v1/projects/${owner.project.id}/usage`);
    expect(denied.status).toBe(403);
    expect(denied.body.error).toMatchObject({ code: 'insufficient_scope', details: { required_scope: 'usage:read' } });
  });
});
