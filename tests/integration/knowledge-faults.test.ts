// The ingestion worker is SIGKILLed mid-ingestion and restarted: the document still ends indexed
// once, every embedding batch is billed exactly once (one hold, one capture), and the index holds
// each chunk once.
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { indexIdFor } from '@deepspace/core/knowledge/retrieve';
import { signUp } from '../support/api.ts';
import { spawnService, until } from '../support/processes.ts';
import { startTestGateway, type TestGateway } from '../support/stack.ts';

const children: ChildProcess[] = [];
const taskQueue = `faults-kb-${randomBytes(3).toString('hex')}`;
let gateway: TestGateway;

beforeAll(async () => {
  gateway = await startTestGateway({ TEMPORAL_TASK_QUEUE: taskQueue });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  await gateway.close();
});

describe('ingestion crash fault', () => {
  it('kill -9 of the worker mid-ingestion: indexed once, each batch billed once', async () => {
    const first = spawnService('temporal-workers/src/main.ts', { TEMPORAL_TASK_QUEUE: taskQueue }, children);
    await until(async () => first.output().includes('worker started'), 60_000, 'first worker');
    const tenant = await signUp(gateway.url, 'kb-fault');
    await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: 5_000_000n, idempotencyKey: `kb-fault:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
    const kb = (await tenant.client.post(`/api/v1/projects/${tenant.project.id}/knowledge-bases`, { name: 'fault kb', chunk_size: 100, chunk_overlap: 0 })).body;

    // ~300 chunks → 5 batches of 64; every embedding call waits 800 ms at the simulator, so the kill
    // lands while batches are in flight.
    const text = Array.from({ length: 300 }, (_, i) => `Section ${i}: the gibbon vocalisation survey counted ${i * 7} duets at dawn along transect ${i % 13} [[sim:first_token_ms=800]]. ${'Observers logged canopy height and weather. '.repeat(6)}`).join('\n\n');
    const res = await tenant.client.upload(`/api/v1/projects/${tenant.project.id}/knowledge-bases/${kb.id}/documents`, { name: 'gibbons.txt', bytes: new TextEncoder().encode(text), type: 'text/plain' });
    expect(res.status).toBe(202);
    const docPath = `/api/v1/projects/${tenant.project.id}/knowledge-bases/${kb.id}/documents/${res.body.id}`;

    // Kill once the first batch is captured and others are still running.
    await until(async () => (await gateway.deps.prisma.hold.count({ where: { runId: res.body.workflow_id, status: 'captured' } })) >= 1, 60_000, 'a first captured batch');
    const beforeKill = await tenant.client.get(docPath);
    expect(beforeKill.body.status).toBe('embedding');
    first.child.kill('SIGKILL');
    const second = spawnService('temporal-workers/src/main.ts', { TEMPORAL_TASK_QUEUE: taskQueue }, children);

    const done = await until(
      async () => {
        const r = await tenant.client.get(docPath);
        return r.body.status === 'indexed' || r.body.status === 'failed' ? r.body : null;
      },
      90_000,
      'the document to be indexed after the restart',
    );
    expect(done.status, JSON.stringify(done.error)).toBe('indexed');
    const batches = Math.ceil(done.chunk_count / 64);
    expect(batches).toBeGreaterThanOrEqual(4);

    const holds = await gateway.deps.prisma.hold.findMany({ where: { runId: done.workflow_id } });
    expect(holds).toHaveLength(batches);
    expect(holds.every((h) => h.status === 'captured')).toBe(true);
    for (const hold of holds) {
      const kinds = (await gateway.deps.prisma.walletTransaction.findMany({ where: { holdId: hold.id }, orderBy: { id: 'asc' } })).map((t) => t.kind);
      expect(kinds).toEqual(['hold', 'capture']);
    }
    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { runId: done.workflow_id } });
    expect(usage).toHaveLength(batches);
    expect(usage.reduce((s, u) => s + u.costMicros, 0n).toString()).toBe(done.cost_micros);
    const indexed = await gateway.deps.prisma.auditLog.count({ where: { action: 'knowledge.document.indexed', resourceId: res.body.id } });
    expect(indexed).toBe(1);
    const index = await gateway.deps.knowledge!.index();
    expect(await index.countChunks(indexIdFor(kb.id, 'text-embedding-3-small'), res.body.id)).toBe(done.chunk_count);
    second.child.kill('SIGTERM');
  }, 180_000);
});
