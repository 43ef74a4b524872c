// Shared shapes of the knowledge-base pipeline: parse → chunk → embed → index → retrieve.
// The parser, chunker, object storage and vector/full-text index live in separate modules and meet
// only through these types.

/** One run of text with where it came from (a page of a PDF, a section under a heading). */
export interface ParsedSection {
  text: string;
  /** 1-based page number, when the format has pages (PDF). */
  page?: number;
  /** The nearest heading above this text (md/html/docx headings), outermost first joined by " > ". */
  heading?: string;
}

export interface ParsedDocument {
  sections: ParsedSection[];
  /** Pages in the source (PDF), else 1 — used for the pages/s figures. */
  pageCount: number;
  title?: string;
}

export interface ChunkMetadata {
  /** First page the chunk touches (1-based) and every page it spans. */
  page?: number;
  pages?: number[];
  heading?: string;
  /** Character offsets into the concatenated section texts. */
  char_start: number;
  char_end: number;
}

export interface TextChunk {
  ordinal: number;
  text: string;
  tokenCount: number;
  metadata: ChunkMetadata;
}

/** A chunk as stored in the index (one row per chunk, one table per knowledge base). */
export interface IndexedChunk {
  chunk_id: string;
  document_id: string;
  project_id: string;
  ordinal: number;
  text: string;
  page: number | null;
  heading: string | null;
  vector: number[];
}

export type RetrievalMode = 'hybrid' | 'vector' | 'fts';

export interface SearchRequest {
  queryText: string;
  /** Required for 'hybrid' and 'vector'. */
  queryVector?: number[];
  topK: number;
  mode: RetrievalMode;
  /** Restrict to these documents (metadata filter). */
  documentIds?: string[];
}

export interface SearchHit {
  chunk_id: string;
  document_id: string;
  ordinal: number;
  text: string;
  page: number | null;
  heading: string | null;
  /** Fused score for hybrid (higher is better), cosine similarity for vector, BM25 for fts. */
  score: number;
  vector_rank: number | null;
  fts_rank: number | null;
}
