// Token counting with a real BPE tokenizer (o200k_base, the GPT-4o family encoding), used for
// budget estimates before a call; the upstream's reported usage is what gets charged.
//
// Speed: the count runs on every inline /v1 call before its hold. js-tiktoken's encode() pays a
// fixed cost per call (it builds its regexes and special-token sets each time) and BPE per
// pre-token; the encoder BPE-encodes each pre-token on its own, so the text is split here with the
// encoder's own pre-tokenizer regex and each distinct short piece is counted once (cached): the
// sum is exactly the encoder's count, and common words cost a map lookup. Special-token strings
// such as "<|endoftext|>" count as ordinary text, as an upstream counts message content (encode()
// would throw on them).
//
// Memory: js-tiktoken's encoder keeps two maps of its 200k ranks (comma-joined byte strings and
// one Uint8Array + ArrayBuffer per rank), about 100 MB of heap and 200k external buffers in every
// gateway and worker: V8's collector then paused the gateway for 30–50 ms (the /v1 p99). We only
// count, never decode, so this file keeps the ranks in a hash table of typed arrays (every token's
// bytes in one buffer, an open-addressing index over them) and runs tiktoken's byte-pair merge
// itself; tokenizer tests check the counts against js-tiktoken's encode(). A Map from each token's
// bytes to its rank (the version before) held 12.6 MB in 200k strings that every full collection
// had to mark (now 0.1 MB of heap; tokenizer.test.ts checks it): a forced full collection of a
// process that had counted a 2.4 MB corpus took 16–18 ms with the map and 6–8 ms with these arrays
// (--single-threaded-gc, as the gateway runs), and pieces too long for the cache count 4–5× faster.
import o200k_base from 'js-tiktoken/ranks/o200k_base';

interface RankTable {
  /** Every token's bytes, one after another. */
  bytes: Uint8Array;
  /** Token i's bytes are bytes[starts[i], starts[i + 1]). */
  starts: Uint32Array;
  ranks: Uint32Array;
  /** Open addressing, linear probing: token index + 1, or 0 for an empty slot. */
  slots: Int32Array;
  mask: number;
}

/** Sentinel for "not a token" (ranks are < 2^31). */
const NO_RANK = 0x7fffffff;

let table: RankTable | undefined;

/** FNV-1a over bytes[start, end). */
function hashBytes(bytes: Uint8Array, start: number, end: number): number {
  let h = 0x811c9dc5;
  for (let i = start; i < end; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h >>> 0;
}

/** The rank table, from the compressed o200k_base table (lines "! offset b64…"). */
function rankTable(): RankTable {
  if (table) return table;
  const tokens: Buffer[] = [];
  const tokenRanks: number[] = [];
  let size = 0;
  for (const line of o200k_base.bpe_ranks.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const offset = Number.parseInt(fields[1]!, 10);
    for (let i = 2; i < fields.length; i++) {
      const token = Buffer.from(fields[i]!, 'base64');
      tokens.push(token);
      tokenRanks.push(offset + i - 2);
      size += token.length;
    }
  }
  const bytes = new Uint8Array(size);
  const starts = new Uint32Array(tokens.length + 1);
  const ranks = Uint32Array.from(tokenRanks);
  let capacity = 1;
  while (capacity < tokens.length * 2) capacity *= 2;
  const slots = new Int32Array(capacity);
  const mask = capacity - 1;
  let at = 0;
  for (let i = 0; i < tokens.length; i++) {
    starts[i] = at;
    bytes.set(tokens[i]!, at);
    at += tokens[i]!.length;
    let slot = hashBytes(bytes, starts[i]!, at) & mask;
    while (slots[slot] !== 0) slot = (slot + 1) & mask;
    slots[slot] = i + 1;
  }
  starts[tokens.length] = at;
  table = { bytes, starts, ranks, slots, mask };
  return table;
}

/** Rank of the token whose bytes are piece[start, end), or NO_RANK. */
function rankOf(t: RankTable, piece: Uint8Array, start: number, end: number): number {
  const length = end - start;
  let slot = hashBytes(piece, start, end) & t.mask;
  for (;;) {
    const entry = t.slots[slot]!;
    if (entry === 0) return NO_RANK;
    const token = entry - 1;
    const from = t.starts[token]!;
    if (t.starts[token + 1]! - from === length) {
      let same = true;
      for (let i = 0; i < length; i++) {
        if (t.bytes[from + i] !== piece[start + i]) {
          same = false;
          break;
        }
      }
      if (same) return t.ranks[token]!;
    }
    slot = (slot + 1) & t.mask;
  }
}

// Scratch space of the merge (grown on demand): part starts and the rank of each part with its
// right neighbour. Counting is synchronous, so one set serves every call.
let partStarts = new Int32Array(256);
let pairRanks = new Int32Array(256);

/**
 * Tokens of one pre-token (its UTF-8 bytes): tiktoken's byte-pair merge (`_byte_pair_merge`),
 * which repeatedly joins the adjacent pair whose joined bytes have the lowest rank (the first such
 * pair on ties) until no adjacent pair is a token; only the ranks next to a merge are looked up again.
 */
function bytePairCount(piece: Uint8Array, length: number, t: RankTable): number {
  if (length <= 1) return length;
  if (rankOf(t, piece, 0, length) !== NO_RANK) return 1;
  if (partStarts.length < length + 1) {
    partStarts = new Int32Array(length + 1);
    pairRanks = new Int32Array(length + 1);
  }
  const starts = partStarts;
  const ranks = pairRanks;
  // parts 0..length: part i starts at byte i; the last part is the end marker.
  let parts = length + 1;
  for (let i = 0; i < parts; i++) starts[i] = i;
  for (let i = 0; i + 2 < parts; i++) ranks[i] = rankOf(t, piece, i, i + 2);
  ranks[parts - 2] = NO_RANK;
  ranks[parts - 1] = NO_RANK;
  // Rank of part i joined with part i + 1, once part i + 1 is gone (i + 3 is then i + 2).
  const rankAfterMerge = (i: number) => (i + 3 < parts ? rankOf(t, piece, starts[i]!, starts[i + 3]!) : NO_RANK);
  while (parts > 2) {
    let best = -1;
    let bestRank = NO_RANK;
    for (let i = 0; i + 1 < parts; i++) {
      if (ranks[i]! < bestRank) {
        bestRank = ranks[i]!;
        best = i;
      }
    }
    if (best < 0) break;
    if (best > 0) ranks[best - 1] = rankAfterMerge(best - 1);
    ranks[best] = rankAfterMerge(best);
    starts.copyWithin(best + 1, best + 2, parts);
    ranks.copyWithin(best + 1, best + 2, parts);
    parts--;
  }
  return parts - 1;
}

const PRETOKEN = new RegExp(o200k_base.pat_str, 'gu');
/** Longer pieces (rare: runs without a break) are counted each time rather than kept. */
const CACHED_PIECE_CHARS = 64;
const CACHE_LIMIT = 100_000;
const pieceCache = new Map<string, number>();

const utf8 = new TextEncoder();
let pieceBytes = new Uint8Array(1024);

function pieceTokens(piece: string): number {
  let count = pieceCache.get(piece);
  if (count === undefined) {
    // No special tokens: the piece is plain text whatever it contains. UTF-8 takes at most 3 bytes
    // per UTF-16 unit.
    if (pieceBytes.length < piece.length * 3) pieceBytes = new Uint8Array(piece.length * 3);
    const { written } = utf8.encodeInto(piece, pieceBytes);
    count = bytePairCount(pieceBytes, written, rankTable());
    if (piece.length <= CACHED_PIECE_CHARS) {
      if (pieceCache.size >= CACHE_LIMIT) pieceCache.clear();
      // A match can be a view that keeps the whole request body alive; store a copy as the key.
      pieceCache.set(piece.length > 12 ? ` ${piece}`.slice(1) : piece, count);
    }
  }
  return count;
}

/** Builds the rank table now (~0.2 s of CPU) so that the first call served does not pay for it. */
export function warmTokenizer(): void {
  rankTable();
}

export function countTokens(text: string): number {
  // match() with the global flag returns the matched strings only: no match object (with its
  // index, input and groups) per piece, which matchAll() allocates on every /v1 call.
  const pieces = text.match(PRETOKEN);
  if (!pieces) return 0;
  let total = 0;
  for (const piece of pieces) total += pieceTokens(piece);
  return total;
}

export interface ChatMessageLike {
  role: string;
  content: string | null | Array<{ type: string; text?: string }>;
  name?: string;
}

/** OpenAI's accounting for chat prompts: 3 tokens per message, 1 per name, 3 to prime the reply. */
export function countChatPromptTokens(messages: ChatMessageLike[]): number {
  let total = 3;
  for (const message of messages) {
    total += 3 + countTokens(message.role);
    if (typeof message.content === 'string') total += countTokens(message.content);
    else if (Array.isArray(message.content)) {
      for (const part of message.content) if (typeof part.text === 'string') total += countTokens(part.text);
    }
    if (message.name) total += 1 + countTokens(message.name);
  }
  return total;
}
