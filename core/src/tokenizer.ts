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
import { Tiktoken } from 'js-tiktoken/lite';
import o200k_base from 'js-tiktoken/ranks/o200k_base';

let encoder: Tiktoken | undefined;

function getEncoder(): Tiktoken {
  encoder ??= new Tiktoken(o200k_base);
  return encoder;
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
    count = getEncoder().encode(piece, [], []).length;
    if (piece.length <= CACHED_PIECE_CHARS) {
      if (pieceCache.size >= CACHE_LIMIT) pieceCache.clear();
      // A match can be a view that keeps the whole request body alive; store a copy as the key.
      pieceCache.set(piece.length > 12 ? ` ${piece}`.slice(1) : piece, count);
    }
  }
  return count;
}

export function countTokens(text: string): number {
  let total = 0;
  for (const match of text.matchAll(PRETOKEN)) total += pieceTokens(match[0]);
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
