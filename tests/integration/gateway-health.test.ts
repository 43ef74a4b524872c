import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readJson } from '../support/http.ts';
import { freePort } from '../../scripts/lib/services.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway.close();
});

describe('gateway health', () => {
  it('/healthz answers while the process lives', async () => {
    const res = await fetch(`${gateway.url}/healthz`);
    expect(res.status).toBe(200);
    expect(await readJson(res)).toEqual({ status: 'ok' });
  });

  it('/readyz is 200 with PostgreSQL, Redis and Temporal all reachable', async () => {
    const res = await fetch(`${gateway.url}/readyz`);
    const body = await readJson(res);
    expect(res.status).toBe(200);
    expect(body.status).toBe('ok');
    for (const dep of ['postgres', 'redis', 'temporal']) expect(body.checks[dep].ok, dep).toBe(true);
  });

  it('/readyz is 503 and names the dependency when Temporal is unreachable', async () => {
    const deadPort = await freePort();
    const broken = await startTestGateway({ TEMPORAL_ADDRESS: `127.0.0.1:${deadPort}` });
    try {
      const res = await fetch(`${broken.url}/readyz`);
      const body = await readJson(res);
      expect(res.status).toBe(503);
      expect(body.checks.temporal.ok).toBe(false);
      expect(body.checks.temporal.error).toBeTruthy();
      expect(body.checks.postgres.ok).toBe(true);
    } finally {
      await broken.close();
    }
  });
});

describe('errors and tracing', () => {
  it('unknown routes get 404 in the one error shape with the request’s trace id', async () => {
    const res = await fetch(`${gateway.url}/api/v1/nothing-here`);
    expect(res.status).toBe(404);
    const traceId = res.headers.get('x-trace-id');
    expect(traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(await readJson(res)).toEqual({
      error: { code: 'not_found', message: 'No route for GET /api/v1/nothing-here', trace_id: traceId },
    });
  });

  it('adopts the trace id of a W3C traceparent header and ignores malformed ones', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const adopted = await fetch(`${gateway.url}/healthz`, { headers: { traceparent: `00-${traceId}-00f067aa0ba902b7-01` } });
    expect(adopted.headers.get('x-trace-id')).toBe(traceId);
    const fresh = await fetch(`${gateway.url}/healthz`, { headers: { traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` } });
    expect(fresh.headers.get('x-trace-id')).not.toBe('0'.repeat(32));
    expect(fresh.headers.get('x-trace-id')).toMatch(/^[0-9a-f]{32}$/);
  });

  it('malformed JSON is a 400 invalid_json, an oversized body a 413, never a 500', async () => {
    const bad = await fetch(`${gateway.url}/api/v1/anything`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"unterminated": ',
    });
    expect(bad.status).toBe(400);
    expect((await readJson(bad)).error.code).toBe('invalid_json');
    const huge = await fetch(`${gateway.url}/api/v1/anything`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ blob: 'x'.repeat(2 * 1024 * 1024) }),
    });
    expect(huge.status).toBe(413);
    expect((await readJson(huge)).error.code).toBe('payload_too_large');
  });
});
