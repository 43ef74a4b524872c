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
// count, never decode, so this file keeps one Map from each token's bytes (as a one-byte latin1
// string) to its rank and runs tiktoken's byte-pair merge itself; tokenizer tests check the counts
// against js-tiktoken's encode().
import o200k_base from 'js-tiktoken/ranks/o200k_base';

let ranks: Map<string, number> | undefined;

/** Token bytes (latin1 string) → rank, from the compressed o200k_base table (lines "! offset b64…"). */
function rankTable(): Map<string, number> {
  if (ranks) return ranks;
  const table = new Map<string, number>();
  for (const line of o200k_base.bpe_ranks.split('\n')) {
    if (!line) continue;
    const fields = line.split(' ');
    const offset = Number.parseInt(fields[1]!, 10);
    for (let i = 2; i < fields.length; i++) table.set(Buffer.from(fields[i]!, 'base64').toString('latin1'), offset + i - 2);
  }
  ranks = table;
  return table;
}

/**
 * Tokens of one pre-token (its UTF-8 bytes as a latin1 string): tiktoken's byte-pair merge, which
 * repeatedly joins the adjacent pair whose joined bytes have the lowest rank (the first such pair
 * on ties) until no adjacent pair is a token.
 */
function bytePairCount(bytes: string, table: Map<string, number>): number {
  if (bytes.length <= 1 || table.has(bytes)) return Math.min(bytes.length, 1);
  const bounds: number[] = [];
  for (let i = 0; i <= bytes.length; i++) bounds.push(i);
  while (bounds.length > 2) {
    let best = -1;
    let bestRank = Infinity;
    for (let i = 0; i + 2 < bounds.length; i++) {
      const rank = table.get(bytes.slice(bounds[i], bounds[i + 2]));
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        best = i;
      }
    }
    if (best < 0) break;
    bounds.splice(best + 1, 1);
  }
  return bounds.length - 1;
}

const PRETOKEN = new RegExp(o200k_base.pat_str, 'gu');
/** Longer pieces (rare: runs without a break) are counted each time rather than kept. */
const CACHED_PIECE_CHARS = 64;
const CACHE_LIMIT = 100_000;
const pieceCache = new Map<string, number>();

function pieceTokens(piece: string): number {
  let count = pieceCache.get(piece);
  if (count === undefined) {
    // No special tokens: the piece is plain text whatever it contains.
    count = bytePairCount(Buffer.from(piece, 'utf8').toString('latin1'), rankTable());
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
