import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { embedText } from '@deepspace/upstream-simulator/embeddings';
import { fuseRankings, KnowledgeIndex, tableNameOf } from './index-store.ts';
import type { IndexedChunk, RetrievalMode } from './types.ts';

const DIMS = 256;
const embed = (text: string) => Array.from(embedText(text, 'sim-embedding-small', DIMS));
const MODES: RetrievalMode[] = ['fts', 'vector', 'hybrid'];

const TEXTS = [
  'Zebrafish caudal fin regeneration was tracked for 14 days after amputation; blastema formation peaked at day 3.',
  'The perovskite solar cell retained 91% of its initial efficiency after 1000 hours of damp-heat testing.',
  'CRISPR knockout of the TP53 gene in HEK293 cells increased proliferation under hypoxia.',
  'A Bayesian hierarchical model estimated the seasonal incidence of influenza across 40 hospitals.',
  'Lithium iron phosphate cathodes were coated with carbon to improve rate capability at 5C.',
  'The catalyst degraded quickly at high temperature in the fixed-bed reactor, losing 30% activity.',
];

function chunksOf(projectId: string, documentId: string, texts: string[], prefix = documentId): IndexedChunk[] {
  return texts.map((text, ordinal) => ({
    chunk_id: `${prefix}:${ordinal}`,
    document_id: documentId,
    project_id: projectId,
    ordinal,
    text,
    page: ordinal + 1,
    heading: ordinal % 2 ? 'Results' : null,
    vector: embed(text),
  }));
}

const ftsUnindexed = async (idx: KnowledgeIndex, kb: string) => (await idx.indexStatus(kb))?.indexes.find((i) => i.type === 'FTS')?.unindexedRows;

let dir: string;
let index: KnowledgeIndex;

beforeAll(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'kb-index-'));
  index = await KnowledgeIndex.open({ uri: dir, autoOptimize: false });
});

afterAll(async () => {
  await index?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('KnowledgeIndex', () => {
  it('finds the exact chunk for a targeted query in every mode', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    const doc = randomUUID();
    await index.upsertChunks(kb, chunksOf(project, doc, TEXTS));
    const queries: Array<[string, number]> = [
      ['zebrafish fin regeneration after amputation', 0],
      ['perovskite solar cell damp heat efficiency', 1],
      ['TP53 knockout HEK293', 2],
      ['catalyst degradation at high temperature in the reactor', 5],
    ];
    for (const mode of MODES) {
      for (const [query, ordinal] of queries) {
        const hits = await index.search(kb, project, { queryText: query, queryVector: embed(query), topK: 3, mode });
        expect(hits[0]?.chunk_id, `${mode}: ${query}`).toBe(`${doc}:${ordinal}`);
        expect(hits[0]).toMatchObject({ document_id: doc, ordinal, text: TEXTS[ordinal], page: ordinal + 1 });
        if (mode === 'fts') expect(hits[0]).toMatchObject({ fts_rank: 1, vector_rank: null });
        if (mode === 'vector') expect(hits[0]).toMatchObject({ vector_rank: 1, fts_rank: null });
        if (mode === 'hybrid') expect(hits[0]!.vector_rank ?? hits[0]!.fts_rank).toBe(1);
      }
    }
    // The stemmer matches morphological variants in BM25 ("regenerating" → "regeneration").
    const fts = await index.search(kb, project, { queryText: 'regenerating fins', topK: 1, mode: 'fts' });
    expect(fts[0]?.ordinal).toBe(0);
  });

  it('upserts idempotently by chunk_id and updates changed rows', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    const doc = randomUUID();
    const rows = chunksOf(project, doc, TEXTS);
    await index.upsertChunks(kb, rows);
    await index.upsertChunks(kb, rows);
    expect(await index.countChunks(kb)).toBe(TEXTS.length);
    expect(await index.countChunks(kb, doc)).toBe(TEXTS.length);
    const changed = { ...rows[0]!, text: 'Axolotl limb regrowth', vector: embed('Axolotl limb regrowth') };
    await index.upsertChunks(kb, [changed]);
    expect(await index.countChunks(kb)).toBe(TEXTS.length);
    const hits = await index.search(kb, project, { queryText: 'axolotl', topK: 5, mode: 'fts' });
    expect(hits.map((h) => h.chunk_id)).toEqual([changed.chunk_id]);
    expect(await index.search(kb, project, { queryText: 'zebrafish', topK: 5, mode: 'fts' })).toEqual([]);
  });

  it('rejects a vector dimension other than the knowledge base has', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    const doc = randomUUID();
    await index.upsertChunks(kb, chunksOf(project, doc, TEXTS.slice(0, 2)));
    const other = chunksOf(project, doc, ['short vectors'], 'x').map((r) => ({ ...r, vector: r.vector.slice(0, 64) }));
    await expect(index.upsertChunks(kb, other)).rejects.toMatchObject({ code: 'conflict', message: expect.stringMatching(/256-dimensional.*got 64/) });
    const mixed = [...chunksOf(project, doc, ['a b c'], 'y'), ...other];
    await expect(index.upsertChunks(kb, mixed)).rejects.toMatchObject({ code: 'conflict' });
    await expect(index.search(kb, project, { queryText: 'x', queryVector: embed('x').slice(0, 64), topK: 3, mode: 'vector' })).rejects.toMatchObject({
      code: 'conflict',
    });
    expect(await index.countChunks(kb)).toBe(2);
  });

  it('deleteDocument removes the document from every mode and leaves the others', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    const [docA, docB] = [randomUUID(), randomUUID()];
    await index.upsertChunks(kb, [...chunksOf(project, docA, TEXTS.slice(0, 3)), ...chunksOf(project, docB, TEXTS.slice(3))]);
    await index.optimize(kb); // part indexed, part not: the delete must hold for both
    expect(await index.deleteDocument(kb, docA)).toBe(3);
    expect(await index.deleteDocument(kb, docA)).toBe(0);
    for (const mode of MODES) {
      const hits = await index.search(kb, project, { queryText: 'zebrafish perovskite TP53 catalyst', queryVector: embed('zebrafish perovskite'), topK: 10, mode });
      expect(hits.every((h) => h.document_id === docB), mode).toBe(true);
    }
    expect(await index.countChunks(kb)).toBe(3);
    expect(await index.countChunks(kb, docA)).toBe(0);
  });

  it("never returns another project's rows, and honours the documentIds filter", async () => {
    const kb = randomUUID();
    const [mine, theirs] = [randomUUID(), randomUUID()];
    const [doc1, doc2, doc3] = [randomUUID(), randomUUID(), randomUUID()];
    await index.upsertChunks(kb, [
      ...chunksOf(mine, doc1, TEXTS.slice(0, 3)),
      ...chunksOf(mine, doc2, TEXTS.slice(3)),
      ...chunksOf(theirs, doc3, TEXTS), // the same texts, so they would rank as high
    ]);
    const query = 'zebrafish regeneration perovskite influenza lithium catalyst';
    for (const mode of MODES) {
      const all = await index.search(kb, mine, { queryText: query, queryVector: embed(query), topK: 50, mode });
      expect(all.length, mode).toBeGreaterThan(0);
      expect(all.every((h) => h.document_id !== doc3), mode).toBe(true);
      const only2 = await index.search(kb, mine, { queryText: query, queryVector: embed(query), topK: 50, mode, documentIds: [doc2] });
      expect(only2.length, mode).toBeGreaterThan(0);
      expect(only2.every((h) => h.document_id === doc2), mode).toBe(true);
      // Another project's document named explicitly still does not leak.
      expect(await index.search(kb, mine, { queryText: query, queryVector: embed(query), topK: 50, mode, documentIds: [doc3] })).toEqual([]);
      expect(await index.search(kb, mine, { queryText: query, queryVector: embed(query), topK: 50, mode, documentIds: [] })).toEqual([]);
    }
  });

  it('returns [] for a knowledge base without a table', async () => {
    const kb = randomUUID();
    for (const mode of MODES) expect(await index.search(kb, randomUUID(), { queryText: 'anything', queryVector: embed('anything'), topK: 5, mode })).toEqual([]);
    expect(await index.countChunks(kb)).toBe(0);
    expect(await index.deleteDocument(kb, randomUUID())).toBe(0);
    await index.dropKnowledgeBase(kb); // no table: nothing to do
  });

  it('lands every row of 10 concurrent upserts into one knowledge base', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    const docs = Array.from({ length: 10 }, () => randomUUID());
    await Promise.all(docs.map((doc, i) => index.upsertChunks(kb, chunksOf(project, doc, TEXTS.map((t) => `${t} batch ${i}`)))));
    expect(await index.countChunks(kb)).toBe(10 * TEXTS.length);
    for (const doc of docs) expect(await index.countChunks(kb, doc)).toBe(TEXTS.length);
  });

  it('treats quotes and SQL-looking text in a query as plain words', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    const doc = randomUUID();
    await index.upsertChunks(kb, chunksOf(project, doc, [...TEXTS, `it's a "quoted" title`]));
    for (const query of [`it's "x" OR 1=1; --`, `"quoted"`, `' OR '1'='1`, 'a:b AND (c', '\\', '%_*?', '']) {
      for (const mode of MODES) {
        const hits = await index.search(kb, project, { queryText: query, queryVector: embed(query), topK: 5, mode });
        expect(Array.isArray(hits)).toBe(true);
      }
    }
    const quoted = await index.search(kb, project, { queryText: '"quoted"', topK: 5, mode: 'fts' });
    expect(quoted[0]?.ordinal).toBe(TEXTS.length);
  });

  it('refuses ids that are not UUIDs before they reach a table name or filter', async () => {
    const project = randomUUID();
    await expect(index.search("x' OR 1=1 --", project, { queryText: 'a', topK: 1, mode: 'fts' })).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(index.search(randomUUID(), "' OR ''='", { queryText: 'a', topK: 1, mode: 'fts' })).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(index.search(randomUUID(), project, { queryText: 'a', topK: 1, mode: 'fts', documentIds: ["') OR true --"] })).rejects.toMatchObject({
      code: 'validation_failed',
    });
    await expect(index.deleteDocument(randomUUID(), "x' OR 'a'='a")).rejects.toMatchObject({ code: 'validation_failed' });
    await expect(index.search(randomUUID(), project, { queryText: 'a', topK: 1, mode: 'vector' })).rejects.toMatchObject({ code: 'validation_failed' });
    const kb = randomUUID();
    expect(tableNameOf(kb.toUpperCase())).toBe(`kb_${kb.replaceAll('-', '')}`);
  });

  it('finds new rows by full text before and after the FTS index is rebuilt, and drops a knowledge base', async () => {
    const kb = randomUUID();
    const project = randomUUID();
    await index.upsertChunks(kb, chunksOf(project, randomUUID(), TEXTS.slice(0, 3)));
    await index.optimize(kb);
    expect(await ftsUnindexed(index, kb)).toBe(0);
    const late = randomUUID();
    await index.upsertChunks(kb, chunksOf(project, late, ['Tardigrade desiccation tolerance depends on CAHS proteins.']));
    expect(await ftsUnindexed(index, kb)).toBe(1);
    const before = await index.search(kb, project, { queryText: 'tardigrade CAHS', topK: 3, mode: 'fts' });
    expect(before[0]?.document_id).toBe(late);
    await index.optimize(kb);
    expect(await ftsUnindexed(index, kb)).toBe(0);
    const after = await index.search(kb, project, { queryText: 'tardigrade CAHS', topK: 3, mode: 'fts' });
    expect(after[0]?.document_id).toBe(late);

    await index.dropKnowledgeBase(kb);
    expect(await index.countChunks(kb)).toBe(0);
    expect(await index.search(kb, project, { queryText: 'tardigrade', topK: 3, mode: 'fts' })).toEqual([]);
  });

  it('builds a vector index past the row threshold and still finds exact chunks, also within a document filter', async () => {
    const ann = await KnowledgeIndex.open({ uri: dir, autoOptimize: false, vectorIndexMinRows: 300 });
    try {
      const kb = randomUUID();
      const project = randomUUID();
      const docs = Array.from({ length: 20 }, () => randomUUID());
      const rows = docs.flatMap((doc, d) => chunksOf(project, doc, Array.from({ length: 16 }, (_, i) => `${TEXTS[(d + i) % TEXTS.length]} Sample ${d}-${i}, lot ${d * 100 + i}.`)));
      await ann.upsertChunks(kb, rows);
      await ann.optimize(kb);
      const status = await ann.indexStatus(kb);
      expect(status).toMatchObject({ rows: 320, dims: DIMS });
      expect(status!.indexes.map((i) => i.name)).toEqual(['chunk_id_idx', 'document_id_idx', 'project_id_idx', 'text_idx', 'vector_idx']);
      const target = rows[77]!;
      const hits = await ann.search(kb, project, { queryText: target.text, queryVector: target.vector, topK: 5, mode: 'vector' });
      expect(hits[0]?.chunk_id).toBe(target.chunk_id);
      const inDoc = await ann.search(kb, project, { queryText: 'zebrafish', queryVector: embed('zebrafish'), topK: 16, mode: 'vector', documentIds: [docs[3]!] });
      expect(inDoc).toHaveLength(16);
      expect(new Set(inDoc.map((h) => h.document_id))).toEqual(new Set([docs[3]]));
    } finally {
      await ann.close();
    }
  });

  it('copes with a knowledge base dropped (and re-created) by another process', async () => {
    const other = await KnowledgeIndex.open({ uri: dir, autoOptimize: false });
    try {
      const kb = randomUUID();
      const project = randomUUID();
      await index.upsertChunks(kb, chunksOf(project, randomUUID(), TEXTS));
      expect(await index.countChunks(kb)).toBe(TEXTS.length); // this instance now holds an open table
      await other.dropKnowledgeBase(kb);
      expect(await index.countChunks(kb)).toBe(0);
      expect(await index.search(kb, project, { queryText: 'zebrafish', topK: 3, mode: 'fts' })).toEqual([]);
      // Re-created elsewhere with another embedding dimension: this instance follows.
      const small = chunksOf(project, randomUUID(), TEXTS.slice(0, 2)).map((r) => ({ ...r, vector: r.vector.slice(0, 64) }));
      await other.upsertChunks(kb, small);
      expect(await index.countChunks(kb)).toBe(2);
      await other.dropKnowledgeBase(kb);
      await index.upsertChunks(kb, chunksOf(project, randomUUID(), TEXTS.slice(0, 3)));
      expect(await other.countChunks(kb)).toBe(3);
    } finally {
      await other.close();
    }
  });

  it('optimizes on its own shortly after writes when autoOptimize is on', async () => {
    const auto = await KnowledgeIndex.open({ uri: dir, autoOptimize: { delayMs: 50, maxDelayMs: 200 } });
    try {
      const kb = randomUUID();
      const project = randomUUID();
      await auto.upsertChunks(kb, chunksOf(project, randomUUID(), TEXTS));
      expect(await ftsUnindexed(auto, kb)).toBe(TEXTS.length);
      await expect.poll(() => ftsUnindexed(auto, kb), { timeout: 5_000, interval: 50 }).toBe(0);
    } finally {
      await auto.close();
    }
  });
});

describe('fuseRankings', () => {
  const vector = [
    { id: 'a', score: 0.9 },
    { id: 'b', score: 0.5 },
    { id: 'c', score: 0.1 },
  ];
  const fts = [
    { id: 'c', score: 12 },
    { id: 'a', score: 6 },
    { id: 'd', score: 3 },
  ];

  it('reciprocal rank fusion sums 1/(k + rank) over the lists', () => {
    const fused = fuseRankings(vector, fts, { method: 'rrf', k: 60 });
    expect(fused.map((f) => f.id)).toEqual(['a', 'c', 'b', 'd']);
    expect(fused[0]).toEqual({ id: 'a', score: 1 / 61 + 1 / 62, vectorRank: 1, ftsRank: 2 });
    expect(fused.find((f) => f.id === 'd')).toMatchObject({ vectorRank: null, ftsRank: 3 });
  });

  it('weighted fusion mixes min–max normalised scores', () => {
    const fused = fuseRankings(vector, fts, { method: 'weighted', vectorWeight: 0.5 });
    // a: 0.5·1 + 0.5·(6−3)/9; c: 0.5·0 + 0.5·1; b: 0.5·0.5; d: 0
    expect(fused.map((f) => [f.id, Number(f.score.toFixed(4))])).toEqual([
      ['a', 0.6667],
      ['c', 0.5],
      ['b', 0.25],
      ['d', 0],
    ]);
    expect(fuseRankings(vector, fts, { method: 'weighted', vectorWeight: 1 })[0]!.id).toBe('a');
    expect(fuseRankings(vector, fts, { method: 'weighted', vectorWeight: 0 })[0]!.id).toBe('c');
    expect(() => fuseRankings(vector, fts, { method: 'weighted', vectorWeight: 2 })).toThrow(RangeError);
  });

  it('weighted fusion can divide by each list’s best score instead', () => {
    const fused = fuseRankings(vector, fts, { method: 'weighted', vectorWeight: 0.5, normalization: 'max' });
    // a: 0.5·1 + 0.5·6/12; c: 0.5·0.1/0.9 + 0.5·1; b: 0.5·0.5/0.9; d: 0.5·3/12
    expect(fused.map((f) => [f.id, Number(f.score.toFixed(4))])).toEqual([
      ['a', 0.75],
      ['c', 0.5556],
      ['b', 0.2778],
      ['d', 0.125],
    ]);
  });

  it('handles empty lists', () => {
    expect(fuseRankings([], [], { method: 'rrf' })).toEqual([]);
    expect(fuseRankings(vector, [], { method: 'weighted' }).map((f) => f.id)).toEqual(['a', 'b', 'c']);
  });
});
