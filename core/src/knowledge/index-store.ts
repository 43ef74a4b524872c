// The knowledge index: one LanceDB table per knowledge base (`kb_<uuid hex>`), one row per chunk, with a
// BM25 full-text index on `text`, scalar indexes for the merge key and the filters, and cosine search
// over `vector` (exact, or through an IVF_FLAT index past VECTOR_INDEX_MIN_ROWS). Hybrid retrieval runs
// both searches over a candidate pool and fuses the two rankings (see fuseRankings; the default fusion
// was picked by `npm run eval:rag`, bench/rag-eval.md).
//
// Writes to one table are serialized in-process (LanceDB commits are optimistic, and concurrent
// ingestion activities upsert into the same table). LanceDB 0.39 searches rows the FTS index does not
// cover yet by a flat scan, so new rows are found at once, but that scan is slow (920 unindexed rows:
// 63 ms a query against 5 ms indexed); a debounced optimize() folds new rows into every index and
// compacts the small fragments each upsert leaves.
import * as lancedb from '@lancedb/lancedb';
import { Field, FixedSizeList, Float32, Int32, Schema, Utf8 } from 'apache-arrow';
import { AppError } from '../errors.ts';
import type { IndexedChunk, RetrievalMode, SearchHit, SearchRequest } from './types.ts';

export interface KnowledgeIndexOptions {
  /** A local directory, or s3://bucket/prefix. */
  uri: string;
  /** Passed to lancedb.connect for object storage: aws_endpoint, aws_access_key_id, aws_secret_access_key, aws_region, allow_http. */
  storageOptions?: Record<string, string>;
  /**
   * How stale a read may be with respect to writes by other processes (seconds). 0 (the default) checks
   * for a newer table version on every read, so a search in the gateway sees what a worker just indexed.
   */
  readConsistencyIntervalSeconds?: number;
  /**
   * Fold new rows into the FTS index this long after the last write to a table (debounced), at the latest
   * `maxDelayMs` after the first unoptimized write. `false` disables it (call optimize() yourself).
   */
  autoOptimize?: { delayMs: number; maxDelayMs: number } | false;
  /** The fusion used by hybrid searches (default DEFAULT_FUSION). */
  fusion?: FusionOptions;
  /**
   * optimize() builds an IVF_FLAT vector index once a knowledge base has this many chunks (default
   * VECTOR_INDEX_MIN_ROWS); below it, exact search is fast enough. `false`: always exact.
   */
  vectorIndexMinRows?: number | false;
}

// ───────────────────────────── fusion ─────────────────────────────

export type FusionMethod = 'rrf' | 'weighted';

export interface FusionOptions {
  method: FusionMethod;
  /** RRF's rank constant: score = Σ 1 / (k + rank). */
  k?: number;
  /** Weighted fusion: weight of the vector list in [0, 1]; the FTS list gets 1 − vectorWeight. */
  vectorWeight?: number;
  /**
   * Weighted fusion: how each list's scores are brought to [0, 1]. `minmax` maps the pool's worst to 0 and
   * best to 1; `max` divides by the best (both scores are ≥ 0 when relevant: BM25, cosine), which keeps
   * a flat list flat instead of stretching small differences.
   */
  normalization?: 'minmax' | 'max';
}

/** One candidate of one ranking, best first. */
export interface RankedId {
  id: string;
  score: number;
}

export interface FusedRank {
  id: string;
  score: number;
  /** 1-based rank in each input list, null when the candidate is not in it. */
  vectorRank: number | null;
  ftsRank: number | null;
}

export const RRF_K = 60;
/**
 * Weighted fusion of min–max normalised scores, vector weight 0.4, picked on the dev half of the labeled
 * eval (`npm run eval:rag`, bench/rag-eval.md; 500 documents, 200 queries): nDCG@10 dev 0.905 (tied with
 * weight 0.3; the larger vector weight is kept, as production embedders are semantic, not lexical like
 * the simulator's) against ≤ 0.901 for RRF at any k; test 0.910 against ≤ 0.902. RRF discards score
 * gaps, so a BM25 exact-id hit far ahead of the rest counts no more than a near-tie. All hybrid variants
 * land within ±0.015 of BM25 there (paired 95% CI); the eval gates on hybrid ≥ BM25.
 */
export const DEFAULT_FUSION: Readonly<Required<FusionOptions>> = { method: 'weighted', k: RRF_K, vectorWeight: 0.4, normalization: 'minmax' };

/** One list's scores mapped to [0, 1] (see FusionOptions.normalization). */
function normalizedScores(list: readonly RankedId[], normalization: 'minmax' | 'max'): Map<string, number> {
  const out = new Map<string, number>();
  if (list.length === 0) return out;
  let min = Infinity;
  let max = -Infinity;
  for (const c of list) {
    min = Math.min(min, c.score);
    max = Math.max(max, c.score);
  }
  for (const c of list) {
    if (out.has(c.id)) continue;
    if (normalization === 'max') out.set(c.id, max > 0 ? Math.max(0, c.score) / max : 0);
    else out.set(c.id, max > min ? (c.score - min) / (max - min) : 1);
  }
  return out;
}

/**
 * Fuses a vector ranking and a full-text ranking (each best first) into one, best first.
 * - `rrf`: reciprocal rank fusion, Σ 1/(k + rank) over the lists a candidate appears in (scores ignored).
 * - `weighted`: vectorWeight · norm(vector score) + (1 − vectorWeight) · norm(BM25), each list normalised
 *   on its own (min–max or by its best score), a missing candidate counting 0.
 * Ties break on the better single-list rank, then on id, so the order is deterministic.
 */
export function fuseRankings(vector: readonly RankedId[], fts: readonly RankedId[], options: FusionOptions = DEFAULT_FUSION): FusedRank[] {
  const fused = new Map<string, FusedRank>();
  const entry = (id: string) => {
    let e = fused.get(id);
    if (!e) {
      e = { id, score: 0, vectorRank: null, ftsRank: null };
      fused.set(id, e);
    }
    return e;
  };
  vector.forEach((c, i) => {
    const e = entry(c.id);
    e.vectorRank ??= i + 1;
  });
  fts.forEach((c, i) => {
    const e = entry(c.id);
    e.ftsRank ??= i + 1;
  });
  if (options.method === 'rrf') {
    const k = options.k ?? RRF_K;
    for (const e of fused.values()) e.score = (e.vectorRank ? 1 / (k + e.vectorRank) : 0) + (e.ftsRank ? 1 / (k + e.ftsRank) : 0);
  } else {
    const w = options.vectorWeight ?? DEFAULT_FUSION.vectorWeight;
    if (!(w >= 0 && w <= 1)) throw new RangeError(`vectorWeight must be within [0, 1], got ${w}`);
    const normalization = options.normalization ?? DEFAULT_FUSION.normalization;
    const nv = normalizedScores(vector, normalization);
    const nf = normalizedScores(fts, normalization);
    for (const e of fused.values()) e.score = w * (nv.get(e.id) ?? 0) + (1 - w) * (nf.get(e.id) ?? 0);
  }
  const bestRank = (e: FusedRank) => Math.min(e.vectorRank ?? Infinity, e.ftsRank ?? Infinity);
  return [...fused.values()].sort((a, b) => b.score - a.score || bestRank(a) - bestRank(b) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

// ───────────────────────────── validation ─────────────────────────────

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MAX_TOP_K = 1_000;
/** BM25 cost grows with the number of query terms; a retrieval query is a question, not a document. */
const MAX_FTS_QUERY_CHARS = 4_096;
const MAX_CHUNK_ID_LENGTH = 256;

function requireUuid(value: unknown, what: string): string {
  if (typeof value !== 'string' || !UUID_RE.test(value)) throw new AppError('validation_failed', `${what} must be a UUID`, { details: { [what]: value } });
  return value.toLowerCase();
}

/** Table name of a knowledge base; the id is validated first, so the name is always `kb_` + 32 hex digits. */
export function tableNameOf(knowledgeBaseId: string): string {
  return `kb_${requireUuid(knowledgeBaseId, 'knowledgeBaseId').replaceAll('-', '')}`;
}

/** A SQL string literal (single quotes doubled). Every value we quote is a validated UUID anyway. */
function sqlString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function isNotFound(error: unknown): boolean {
  return /was not found|not found:/i.test((error as Error)?.message ?? '');
}

// ───────────────────────────── the index ─────────────────────────────

const FTS_INDEX = 'text_idx';
const VECTOR_INDEX = 'vector_idx';
/**
 * LanceDB's exact (unindexed) vector search measured 12 ms p50 at 10k chunks but ~100 ms at 50k and
 * 400 ms at 100k on 2 busy cores; with the IVF_FLAT index 100k took 13 ms (hybrid 20 ms) at recall@10 = 1,
 * built in 4.5 s (tests/bench/retrieval.bench.ts). Up to ~40k rows the index has ≤ VECTOR_NPROBES
 * partitions, all probed, so results stay exact.
 */
export const VECTOR_INDEX_MIN_ROWS = 20_000;
/** IVF_FLAT partition size (rows) and the partitions every query probes; a filter that leaves too
 * few candidates there makes LanceDB probe further (maximumNprobes), so filters never lose results. */
const VECTOR_PARTITION_ROWS = 2_048;
const VECTOR_NPROBES = 20;
/** A documentIds filter this narrow searches its rows exactly: an ANN index probing a few partitions
 * could find fewer than topK of them. */
const EXACT_SEARCH_MAX_DOCUMENTS = 50;
/** Scalar indexes: chunk_id for merge-insert's join, project_id for the tenancy prefilter on every
 * search, document_id for deletes and document filters. */
const SCALAR_INDEXES: Array<[column: string, name: string, config: () => lancedb.Index]> = [
  ['chunk_id', 'chunk_id_idx', () => lancedb.Index.btree()],
  ['project_id', 'project_id_idx', () => lancedb.Index.bitmap()],
  ['document_id', 'document_id_idx', () => lancedb.Index.btree()],
];
/** The columns a search returns (never the vector). */
const HIT_COLUMNS = ['chunk_id', 'document_id', 'ordinal', 'text', 'page', 'heading'];

function schemaFor(dims: number): Schema {
  return new Schema([
    new Field('chunk_id', new Utf8(), false),
    new Field('document_id', new Utf8(), false),
    new Field('project_id', new Utf8(), false),
    new Field('ordinal', new Int32(), false),
    new Field('text', new Utf8(), false),
    new Field('page', new Int32(), true),
    new Field('heading', new Utf8(), true),
    new Field('vector', new FixedSizeList(dims, new Field('item', new Float32(), true)), false),
  ]);
}

interface OpenTable {
  table: lancedb.Table;
  dims: number;
}

interface CandidateRow {
  chunk_id: string;
  document_id: string;
  ordinal: number;
  text: string;
  page: number | null;
  heading: string | null;
  _score?: number;
  _distance?: number;
}

interface PendingOptimize {
  timer: NodeJS.Timeout;
  firstWriteAt: number;
}

export interface IndexStatus {
  rows: number;
  dims: number;
  indexes: Array<{ name: string; type: string; unindexedRows: number }>;
}

export interface SearchOptions {
  /** Overrides the index's fusion for this search (the eval compares variants). */
  fusion?: FusionOptions;
  /** Candidates each list retrieves for hybrid search (default max(topK × 4, 50)). */
  poolSize?: number;
}

export class KnowledgeIndex {
  readonly #db: lancedb.Connection;
  readonly #autoOptimize: { delayMs: number; maxDelayMs: number } | false;
  readonly #fusion: FusionOptions;
  readonly #vectorIndexMinRows: number | false;
  readonly #tables = new Map<string, OpenTable>();
  /** Tail of each table's write queue (the in-process mutex). */
  readonly #locks = new Map<string, Promise<unknown>>();
  readonly #pending = new Map<string, PendingOptimize>();
  #closed = false;

  private constructor(db: lancedb.Connection, options: KnowledgeIndexOptions) {
    this.#db = db;
    this.#autoOptimize = options.autoOptimize ?? { delayMs: 2_000, maxDelayMs: 15_000 };
    this.#fusion = options.fusion ?? DEFAULT_FUSION;
    this.#vectorIndexMinRows = options.vectorIndexMinRows ?? VECTOR_INDEX_MIN_ROWS;
  }

  static async open(options: KnowledgeIndexOptions): Promise<KnowledgeIndex> {
    const db = await lancedb.connect(options.uri, {
      storageOptions: options.storageOptions,
      readConsistencyInterval: options.readConsistencyIntervalSeconds ?? 0,
    });
    return new KnowledgeIndex(db, options);
  }

  /**
   * Idempotent upsert by chunk_id (merge insert), so a retried activity does not duplicate rows. All
   * vectors of one knowledge base share one dimension; a different one is a `conflict` error.
   */
  async upsertChunks(knowledgeBaseId: string, rows: IndexedChunk[]): Promise<void> {
    const name = this.#name(knowledgeBaseId);
    if (rows.length === 0) return;
    const dims = validateRows(rows);
    await this.#withLock(name, () =>
      this.#withTable(
        name,
        async (open) => {
          // The cached schema may be stale (the table re-created elsewhere): look again before refusing.
          if (open.dims !== dims) open = (await this.#reopen(name)) ?? (await this.#createTable(name, dims));
          return this.#merge(knowledgeBaseId, open, dims, rows);
        },
        async () => this.#merge(knowledgeBaseId, await this.#createTable(name, dims), dims, rows),
      ),
    );
    this.#scheduleOptimize(name);
  }

  /** Deletes a document's chunks; returns how many rows went. */
  async deleteDocument(knowledgeBaseId: string, documentId: string): Promise<number> {
    const name = this.#name(knowledgeBaseId);
    const doc = requireUuid(documentId, 'documentId');
    const deleted = await this.#withLock(name, () =>
      this.#withTable(
        name,
        async (open) => (await open.table.delete(`document_id = ${sqlString(doc)}`)).numDeletedRows,
        () => 0,
      ),
    );
    if (deleted > 0) this.#scheduleOptimize(name);
    return deleted;
  }

  async dropKnowledgeBase(knowledgeBaseId: string): Promise<void> {
    const name = this.#name(knowledgeBaseId);
    await this.#withLock(name, async () => {
      this.#cancelOptimize(name);
      // Forgotten, not closed: a search running outside the lock may still be using the handle.
      this.#tables.delete(name);
      try {
        await this.#db.dropTable(name);
      } catch (error) {
        if (!isNotFound(error)) throw error;
      }
    });
  }

  async countChunks(knowledgeBaseId: string, documentId?: string): Promise<number> {
    const name = this.#name(knowledgeBaseId);
    const filter = documentId === undefined ? undefined : `document_id = ${sqlString(requireUuid(documentId, 'documentId'))}`;
    return this.#withTable(name, (open) => open.table.countRows(filter), () => 0);
  }

  /**
   * Searches one knowledge base. Always filtered by project_id too (tenancy in depth: the table is the
   * knowledge base's, but a row of another project must never come back). [] when the knowledge base
   * has no table yet.
   */
  async search(knowledgeBaseId: string, projectId: string, request: SearchRequest, options: SearchOptions = {}): Promise<SearchHit[]> {
    const name = this.#name(knowledgeBaseId);
    const project = requireUuid(projectId, 'projectId');
    const mode: RetrievalMode = request.mode;
    if (mode !== 'hybrid' && mode !== 'vector' && mode !== 'fts') throw new AppError('validation_failed', `unknown retrieval mode ${String(mode)}`);
    const topK = request.topK;
    if (!Number.isInteger(topK) || topK < 1 || topK > MAX_TOP_K) throw new AppError('validation_failed', `topK must be an integer in 1..${MAX_TOP_K}`);
    const documentIds = request.documentIds?.map((id) => requireUuid(id, 'documentIds'));
    if (mode !== 'fts' && !request.queryVector?.length) throw new AppError('validation_failed', `a ${mode} search needs queryVector`);
    // An explicit empty restriction matches no document.
    if (documentIds && documentIds.length === 0) return [];

    return this.#withTable(name, (open) => this.#search(knowledgeBaseId, open, project, request, documentIds, options), () => []);
  }

  async #search(knowledgeBaseId: string, cached: OpenTable, project: string, request: SearchRequest, documentIds: string[] | undefined, options: SearchOptions): Promise<SearchHit[]> {
    const { mode, topK } = request;
    let open: OpenTable | null = cached;
    if (request.queryVector && mode !== 'fts' && request.queryVector.length !== open.dims) open = await this.#reopen(this.#name(knowledgeBaseId));
    if (!open) return [];
    if (request.queryVector && mode !== 'fts' && request.queryVector.length !== open.dims) {
      throw new AppError('conflict', `knowledge base ${knowledgeBaseId} holds ${open.dims}-dimensional vectors; the query has ${request.queryVector.length}`);
    }
    let filter = `project_id = ${sqlString(project)}`;
    if (documentIds) filter += ` AND document_id IN (${[...new Set(documentIds)].map(sqlString).join(', ')})`;

    const pool = mode === 'hybrid' ? Math.max(options.poolSize ?? Math.max(topK * 4, 50), topK) : topK;
    const queryText = request.queryText.slice(0, MAX_FTS_QUERY_CHARS);
    const [vectorRows, ftsRows] = await Promise.all([
      mode === 'fts'
        ? []
        : this.#vectorCandidates(open.table, request.queryVector!, filter, pool, documentIds !== undefined && documentIds.length <= EXACT_SEARCH_MAX_DOCUMENTS),
      mode === 'vector' || !queryText.trim() ? [] : this.#ftsCandidates(open.table, queryText, filter, pool),
    ]);

    const rows = new Map<string, CandidateRow>();
    for (const r of [...vectorRows, ...ftsRows]) rows.set(r.chunk_id, r);
    const vector = vectorRows.map((r) => ({ id: r.chunk_id, score: 1 - (r._distance ?? 1) }));
    const fts = ftsRows.map((r) => ({ id: r.chunk_id, score: r._score ?? 0 }));
    const ranked: FusedRank[] =
      mode === 'hybrid'
        ? fuseRankings(vector, fts, options.fusion ?? this.#fusion)
        : (mode === 'vector' ? vector : fts).map((c, i) => ({
            id: c.id,
            score: c.score,
            vectorRank: mode === 'vector' ? i + 1 : null,
            ftsRank: mode === 'fts' ? i + 1 : null,
          }));
    return ranked.slice(0, topK).map((f) => {
      const r = rows.get(f.id)!;
      return {
        chunk_id: r.chunk_id,
        document_id: r.document_id,
        ordinal: r.ordinal,
        text: r.text,
        page: r.page ?? null,
        heading: r.heading ?? null,
        score: f.score,
        vector_rank: f.vectorRank,
        fts_rank: f.ftsRank,
      };
    });
  }

  /**
   * Folds unindexed rows into the indexes (FTS, scalar, vector), builds the vector index once the table
   * is big enough, and compacts fragments — now, rather than debounced after writes. Returns false when
   * the knowledge base has no table.
   */
  async optimize(knowledgeBaseId: string): Promise<boolean> {
    const name = this.#name(knowledgeBaseId);
    this.#cancelOptimize(name);
    return this.#withLock(name, () => this.#optimizeLocked(name));
  }

  /**
   * Rows and indexes of a knowledge base, with how many rows each index does not cover yet (searched by
   * a flat scan until the next optimize). null when it has no table.
   */
  async indexStatus(knowledgeBaseId: string): Promise<IndexStatus | null> {
    return this.#withTable(
      this.#name(knowledgeBaseId),
      async (open) => {
        const indexes = await Promise.all(
          (await open.table.listIndices()).map(async (i) => ({
            name: i.name,
            type: i.indexType,
            unindexedRows: (await open.table.indexStats(i.name))?.numUnindexedRows ?? 0,
          })),
        );
        return { rows: await open.table.countRows(), dims: open.dims, indexes: indexes.sort((a, b) => a.name.localeCompare(b.name)) };
      },
      () => null,
    );
  }

  /** Runs pending optimizations, then releases the tables. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const pending = [...this.#pending.keys()];
    for (const name of pending) this.#cancelOptimize(name);
    await Promise.allSettled(pending.map((name) => this.#withLock(name, () => this.#optimizeLocked(name))));
    await Promise.allSettled([...this.#locks.values()]);
    for (const { table } of this.#tables.values()) table.close();
    this.#tables.clear();
    this.#db.close();
  }

  // ── internals ──

  /** The table name of a knowledge base, refusing calls after close(). */
  #name(knowledgeBaseId: string): string {
    if (this.#closed) throw new Error('KnowledgeIndex is closed');
    return tableNameOf(knowledgeBaseId);
  }

  async #merge(knowledgeBaseId: string, open: OpenTable, dims: number, rows: IndexedChunk[]): Promise<void> {
    if (open.dims !== dims) {
      throw new AppError('conflict', `knowledge base ${knowledgeBaseId} holds ${open.dims}-dimensional vectors; got ${dims}`, {
        details: { expected: open.dims, got: dims },
      });
    }
    // A batch that names one chunk twice would make the merge undefined; the last copy wins.
    const unique = [...new Map(rows.map((r) => [r.chunk_id, r])).values()];
    await open.table
      .mergeInsert('chunk_id')
      .whenMatchedUpdateAll()
      .whenNotMatchedInsertAll()
      .execute(
        unique.map((r) => ({
          chunk_id: r.chunk_id,
          document_id: r.document_id.toLowerCase(),
          project_id: r.project_id.toLowerCase(),
          ordinal: r.ordinal,
          text: r.text,
          page: r.page,
          heading: r.heading,
          vector: r.vector,
        })),
      );
  }

  async #vectorCandidates(table: lancedb.Table, vector: number[], filter: string, limit: number, exact: boolean): Promise<CandidateRow[]> {
    // The probe settings only matter once a vector index exists (a flat search ignores them).
    let query = table.vectorSearch(vector).distanceType('cosine').where(filter);
    query = exact ? query.bypassVectorIndex() : query.minimumNprobes(VECTOR_NPROBES).maximumNprobes(1_000_000);
    return (await query
      .select([...HIT_COLUMNS, '_distance'])
      .limit(limit)
      .toArray()) as CandidateRow[];
  }

  async #ftsCandidates(table: lancedb.Table, text: string, filter: string, limit: number): Promise<CandidateRow[]> {
    // A MatchQuery (terms OR-ed, BM25) rather than a query string: the string form parses quotes as
    // phrase syntax, which needs positions and lets user text change the query's shape.
    return (await table
      .query()
      .fullTextSearch(new lancedb.MatchQuery(text, 'text'))
      .where(filter)
      .select([...HIT_COLUMNS, '_score'])
      .limit(limit)
      .toArray()) as CandidateRow[];
  }

  /** Opens the table afresh (another process may have dropped or re-created it). */
  async #reopen(name: string): Promise<OpenTable | null> {
    this.#tables.delete(name);
    return this.#openTable(name);
  }

  /** The table and its vector dimension, or null when it does not exist (absence is never cached). */
  async #openTable(name: string): Promise<OpenTable | null> {
    const cached = this.#tables.get(name);
    if (cached) return cached;
    let open: OpenTable;
    try {
      const table = await this.#db.openTable(name);
      open = { table, dims: vectorDims(await table.schema()) };
    } catch (error) {
      // Absent, or dropped while we opened it (a knowledge base being deleted: its directory goes
      // away between the open and the schema read, which then fails "not found" too).
      if (isNotFound(error)) return null;
      throw error;
    }
    this.#tables.set(name, open);
    return open;
  }

  async #createTable(name: string, dims: number): Promise<OpenTable> {
    // existOk: another process may create the same knowledge base's table at the same moment.
    const table = await this.#db.createEmptyTable(name, schemaFor(dims), { mode: 'create', existOk: true });
    await this.#ensureIndexes(table);
    const open = { table, dims: vectorDims(await table.schema()) };
    this.#tables.set(name, open);
    return open;
  }

  /** Creates whichever of the table's indexes are missing (all but the vector index work on an empty table). */
  async #ensureIndexes(table: lancedb.Table, rows = 0): Promise<void> {
    const existing = new Set((await table.listIndices()).map((i) => i.name));
    const create = async (column: string, name: string, config: lancedb.Index) => {
      if (existing.has(name)) return;
      try {
        await table.createIndex(column, { config, name, replace: false });
      } catch (error) {
        // Another process created it first.
        if (!/already exists/i.test((error as Error).message)) throw error;
      }
    };
    // English stemming and stop words (LanceDB's defaults, spelled out): "regenerating" finds "regeneration".
    await create(
      'text',
      FTS_INDEX,
      lancedb.Index.fts({ baseTokenizer: 'simple', language: 'English', stem: true, removeStopWords: true, lowercase: true, asciiFolding: true, withPosition: false }),
    );
    for (const [column, name, config] of SCALAR_INDEXES) await create(column, name, config());
    // Built once, when the table first reaches the threshold (seconds, under the table's write lock);
    // later optimize() calls add new rows to its partitions without retraining.
    if (this.#vectorIndexMinRows !== false && rows > 0 && rows >= this.#vectorIndexMinRows) await create('vector', VECTOR_INDEX, vectorIndexConfig(rows));
  }

  async #optimizeLocked(name: string): Promise<boolean> {
    return this.#withTable(
      name,
      async (open) => {
        // Folds new rows into every index (FTS, scalar, vector) and compacts small fragments.
        await open.table.optimize();
        await this.#ensureIndexes(open.table, await open.table.countRows());
        return true;
      },
      () => false,
    );
  }

  /**
   * Runs `fn` on the table, or `missing` when there is none. A cached handle whose table another
   * process dropped (and perhaps re-created) since fails "not found": forget it and try again; a
   * table being dropped at this moment can fail so on a fresh handle too, and is then found absent
   * by the next open.
   */
  async #withTable<T>(name: string, fn: (open: OpenTable) => Promise<T>, missing: () => T | Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const open = await this.#openTable(name);
      if (!open) return missing();
      try {
        return await fn(open);
      } catch (error) {
        if (attempt > 2 || !isNotFound(error)) throw error;
        if (this.#tables.get(name) === open) this.#tables.delete(name);
      }
    }
  }

  #scheduleOptimize(name: string): void {
    if (!this.#autoOptimize || this.#closed) return;
    const { delayMs, maxDelayMs } = this.#autoOptimize;
    const now = Date.now();
    const previous = this.#pending.get(name);
    if (previous) clearTimeout(previous.timer);
    const firstWriteAt = previous?.firstWriteAt ?? now;
    const wait = Math.max(0, Math.min(delayMs, firstWriteAt + maxDelayMs - now));
    const timer = setTimeout(() => {
      this.#pending.delete(name);
      // Under the table's lock, so it never races an upsert; a failure only delays indexing (the flat
      // scan still finds the rows) and is retried by the next write's optimize.
      this.#withLock(name, () => this.#optimizeLocked(name)).catch(() => {});
    }, wait);
    // A pending optimize must not keep a finishing process alive; close() runs it instead.
    timer.unref();
    this.#pending.set(name, { timer, firstWriteAt });
  }

  #cancelOptimize(name: string): void {
    const pending = this.#pending.get(name);
    if (pending) clearTimeout(pending.timer);
    this.#pending.delete(name);
  }

  /** Runs `fn` after every earlier write to the same table finished (an async mutex per table). */
  #withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    const previous = this.#locks.get(name) ?? Promise.resolve();
    const run = previous.then(fn, fn);
    const tail = run.catch(() => {});
    this.#locks.set(name, tail);
    // Forget the queue once it drains, so the map does not grow with every knowledge base ever touched.
    void tail.then(() => {
      if (this.#locks.get(name) === tail) this.#locks.delete(name);
    });
    return run;
  }
}

/**
 * IVF_FLAT (exact distances inside the probed partitions), ~VECTOR_PARTITION_ROWS rows a partition. IVF_PQ
 * measured worse on these vectors: at 50k chunks it took 45–50 s to build and its recall@10 was 0.5–0.6
 * even with 32 probes and ×5 refinement; IVF_FLAT builds in seconds (4.5 s at 100k).
 */
function vectorIndexConfig(rows: number): lancedb.Index {
  return lancedb.Index.ivfFlat({ distanceType: 'cosine', numPartitions: Math.max(1, Math.round(rows / VECTOR_PARTITION_ROWS)) });
}

function vectorDims(schema: Schema): number {
  const type = schema.fields.find((f) => f.name === 'vector')?.type;
  if (!(type instanceof FixedSizeList) && !(type && 'listSize' in type)) throw new Error('knowledge table has no fixed-size vector column');
  return (type as FixedSizeList).listSize;
}

/** Checks a batch before it reaches LanceDB; returns its vector dimension. */
function validateRows(rows: IndexedChunk[]): number {
  const dims = rows[0]!.vector?.length ?? 0;
  if (dims === 0) throw new AppError('validation_failed', 'chunk vectors must not be empty');
  for (const r of rows) {
    if (typeof r.chunk_id !== 'string' || r.chunk_id.length === 0 || r.chunk_id.length > MAX_CHUNK_ID_LENGTH) {
      throw new AppError('validation_failed', `chunk_id must be a non-empty string of at most ${MAX_CHUNK_ID_LENGTH} characters`);
    }
    requireUuid(r.document_id, 'document_id');
    requireUuid(r.project_id, 'project_id');
    if (!Number.isInteger(r.ordinal)) throw new AppError('validation_failed', `chunk ${r.chunk_id}: ordinal must be an integer`);
    if (r.vector.length !== dims) {
      throw new AppError('conflict', `chunk ${r.chunk_id} has a ${r.vector.length}-dimensional vector; the batch's first has ${dims}`, {
        details: { expected: dims, got: r.vector.length },
      });
    }
    for (const x of r.vector) if (!Number.isFinite(x)) throw new AppError('validation_failed', `chunk ${r.chunk_id}: vector has a non-finite value`);
  }
  return dims;
}
