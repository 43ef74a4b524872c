// Knowledge-base retrieval latency: hybrid search (BM25 + cosine, fused) through KnowledgeIndex over
// LanceDB at 10k and 100k chunks, against a brute-force cosine scan of the same vectors held in one
// Float32Array (the floor any vector search is measured against). Also reports the build throughput
// (upsert + index build, chunks/s), what refreshing the FTS index after a small upsert costs, and, at
// 100k, what the IVF_FLAT vector index that optimize() builds past VECTOR_INDEX_MIN_ROWS changes (build
// time, latency, recall@10 against the exact top 10).
// Texts are synthetic (a Zipf vocabulary with topic structure, ~80 words a chunk); vectors come from
// the simulator's embedText (256 dims, sim-embedding-small) computed in-process, not over HTTP.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { embedText } from '@deepspace/upstream-simulator/embeddings';
import { KnowledgeIndex } from '@deepspace/core/knowledge/index-store';
import type { IndexedChunk, RetrievalMode } from '@deepspace/core/knowledge/types';
import { round, type BenchResult, type BenchSuite } from './harness.ts';
import { mulberry32 as mulberry32Prng } from '@deepspace/upstream-simulator/prng';

const DIMS = 256;
const MODEL = 'sim-embedding-small';
const SIZES = (process.env.RETRIEVAL_BENCH_SIZES ?? '10000,100000').split(',').map(Number);
const QUERIES = 120;
const WARMUP = 10;
const TOP_K = 10;
const UPSERT_BATCH = 2_000;
const WORDS_PER_CHUNK = 80;
const DOCUMENTS = 500;

// ── synthetic corpus ──

const prng = mulberry32Prng;

const SYLLABLES = ['ka', 'to', 'ri', 'men', 'sol', 'tra', 'vex', 'lin', 'por', 'qua', 'dra', 'el', 'ion', 'ter', 'ab', 'cy', 'neo', 'phi', 'zo', 'mar', 'gen', 'lux', 'ost', 'ber'];
const FUNCTION_WORDS = 'the of and in to with for was were by on at from as is that this after under'.split(' ');

function makeCorpus(n: number, seed: number): string[] {
  const rand = prng(seed);
  const vocab = Array.from({ length: 12_000 }, (_, i) => {
    let w = '';
    for (let j = 0; j < 2 + (i % 3); j++) w += SYLLABLES[Math.floor(rand() * SYLLABLES.length)];
    return i % 9 === 0 ? `${w}${i % 97}` : w;
  });
  const texts: string[] = [];
  for (let i = 0; i < n; i++) {
    // Each chunk draws from its topic's 40 words, from the Zipf-distributed vocabulary and from function words.
    const topic = Math.floor(rand() * 1_000);
    const words: string[] = [];
    for (let k = 0; k < WORDS_PER_CHUNK; k++) {
      const r = rand();
      words.push(
        r < 0.3
          ? FUNCTION_WORDS[Math.floor(rand() * FUNCTION_WORDS.length)]!
          : r < 0.6
            ? vocab[(topic * 37 + Math.floor(rand() * 40)) % vocab.length]!
            : vocab[Math.floor(vocab.length * rand() ** 2.5)]!,
      );
    }
    texts.push(words.join(' '));
  }
  return texts;
}

// ── measurement helpers ──

function percentiles(samples: number[]): { p50: number; p99: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (p: number) => s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? 0;
  return { p50: at(50), p99: at(99) };
}

/** Exact top-k by cosine (the vectors are unit length, so a dot product) over a row-major matrix. */
function bruteForceTopK(matrix: Float32Array, rows: number, q: Float32Array, k: number): number[] {
  const best: Array<[number, number]> = [];
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    const off = r * DIMS;
    for (let d = 0; d < DIMS; d++) dot += matrix[off + d]! * q[d]!;
    if (best.length < k || dot > best[best.length - 1]![0]) {
      best.push([dot, r]);
      best.sort((a, b) => b[0] - a[0]);
      if (best.length > k) best.pop();
    }
  }
  return best.map(([, r]) => r);
}

interface Query {
  text: string;
  vector: number[];
  f32: Float32Array;
}

async function timeSearches(index: KnowledgeIndex, kb: string, project: string, queries: Query[], mode: RetrievalMode) {
  const run = (q: Query) => index.search(kb, project, { queryText: q.text, queryVector: q.vector, topK: TOP_K, mode });
  for (const q of queries.slice(0, WARMUP)) await run(q);
  const samples: number[] = [];
  const hits: string[][] = [];
  for (const q of queries) {
    const t = performance.now();
    const result = await run(q);
    samples.push(performance.now() - t);
    hits.push(result.map((h) => h.chunk_id));
  }
  return { ...percentiles(samples), hits };
}

function timeBruteForce(matrix: Float32Array, rows: number, queries: Query[]) {
  for (const q of queries.slice(0, WARMUP)) bruteForceTopK(matrix, rows, q.f32, TOP_K);
  const samples: number[] = [];
  const exact: number[][] = [];
  for (const q of queries) {
    const t = performance.now();
    exact.push(bruteForceTopK(matrix, rows, q.f32, TOP_K));
    samples.push(performance.now() - t);
  }
  return { ...percentiles(samples), exact };
}

const ms = (x: number) => round(x, 2);

async function benchSize(n: number): Promise<BenchResult[]> {
  const dir = mkdtempSync(path.join(os.tmpdir(), `retrieval-bench-${n}-`));
  const kb = randomUUID();
  const project = randomUUID();
  const documents = Array.from({ length: DOCUMENTS }, () => randomUUID());
  // Exact vector search first; the vector index is built explicitly below.
  const index = await KnowledgeIndex.open({ uri: dir, autoOptimize: false, vectorIndexMinRows: false });
  try {
    const texts = makeCorpus(n, n);
    const tEmbed = performance.now();
    const matrix = new Float32Array(n * DIMS);
    texts.forEach((text, i) => matrix.set(embedText(text, MODEL, DIMS), i * DIMS));
    const embedSeconds = (performance.now() - tEmbed) / 1000;

    // Build: upserts as ingestion does them (bigger batches), then optimize() builds FTS + scalar indexes.
    const tBuild = performance.now();
    for (let i = 0; i < n; i += UPSERT_BATCH) {
      const rows: IndexedChunk[] = [];
      for (let j = i; j < Math.min(n, i + UPSERT_BATCH); j++) {
        rows.push({
          chunk_id: `c${j}`,
          document_id: documents[j % DOCUMENTS]!,
          project_id: project,
          ordinal: Math.floor(j / DOCUMENTS),
          text: texts[j]!,
          page: null,
          heading: null,
          vector: Array.from(matrix.subarray(j * DIMS, (j + 1) * DIMS)),
        });
      }
      await index.upsertChunks(kb, rows);
    }
    const upsertSeconds = (performance.now() - tBuild) / 1000;
    const tOptimize = performance.now();
    await index.optimize(kb);
    const optimizeSeconds = (performance.now() - tOptimize) / 1000;
    const buildSeconds = upsertSeconds + optimizeSeconds;

    // Queries: four content words of a random chunk (so BM25 and the vector both have real hits).
    const rand = prng(7);
    const queries: Query[] = Array.from({ length: QUERIES }, () => {
      const words = texts[Math.floor(rand() * n)]!.split(' ').filter((w) => !FUNCTION_WORDS.includes(w));
      const text = Array.from({ length: 4 }, () => words[Math.floor(rand() * words.length)]).join(' ');
      const f32 = Float32Array.from(embedText(text, MODEL, DIMS));
      return { text, vector: Array.from(f32), f32 };
    });

    const brute = timeBruteForce(matrix, n, queries);
    const hybrid = await timeSearches(index, kb, project, queries, 'hybrid');
    const fts = await timeSearches(index, kb, project, queries, 'fts');
    const vector = await timeSearches(index, kb, project, queries, 'vector');

    // FTS refresh at this size: a 64-chunk upsert (one ingestion batch), BM25 while those rows are only
    // flat-scanned, then the incremental optimize() that folds them into the indexes.
    const batch: IndexedChunk[] = makeCorpus(64, n + 1).map((text, j) => ({
      chunk_id: `late${j}`,
      document_id: documents[0]!,
      project_id: project,
      ordinal: 10_000 + j,
      text,
      page: null,
      heading: null,
      vector: Array.from(embedText(text, MODEL, DIMS)),
    }));
    const tUpsert = performance.now();
    await index.upsertChunks(kb, batch);
    const upsert64Ms = performance.now() - tUpsert;
    const ftsUnindexed = await timeSearches(index, kb, project, queries.slice(0, 40), 'fts');
    const tRefresh = performance.now();
    await index.optimize(kb);
    const refreshMs = performance.now() - tRefresh;

    const details: Record<string, unknown> = {
      chunks: n,
      build: {
        chunks_per_s: round(n / buildSeconds, 0),
        upsert_s: round(upsertSeconds, 1),
        optimize_s: round(optimizeSeconds, 1),
        embed_chunks_per_s_in_process: round(n / embedSeconds, 0),
      },
      p50_ms: { hybrid: ms(hybrid.p50), fts: ms(fts.p50), vector: ms(vector.p50), brute_force: ms(brute.p50) },
      p99_ms: { hybrid: ms(hybrid.p99), fts: ms(fts.p99), vector: ms(vector.p99), brute_force: ms(brute.p99) },
      fts_refresh: {
        upsert_64_ms: ms(upsert64Ms),
        fts_p50_ms_with_64_unindexed: ms(ftsUnindexed.p50),
        optimize_after_64_ms: ms(refreshMs),
      },
    };
    const results: BenchResult[] = [
      {
        name: `retrieval-hybrid-${n / 1000}k`,
        description: `hybrid search (BM25 + cosine, weighted fusion, top ${TOP_K}) over ${n} chunks of ${DIMS} dims via KnowledgeIndex/LanceDB, exact vector search; ${QUERIES} sequential queries; build ${round(n / buildSeconds, 0)} chunks/s`,
        baseline: { label: 'brute-force cosine over a Float32Array (p50)', value: ms(brute.p50), unit: 'ms' },
        subject: { label: 'hybrid search p50', value: ms(hybrid.p50), unit: 'ms' },
        ratio: round(hybrid.p50 / brute.p50, 2),
        ratioMeaning: 'hybrid p50 latency as a multiple of an in-memory brute-force vector scan (lower is better)',
        details,
      },
    ];

    if (n >= 50_000) {
      // Same data with the vector index optimize() builds past the row threshold.
      const ann = await KnowledgeIndex.open({ uri: dir, autoOptimize: false, vectorIndexMinRows: 1 });
      try {
        const tIvf = performance.now();
        await ann.optimize(kb);
        const ivfSeconds = (performance.now() - tIvf) / 1000;
        const annVector = await timeSearches(ann, kb, project, queries, 'vector');
        const annHybrid = await timeSearches(ann, kb, project, queries, 'hybrid');
        // Recall of the ANN vector top 10 against the exact top 10 (brute force, same vectors).
        const recall = mean(
          annVector.hits.map((hits, i) => {
            const exact = new Set(brute.exact[i]!.map((r) => `c${r}`));
            return hits.filter((h) => exact.has(h)).length / TOP_K;
          }),
        );
        const exactRecall = mean(
          vector.hits.map((hits, i) => {
            const exact = new Set(brute.exact[i]!.map((r) => `c${r}`));
            return hits.filter((h) => exact.has(h)).length / TOP_K;
          }),
        );
        results.push({
          name: `retrieval-hybrid-${n / 1000}k-ivf`,
          description: `as retrieval-hybrid-${n / 1000}k with the IVF_FLAT vector index (~2k rows a partition, ≥20 probes); index build ${round(ivfSeconds, 1)} s`,
          baseline: { label: 'hybrid p50, exact vector search', value: ms(hybrid.p50), unit: 'ms' },
          subject: { label: 'hybrid p50, IVF_FLAT', value: ms(annHybrid.p50), unit: 'ms' },
          ratio: round(annHybrid.p50 / hybrid.p50, 2),
          ratioMeaning: 'hybrid p50 with the vector index as a fraction of exact search (lower is better)',
          details: {
            ivf_build_s: round(ivfSeconds, 1),
            p50_ms: { vector_exact: ms(vector.p50), vector_ivf: ms(annVector.p50), hybrid_exact: ms(hybrid.p50), hybrid_ivf: ms(annHybrid.p50) },
            p99_ms: { vector_exact: ms(vector.p99), vector_ivf: ms(annVector.p99), hybrid_exact: ms(hybrid.p99), hybrid_ivf: ms(annHybrid.p99) },
            vector_recall_at_10_vs_brute_force: { exact_lancedb: round(exactRecall, 3), ivf_flat: round(recall, 3) },
          },
        });
      } finally {
        await ann.close();
      }
    }
    return results;
  } finally {
    await index.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : 0);

const suite: BenchSuite = {
  name: 'knowledge retrieval (LanceDB hybrid search)',
  async run(): Promise<BenchResult[]> {
    const results: BenchResult[] = [];
    for (const n of SIZES) results.push(...(await benchSize(n)));
    return results;
  },
};

export default suite;
