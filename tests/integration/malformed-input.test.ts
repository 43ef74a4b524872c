// Malformed input on every operation: wrong types, missing fields, unknown fields, bad JSON,
// huge bodies, wrong content types, bad path and query parameters. Always a 4xx in the one error
// shape, never a 500; and nothing is written.
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createKey, missingAuditTraceIds, signUp, type ApiResponse, type Tenant } from '../support/api.ts';
import { exampleBody, OPERATIONS, pathFor, type RouteIds } from '../support/operations.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

let gateway: TestGateway;
let owner: Tenant;
let ids: RouteIds;
const problems: string[] = [];

function expectClientError(label: string, res: ApiResponse, statuses: number[], code?: string) {
  const shapeOk =
    res.body && typeof res.body === 'object' && res.body.error && typeof res.body.error.code === 'string' &&
    typeof res.body.error.message === 'string' && res.body.error.trace_id === res.traceId;
  if (!statuses.includes(res.status) || !shapeOk || (code && res.body.error.code !== code)) {
    problems.push(`${label}: ${res.status} ${JSON.stringify(res.body).slice(0, 160)}`);
  }
}

const bodyOps = () => OPERATIONS.filter((op) => op.validateBody);

beforeAll(async () => {
  gateway = await startTestGateway();
  owner = await signUp(gateway.url, 'malformed');
  const invitation = await owner.client.post(`/api/v1/orgs/${owner.org.id}/invitations`, { email: 'm@example.test', role: 'member' });
  const key = await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys`, { name: 'k', scopes: ['usage:read'] });
  ids = { orgId: owner.org.id, projectId: owner.project.id, userId: owner.user.id, invitationId: invitation.body.id, keyId: key.body.id, sessionId: randomUUID(), runId: randomUUID(), workflowId: randomUUID(), version: '1', workflowRunId: randomUUID(), knowledgeBaseId: randomUUID(), documentId: randomUUID() };
});
beforeEach(() => {
  problems.length = 0;
});
afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await gateway.close();
});

function wrongTypeOf(value: unknown): unknown {
  if (typeof value === 'string') return 12345;
  if (typeof value === 'number') return 'not-a-number';
  if (Array.isArray(value)) return 'not-an-array';
  if (typeof value === 'boolean') return 'yes';
  return ['unexpected'];
}

describe('malformed input never gets a 500', () => {
  it('wrong types for every field of every body', async () => {
    for (const op of bodyOps()) {
      const valid = exampleBody(op) as Record<string, unknown>;
      for (const field of Object.keys(valid)) {
        const res = await owner.client.request(op.method.toUpperCase(), pathFor(op, ids), { body: { ...valid, [field]: wrongTypeOf(valid[field]) } });
        expectClientError(`${op.operationId}.${field} wrong type`, res, [400], 'validation_failed');
      }
    }
    expect(problems).toEqual([]);
  });

  it('missing required fields, unknown fields, arrays and scalars instead of objects', async () => {
    for (const op of bodyOps()) {
      const valid = exampleBody(op) as Record<string, unknown>;
      const path = pathFor(op, ids);
      const method = op.method.toUpperCase();
      // Bodies whose fields are all optional (a policy PUT of {} clears the rules) are valid empty.
      if (!op.validateBody!({})) {
        expectClientError(`${op.operationId} empty object`, await owner.client.request(method, path, { body: {} }), [400], 'validation_failed');
      }
      expectClientError(`${op.operationId} unknown field`, await owner.client.request(method, path, { body: { ...valid, surprise: true } }), [400], 'validation_failed');
      expectClientError(`${op.operationId} array body`, await owner.client.request(method, path, { body: [valid] }), [400], 'validation_failed');
      expectClientError(`${op.operationId} scalar body`, await owner.client.request(method, path, { rawBody: '42', headers: { 'content-type': 'application/json' } }), [400]);
      const nulls = Object.fromEntries(Object.keys(valid).map((k) => [k, null]));
      if (!op.validateBody!(nulls)) {
        expectClientError(`${op.operationId} null fields`, await owner.client.request(method, path, { body: nulls }), [400]);
      }
    }
    expect(problems).toEqual([]);
  });

  it('bad JSON, huge bodies and non-JSON content types', async () => {
    for (const op of bodyOps()) {
      const path = pathFor(op, ids);
      const method = op.method.toUpperCase();
      expectClientError(`${op.operationId} bad JSON`, await owner.client.request(method, path, { rawBody: '{"name": "x",', headers: { 'content-type': 'application/json' } }), [400], 'invalid_json');
      expectClientError(`${op.operationId} huge body`, await owner.client.request(method, path, { body: { name: 'x'.repeat(1_100_000) } }), [413], 'payload_too_large');
      expectClientError(`${op.operationId} text/plain`, await owner.client.request(method, path, { rawBody: 'name=x', headers: { 'content-type': 'text/plain' } }), [400, 415]);
    }
    expect(problems).toEqual([]);
  });

  it('invalid path parameters and query parameters', async () => {
    const notUuid: RouteIds = { orgId: 'not-a-uuid', projectId: "1' OR '1'='1", userId: '../../etc', invitationId: '%00', keyId: 'x'.repeat(300), sessionId: 'nope', runId: '12', workflowId: 'nope', version: 'abc', workflowRunId: '12', knowledgeBaseId: 'kb', documentId: '../x' };
    for (const op of OPERATIONS.filter((o) => o.path.includes('{'))) {
      const res = await owner.client.request(op.method.toUpperCase(), pathFor(op, notUuid), { body: exampleBody(op) });
      expectClientError(`${op.operationId} bad path ids`, res, [400, 404]);
    }
    const audit = `/api/v1/orgs/${owner.org.id}/audit`;
    for (const query of ['limit=abc', 'limit=0', 'limit=1000', 'since=yesterday', 'trace_id=xyz', 'starting_after=-1', 'unknown=1']) {
      expectClientError(`audit ?${query}`, await owner.client.get(`${audit}?${query}`), [400], 'validation_failed');
    }
    expect(problems).toEqual([]);
  });

  it('invalid values inside otherwise valid bodies', async () => {
    const cases: Array<[string, string, unknown]> = [
      ['POST', '/api/v1/auth/signup', { email: 'not-an-email', password: 'long-enough-pw', name: 'X' }],
      ['POST', '/api/v1/auth/signup', { email: 'a@b.test', password: 'short', name: 'X' }],
      ['POST', '/api/v1/auth/signup', { email: 'a@b.test', password: 'long-enough-pw', name: '   ' }],
      ['POST', `/api/v1/orgs/${ids.orgId}/projects`, { name: 'P', slug: 'Not A Slug!' }],
      ['POST', `/api/v1/projects/${ids.projectId}/api-keys`, { name: 'k', scopes: ['admin:everything'] }],
      ['POST', `/api/v1/projects/${ids.projectId}/api-keys`, { name: 'k', scopes: [] }],
      ['POST', `/api/v1/projects/${ids.projectId}/api-keys`, { name: 'k', scopes: ['usage:read', 'usage:read'] }],
      ['POST', `/api/v1/projects/${ids.projectId}/api-keys`, { name: 'k', scopes: ['usage:read'], expires_at: 'tomorrow' }],
      ['PUT', `/api/v1/projects/${ids.projectId}/policy`, { monthly_budget_micros: 1.5 }],
      ['PUT', `/api/v1/projects/${ids.projectId}/policy`, { monthly_budget_micros: '-5' }],
      ['PUT', `/api/v1/projects/${ids.projectId}/policy`, { requests_per_minute: 0 }],
      ['PATCH', `/api/v1/orgs/${ids.orgId}/members/${ids.userId}`, { role: 'emperor' }],
      ['POST', `/api/v1/orgs/${ids.orgId}/invitations`, { email: 'x@y.test', role: 'member', extra: 1 }],
    ];
    for (const [method, path, body] of cases) {
      expectClientError(`${method} ${path} ${JSON.stringify(body).slice(0, 60)}`, await owner.client.request(method, path, { body }), [400], 'validation_failed');
    }
    expect(problems).toEqual([]);
    expect(await gateway.deps.prisma.apiKey.count({ where: { projectId: ids.projectId } })).toBe(1);
  });

  it('API keys get the same treatment', async () => {
    const key = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    expectClientError('usage bad limit', await key.get(`/api/v1/projects/${ids.projectId}/usage?limit=-3`), [400], 'validation_failed');
    expectClientError('policy check bad body', await key.post(`/api/v1/projects/${ids.projectId}/policy/check`, { model: 7 }), [400], 'validation_failed');
    expect(problems).toEqual([]);
  });
});
