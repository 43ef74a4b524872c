// Splits a ParsedDocument into token-bounded chunks for embedding. Chunks end at the strongest
// nearby boundary (section > blank line > sentence > line > word; inside a word only when one word
// alone is too big), carry a little overlap from the previous chunk, and never mix text under
// different headings or from different pages.
//
// Speed: BPE in js-tiktoken costs ~5 s per MB and is quadratic in the length of one pre-token, so
// text is split with the encoder's own pre-tokenizer regex and each distinct piece is counted once
// (cached). Since the encoder BPE-encodes each pre-token independently, the sum of piece counts is
// the real token count of the text.
import o200k_base from 'js-tiktoken/ranks/o200k_base';
import { countTokens } from '../tokenizer.ts';
import type { ChunkMetadata, ParsedDocument, TextChunk } from './types.ts';

/** What sits between two sections in the text that char offsets refer to (see joinSections). */
export const SECTION_SEPARATOR = '\n\n';

/** The document text that ChunkMetadata.char_start/char_end index into. */
export function joinSections(doc: ParsedDocument): string {
  return doc.sections.map((section) => section.text).join(SECTION_SEPARATOR);
}

export interface ChunkOptions {
  chunkTokens: number;
  overlapTokens: number;
}

// ───────────────────────────── token counting ─────────────────────────────

// Must match the encoding in ../tokenizer.ts (o200k_base); chunk.test.ts checks that the counts agree.
const PRETOKEN = new RegExp(o200k_base.pat_str, 'gu');
/** Pieces longer than this (DNA sequences, base64 runs) are counted in slices: BPE is O(n²) per piece. */
const MAX_PIECE_CHARS = 100;
const CACHE_LIMIT = 200_000;
const pieceCache = new Map<string, number>();

function pieceTokens(piece: string): number {
  let count = pieceCache.get(piece);
  if (count === undefined) {
    count = countTokens(piece);
    if (pieceCache.size >= CACHE_LIMIT) pieceCache.clear();
    // A substring can be a view that keeps its whole document alive; store a copy as the key.
    pieceCache.set(piece.length > 12 ? (` ${piece}`).slice(1) : piece, count);
  }
  return count;
}

/** Cuts a string into slices of at most `size` UTF-16 units without splitting a surrogate pair. */
function slices(text: string, size: number): string[] {
  const out: string[] = [];
  let at = 0;
  while (at < text.length) {
    let end = Math.min(at + size, text.length);
    const code = text.charCodeAt(end - 1);
    if (end < text.length && code >= 0xd800 && code <= 0xdbff && end - at > 1) end--;
    out.push(text.slice(at, end));
    at = end;
  }
  return out;
}

function longPieceTokens(piece: string): number {
  if (piece.length <= MAX_PIECE_CHARS) return pieceTokens(piece);
  let total = 0;
  for (const slice of slices(piece, MAX_PIECE_CHARS)) total += pieceTokens(slice);
  return total;
}

/**
 * o200k token count of `text`, equal to countTokens(text) for ordinary text (pieces over 100
 * characters without a break are counted in 100-character slices), and much faster on repeated
 * words. Unlike countTokens it does not throw on special-token strings such as "<|endoftext|>".
 */
export function countTextTokens(text: string): number {
  let total = 0;
  for (const match of text.matchAll(PRETOKEN)) total += longPieceTokens(match[0]);
  return total;
}

// ───────────────────────────── boundaries ─────────────────────────────

/** Boundary strength, lower is stronger. */
const LEVEL = { section: 0, paragraph: 1, sentence: 2, line: 3, word: 4, inWord: 5 } as const;

const isSpace = (code: number) =>
  code === 0x20 || (code >= 0x09 && code <= 0x0d) || code === 0xa0 || code === 0x3000 || code === 0x2028 || code === 0x2029 || code === 0xfeff;
const SENTENCE_END = new Set(['.', '!', '?', '…']);
// Full-width terminators end a sentence even without a following space (CJK text has none).
const CJK_SENTENCE_END = new Set(['。', '！', '？', '｡']);
const CLOSERS = new Set(['"', "'", ')', ']', '}', '»', '”', '’', '」', '』', '）']);
const LOWERCASE = /\p{Ll}/u;

/**
 * The pieces of one heading run, in parallel arrays: the encoder's pre-tokens of the run's text,
 * cut additionally at section starts and where one piece is too long or too heavy. Token counts of
 * untouched pre-tokens add up exactly; the cut ones are marked approximate.
 */
class Atoms {
  readonly start: number[] = [];
  readonly end: number[] = [];
  /** prefix[k] = tokens of atoms [0, k). */
  readonly prefix: number[] = [0];
  /** approxPrefix[k] = approximate atoms among [0, k). */
  readonly approxPrefix: number[] = [0];
  /** The boundary before atom k is a section boundary. */
  readonly sectionStart: boolean[] = [];

  private readonly text: string;
  private readonly maxAtomTokens: number;
  private totalTokens = 0;
  private approxCount = 0;

  constructor(text: string, maxAtomTokens: number) {
    this.text = text;
    this.maxAtomTokens = maxAtomTokens;
  }

  get length(): number {
    return this.start.length;
  }

  /** Tokens of atoms [from, to). */
  tokens(from: number, to: number): number {
    return this.prefix[to]! - this.prefix[from]!;
  }

  hasApprox(from: number, to: number): boolean {
    return this.approxPrefix[to]! > this.approxPrefix[from]!;
  }

  /** Splits text[from, to) (a whole run) into atoms; `cuts` are the section starts inside it, ascending. */
  build(from: number, to: number, cuts: number[]): void {
    const text = this.text;
    let cursor = from;
    let nextCut = 0;
    const emit = (start: number, end: number, exact: boolean) => {
      // A section start inside a pre-token (e.g. "/" after ".\n\n") forces a cut there.
      while (nextCut < cuts.length && cuts[nextCut]! <= start) nextCut++;
      while (nextCut < cuts.length && cuts[nextCut]! < end) {
        this.piece(start, cuts[nextCut]!, false);
        start = cuts[nextCut++]!;
        exact = false;
      }
      this.piece(start, end, exact);
    };
    for (const match of text.slice(from, to).matchAll(PRETOKEN)) {
      const at = from + match.index;
      const piece = match[0];
      // The pattern matches every character, but never let a gap silently vanish.
      if (at > cursor) emit(cursor, at, false);
      if (piece.length > 1 && CJK_SENTENCE_END.has(piece[0]!)) {
        // "。" is taken as the prefix of the next word's pre-token; cut so the sentence can end there.
        emit(at, at + 1, false);
        emit(at + 1, at + piece.length, false);
      } else {
        emit(at, at + piece.length, true);
      }
      cursor = at + piece.length;
    }
    if (cursor < to) emit(cursor, to, false);
    let c = 0;
    for (let k = 0; k < this.start.length; k++) {
      while (c < cuts.length && cuts[c]! < this.start[k]!) c++;
      this.sectionStart.push(c < cuts.length && cuts[c] === this.start[k]);
    }
  }

  private piece(start: number, end: number, exact: boolean): void {
    const piece = this.text.slice(start, end);
    if (piece.length <= MAX_PIECE_CHARS) {
      const count = pieceTokens(piece);
      if (count <= this.maxAtomTokens) {
        this.push(start, end, count, exact);
        return;
      }
    }
    let at = start;
    for (const part of piece.length > MAX_PIECE_CHARS ? slices(piece, MAX_PIECE_CHARS) : [piece]) {
      for (const small of this.splitHeavy(part)) {
        this.push(at, at + small.length, pieceTokens(small), false);
        at += small.length;
      }
    }
  }

  private push(start: number, end: number, count: number, exact: boolean): void {
    this.start.push(start);
    this.end.push(end);
    this.totalTokens += count;
    this.prefix.push(this.totalTokens);
    if (!exact) this.approxCount++;
    this.approxPrefix.push(this.approxCount);
  }

  /** Halves a piece until each half fits an atom budget (e.g. a run of emoji at 3 tokens each). */
  private splitHeavy(piece: string): string[] {
    if (pieceTokens(piece) <= this.maxAtomTokens) return [piece];
    const codePoints = Array.from(piece);
    if (codePoints.length <= 1) return [piece];
    const half = Math.ceil(codePoints.length / 2);
    return [...this.splitHeavy(codePoints.slice(0, half).join('')), ...this.splitHeavy(codePoints.slice(half).join(''))];
  }

  /** Strength of the boundary before atom k (0 < k < length). */
  level(k: number, runStart: number, runEnd: number): number {
    if (this.sectionStart[k]) return LEVEL.section;
    const text = this.text;
    const at = this.start[k]!;
    let left = at;
    while (left > runStart && isSpace(text.charCodeAt(left - 1))) left--;
    let right = at;
    while (right < runEnd && isSpace(text.charCodeAt(right))) right++;
    let newlines = 0;
    for (let i = left; i < right; i++) if (text.charCodeAt(i) === 0x0a) newlines++;
    if (newlines >= 2) return LEVEL.paragraph;
    if (this.endsSentence(left, right, runStart)) return LEVEL.sentence;
    if (newlines === 1) return LEVEL.line;
    return right > left ? LEVEL.word : LEVEL.inWord;
  }

  private endsSentence(left: number, right: number, runStart: number): boolean {
    const text = this.text;
    let i = left - 1;
    while (i >= runStart && CLOSERS.has(text[i]!)) i--;
    if (i < runStart) return false;
    const ch = text[i]!;
    if (CJK_SENTENCE_END.has(ch)) return true;
    if (!SENTENCE_END.has(ch) || right === left) return false;
    // "e.g. the" and "approx. five" continue the sentence; a capital or digit after "." starts one.
    const next = text[right];
    return next === undefined || !LOWERCASE.test(next);
  }
}

// ───────────────────────────── chunking ─────────────────────────────

/** A chunk ending here must hold at least this share of the budget, unless only tiny breaks exist. */
const MIN_FILL = 0.5;

function validate(options: ChunkOptions): void {
  const { chunkTokens, overlapTokens } = options;
  if (!Number.isInteger(chunkTokens) || chunkTokens < 50) {
    throw new RangeError(`chunkTokens must be an integer of at least 50 (got ${chunkTokens})`);
  }
  if (!Number.isInteger(overlapTokens) || overlapTokens < 0 || overlapTokens >= chunkTokens / 2) {
    throw new RangeError(`overlapTokens must be an integer from 0 to less than half of chunkTokens (got ${overlapTokens})`);
  }
}

interface SectionSpan {
  start: number;
  end: number;
  page: number | undefined;
  heading: string | undefined;
}

/**
 * Splits the document into chunks of at most `chunkTokens` o200k tokens (real counts), each
 * starting with ~`overlapTokens` from the end of the previous chunk unless the previous chunk ended
 * at a section boundary. Offsets index into joinSections(doc), and
 * `joinSections(doc).slice(char_start, char_end) === chunk.text`.
 */
export function chunkDocument(doc: ParsedDocument, options: ChunkOptions): TextChunk[] {
  validate(options);
  const text = joinSections(doc);
  const spans: SectionSpan[] = [];
  let offset = 0;
  for (const section of doc.sections) {
    spans.push({ start: offset, end: offset + section.text.length, page: section.page, heading: section.heading });
    offset += section.text.length + SECTION_SEPARATOR.length;
  }

  const chunks: TextChunk[] = [];
  // A run is a stretch of consecutive sections under the same heading and on the same page; chunks
  // never leave a run, so a citation names one page (research readers check the page). Whitespace-
  // only sections do not break a run.
  let runFirst = -1;
  let runHeading: string | undefined;
  let runPage: number | undefined;
  const flushRun = (lastIndex: number) => {
    if (runFirst >= 0) chunkRun(text, spans, runFirst, lastIndex, runHeading, options, chunks);
    runFirst = -1;
  };
  let lastNonEmpty = -1;
  for (const [index, section] of doc.sections.entries()) {
    if (section.text.trim() === '') continue;
    if (runFirst >= 0 && (section.heading !== runHeading || section.page !== runPage)) flushRun(lastNonEmpty);
    if (runFirst < 0) {
      runFirst = index;
      runHeading = section.heading;
      runPage = section.page;
    }
    lastNonEmpty = index;
  }
  flushRun(lastNonEmpty);
  return chunks;
}

function chunkRun(
  text: string,
  spans: SectionSpan[],
  first: number,
  last: number,
  heading: string | undefined,
  options: ChunkOptions,
  out: TextChunk[],
): void {
  const budget = options.chunkTokens;
  const overlap = options.overlapTokens;
  const runStart = spans[first]!.start;
  const runEnd = spans[last]!.end;
  const atoms = new Atoms(text, Math.max(1, Math.floor(budget / 4)));
  const cuts: number[] = [];
  for (let s = first + 1; s <= last; s++) cuts.push(spans[s]!.start);
  atoms.build(runStart, runEnd, cuts);
  const n = atoms.length;
  const level = (k: number) => (k >= n ? LEVEL.section : atoms.level(k, runStart, runEnd));
  const minFill = budget * MIN_FILL;

  /** Best end boundary in (lo, j] for a chunk starting at atom i, where [i, j) fits the budget. */
  const chooseEnd = (i: number, j: number, lo: number): number => {
    let best = -1;
    let bestLevel: number = LEVEL.inWord + 1;
    let farthestWord = -1;
    for (let k = j; k > lo; k--) {
      const filled = atoms.tokens(i, k) >= minFill;
      const lvl = level(k);
      if (lvl <= LEVEL.word && farthestWord < 0) farthestWord = k;
      if (filled && lvl < bestLevel) {
        best = k;
        bestLevel = lvl;
        if (lvl === LEVEL.section) break;
      }
      if (!filled && farthestWord >= 0) break;
    }
    if (best >= 0 && bestLevel <= LEVEL.word) return best;
    if (farthestWord >= 0) return farthestWord;
    return j; // one word longer than the whole window: cut inside it
  };

  let i = 0;
  let prevEnd = 0;
  while (i < n) {
    // Largest j with atoms [i, j) within budget (prefix sums are non-decreasing: binary search).
    let j = i;
    let hi = n;
    while (j < hi) {
      const mid = (j + hi + 1) >>> 1;
      if (atoms.tokens(i, mid) <= budget) j = mid;
      else hi = mid - 1;
    }
    const lo = Math.max(i, prevEnd);
    if (j < n && j <= lo && i < prevEnd) {
      // The overlap alone fills the window (only with very heavy atoms): drop it.
      i = prevEnd;
      continue;
    }
    let end = j >= n ? n : j === i ? i + 1 : chooseEnd(i, j, lo);

    let chunk = emit(text, atoms, i, end);
    // Trimming can change the count of the edge pieces by a token; shrink in the rare overflow.
    while (chunk && chunk.tokenCount > budget && end - 1 > lo) {
      end = chooseEnd(i, end - 1, lo);
      chunk = emit(text, atoms, i, end);
    }
    if (chunk) {
      const metadata: ChunkMetadata = { char_start: chunk.start, char_end: chunk.end };
      const pages = pagesBetween(spans, first, last, chunk.start, chunk.end);
      if (pages.length > 0) {
        metadata.page = pages[0]!;
        metadata.pages = pages;
      }
      if (heading !== undefined) metadata.heading = heading;
      out.push({ ordinal: out.length, text: chunk.text, tokenCount: chunk.tokenCount, metadata });
    }
    if (end >= n) break;

    // Overlap: start the next chunk at the strongest boundary (sentence or line, e.g. a CSV row)
    // that repeats at least a third of overlapTokens of this chunk's tail, else at the word
    // boundary repeating the most. Sections are self-contained, so no overlap after one.
    let next = end;
    if (overlap > 0 && level(end) !== LEVEL.section) {
      let strong = -1;
      let strongLevel: number = LEVEL.line + 1;
      let wordStart = -1;
      for (let m = end - 1; m > i; m--) {
        const tail = atoms.tokens(m, end);
        if (tail > overlap) break;
        const lvl = level(m);
        if (lvl <= LEVEL.word) wordStart = m;
        if (tail >= overlap / 3 && lvl <= strongLevel) {
          strong = m;
          strongLevel = lvl;
        }
      }
      next = strong >= 0 ? strong : wordStart >= 0 ? wordStart : end;
    }
    prevEnd = end;
    i = next;
  }
}

/**
 * The trimmed text of atoms [from, to) and its exact token count. Interior pre-tokens are summed
 * from the atoms; only the edges, where trimming may change how the text splits into pre-tokens,
 * are counted again (the whole text when it holds an approximate atom).
 */
function emit(
  text: string,
  atoms: Atoms,
  from: number,
  to: number,
): { text: string; start: number; end: number; tokenCount: number } | undefined {
  let start = atoms.start[from]!;
  let end = atoms.end[to - 1]!;
  while (start < end && isSpace(text.charCodeAt(start))) start++;
  while (end > start && isSpace(text.charCodeAt(end - 1))) end--;
  if (start === end) return undefined;
  const slice = text.slice(start, end);
  let a = from;
  while (atoms.end[a]! <= start) a++;
  let b = to - 1;
  while (atoms.start[b]! >= end) b--;
  if (atoms.hasApprox(a, b + 1)) return { text: slice, start, end, tokenCount: countTextTokens(slice) };

  // Re-split the front until a pre-token ends where an atom ends: from there on the split is the
  // atoms' own (the pattern looks ahead, never behind), up to the last atom, counted again.
  let tokenCount = 0;
  let k = a;
  for (const match of slice.matchAll(PRETOKEN)) {
    tokenCount += longPieceTokens(match[0]);
    const matchEnd = start + match.index + match[0].length;
    while (k < b && atoms.end[k]! < matchEnd) k++;
    if (k < b && atoms.end[k] === matchEnd) {
      return { text: slice, start, end, tokenCount: tokenCount + atoms.tokens(k + 1, b) + countTextTokens(text.slice(atoms.start[b], end)) };
    }
  }
  return { text: slice, start, end, tokenCount };
}

/** Sorted distinct pages of the sections in [first, last] that overlap [start, end). */
function pagesBetween(spans: SectionSpan[], first: number, last: number, start: number, end: number): number[] {
  // Spans are in text order: binary-search the first one ending after `start`.
  let lo = first;
  let hi = last;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (spans[mid]!.end <= start) lo = mid + 1;
    else hi = mid;
  }
  const pages: number[] = [];
  for (let s = lo; s <= last && spans[s]!.start < end; s++) {
    const page = spans[s]!.page;
    if (page !== undefined && !pages.includes(page)) pages.push(page);
  }
  return pages.sort((a, b) => a - b);
}
