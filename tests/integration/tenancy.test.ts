// Walks EVERY /api route of openapi.yaml as a caller from another organization and as an API key
// of another project, against a victim tenant's real ids. Expect 0 leaks: 401/403/404 everywhere,
// nothing of the victim in any body, and nothing of the victim changed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, createKey, missingAuditTraceIds, signUp, type Tenant } from '../support/api.ts';
import { exampleBody, OPERATIONS, pathFor, type RouteIds } from '../support/operations.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

const ALL_SCOPES = ['chat:write', 'workflows:run', 'workflows:write', 'kb:read', 'kb:write', 'usage:read'];

let gateway: TestGateway;
let victim: Tenant;
let victimIds: RouteIds;
let victimSecrets: string[];

beforeAll(async () => {
  gateway = await startTestGateway();
  victim = await signUp(gateway.url, 'victim');
  const invitation = await victim.client.post(`/api/v1/orgs/${victim.org.id}/invitations`, { email: 'pending@example.test', role: 'member' });
  const key = await victim.client.post(`/api/v1/projects/${victim.project.id}/api-keys`, { name: 'victim key', scopes: ALL_SCOPES });
  const kb = await victim.client.post(`/api/v1/projects/${victim.project.id}/knowledge-bases`, { name: 'victim secret kb' });
  expect(kb.status).toBe(201);
  // A stored, indexed document as ingestion leaves it (the file is really in storage).
  const storageKey = `projects/${victim.project.id}/knowledge-bases/${kb.body.id}/documents/victim-doc`;
  const stored = await gateway.deps.knowledge!.storage.put(storageKey, new TextEncoder().encode('victim secret document body'), { contentType: 'text/plain' });
  const document = await gateway.deps.prisma.document.create({
    data: {
      knowledgeBaseId: kb.body.id,
      orgId: victim.org.id,
      projectId: victim.project.id,
      filename: 'victim-secret-file.txt',
      mimeType: 'text/plain',
      sizeBytes: BigInt(stored.sizeBytes),
      sha256: stored.sha256,
      storageKey,
      status: 'indexed',
      chunkCount: 1,
      chunks: { create: { knowledgeBaseId: kb.body.id, ordinal: 0, text: 'victim secret document body', tokenCount: 4 } },
    },
  });
  await victim.client.put(`/api/v1/projects/${victim.project.id}/policy`, { allowed_models: ['victim-secret-model'] });
  const session = await victim.client.post(`/api/v1/projects/${victim.project.id}/chat/sessions`, { title: 'victim secret session' });
  // A run row as the chat route makes it (no worker needed: attackers must be refused before it matters).
  const run = await gateway.deps.prisma.workflowRun.create({
    data: {
      orgId: victim.org.id,
      projectId: victim.project.id,
      kind: 'chat',
      temporalWorkflowId: `chat-victim-${Date.now()}`,
      status: 'running',
      traceId: 'c'.repeat(32),
      actorType: 'user',
      actorId: victim.user.id,
    },
  });
  const workflow = await victim.client.post(`/api/v1/projects/${victim.project.id}/workflows`, {
    source: 'name: victim secret workflow\nsteps:\n  - id: a\n    kind: transform\n    value: 1\n',
  });
  // A workflow run row as the start route makes it, with an approval step waiting.
  const workflowRun = await gateway.deps.prisma.workflowRun.create({
    data: {
      orgId: victim.org.id,
      projectId: victim.project.id,
      kind: 'workflow',
      definitionId: workflow.body.id,
      versionId: workflow.body.latest.id,
      temporalWorkflowId: `wf-victim-${Date.now()}`,
      status: 'running',
      traceId: 'd'.repeat(32),
      actorType: 'user',
      actorId: victim.user.id,
      steps: { create: { stepKey: 'review', stepId: 'review', kind: 'approval', status: 'waiting' } },
    },
  });
  victimIds = {
    orgId: victim.org.id,
    projectId: victim.project.id,
    userId: victim.user.id,
    invitationId: invitation.body.id,
    keyId: key.body.id,
    sessionId: session.body.id,
    runId: run.id,
    workflowId: workflow.body.id,
    version: '1',
    workflowRunId: workflowRun.id,
    knowledgeBaseId: kb.body.id,
    documentId: document.id,
  };
  victimSecrets = ['victim secret kb', 'victim-secret-file.txt', 'victim secret document body', 'victim secret workflow', victim.org.name, victim.project.name, victim.email, 'pending@example.test', key.body.prefix, 'victim-secret-model', 'victim secret session'];
});

afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await gateway.close();
});

async function attackEveryRoute(attacker: ApiClient, label: string) {
  const leaks: string[] = [];
  const routes = OPERATIONS.filter((op) => op.path.includes('{'));
  for (const op of routes) {
    const res = await attacker.request(op.method.toUpperCase(), pathFor(op, victimIds), { body: exampleBody(op) });
    const text = JSON.stringify(res.body);
    if (![401, 403, 404].includes(res.status)) leaks.push(`${label}: ${op.operationId} answered ${res.status} ${text.slice(0, 200)}`);
    for (const secret of victimSecrets) if (text.includes(secret)) leaks.push(`${label}: ${op.operationId} leaked "${secret}"`);
  }
  return { leaks, routes: routes.length };
}

describe('tenancy', () => {
  it('a user of another organization reaches nothing of the victim (every route)', async () => {
    const outsider = await signUp(gateway.url, 'outsider');
    const { leaks, routes } = await attackEveryRoute(outsider.client, 'other-org user');
    expect(routes).toBeGreaterThan(15);
    expect(leaks).toEqual([]);
  });

  it('an all-scopes API key of another organization reaches nothing of the victim (every route)', async () => {
    const outsider = await signUp(gateway.url, 'keyorg');
    const key = await createKey(outsider, ALL_SCOPES);
    const { leaks } = await attackEveryRoute(outsider.client.withApiKey(key), 'other-org key');
    expect(leaks).toEqual([]);
  });

  it('an all-scopes API key of ANOTHER PROJECT of the same organization reaches nothing of the victim project', async () => {
    const sibling = await victim.client.post(`/api/v1/orgs/${victim.org.id}/projects`, { name: 'Sibling project' });
    expect(sibling.status).toBe(201);
    const key = await createKey(victim, ALL_SCOPES, sibling.body.id);
    const siblingKey = new ApiClient(gateway.url, { apiKey: key });
    const leaks: string[] = [];
    for (const op of OPERATIONS.filter((o) => o.path.includes('{projectId}'))) {
      const res = await siblingKey.request(op.method.toUpperCase(), pathFor(op, victimIds), { body: exampleBody(op) });
      if (![403, 404].includes(res.status)) leaks.push(`${op.operationId} answered ${res.status}`);
      if (JSON.stringify(res.body).includes(victim.project.name)) leaks.push(`${op.operationId} leaked the project name`);
    }
    expect(leaks).toEqual([]);
    // The sibling key does work on its own project.
    expect((await siblingKey.get(`/api/v1/projects/${sibling.body.id}`)).status).toBe(200);
  });

  it('after all attacks the victim’s data is unchanged', async () => {
    const org = await victim.client.get(`/api/v1/orgs/${victim.org.id}`);
    expect(org.body.name).toBe(victim.org.name);
    const project = await victim.client.get(`/api/v1/projects/${victim.project.id}`);
    expect(project.body).toMatchObject({ name: victim.project.name, archived_at: null });
    const members = await victim.client.get(`/api/v1/orgs/${victim.org.id}/members`);
    expect(members.body.data.map((m: { user: { id: string } }) => m.user.id)).toEqual([victim.user.id]);
    const keys = await victim.client.get(`/api/v1/projects/${victim.project.id}/api-keys`);
    expect(keys.body.data.find((k: { id: string }) => k.id === victimIds.keyId).revoked_at).toBeNull();
    const invitations = await victim.client.get(`/api/v1/orgs/${victim.org.id}/invitations`);
    expect(invitations.body.data.map((i: { id: string }) => i.id)).toContain(victimIds.invitationId);
    const sessions = await victim.client.get(`/api/v1/projects/${victim.project.id}/chat/sessions`);
    expect(sessions.body.data.map((x: { title: string }) => x.title)).toEqual(['victim secret session']);
    const run = await gateway.deps.prisma.workflowRun.findUniqueOrThrow({ where: { id: victimIds.runId } });
    expect(run.status).toBe('running');
    const workflowRun = await gateway.deps.prisma.workflowRun.findUniqueOrThrow({ where: { id: victimIds.workflowRunId }, include: { steps: true } });
    expect(workflowRun).toMatchObject({ status: 'running', steps: [{ status: 'waiting' }] });
    const workflow = await victim.client.get(`/api/v1/projects/${victim.project.id}/workflows/${victimIds.workflowId}`);
    expect(workflow.body).toMatchObject({ name: 'victim secret workflow', latest_version: 1, archived_at: null });
    const kb = await gateway.deps.prisma.knowledgeBase.findUniqueOrThrow({ where: { id: victimIds.knowledgeBaseId } });
    expect(kb).toMatchObject({ name: 'victim secret kb', archivedAt: null, embeddingModel: 'text-embedding-3-small' });
    const document = await gateway.deps.prisma.document.findUniqueOrThrow({ where: { id: victimIds.documentId }, include: { chunks: true } });
    expect(document).toMatchObject({ status: 'indexed', generation: 1, chunks: [{ text: 'victim secret document body' }] });
    const bytes = await gateway.deps.knowledge!.storage.getBytes(document.storageKey);
    expect(new TextDecoder().decode(bytes)).toBe('victim secret document body');
    const policy = await victim.client.get(`/api/v1/projects/${victim.project.id}/policy`);
    expect(policy.body.rules).toMatchObject({ allowed_models: ['victim-secret-model'], max_tokens_per_request: null });
  });

  it('lists only ever show the caller’s own tenants', async () => {
    const other = await signUp(gateway.url, 'lister');
    const orgs = await other.client.get('/api/v1/orgs');
    expect(orgs.body.data.map((o: { id: string }) => o.id)).toEqual([other.org.id]);
    expect(JSON.stringify(orgs.body)).not.toContain(victim.org.name);
  });
});
