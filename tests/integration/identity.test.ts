import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, missingAuditTraceIds, signUp, uniqueEmail } from '../support/api.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway({ LOGIN_MAX_FAILURES: '3' });
});
afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await gateway.close();
});

describe('sign-up and sessions', () => {
  it('sign-up creates the user, an owned organization with a wallet, a default project, and a session cookie', async () => {
    const client = new ApiClient(gateway.url);
    const email = uniqueEmail('signup');
    const res = await client.post('/api/v1/auth/signup', { email: email.toUpperCase(), password: 'correct horse battery', name: 'Ada' });
    expect(res.status).toBe(201);
    expect(res.body.user.email).toBe(email);
    expect(res.body.organization.role).toBe('owner');
    const cookie = res.headers.get('set-cookie')!;
    expect(cookie).toMatch(/ds_session=dss_/);
    expect(cookie).toMatch(/HttpOnly/i);
    expect(cookie).toMatch(/SameSite=Lax/i);

    const user = await gateway.deps.prisma.user.findUniqueOrThrow({ where: { email } });
    expect(user.passwordHash).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(user.passwordHash).not.toContain('correct horse');
    const session = await gateway.deps.prisma.session.findFirstOrThrow({ where: { userId: user.id } });
    expect(cookie).not.toContain(session.tokenHash);
    expect(await gateway.deps.prisma.wallet.count({ where: { orgId: res.body.organization.id } })).toBe(1);

    const me = await client.get('/api/v1/me');
    expect(me.status).toBe(200);
    expect(me.body.type).toBe('user');
    expect(me.body.organizations.map((o: { id: string }) => o.id)).toEqual([res.body.organization.id]);
  });

  it('a second sign-up with the same email is a 409 and creates nothing', async () => {
    const tenant = await signUp(gateway.url, 'dup');
    // Other suites sign up in parallel against the same database: count only what this request could create.
    const orgName = `Dup ${tenant.email}`;
    const countCreated = async () => ({
      organizations: await gateway.deps.prisma.organization.count({ where: { name: orgName } }),
      users: await gateway.deps.prisma.user.count({ where: { email: tenant.email } }),
    });
    const before = await countCreated();
    const res = await new ApiClient(gateway.url).post('/api/v1/auth/signup', { email: tenant.email, password: 'another password', name: 'Dup', organization_name: orgName });
    expect(res.status).toBe(409);
    expect(res.body.error.code).toBe('conflict');
    expect(await countCreated()).toEqual(before);
    expect(before).toEqual({ organizations: 0, users: 1 });
  });

  it('login with a wrong password is 401 invalid_credentials; the same for an unknown email', async () => {
    const tenant = await signUp(gateway.url, 'login');
    const wrong = await new ApiClient(gateway.url).post('/api/v1/auth/login', { email: tenant.email, password: 'not-the-password' });
    const unknown = await new ApiClient(gateway.url).post('/api/v1/auth/login', { email: uniqueEmail('ghost'), password: 'not-the-password' });
    for (const res of [wrong, unknown]) {
      expect(res.status).toBe(401);
      expect(res.body.error).toEqual({ code: 'invalid_credentials', message: 'Email or password is wrong', trace_id: res.traceId });
    }
    const ok = new ApiClient(gateway.url);
    expect((await ok.post('/api/v1/auth/login', { email: tenant.email, password: tenant.password })).status).toBe(200);
    expect((await ok.get('/api/v1/me')).body.user.email).toBe(tenant.email);
  });

  it('locks the account after repeated failures, even with the right password, and says when to retry', async () => {
    const tenant = await signUp(gateway.url, 'lock');
    const anon = new ApiClient(gateway.url);
    for (let i = 0; i < 3; i++) expect((await anon.post('/api/v1/auth/login', { email: tenant.email, password: 'bad-guess' })).status).toBe(401);
    const locked = await anon.post('/api/v1/auth/login', { email: tenant.email, password: tenant.password });
    expect(locked.status).toBe(423);
    expect(locked.body.error.code).toBe('account_locked');
    expect(Number(locked.headers.get('retry-after'))).toBeGreaterThan(0);
  });

  it('logout revokes only the current session; logout-all revokes every session', async () => {
    const tenant = await signUp(gateway.url, 'logout');
    const second = new ApiClient(gateway.url);
    await second.post('/api/v1/auth/login', { email: tenant.email, password: tenant.password });
    const third = new ApiClient(gateway.url);
    await third.post('/api/v1/auth/login', { email: tenant.email, password: tenant.password });

    const oldCookie = tenant.client.cookie!;
    expect((await tenant.client.post('/api/v1/auth/logout')).status).toBe(204);
    const replay = await new ApiClient(gateway.url, { cookie: oldCookie }).get('/api/v1/me');
    expect(replay.status).toBe(401);
    expect((await second.get('/api/v1/me')).status).toBe(200);
    // Used (so cached by the gateway) before logout-all: the revocation must still apply at once.
    expect((await third.get('/api/v1/me')).status).toBe(200);

    const all = await second.post('/api/v1/auth/logout-all');
    expect(all.status).toBe(200);
    expect(all.body.revoked_sessions).toBe(2);
    expect((await third.get('/api/v1/me')).status).toBe(401);
  });

  it('a forged session cookie or API key is a 401, not anonymous access', async () => {
    const forged = await new ApiClient(gateway.url, { cookie: 'ds_session=dss_forged' }).get('/api/v1/me');
    expect(forged.status).toBe(401);
    const badKey = await new ApiClient(gateway.url, { apiKey: `ds_abcdefghijkm_${'x'.repeat(43)}` }).get('/api/v1/me');
    expect(badKey.status).toBe(401);
    const noAuth = await new ApiClient(gateway.url).get('/api/v1/me');
    expect(noAuth.status).toBe(401);
    expect(noAuth.body.error.code).toBe('unauthenticated');
  });
});

describe('organizations, roles and invitations', () => {
  it('an invitation link lets the invited email join with the invited role, once', async () => {
    const owner = await signUp(gateway.url, 'owner');
    const invitee = await signUp(gateway.url, 'invitee');
    const created = await owner.client.post(`/api/v1/orgs/${owner.org.id}/invitations`, { email: invitee.email, role: 'member' });
    expect(created.status).toBe(201);
    expect(created.body.invite_url).toContain(encodeURIComponent(created.body.token));
    const stored = await gateway.deps.prisma.invitation.findUniqueOrThrow({ where: { id: created.body.id } });
    expect(stored.tokenHash).not.toBe(created.body.token);

    const stranger = await signUp(gateway.url, 'stranger');
    const wrongPerson = await stranger.client.post('/api/v1/invitations/accept', { token: created.body.token });
    expect(wrongPerson.status).toBe(403);

    const accepted = await invitee.client.post('/api/v1/invitations/accept', { token: created.body.token });
    expect(accepted.status).toBe(200);
    expect(accepted.body.organization).toMatchObject({ id: owner.org.id, role: 'member' });
    expect((await invitee.client.post('/api/v1/invitations/accept', { token: created.body.token })).status).toBe(404);

    const projects = await invitee.client.get(`/api/v1/orgs/${owner.org.id}/projects`);
    expect(projects.status).toBe(200);
    expect(projects.body.data.map((p: { id: string }) => p.id)).toContain(owner.project.id);
    // A member may read but not manage.
    const denied = await invitee.client.post(`/api/v1/orgs/${owner.org.id}/projects`, { name: 'Not allowed' });
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('forbidden');
  });

  it('roles: admins cannot make owners, and the last owner cannot leave', async () => {
    const owner = await signUp(gateway.url, 'boss');
    const admin = await signUp(gateway.url, 'admin');
    const invite = await owner.client.post(`/api/v1/orgs/${owner.org.id}/invitations`, { email: admin.email, role: 'admin' });
    await admin.client.post('/api/v1/invitations/accept', { token: invite.body.token });

    const promote = await admin.client.patch(`/api/v1/orgs/${owner.org.id}/members/${admin.user.id}`, { role: 'owner' });
    expect(promote.status).toBe(403);
    const demoteOwner = await admin.client.patch(`/api/v1/orgs/${owner.org.id}/members/${owner.user.id}`, { role: 'member' });
    expect(demoteOwner.status).toBe(403);
    const leave = await owner.client.delete(`/api/v1/orgs/${owner.org.id}/members/${owner.user.id}`);
    expect(leave.status).toBe(409);
    const members = await owner.client.get(`/api/v1/orgs/${owner.org.id}/members`);
    expect(members.body.data).toHaveLength(2);
  });

  it('API keys: the secret is shown once, stored hashed, scoped, revocable and expirable', async () => {
    const owner = await signUp(gateway.url, 'keys');
    const created = await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys`, { name: 'ci', scopes: ['usage:read'] });
    expect(created.status).toBe(201);
    expect(created.body.secret).toMatch(/^ds_[a-z2-9]{12}_/);
    expect(created.body.secret.startsWith(created.body.prefix)).toBe(true);
    const row = await gateway.deps.prisma.apiKey.findUniqueOrThrow({ where: { id: created.body.id } });
    expect(row.keyHash).not.toContain(created.body.secret);
    const list = await owner.client.get(`/api/v1/projects/${owner.project.id}/api-keys`);
    expect(JSON.stringify(list.body)).not.toContain(created.body.secret);

    const keyClient = owner.client.withApiKey(created.body.secret);
    const me = await keyClient.get('/api/v1/me');
    expect(me.status).toBe(200);
    expect(me.body).toMatchObject({ type: 'api_key', api_key: { scopes: ['usage:read'] } });
    await new Promise((r) => setTimeout(r, 50));
    expect((await gateway.deps.prisma.apiKey.findUniqueOrThrow({ where: { id: row.id } })).lastUsedAt).not.toBeNull();

    expect((await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys/${row.id}/revoke`)).status).toBe(200);
    expect((await keyClient.get('/api/v1/me')).status).toBe(401);

    const past = await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys`, { name: 'old', scopes: ['usage:read'], expires_at: '2020-01-01T00:00:00Z' });
    expect(past.status).toBe(400);
    const expiring = await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys`, {
      name: 'soon',
      scopes: ['usage:read'],
      expires_at: new Date(Date.now() + 1500).toISOString(),
    });
    const soon = owner.client.withApiKey(expiring.body.secret);
    expect((await soon.get('/api/v1/me')).status).toBe(200);
    await new Promise((r) => setTimeout(r, 1600));
    expect((await soon.get('/api/v1/me')).status).toBe(401);
  });

  it('archiving a project stops its API keys', async () => {
    const owner = await signUp(gateway.url, 'archive');
    const key = (await owner.client.post(`/api/v1/projects/${owner.project.id}/api-keys`, { name: 'k', scopes: ['usage:read'] })).body.secret;
    expect((await owner.client.withApiKey(key).get(`/api/v1/projects/${owner.project.id}/usage`)).status).toBe(200);
    expect((await owner.client.post(`/api/v1/projects/${owner.project.id}/archive`)).status).toBe(200);
    expect((await owner.client.withApiKey(key).get(`/api/v1/projects/${owner.project.id}/usage`)).status).toBe(401);
  });

  it('Idempotency-Key: a replayed create returns the first response and creates one row', async () => {
    const owner = await signUp(gateway.url, 'idem');
    const key = `create-project-${Date.now()}`;
    const first = await owner.client.post(`/api/v1/orgs/${owner.org.id}/projects`, { name: 'Once only' }, { 'idempotency-key': key });
    const second = await owner.client.post(`/api/v1/orgs/${owner.org.id}/projects`, { name: 'Once only' }, { 'idempotency-key': key });
    expect(first.status).toBe(201);
    expect(second.status).toBe(201);
    expect(second.body).toEqual(first.body);
    expect(second.headers.get('idempotent-replayed')).toBe('true');
    expect(await gateway.deps.prisma.project.count({ where: { orgId: owner.org.id, name: 'Once only' } })).toBe(1);
    const different = await owner.client.post(`/api/v1/orgs/${owner.org.id}/projects`, { name: 'Something else' }, { 'idempotency-key': key });
    expect(different.status).toBe(409);
    expect(different.body.error.code).toBe('idempotency_conflict');
  });
});

describe('audit', () => {
  it('records actor, action, resource, tenant, result, IP, user agent and trace id; queryable by trace id', async () => {
    const owner = await signUp(gateway.url, 'audit');
    const res = await owner.client.request('PATCH', `/api/v1/orgs/${owner.org.id}`, {
      body: { name: 'Audited name' },
      headers: { 'user-agent': 'audit-test/1.0' },
    });
    expect(res.status).toBe(200);
    const found = await owner.client.get(`/api/v1/orgs/${owner.org.id}/audit?trace_id=${res.traceId}`);
    expect(found.status).toBe(200);
    expect(found.body.data).toHaveLength(1);
    expect(found.body.data[0]).toMatchObject({
      trace_id: res.traceId,
      actor_type: 'user',
      actor_id: owner.user.id,
      action: 'org.update',
      resource_type: 'organization',
      resource_id: owner.org.id,
      org_id: owner.org.id,
      result: 'success',
      user_agent: 'audit-test/1.0',
    });
    expect(found.body.data[0].ip).toBeTruthy();

    const page1 = await owner.client.get(`/api/v1/orgs/${owner.org.id}/audit?limit=1`);
    expect(page1.body.has_more).toBe(true);
    const page2 = await owner.client.get(`/api/v1/orgs/${owner.org.id}/audit?limit=1&starting_after=${page1.body.data[0].id}`);
    expect(page2.body.data[0].id).not.toBe(page1.body.data[0].id);
    expect(BigInt(page2.body.data[0].id)).toBeLessThan(BigInt(page1.body.data[0].id));
  });

  it('denied mutations are audited too', async () => {
    const owner = await signUp(gateway.url, 'denied');
    const outsider = await signUp(gateway.url, 'outsider');
    const res = await outsider.client.patch(`/api/v1/orgs/${owner.org.id}`, { name: 'Hijack' });
    expect(res.status).toBe(404);
    const row = await gateway.deps.prisma.auditLog.findFirstOrThrow({ where: { traceId: res.traceId } });
    expect(row).toMatchObject({ actorId: outsider.user.id, result: 'failure', orgId: owner.org.id, action: 'updateOrg' });
  });
});
