// gateway/openapi.yaml and the Express routes cannot drift: every route the app serves is an
// operation of the spec, every operation has a handler, and registering an undescribed route fails.
import type { Express } from 'express';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiRouter } from '../../gateway/src/http/router.ts';
import { createServices } from '../../gateway/src/http/services.ts';
import { loadOperations, loadSpec } from '../../gateway/src/http/openapi.ts';
import { createApp } from '../../gateway/src/app.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

let gateway: TestGateway;
beforeAll(async () => {
  gateway = await startTestGateway();
});
afterAll(async () => {
  await gateway.close();
});

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
  handle?: { stack?: Layer[] };
}

function servedRoutes(app: Express): string[] {
  const routes: string[] = [];
  const walk = (stack: Layer[]) => {
    for (const layer of stack) {
      if (layer.route) for (const method of Object.keys(layer.route.methods)) routes.push(`${method.toUpperCase()} ${layer.route.path}`);
      else if (layer.handle?.stack) walk(layer.handle.stack);
    }
  };
  walk((app as unknown as { router: { stack: Layer[] } }).router.stack);
  return routes.sort();
}

describe('OpenAPI contract', () => {
  it('every route the gateway serves is described in openapi.yaml, and every operation is served', () => {
    const app = createApp(gateway.deps);
    const served = servedRoutes(app);
    const described = [...loadOperations().keys()].sort();
    expect(served.filter((r) => !described.includes(r))).toEqual([]);
    expect(described.filter((r) => !served.includes(r))).toEqual([]);
  });

  it('an API request meets no router it leaves through setImmediate, and /v1 routes are tried first', () => {
    const app = createApp(gateway.deps);
    const stack = (app as unknown as { router: { stack: Layer[] } }).router.stack;
    // Express's Router passes on a request it does not match with setImmediate, which puts the
    // request behind the event loop's check phase: only the API router (which serves it) is mounted.
    const mounted = stack.filter((layer) => layer.handle?.stack);
    expect(mounted).toHaveLength(1);
    const apiPaths = mounted[0]!.handle!.stack!.filter((layer) => layer.route).map((layer) => layer.route!.path);
    expect(apiPaths.slice(0, 3)).toEqual(['/v1/models', '/v1/chat/completions', '/v1/embeddings']);
    expect(stack.filter((layer) => layer.route).map((layer) => layer.route!.path)).toEqual(['/healthz', '/readyz']);
  });

  it('registering a route the spec does not describe fails at start-up', () => {
    const api = new ApiRouter(gateway.deps, createServices(gateway.deps), loadOperations());
    expect(() => api.handle('deleteEverything', async () => ({}))).toThrow(/openapi.yaml has no operation "deleteEverything"/);
  });

  it('a described operation without a handler fails at start-up', () => {
    const api = new ApiRouter(gateway.deps, createServices(gateway.deps), loadOperations());
    api.servedElsewhere('healthz', 'readyz');
    expect(() => api.assertComplete()).toThrow(/without a handler: .*signup/);
  });

  it('operation ids are unique and every operation documents its responses', () => {
    const spec = loadSpec();
    const ids: string[] = [];
    for (const item of Object.values<Record<string, { operationId?: string; responses?: object }>>(spec.paths)) {
      for (const [method, op] of Object.entries(item)) {
        if (method === 'parameters') continue;
        expect(op.operationId, `${method} operation without operationId`).toBeTruthy();
        expect(Object.keys(op.responses ?? {}).length, op.operationId).toBeGreaterThan(0);
        ids.push(op.operationId!);
      }
    }
    expect(new Set(ids).size).toBe(ids.length);
    expect(spec.openapi).toBe('3.1.0');
  });

  it('the spec is served as the source of truth: requests are validated against it', async () => {
    const res = await fetch(`${gateway.url}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ email: 'a@b.test' }),
    });
    const body = (await res.json()) as { error: { code: string; details: { errors: Array<{ path: string }> } } };
    expect(res.status).toBe(400);
    expect(body.error.code).toBe('validation_failed');
    expect(body.error.details.errors[0]!.path).toBe('/password');
  });
});
