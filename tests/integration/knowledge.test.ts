// Knowledge bases end to end against real PostgreSQL, Redis, Temporal, LanceDB, local storage and the
// simulator over HTTP: upload every file type → durable ingestion → hybrid retrieval with
// citations; chat answers citing sources; the workflow DSL's retrieve step; tenancy, deletion,
// re-index, cancel, bad files, limits, progress over SSE, and billing of every embedding call.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient, createKey, missingAuditTraceIds, signUp, type Tenant } from '../support/api.ts';
import { collectSse } from '../support/sse.ts';
import { until } from '../support/processes.ts';
import { indexIdFor } from '@deepspace/core/knowledge/retrieve';
import { startTestGateway, startTestWorker, type TestGateway, type TestWorker } from '../support/stack.ts';

const FIXTURES = path.resolve(import.meta.dirname, '../fixtures/knowledge');
const fixture = (name: string) => new Uint8Array(readFileSync(path.join(FIXTURES, name)));

let gateway: TestGateway;
let worker: TestWorker;

beforeAll(async () => {
  gateway = await startTestGateway();
  worker = await startTestWorker();
});
afterAll(async () => {
  expect(await missingAuditTraceIds(gateway.deps.prisma)).toEqual([]);
  await worker.stop();
  await gateway.close();
});

async function fundedTenant(label: string, micros = 5_000_000n): Promise<Tenant> {
  const tenant = await signUp(gateway.url, label);
  await gateway.deps.ledger.topup({ orgId: tenant.org.id, amountMicros: micros, idempotencyKey: `kb-test:${tenant.org.id}`, reason: 'test credit', actor: { type: 'system' } });
  return tenant;
}

const kbPath = (t: Tenant, kbId: string, rest = '') => `/api/v1/projects/${t.project.id}/knowledge-bases/${kbId}${rest}`;

async function newKnowledgeBase(t: Tenant, body: Record<string, unknown> = {}) {
  const res = await t.client.post(`/api/v1/projects/${t.project.id}/knowledge-bases`, { name: `kb ${Math.random().toString(36).slice(2, 8)}`, ...body });
  expect(res.status).toBe(201);
  return res.body as { id: string; embedding_model: string };
}

async function upload(t: Tenant, kbId: string, name: string, bytes: Uint8Array, type?: string, client: ApiClient = t.client) {
  return client.upload(kbPath(t, kbId, '/documents'), { name, bytes, type });
}

async function settled(t: Tenant, kbId: string, documentId: string, timeoutMs = 60_000) {
  return until(
    async () => {
      const res = await t.client.get(kbPath(t, kbId, `/documents/${documentId}`));
      return res.body.status === 'indexed' || res.body.status === 'failed' ? res.body : null;
    },
    timeoutMs,
    `document ${documentId} to finish ingesting`,
  );
}

async function retrieve(t: Tenant, kbId: string, body: Record<string, unknown>, client: ApiClient = t.client) {
  return client.post(kbPath(t, kbId, '/retrieve'), body);
}

describe('knowledge bases', () => {
  let owner: Tenant;
  let kb: { id: string };
  const docs = new Map<string, { id: string; status: string; page_count: number; chunk_count: number; cost_micros: string; workflow_id: string; trace_id: string }>();

  beforeAll(async () => {
    owner = await fundedTenant('kb-owner');
    kb = await newKnowledgeBase(owner, { name: 'Lab notes', chunk_size: 200, chunk_overlap: 20 });
    const files: Array<[string, string]> = [
      ['notes.txt', 'text/plain'],
      ['guide.md', 'text/markdown'],
      ['page.html', 'text/html'],
      ['report.pdf', 'application/pdf'],
      ['memo.docx', 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'],
      ['table.csv', 'text/csv'],
      ['records.json', 'application/json'],
    ];
    for (const [name] of files) {
      // The declared type is deliberately wrong: the gateway sniffs the bytes.
      const res = await upload(owner, kb.id, name, fixture(name), 'application/octet-stream');
      expect(res.status, JSON.stringify(res.body)).toBe(202);
      expect(res.body.status).toBe('queued');
      docs.set(name, res.body);
    }
    for (const [name, type] of files) {
      const done = await settled(owner, kb.id, docs.get(name)!.id);
      expect(done.status, `${name}: ${JSON.stringify(done.error)}`).toBe('indexed');
      expect(done.content_type).toBe(type);
      expect(done.chunk_count).toBeGreaterThan(0);
      expect(done.embedded_chunks).toBe(done.chunk_count);
      docs.set(name, done);
    }
  }, 180_000);

  it('every file type is parsed, chunked, embedded (billed) and indexed', async () => {
    expect(docs.get('report.pdf')!.page_count).toBe(3);
    const list = await owner.client.get(kbPath(owner, kb.id, '/documents?limit=100'));
    expect(list.body.data).toHaveLength(7);
    const kbRes = await owner.client.get(kbPath(owner, kb.id));
    expect(kbRes.body.documents).toMatchObject({ total: 7, indexed: 7 });
    // Chunks keep headings and pages as metadata.
    const pdfChunks = await owner.client.get(kbPath(owner, kb.id, `/documents/${docs.get('report.pdf')!.id}/chunks?limit=100`));
    expect(pdfChunks.body.data.map((c: { metadata: { page: number } }) => c.metadata.page)).toEqual(expect.arrayContaining([1, 2, 3]));
    const mdChunks = await owner.client.get(kbPath(owner, kb.id, `/documents/${docs.get('guide.md')!.id}/chunks?limit=100`));
    expect(mdChunks.body.data.map((c: { metadata: { heading?: string } }) => c.metadata.heading).join(' | ')).toContain('Defrosting');
    const htmlText = (await owner.client.get(kbPath(owner, kb.id, `/documents/${docs.get('page.html')!.id}/chunks?limit=100`))).body.data.map((c: { text: string }) => c.text).join(' ');
    expect(htmlText).toContain('520.7 wavenumbers');
    expect(htmlText).not.toContain('SCRIPT_NOISE_MARKER');
  });

  it('each ingestion is billed once per batch: usage rows, ledger captures and the wallet agree', async () => {
    for (const doc of docs.values()) {
      const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { runId: doc.workflow_id } });
      expect(usage.length).toBe(Math.ceil(doc.chunk_count / 64));
      expect(usage.every((u) => u.status === 'success' && u.modelName === 'text-embedding-3-small' && u.traceId === doc.trace_id)).toBe(true);
      expect(usage.reduce((s, u) => s + u.costMicros, 0n).toString()).toBe(doc.cost_micros);
      const holds = await gateway.deps.prisma.hold.findMany({ where: { runId: doc.workflow_id } });
      expect(holds.map((h) => h.status)).toEqual(holds.map(() => 'captured'));
    }
    const audits = await gateway.deps.prisma.auditLog.findMany({ where: { traceId: docs.get('report.pdf')!.trace_id } });
    expect(audits.map((a) => a.action)).toEqual(expect.arrayContaining(['knowledge.document.upload', 'knowledge.document.indexed']));
  });

  it('retrieval finds the right chunk for targeted queries, with citations to document and page', async () => {
    const cases: Array<[string, string, (hit: { page: number | null; heading: string | null; text: string }) => void]> = [
      ['How many days did the zebrafish regeneration assay run?', 'report.pdf', (h) => expect(h.page).toBe(2)],
      ['planarian fragments regrew', 'report.pdf', (h) => expect(h.page).toBe(3)],
      ['How often should the cryostat chamber be defrosted?', 'guide.md', (h) => expect(h.heading).toContain('Defrosting')],
      ['silicon wafer peak wavenumbers Raman', 'page.html', (h) => expect(h.text).toContain('520.7')],
      ['Mycoplasma contamination glovebox gasket', 'memo.docx', (h) => expect(h.heading).toContain('Contamination Incident')],
      ['groundwater rise piezometer Maun', 'notes.txt', (h) => expect(h.text).toContain('37 centimetres')],
      ['Orbitrap recalibrated with caffeine', 'records.json', (h) => expect(h.text).toContain('Wilhelmina')],
      ['Which Ambystoma tail regrew with a bifurcated tip?', 'table.csv', (h) => expect(h.text).toContain('S-017')],
    ];
    for (const mode of ['hybrid', 'vector', 'fts']) {
      for (const [query, file, check] of cases) {
        const res = await retrieve(owner, kb.id, { query, top_k: 3, mode });
        expect(res.status, JSON.stringify(res.body)).toBe(200);
        const top = res.body.data[0];
        expect(top?.filename, `${mode}: "${query}"`).toBe(file);
        expect(top.document_id).toBe(docs.get(file)!.id);
        expect(top.rank).toBe(1);
        check(top);
      }
    }
  });

  it('the query embedding of a retrieval is billed (fts is free) and audited under the request trace', async () => {
    const res = await retrieve(owner, kb.id, { query: 'zebrafish assay', top_k: 2 });
    expect(BigInt(res.body.usage.cost_micros)).toBeGreaterThan(0n);
    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { traceId: res.traceId } });
    expect(usage).toHaveLength(1);
    expect(usage[0]!.costMicros.toString()).toBe(res.body.usage.cost_micros);
    const fts = await retrieve(owner, kb.id, { query: 'zebrafish assay', top_k: 2, mode: 'fts' });
    expect(fts.body.usage.cost_micros).toBe('0');
    expect(await gateway.deps.prisma.usageRecord.count({ where: { traceId: fts.traceId } })).toBe(0);
  });

  it('metadata filters restrict retrieval to chosen documents', async () => {
    const only = docs.get('memo.docx')!.id;
    const res = await retrieve(owner, kb.id, { query: 'zebrafish regeneration assay', top_k: 5, document_ids: [only] });
    expect(res.body.data.length).toBeGreaterThan(0);
    expect(res.body.data.every((h: { document_id: string }) => h.document_id === only)).toBe(true);
  });

  it('an API key needs kb:read to retrieve and kb:write to upload', async () => {
    const reader = owner.client.withApiKey(await createKey(owner, ['kb:read']));
    expect((await retrieve(owner, kb.id, { query: 'zebrafish', mode: 'fts' }, reader)).status).toBe(200);
    const refused = await upload(owner, kb.id, 'x.txt', new TextEncoder().encode('hello there'), 'text/plain', reader);
    expect(refused.status).toBe(403);
    expect(refused.body.error.code).toBe('insufficient_scope');
  });

  it('the original file downloads intact; progress events replay over SSE and resume with Last-Event-ID', async () => {
    const doc = docs.get('report.pdf')!;
    const res = await fetch(`${gateway.url}${kbPath(owner, kb.id, `/documents/${doc.id}/content`)}`, { headers: { cookie: owner.client.cookie! } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('application/pdf');
    expect(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(fixture('report.pdf')))).toBe(true);

    const eventsUrl = `${gateway.url}${kbPath(owner, kb.id, `/documents/${doc.id}/events`)}`;
    const events = await collectSse(await fetch(eventsUrl, { headers: { cookie: owner.client.cookie! } }));
    const types = events.map((e) => e.event);
    expect(types[0]).toBe('document.status');
    expect(types).toContain('document.progress');
    expect(types.at(-1)).toBe('document.indexed');
    const resumed = await collectSse(await fetch(eventsUrl, { headers: { cookie: owner.client.cookie!, 'last-event-id': events[0]!.id! } }));
    expect(resumed.map((e) => e.id)).toEqual(events.slice(1).map((e) => e.id));
  });

  it('refuses bad uploads clearly and stores nothing: unsupported, empty, duplicate, too large, not multipart', async () => {
    const before = await gateway.deps.prisma.document.count({ where: { knowledgeBaseId: kb.id } });
    const binary = await upload(owner, kb.id, 'innocent.txt', fixture('binary.bin'), 'text/plain');
    expect(binary.status).toBe(415);
    expect(binary.body.error.code).toBe('unsupported_media_type');
    const empty = await upload(owner, kb.id, 'empty.txt', new Uint8Array(), 'text/plain');
    expect(empty.status).toBe(400);
    const duplicate = await upload(owner, kb.id, 'copy-of-notes.txt', fixture('notes.txt'));
    expect(duplicate.status).toBe(409);
    expect(duplicate.body.error.details.document_id).toBe(docs.get('notes.txt')!.id);
    const json = await owner.client.post(kbPath(owner, kb.id, '/documents'), { file: 'not a file' });
    expect(json.status).toBe(415);

    const small = await fundedTenant('kb-limit');
    const smallKb = await newKnowledgeBase(small);
    expect((await small.client.put(`/api/v1/projects/${small.project.id}/policy`, { max_upload_bytes: '1000' })).status).toBe(200);
    const big = await upload(small, smallKb.id, 'big.txt', new TextEncoder().encode('word '.repeat(2_000)), 'text/plain');
    expect(big.status).toBe(413);
    expect(big.body.error.code).toBe('payload_too_large');
    const fits = await upload(small, smallKb.id, 'fits.txt', new TextEncoder().encode('a short note about ferrets'), 'text/plain');
    expect(fits.status).toBe(202);
    expect(await gateway.deps.knowledge!.storage.list(`projects/${small.project.id}/`)).toHaveLength(1);

    expect(await gateway.deps.prisma.document.count({ where: { knowledgeBaseId: kb.id } })).toBe(before);
    expect(await gateway.deps.knowledge!.storage.list(`projects/${owner.project.id}/knowledge-bases/${kb.id}/`)).toHaveLength(before);
  });

  it('a corrupt file fails alone with a clear reason; the others are unaffected', async () => {
    const corrupt = await upload(owner, kb.id, 'broken.pdf', fixture('corrupt.pdf'));
    expect(corrupt.status).toBe(202);
    const fine = await upload(owner, kb.id, 'fresh.txt', new TextEncoder().encode('The capybara enclosure was refilled with 3,000 litres of fresh water.'));
    const [bad, good] = await Promise.all([settled(owner, kb.id, corrupt.body.id), settled(owner, kb.id, fine.body.id)]);
    expect(bad.status).toBe('failed');
    expect(bad.error.code).toBe('corrupt_file');
    expect(bad.error.message.length).toBeGreaterThan(5);
    expect(good.status).toBe('indexed');
    const hit = await retrieve(owner, kb.id, { query: 'capybara enclosure', top_k: 1 });
    expect(hit.body.data[0].document_id).toBe(fine.body.id);
    const failedEvents = await collectSse(await fetch(`${gateway.url}${kbPath(owner, kb.id, `/documents/${corrupt.body.id}/events`)}`, { headers: { cookie: owner.client.cookie! } }));
    expect(failedEvents.at(-1)).toMatchObject({ event: 'document.failed', data: { code: 'corrupt_file' } });
  });

  it('deleting a document removes the file, the chunks and its results', async () => {
    const res = await upload(owner, kb.id, 'okapi.md', new TextEncoder().encode('# Okapi\n\nThe okapi feeding schedule changed to twice daily in the Ituri station.'));
    const done = await settled(owner, kb.id, res.body.id);
    expect(done.status).toBe('indexed');
    expect((await retrieve(owner, kb.id, { query: 'okapi feeding schedule', top_k: 1 })).body.data[0].document_id).toBe(res.body.id);
    const storageKey = (await gateway.deps.prisma.document.findUniqueOrThrow({ where: { id: res.body.id } })).storageKey;
    expect((await owner.client.delete(kbPath(owner, kb.id, `/documents/${res.body.id}`))).status).toBe(204);
    expect((await owner.client.get(kbPath(owner, kb.id, `/documents/${res.body.id}`))).status).toBe(404);
    for (const mode of ['hybrid', 'fts', 'vector']) {
      const after = await retrieve(owner, kb.id, { query: 'okapi feeding schedule Ituri', top_k: 10, mode });
      expect(after.body.data.map((h: { document_id: string }) => h.document_id)).not.toContain(res.body.id);
    }
    expect(await gateway.deps.prisma.documentChunk.count({ where: { documentId: res.body.id } })).toBe(0);
    expect(await gateway.deps.knowledge!.storage.head(storageKey)).toBeNull();
    const index = await gateway.deps.knowledge!.index();
    const indexId = indexIdFor(kb.id, 'text-embedding-3-small');
    await until(async () => (await index.countChunks(indexId, res.body.id)) === 0, 30_000, 'index entries to be purged');
  });

  it('re-index bumps the generation and ingests again (billed again, once); cancel ends a running ingestion failed', async () => {
    const doc = docs.get('notes.txt')!;
    const again = await owner.client.post(kbPath(owner, kb.id, `/documents/${doc.id}/reindex`));
    expect(again.status).toBe(202);
    expect(again.body.generation).toBe(2);
    const done = await settled(owner, kb.id, doc.id);
    expect(done).toMatchObject({ status: 'indexed', generation: 2, chunk_count: doc.chunk_count });
    expect(await gateway.deps.prisma.usageRecord.count({ where: { runId: done.workflow_id } })).toBe(Math.ceil(doc.chunk_count / 64));
    expect((await retrieve(owner, kb.id, { query: 'piezometer groundwater Maun', top_k: 1 })).body.data[0].document_id).toBe(doc.id);

    // A slow document (each embedding call waits 1.5 s at the simulator) is cancelled mid-way.
    const slowText = Array.from({ length: 400 }, (_, i) => `Paragraph ${i} about slow lemur observations [[sim:first_token_ms=1500]].`).join('\n\n');
    const slow = await upload(owner, kb.id, 'slow.txt', new TextEncoder().encode(slowText));
    await until(async () => (await owner.client.get(kbPath(owner, kb.id, `/documents/${slow.body.id}`))).body.status === 'embedding', 30_000, 'embedding to start');
    const cancel = await owner.client.post(kbPath(owner, kb.id, `/documents/${slow.body.id}/cancel`));
    expect(cancel.status).toBe(202);
    const cancelled = await settled(owner, kb.id, slow.body.id);
    expect(cancelled).toMatchObject({ status: 'failed', error: { code: 'cancelled' } });
    expect((await owner.client.post(kbPath(owner, kb.id, `/documents/${slow.body.id}/cancel`))).status).toBe(409);
    // Nothing stays held, and the cancelled document never shows up in results.
    await until(async () => (await gateway.deps.prisma.hold.count({ where: { runId: cancelled.workflow_id, status: 'active' } })) === 0, 30_000, 'holds to settle');
    const hits = await retrieve(owner, kb.id, { query: 'slow lemur observations', top_k: 10, mode: 'fts' });
    expect(hits.body.data.map((h: { document_id: string }) => h.document_id)).not.toContain(slow.body.id);
  }, 120_000);

  it('another project never sees this project’s knowledge', async () => {
    const outsider = await fundedTenant('kb-outsider');
    const theirs = await newKnowledgeBase(outsider);
    const theirUpload = await upload(outsider, theirs.id, 'their.txt', new TextEncoder().encode('Their note mentions the zebrafish regeneration assay too, for 5 days.'));
    await settled(outsider, theirs.id, theirUpload.body.id);
    const own = await retrieve(outsider, theirs.id, { query: 'zebrafish regeneration assay planarian axolotl', top_k: 20 });
    expect(own.body.data.length).toBeGreaterThan(0);
    expect(own.body.data.every((h: { document_id: string }) => h.document_id === theirUpload.body.id)).toBe(true);
    // The victim's knowledge base id from the other tenant: 404, nothing billed.
    const cross = await outsider.client.post(`/api/v1/projects/${outsider.project.id}/knowledge-bases/${kb.id}/retrieve`, { query: 'zebrafish' });
    expect(cross.status).toBe(404);
    const sameOrgOtherProject = await owner.client.post(`/api/v1/orgs/${owner.org.id}/projects`, { name: 'Second project' });
    const wrongProject = await owner.client.post(`/api/v1/projects/${sameOrgOtherProject.body.id}/knowledge-bases/${kb.id}/retrieve`, { query: 'zebrafish' });
    expect(wrongProject.status).toBe(404);
    // Even asking the index directly with the other project's id finds nothing of ours.
    const index = await gateway.deps.knowledge!.index();
    const indexId = indexIdFor(kb.id, 'text-embedding-3-small');
    expect((await index.search(indexId, owner.project.id, { queryText: 'zebrafish', topK: 10, mode: 'fts' })).length).toBeGreaterThan(0);
    expect(await index.search(indexId, outsider.project.id, { queryText: 'zebrafish', topK: 10, mode: 'fts' })).toEqual([]);
  });

  it('chat sessions with knowledge bases answer with citations; cost includes the query embedding', async () => {
    const session = await owner.client.post(`/api/v1/projects/${owner.project.id}/chat/sessions`, { params: { knowledge_base_ids: [kb.id], retrieval_top_k: 3 } });
    expect(session.status).toBe(201);
    const res = await fetch(`${gateway.url}/api/v1/projects/${owner.project.id}/chat/sessions/${session.body.id}/messages`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', cookie: owner.client.cookie! },
      body: JSON.stringify({ content: 'How long did the zebrafish regeneration assay run?', max_tokens: 30 }),
    });
    const events = await collectSse(res);
    const completed = events.at(-1)!;
    expect(completed.event).toBe('message.completed');
    const citations = completed.data.citations as Array<{ index: number; filename: string; page: number | null }>;
    expect(citations[0]).toMatchObject({ index: 1, filename: 'report.pdf', page: 2 });
    const runId = events[0]!.data.run_id as string;
    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { runId } });
    expect(usage.map((u) => u.stepId).sort()).toEqual(['model', 'retrieve']);
    const total = usage.reduce((s, u) => s + u.costMicros, 0n);
    expect(completed.data.cost_micros).toBe(total.toString());
    const messages = await owner.client.get(`/api/v1/projects/${owner.project.id}/chat/sessions/${session.body.id}/messages`);
    const assistant = messages.body.data.find((m: { role: string }) => m.role === 'assistant');
    expect(assistant.citations[0].filename).toBe('report.pdf');
    expect(assistant.usage.cost_micros).toBe(total.toString());
    // A session cannot name another project's knowledge base.
    const outsider = await fundedTenant('kb-chat-outsider');
    const refused = await outsider.client.post(`/api/v1/projects/${outsider.project.id}/chat/sessions`, { params: { knowledge_base_ids: [kb.id] } });
    expect(refused.status).toBe(400);
  });

  it('the workflow DSL retrieve step returns cited chunks and bills the query once', async () => {
    const source = [
      'name: kb lookup',
      'inputs:',
      '  type: object',
      '  properties: { question: { type: string } }',
      '  required: [question]',
      'steps:',
      '  - id: search',
      '    kind: retrieve',
      '    knowledge_base: Lab notes',
      '    query: ${{ inputs.question }}',
      '    top_k: 2',
      '  - id: answer',
      '    kind: output',
      '    needs: [search]',
      '    value: ${{ steps.search.output }}',
      'outputs:',
      '  hits: ${{ steps.answer.output }}',
    ].join('\n');
    const wf = await owner.client.post(`/api/v1/projects/${owner.project.id}/workflows`, { source });
    expect(wf.status, JSON.stringify(wf.body)).toBe(201);
    const run = await owner.client.post(`/api/v1/projects/${owner.project.id}/workflows/${wf.body.id}/runs`, { inputs: { question: 'zebrafish regeneration assay days' } });
    expect(run.status, JSON.stringify(run.body)).toBe(202);
    const finished = await until(
      async () => {
        const r = await owner.client.get(`/api/v1/projects/${owner.project.id}/workflow-runs/${run.body.id}`);
        return ['succeeded', 'failed'].includes(r.body.status) ? r.body : null;
      },
      60_000,
      'the workflow run',
    );
    expect(finished.status, JSON.stringify(finished.error)).toBe('succeeded');
    expect(finished.output.hits[0]).toMatchObject({ filename: 'report.pdf', page: 2 });
    const usage = await gateway.deps.prisma.usageRecord.findMany({ where: { runId: run.body.id } });
    expect(usage).toHaveLength(1);
    expect(finished.cost_micros).toBe(usage[0]!.costMicros.toString());
  });

  it('changing the embedding model re-indexes every document; deleting the knowledge base removes everything', async () => {
    const t = await fundedTenant('kb-model');
    const base = await newKnowledgeBase(t);
    const a = await upload(t, base.id, 'a.txt', new TextEncoder().encode('Narwhal tusks were measured in the Svalbard survey.'));
    await settled(t, base.id, a.body.id);
    const models = await gateway.deps.prisma.model.findMany({ where: { kind: 'embedding', isActive: true } });
    const other = models.find((m) => m.name !== base.embedding_model);
    if (other) {
      const changed = await t.client.patch(kbPath(t, base.id), { embedding_model: other.name });
      expect(changed.status).toBe(200);
      expect(changed.body.reindexed_documents).toBe(1);
      const redone = await settled(t, base.id, a.body.id);
      expect(redone).toMatchObject({ status: 'indexed', generation: 2, embedding_model: other.name });
    }
    const key = (await gateway.deps.prisma.document.findUniqueOrThrow({ where: { id: a.body.id } })).storageKey;
    expect((await t.client.delete(kbPath(t, base.id))).status).toBe(204);
    expect((await t.client.get(kbPath(t, base.id))).status).toBe(404);
    expect(await gateway.deps.prisma.document.count({ where: { knowledgeBaseId: base.id } })).toBe(0);
    expect(await gateway.deps.knowledge!.storage.head(key)).toBeNull();
    const index = await gateway.deps.knowledge!.index();
    for (const model of models) await until(async () => (await index.countChunks(indexIdFor(base.id, model.name))) === 0, 30_000, 'the index to be dropped');
  });
});
