import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, createKey, signUp } from '../support/api.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway.close();
});

describe('rate limits (Redis token buckets)', () => {
  it('a burst over the project policy’s limit gets 429 with Retry-After', async () => {
    const owner = await signUp(gateway.url, 'burst');
    const key = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    // 6 per minute: a burst of 6, then one token per 10 s (no refill during the burst).
    expect((await owner.client.put(`/api/v1/projects/${owner.project.id}/policy`, { requests_per_minute: 6 })).status).toBe(200);
    const results = await Promise.all(Array.from({ length: 20 }, () => key.get(`/api/v1/projects/${owner.project.id}/usage?limit=1`)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(6);
    const limited = results.filter((r) => r.status === 429);
    expect(limited).toHaveLength(14);
    for (const r of limited) {
      expect(r.body.error.code).toBe('rate_limited');
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThanOrEqual(1);
      expect(retryAfter).toBeLessThanOrEqual(10);
    }
  });

  it('an exhausted bucket refills at the policy’s rate', async () => {
    const owner = await signUp(gateway.url, 'refill');
    const key = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    await owner.client.put(`/api/v1/projects/${owner.project.id}/policy`, { requests_per_minute: 60 });
    const path = `/api/v1/projects/${owner.project.id}`;
    let exhausted = false;
    for (let i = 0; i < 80 && !exhausted; i++) exhausted = (await key.get(path)).status === 429;
    expect(exhausted).toBe(true);
    await new Promise((r) => setTimeout(r, 1_100));
    expect((await key.get(path)).status).toBe(200);
    expect((await key.get(path)).status).toBe(429);
  });

  it('the project bucket is shared by all keys of the project', async () => {
    const owner = await signUp(gateway.url, 'shared');
    const a = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    const b = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    // Set last: the owner's own project requests take from the same project bucket.
    await owner.client.put(`/api/v1/projects/${owner.project.id}/policy`, { requests_per_minute: 10 });
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? a : b).get(`/api/v1/projects/${owner.project.id}`)));
    expect(results.filter((r) => r.status === 200)).toHaveLength(10);
  });

  it('a policy change takes effect at once (the Redis policy cache is invalidated)', async () => {
    const owner = await signUp(gateway.url, 'policy-cache');
    const key = owner.client.withApiKey(await createKey(owner, ['usage:read']));
    const check = () => key.post(`/api/v1/projects/${owner.project.id}/policy/check`, { model: 'gpt-4o', max_tokens: 100 });
    expect((await check()).status).toBe(200);
    await owner.client.put(`/api/v1/projects/${owner.project.id}/policy`, { allowed_models: ['gpt-4o-mini'], max_tokens_per_request: 50 });
    const denied = await check();
    expect(denied.status).toBe(403);
    expect(denied.body.error.code).toBe('policy_violation');
    expect(denied.body.error.details.violations.map((v: { rule: string }) => v.rule).sort()).toEqual(['allowed_models', 'max_tokens_per_request']);
    // Organization rules apply under the project's; the project's own non-null rules win.
    await owner.client.put(`/api/v1/orgs/${owner.org.id}/policy`, { allowed_models: ['gpt-4o'], max_tokens_per_request: 500 });
    const effective = await owner.client.get(`/api/v1/projects/${owner.project.id}/policy`);
    expect(effective.body.effective).toMatchObject({ allowed_models: ['gpt-4o-mini'], max_tokens_per_request: 50 });
    await owner.client.put(`/api/v1/projects/${owner.project.id}/policy`, {});
    expect((await check()).status).toBe(200);
  });

  it('anonymous callers are limited per client IP', async () => {
    const strict = await startTestGateway({ RATE_LIMIT_ANONYMOUS_PER_MINUTE: '5', REDIS_KEY_PREFIX: `${process.env.REDIS_KEY_PREFIX}anon:` });
    try {
      const anon = new ApiClient(strict.url);
      const results = [];
      for (let i = 0; i < 7; i++) results.push(await anon.post('/api/v1/auth/login', { email: 'nobody@example.test', password: 'x' }));
      expect(results.slice(0, 5).every((r) => r.status === 401)).toBe(true);
      expect(results.slice(5).every((r) => r.status === 429)).toBe(true);
    } finally {
      await strict.close();
    }
  });
});
