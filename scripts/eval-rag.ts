// `npm run eval:rag`: retrieval quality on the labeled corpus in tests/fixtures/rag-eval (500 research
// documents, 200 queries, graded judgments; see generate.ts there). Chunks every document, embeds the
// chunks and queries through the upstream simulator over real HTTP (sim-embedding-small), indexes them
// into a temporary KnowledgeIndex and runs every query as fts, vector, hybrid-rrf and hybrid-weighted.
// Chunk hits become a document ranking (a document scores its best chunk). Reports nDCG@10 (graded
// gains 2^g − 1) and Recall@100, overall, per split and per query style, plus a fusion sweep on the dev
// split; writes bench/rag-eval.json and bench/rag-eval.md. Exits 1 when the default hybrid fusion scores
// below BM25 on nDCG@10.
import { createHash, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import OpenAI from 'openai';
import { startSimulator } from '@deepspace/upstream-simulator';
import { DEFAULT_FUSION, KnowledgeIndex, type FusionOptions } from '@deepspace/core/knowledge/index-store';
import type { IndexedChunk, RetrievalMode } from '@deepspace/core/knowledge/types';
import { chunkDocument } from '@deepspace/core/knowledge/chunk';
import { ROOT } from './lib/paths.ts';
import { log } from './lib/services.ts';

const FIXTURES = path.join(ROOT, 'tests', 'fixtures', 'rag-eval');
const MODEL = 'sim-embedding-small';
const EMBED_BATCH = 64;
const CHUNK_TOKENS = 300;
const CHUNK_OVERLAP = 30;
/** Chunks requested for the nDCG@10 run (enough for 10 distinct documents; the hybrid pool is then 120). */
const SHALLOW_K = 30;
/** Chunks requested for the Recall@100 run (enough for 100 distinct documents). */
const DEEP_K = 400;

interface Doc {
  id: string;
  title: string;
  text: string;
}
interface Query {
  id: string;
  text: string;
  category: string;
  split: 'dev' | 'test';
}

const readJsonl = <T>(file: string): T[] =>
  readFileSync(path.join(FIXTURES, file), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);

// ── chunking ──
// The product's chunker, at ~300 tokens with a little overlap (documents here run 150–400 tokens, so many
// span two chunks). The title is the document's first line, as in a PDF or Markdown file.
function chunkText(title: string, text: string): string[] {
  return chunkDocument({ sections: [{ text: `${title}\n\n${text}` }], pageCount: 1, title }, { chunkTokens: CHUNK_TOKENS, overlapTokens: CHUNK_OVERLAP }).map((c) => c.text);
}

/** A stable UUID per fixture document id (the index only takes UUIDs). */
function uuidOf(id: string): string {
  const h = createHash('sha256').update(`rag-eval:${id}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-5${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

// ── metrics ──

type Qrels = Map<string, Map<string, number>>;

function ndcgAt(ranking: string[], judged: Map<string, number>, k: number): number {
  const gain = (g: number) => 2 ** g - 1;
  let dcg = 0;
  ranking.slice(0, k).forEach((doc, i) => (dcg += gain(judged.get(doc) ?? 0) / Math.log2(i + 2)));
  const ideal = [...judged.values()].sort((a, b) => b - a).slice(0, k);
  const idcg = ideal.reduce((s, g, i) => s + gain(g) / Math.log2(i + 2), 0);
  return idcg > 0 ? dcg / idcg : 0;
}

function recallAt(ranking: string[], judged: Map<string, number>, k: number): number {
  const relevant = [...judged].filter(([, g]) => g > 0).map(([d]) => d);
  if (relevant.length === 0) return 0;
  const top = new Set(ranking.slice(0, k));
  return relevant.filter((d) => top.has(d)).length / relevant.length;
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0);

/** 95% paired bootstrap interval of mean(a − b) over queries (deterministic resampling). */
function pairedBootstrap(a: number[], b: number[], rounds = 2_000): [number, number] {
  let seed = 0x9e3779b9;
  const next = () => {
    seed = (Math.imul(seed ^ (seed >>> 15), 0x2c1b3c6d) + 0x297a2d39) >>> 0;
    return seed / 4294967296;
  };
  const diffs = a.map((x, i) => x - b[i]!);
  const means: number[] = [];
  for (let r = 0; r < rounds; r++) {
    let sum = 0;
    for (let i = 0; i < diffs.length; i++) sum += diffs[Math.floor(next() * diffs.length)]!;
    means.push(sum / diffs.length);
  }
  means.sort((x, y) => x - y);
  return [means[Math.floor(rounds * 0.025)]!, means[Math.floor(rounds * 0.975)]!];
}
const r3 = (x: number) => Math.round(x * 1000) / 1000;

// ── run ──

interface Variant {
  name: string;
  mode: RetrievalMode;
  fusion?: FusionOptions;
}

const VARIANTS: Variant[] = [
  { name: 'fts', mode: 'fts' },
  { name: 'vector', mode: 'vector' },
  { name: 'hybrid-rrf', mode: 'hybrid', fusion: { method: 'rrf', k: 60 } },
  { name: 'hybrid-weighted', mode: 'hybrid', fusion: { method: 'weighted', vectorWeight: DEFAULT_FUSION.vectorWeight, normalization: DEFAULT_FUSION.normalization } },
];
const SWEEP: Variant[] = [
  ...[10, 30, 60, 100].map((k) => ({ name: `rrf k=${k}`, mode: 'hybrid' as const, fusion: { method: 'rrf' as const, k } })),
  ...(['minmax', 'max'] as const).flatMap((normalization) =>
    [0.2, 0.3, 0.4, 0.5, 0.6, 0.7].map((w) => ({
      name: `weighted ${normalization} w=${w}`,
      mode: 'hybrid' as const,
      fusion: { method: 'weighted' as const, vectorWeight: w, normalization },
    })),
  ),
];
const defaultName =
  DEFAULT_FUSION.method === 'rrf' ? `rrf k=${DEFAULT_FUSION.k}` : `weighted ${DEFAULT_FUSION.normalization} w=${DEFAULT_FUSION.vectorWeight}`;

const docs = readJsonl<Doc>('corpus.jsonl');
const queries = readJsonl<Query>('queries.jsonl');
const qrels: Qrels = new Map();
for (const line of readFileSync(path.join(FIXTURES, 'qrels.tsv'), 'utf8').split('\n').slice(1)) {
  const [q, d, g] = line.split('\t');
  if (!q || !d) continue;
  if (!qrels.has(q)) qrels.set(q, new Map());
  qrels.get(q)!.set(d, Number(g));
}

const sim = await startSimulator({ port: 0, apiKey: 'sim-eval-key' });
const client = new OpenAI({ baseURL: sim.url, apiKey: 'sim-eval-key', maxRetries: 0 });
const dir = mkdtempSync(path.join(os.tmpdir(), 'rag-eval-'));
const index = await KnowledgeIndex.open({ uri: dir, autoOptimize: false });
const kb = randomUUID();
const project = randomUUID();
const docOfUuid = new Map(docs.map((d) => [uuidOf(d.id), d.id]));

async function embedAll(texts: string[]): Promise<number[][]> {
  const out: number[][] = [];
  for (let i = 0; i < texts.length; i += EMBED_BATCH) {
    const res = await client.embeddings.create({ model: MODEL, input: texts.slice(i, i + EMBED_BATCH) });
    out.push(...[...res.data].sort((a, b) => a.index - b.index).map((d) => Array.from(d.embedding)));
  }
  return out;
}

/** Document ranking of one search: chunk hits in order, each document at its best chunk. */
async function rankDocs(q: Query, vector: number[], variant: Variant, topK: number): Promise<string[]> {
  const hits = await index.search(kb, project, { queryText: q.text, queryVector: vector, topK, mode: variant.mode }, { fusion: variant.fusion });
  const seen = new Set<string>();
  for (const h of hits) seen.add(docOfUuid.get(h.document_id)!);
  return [...seen];
}

let exitCode = 0;
try {
  // Chunk and embed.
  const t0 = performance.now();
  const chunks = docs.flatMap((d) => chunkText(d.title, d.text).map((text, ordinal) => ({ doc: d, ordinal, text })));
  const chunkVectors = await embedAll(chunks.map((c) => c.text));
  const queryVectors = await embedAll(queries.map((q) => q.text));
  const embedMs = performance.now() - t0;
  log(`eval:rag: ${docs.length} documents → ${chunks.length} chunks, ${queries.length} queries embedded over HTTP in ${Math.round(embedMs)} ms`);

  // Index in batches, as ingestion does (one upsert per embedding batch).
  const t1 = performance.now();
  const rows: IndexedChunk[] = chunks.map((c, i) => ({
    chunk_id: `${uuidOf(c.doc.id)}:${c.ordinal}`,
    document_id: uuidOf(c.doc.id),
    project_id: project,
    ordinal: c.ordinal,
    text: c.text,
    page: null,
    heading: null,
    vector: chunkVectors[i]!,
  }));
  for (let i = 0; i < rows.length; i += EMBED_BATCH) await index.upsertChunks(kb, rows.slice(i, i + EMBED_BATCH));
  const indexMs = performance.now() - t1;

  // BM25 over rows the FTS index does not cover yet (flat scan), then after optimize() folds them in.
  const unindexed = (await index.indexStatus(kb))?.indexes.find((i) => i.type === 'FTS')?.unindexedRows ?? 0;
  const ftsVariant = VARIANTS[0]!;
  const ftsPass = async () => {
    const t = performance.now();
    const scores: number[] = [];
    for (const [i, q] of queries.entries()) scores.push(ndcgAt(await rankDocs(q, queryVectors[i]!, ftsVariant, SHALLOW_K), qrels.get(q.id) ?? new Map(), 10));
    return { ndcg10: r3(mean(scores)), msPerQuery: r3((performance.now() - t) / queries.length) };
  };
  const unoptimized = await ftsPass();
  const t2 = performance.now();
  await index.optimize(kb);
  const optimizeMs = performance.now() - t2;
  const optimized = await ftsPass();
  log(`eval:rag: indexed in ${Math.round(indexMs)} ms (${rows.length / EMBED_BATCH | 0} upserts); optimize() over ${unindexed} unindexed rows took ${Math.round(optimizeMs)} ms`);

  interface Scores {
    ndcg10: Map<string, number>;
    recall20: Map<string, number>;
    recall100: Map<string, number>;
    msPerQuery: number;
  }
  async function evaluate(variant: Variant, subset: Query[] = queries, deep = true): Promise<Scores> {
    const ndcg10 = new Map<string, number>();
    const recall20 = new Map<string, number>();
    const recall100 = new Map<string, number>();
    const t = performance.now();
    for (const q of subset) {
      const vector = queryVectors[queries.indexOf(q)]!;
      const judged = qrels.get(q.id) ?? new Map<string, number>();
      ndcg10.set(q.id, ndcgAt(await rankDocs(q, vector, variant, SHALLOW_K), judged, 10));
      if (deep) {
        const ranking = await rankDocs(q, vector, variant, DEEP_K);
        recall20.set(q.id, recallAt(ranking, judged, 20));
        recall100.set(q.id, recallAt(ranking, judged, 100));
      }
    }
    return { ndcg10, recall20, recall100, msPerQuery: (performance.now() - t) / subset.length / (deep ? 2 : 1) };
  }
  const over = (m: Map<string, number>, filter: (q: Query) => boolean) => r3(mean(queries.filter(filter).map((q) => m.get(q.id) ?? 0)));

  const results = new Map<string, Scores>();
  for (const v of VARIANTS) results.set(v.name, await evaluate(v));
  // Every fusion on every query; the default is chosen by the dev column only.
  const sweep = new Map<string, { dev: number; test: number; all: number }>();
  for (const v of SWEEP) {
    const s = await evaluate(v, queries, false);
    sweep.set(v.name, { dev: over(s.ndcg10, (q) => q.split === 'dev'), test: over(s.ndcg10, (q) => q.split === 'test'), all: over(s.ndcg10, () => true) });
  }
  const bestOnDev = [...sweep].sort((a, b) => b[1].dev - a[1].dev)[0]!;

  const categories = [...new Set(queries.map((q) => q.category))];
  const defaultVariant = DEFAULT_FUSION.method === 'rrf' ? 'hybrid-rrf' : 'hybrid-weighted';
  const ftsPerQuery = queries.map((q) => results.get('fts')!.ndcg10.get(q.id) ?? 0);
  const summary = VARIANTS.map((v) => {
    const s = results.get(v.name)!;
    const ci = pairedBootstrap(
      queries.map((q) => s.ndcg10.get(q.id) ?? 0),
      ftsPerQuery,
    );
    return {
      mode: v.name,
      ndcg10: over(s.ndcg10, () => true),
      recall100: over(s.recall100, () => true),
      recall20: over(s.recall20, () => true),
      ndcg10_minus_fts_ci95: ci.map(r3),
      ndcg10_dev: over(s.ndcg10, (q) => q.split === 'dev'),
      ndcg10_test: over(s.ndcg10, (q) => q.split === 'test'),
      ndcg10_by_category: Object.fromEntries(categories.map((c) => [c, over(s.ndcg10, (q) => q.category === c)])),
      ms_per_query: r3(s.msPerQuery),
    };
  });
  const fts = summary.find((s) => s.mode === 'fts')!;
  const hybrid = summary.find((s) => s.mode === defaultVariant)!;
  const passed = hybrid.ndcg10 >= fts.ndcg10;
  if (!passed) exitCode = 1;

  const report = {
    generatedAt: new Date().toISOString(),
    corpus: { documents: docs.length, chunks: chunks.length, queries: queries.length, judgments: [...qrels.values()].reduce((s, m) => s + m.size, 0) },
    setup: {
      embeddingModel: MODEL,
      chunking: `chunkDocument, ${CHUNK_TOKENS} tokens, ${CHUNK_OVERLAP} overlap (title as the first line)`,
      ndcgRunTopKChunks: SHALLOW_K,
      recallRunTopKChunks: DEEP_K,
      defaultFusion: DEFAULT_FUSION,
    },
    summary,
    fusionSweepNdcg10: Object.fromEntries(sweep),
    bestOnDev: { fusion: bestOnDev[0], ...bestOnDev[1] },
    ftsIndexRefresh: {
      unindexedRowsBeforeOptimize: unindexed,
      ftsNdcg10Unoptimized: unoptimized.ndcg10,
      ftsNdcg10Optimized: optimized.ndcg10,
      ftsMsPerQueryUnoptimized: unoptimized.msPerQuery,
      ftsMsPerQueryOptimized: optimized.msPerQuery,
      optimizeMs: Math.round(optimizeMs),
    },
    timingsMs: { embedding: Math.round(embedMs), indexing: Math.round(indexMs) },
    gate: { rule: `${defaultVariant} nDCG@10 >= fts nDCG@10`, passed },
    perQueryNdcg10: Object.fromEntries(queries.map((q) => [q.id, Object.fromEntries(VARIANTS.map((v) => [v.name, r3(results.get(v.name)!.ndcg10.get(q.id) ?? 0)]))])),
  };

  const md = [
    `# RAG retrieval eval (${report.generatedAt})`,
    '',
    `${docs.length} documents → ${chunks.length} chunks, ${queries.length} queries (${report.corpus.judgments} graded judgments), ${MODEL} via the simulator. nDCG@10 from top-${SHALLOW_K} chunks, Recall@100 from top-${DEEP_K} chunks; a document ranks by its best chunk.`,
    '',
    '| mode | nDCG@10 | Recall@100 | Recall@20 | nDCG@10 dev | nDCG@10 test | nDCG@10 − fts, 95% CI | ms/query |',
    '|---|---|---|---|---|---|---|---|',
    ...summary.map(
      (s) =>
        `| ${s.mode}${s.mode === defaultVariant ? ' (default)' : ''} | ${s.ndcg10} | ${s.recall100} | ${s.recall20} | ${s.ndcg10_dev} | ${s.ndcg10_test} | ${s.mode === 'fts' ? '—' : `[${s.ndcg10_minus_fts_ci95.join(', ')}]`} | ${s.ms_per_query} |`,
    ),
    '',
    '## nDCG@10 by query style',
    '',
    `| mode | ${categories.join(' | ')} |`,
    `|---|${categories.map(() => '---').join('|')}|`,
    ...summary.map((s) => `| ${s.mode} | ${categories.map((c) => s.ndcg10_by_category[c]).join(' | ')} |`),
    '',
    `Queries per style: ${categories.map((c) => `${c} ${queries.filter((q) => q.category === c).length}`).join(', ')}.`,
    '',
    '## Fusion sweep (nDCG@10)',
    '',
    `Best on the dev split: ${bestOnDev[0]} (dev ${bestOnDev[1].dev}, test ${bestOnDev[1].test}). The default is DEFAULT_FUSION in core/src/knowledge/index-store.ts (its comment says why).`,
    '',
    '| fusion | dev | test | all |',
    '|---|---|---|---|',
    ...[...sweep].map(([name, v]) => `| ${name}${name === defaultName ? ' (default)' : ''} | ${v.dev} | ${v.test} | ${v.all} |`),
    '',
    '## FTS index refresh',
    '',
    `Before optimize(): all ${unindexed} rows outside the FTS index (LanceDB searches them by a flat scan), fts nDCG@10 ${unoptimized.ndcg10} at ${unoptimized.msPerQuery} ms/query (top-${SHALLOW_K}, sequential). optimize() took ${report.ftsIndexRefresh.optimizeMs} ms; after it fts nDCG@10 ${optimized.ndcg10} at ${optimized.msPerQuery} ms/query.`,
    '',
    `Gate: ${report.gate.rule} → ${passed ? 'passed' : 'FAILED'} (${hybrid.ndcg10} vs ${fts.ndcg10}).`,
    '',
  ].join('\n');
  const outDir = path.join(ROOT, 'bench');
  mkdirSync(outDir, { recursive: true });
  writeFileSync(path.join(outDir, 'rag-eval.json'), JSON.stringify(report, null, 2) + '\n');
  writeFileSync(path.join(outDir, 'rag-eval.md'), md);
  process.stdout.write(`\n${md}\n`);
  log(`eval:rag: wrote bench/rag-eval.json and bench/rag-eval.md${passed ? '' : ' — the default hybrid fusion scored below BM25'}`);
} catch (error) {
  console.error(error);
  exitCode = 1;
} finally {
  await index.close();
  await sim.close();
  rmSync(dir, { recursive: true, force: true });
}
process.exit(exitCode);
