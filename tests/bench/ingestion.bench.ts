// Knowledge ingestion throughput: multi-page PDFs uploaded through the gateway and ingested by the
// durable workflow (parse → chunk → billed embedding batches → LanceDB upsert → indexed) vs the same
// parse + chunk + embedding calls made directly in one process (no workflow, billing, rows or
// index), in the same run. Figures: pages/s and chunks/s, and their ratio to the direct pipeline.
import { Runtime } from '@temporalio/worker';
import { PDFDocument, StandardFonts } from 'pdf-lib';
import { createUpstreamClient } from '@deepspace/core/ai/upstream';
import { chunkDocument } from '@deepspace/core/knowledge/chunk';
import { parseDocument } from '@deepspace/core/knowledge/parse';
import { signUp } from '../support/api.ts';
import { until } from '../support/processes.ts';
import { startTestGateway, startTestWorker } from '../support/stack.ts';
import { round, type BenchSuite } from './harness.ts';

const DOCUMENTS = Number(process.env.BENCH_INGEST_DOCS ?? 12);
const PAGES = Number(process.env.BENCH_INGEST_PAGES ?? 10);
const CHUNK_TOKENS = 300;
const CHUNK_OVERLAP = 30;
const BATCH = 64;

const TOPICS = ['enzyme kinetics', 'soil microbiome', 'perovskite cells', 'coral bleaching', 'protein folding', 'glacier melt', 'neural circuits', 'catalyst poisoning'];

/** A PDF with `pages` pages of research-like prose, distinct per document and page. */
async function makePdf(doc: number, pages: number): Promise<Uint8Array> {
  const pdf = await PDFDocument.create();
  const font = await pdf.embedFont(StandardFonts.Helvetica);
  for (let p = 0; p < pages; p++) {
    const page = pdf.addPage([595, 842]);
    const topic = TOPICS[(doc + p) % TOPICS.length]!;
    for (let line = 0; line < 40; line++) {
      const text = `Study ${doc}.${p}.${line}: the ${topic} measurement series ${line * 17 + p} shows a shift of ${(line * 0.37).toFixed(2)} units.`;
      page.drawText(text, { x: 40, y: 800 - line * 19, size: 9, font });
    }
  }
  return pdf.save();
}

const suite: BenchSuite = {
  name: 'knowledge ingestion',
  async run() {
    const limits = { RATE_LIMIT_USER_PER_MINUTE: '100000000', RATE_LIMIT_PROJECT_PER_MINUTE: '100000000' };
    const gateway = await startTestGateway(limits);
    const worker = await startTestWorker(limits);
    try {
      const owner = await signUp(gateway.url, 'bench-ingest');
      await gateway.deps.ledger.topup({ orgId: owner.org.id, amountMicros: 1_000_000_000n, idempotencyKey: `bench-ingest:${owner.org.id}`, reason: 'bench credit', actor: { type: 'system' } });
      const kb = await owner.client.post(`/api/v1/projects/${owner.project.id}/knowledge-bases`, { name: 'bench', chunk_size: CHUNK_TOKENS, chunk_overlap: CHUNK_OVERLAP });
      if (kb.status !== 201) throw new Error(`kb: ${JSON.stringify(kb.body)}`);
      const pdfs = await Promise.all(Array.from({ length: DOCUMENTS * 2 }, (_, i) => makePdf(i, PAGES)));

      // Baseline: the same work in-process, all documents at once (as the workflow gets them).
      const upstream = createUpstreamClient(gateway.deps.config);
      const embeddingModel = (await gateway.deps.prisma.model.findUniqueOrThrow({ where: { name: 'text-embedding-3-small' } })).upstreamModel;
      const directStarted = performance.now();
      let directChunks = 0;
      await Promise.all(
        pdfs.slice(0, DOCUMENTS).map(async (bytes) => {
          const parsed = await parseDocument(bytes, { contentType: 'application/pdf', filename: 'x.pdf' });
          const chunks = chunkDocument(parsed, { chunkTokens: CHUNK_TOKENS, overlapTokens: CHUNK_OVERLAP });
          for (let i = 0; i < chunks.length; i += BATCH) {
            await upstream.embeddings.create({ model: embeddingModel, input: chunks.slice(i, i + BATCH).map((c) => c.text) });
          }
          directChunks += chunks.length;
        }),
      );
      const directSeconds = (performance.now() - directStarted) / 1000;

      // Subject: uploads through the gateway, ingested by the workflow (other documents of the set).
      const started = performance.now();
      const ids: string[] = [];
      for (const [i, bytes] of pdfs.slice(DOCUMENTS).entries()) {
        const res = await owner.client.upload(`/api/v1/projects/${owner.project.id}/knowledge-bases/${kb.body.id}/documents`, { name: `paper-${i}.pdf`, bytes, type: 'application/pdf' });
        if (res.status !== 202) throw new Error(`upload: ${res.status} ${JSON.stringify(res.body)}`);
        ids.push(res.body.id);
      }
      const docs = await until(
        async () => {
          const rows = await gateway.deps.prisma.document.findMany({ where: { id: { in: ids } } });
          if (rows.some((r) => r.status === 'failed')) throw new Error(`ingestion failed: ${rows.find((r) => r.status === 'failed')!.error}`);
          return rows.every((r) => r.status === 'indexed') ? rows : null;
        },
        600_000,
        'every document indexed',
      );
      const seconds = (performance.now() - started) / 1000;
      const pages = docs.reduce((s, d) => s + (d.pageCount ?? 0), 0);
      const chunks = docs.reduce((s, d) => s + d.chunkCount, 0);
      const holds = await gateway.deps.prisma.hold.count({ where: { runId: { in: docs.map((d) => d.workflowId!) }, status: 'captured' } });
      const expectedHolds = docs.reduce((s, d) => s + Math.ceil(d.chunkCount / BATCH), 0);
      if (holds !== expectedHolds) throw new Error(`expected ${expectedHolds} captured embedding holds, found ${holds}`);

      const directPagesPerSecond = (DOCUMENTS * PAGES) / directSeconds;
      return [
        {
          name: 'kb-ingestion-pages-per-second',
          description: `${DOCUMENTS} PDFs × ${PAGES} pages uploaded through the gateway and ingested durably (parse, ${CHUNK_TOKENS}-token chunks, billed embedding batches of ${BATCH}, LanceDB upsert); baseline: the same parse + chunk + embedding calls in-process, no workflow/billing/index`,
          baseline: { label: 'direct parse + chunk + embed', value: round(directPagesPerSecond, 1), unit: 'pages/s' },
          subject: { label: 'upload → indexed (workflow)', value: round(pages / seconds, 1), unit: 'pages/s' },
          ratio: round(pages / seconds / directPagesPerSecond, 3),
          ratioMeaning: 'ingestion throughput as a fraction of the bare pipeline (1 = no platform overhead)',
          details: { chunks_per_second: { workflow: round(chunks / seconds, 1), direct: round(directChunks / directSeconds, 1) }, seconds: { workflow: round(seconds), direct: round(directSeconds) }, pages, chunks, embedding_holds: holds },
        },
      ];
    } finally {
      await worker.stop();
      await gateway.close();
      await Runtime.instance().shutdown();
    }
  },
};

export default suite;
