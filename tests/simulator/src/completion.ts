/**
 * Deterministic completion text. The "model" always answers with
 *   `Simulated reply to: <first words of the last user message> <filler words ...>`
 * where the filler is drawn from a PRNG seeded by a hash of the conversation, so the same input gives
 * the same output (streamed or not), and a completion cut at N tokens is a prefix of a longer one.
 *
 * Pieces are built so that tokenizer pre-tokenization chunks never cross a piece boundary (every piece
 * after the first starts with a single space and contains no other whitespace), so the token count of
 * the text equals the sum of the pieces' counts. The result is verified with a full encode anyway and
 * corrected if ever needed, so `completionTokens` is always the true count of `text`.
 */
import { fnv1a32, mulberry32 } from './prng.ts';
import { countTokens, decode, encode } from './tokenizer.ts';

export type FinishReason = 'stop' | 'length';

export interface GeneratedCompletion {
  /** Text fragments in streaming order; `pieces.join('') === text`. */
  pieces: string[];
  /** Token count of each piece. */
  pieceTokens: number[];
  text: string;
  completionTokens: number;
  finishReason: FinishReason;
}

const FILLER_CANDIDATES = [
  'the', 'model', 'data', 'result', 'analysis', 'team', 'signal', 'system', 'method', 'value', 'study',
  'process', 'design', 'test', 'sample', 'report', 'review', 'plan', 'step', 'measure', 'research',
  'output', 'input', 'level', 'rate', 'range', 'source', 'field', 'phase', 'point', 'trend', 'cycle',
  'factor', 'estimate', 'score', 'metric', 'batch', 'stage', 'effect', 'pattern', 'detail', 'context',
  'summary', 'evidence', 'approach', 'quality', 'target', 'scope', 'outcome', 'feature', 'and', 'of',
  'with', 'for', 'from', 'across', 'within', 'under', 'over', 'after', 'before', 'shows', 'suggests',
  'indicates', 'supports', 'requires', 'improves', 'reduces', 'confirms', 'remains', 'appears', 'stable',
  'clear', 'simple', 'strong', 'early', 'final', 'robust', 'consistent', 'relevant', 'careful', 'initial',
  'overall', 'further', 'each', 'every', 'this', 'that', 'next', 'new', 'small', 'large', 'first',
  'second', 'current', 'previous', 'expected', 'observed', 'we', 'they', 'it', 'is', 'are', 'was', 'can',
  'should', 'will', 'may', 'data', 'set', 'run', 'case', 'work', 'time', 'part', 'way', 'use',
];

const HEADER = 'Simulated reply to:';
const EMPTY_HEADER = 'Simulated reply:';
const ECHO_WORDS = 8;
const ECHO_WORD_MAX_CHARS = 32;

let fillerWords: string[] | undefined;

/** Filler words that are exactly one token both with and without a leading space. */
function getFillerWords(): string[] {
  if (!fillerWords) {
    const unique = [...new Set(FILLER_CANDIDATES)];
    fillerWords = unique.filter((w) => countTokens(w) === 1 && countTokens(` ${w}`) === 1);
    if (fillerWords.length < 8) throw new Error('simulator: tokenizer filler vocabulary unexpectedly small');
  }
  return fillerWords;
}

const pieceCountCache = new Map<string, number>();
function pieceCount(piece: string): number {
  const cached = pieceCountCache.get(piece);
  if (cached !== undefined) return cached;
  const n = countTokens(piece);
  if (pieceCountCache.size < 10_000) pieceCountCache.set(piece, n);
  return n;
}

function capitalize(word: string): string {
  return word.charAt(0).toUpperCase() + word.slice(1);
}

/** First words of the user's message, whitespace-free, trimmed to a sane length. */
export function echoWords(lastUserText: string): string[] {
  return lastUserText
    .split(/\s+/u)
    .filter((w) => w.length > 0)
    .slice(0, ECHO_WORDS)
    .map((w) => Array.from(w).slice(0, ECHO_WORD_MAX_CHARS).join(''));
}

function* pieceStream(seed: number, echo: string[]): Generator<string> {
  yield echo.length > 0 ? HEADER : EMPTY_HEADER;
  for (const w of echo) yield ` ${w}`;
  const words = getFillerWords();
  const rand = mulberry32(seed);
  let sentenceLeft = 0;
  let capitalizeNext = true;
  for (;;) {
    if (sentenceLeft === 0) sentenceLeft = 5 + Math.floor(rand() * 9);
    let word = words[Math.floor(rand() * words.length)] ?? 'the';
    if (capitalizeNext) word = capitalize(word);
    capitalizeNext = false;
    sentenceLeft -= 1;
    if (sentenceLeft === 0) {
      word += '.';
      capitalizeNext = true;
    }
    yield ` ${word}`;
  }
}

export function conversationSeed(parts: string[]): number {
  return fnv1a32(JSON.stringify(parts));
}

/**
 * @param seed          hash of the conversation (see conversationSeed)
 * @param lastUserText  text of the last user message (directives already stripped)
 * @param naturalTokens length the "model" wants to produce
 * @param maxTokens     hard cap from max_tokens / max_completion_tokens
 */
export function generateCompletion(args: {
  seed: number;
  lastUserText: string;
  naturalTokens: number;
  maxTokens?: number | undefined;
}): GeneratedCompletion {
  const natural = Math.max(1, Math.floor(args.naturalTokens));
  const cap = args.maxTokens !== undefined ? Math.max(1, Math.floor(args.maxTokens)) : Number.POSITIVE_INFINITY;
  const target = Math.min(natural, cap);
  const finishReason: FinishReason = natural > cap ? 'length' : 'stop';

  const pieces: string[] = [];
  const pieceTokens: number[] = [];
  let used = 0;
  for (const piece of pieceStream(args.seed, echoWords(args.lastUserText))) {
    if (used >= target) break;
    const c = pieceCount(piece);
    if (used + c <= target) {
      pieces.push(piece);
      pieceTokens.push(c);
      used += c;
      continue;
    }
    // The piece straddles the limit: keep a token-prefix of it when that round-trips cleanly.
    const need = target - used;
    const partial = decode(encode(piece).slice(0, need));
    if (partial.length > 0 && !partial.includes('\uFFFD') && pieceCount(partial) === need) {
      pieces.push(partial);
      pieceTokens.push(need);
      used += need;
    }
    break;
  }
  // Pad with one-token filler words if the straddling piece could not be split.
  const filler = getFillerWords();
  let i = 0;
  while (used < target) {
    const w = filler[i++ % filler.length] ?? 'the';
    const piece = pieces.length === 0 ? w : ` ${w}`;
    pieces.push(piece);
    pieceTokens.push(1);
    used += 1;
  }

  let text = pieces.join('');
  let completionTokens = countTokens(text);
  if (completionTokens !== target) {
    // Safety net (should not happen given the piece construction): trim/pad until exact.
    while (pieces.length > 1 && countTokens(pieces.join('')) > target) {
      pieces.pop();
      pieceTokens.pop();
    }
    let guard = 0;
    while (countTokens(pieces.join('')) < target && guard++ < target + 16) {
      pieces.push(' the');
      pieceTokens.push(1);
    }
    text = pieces.join('');
    completionTokens = countTokens(text);
    for (let k = 0; k < pieces.length; k++) pieceTokens[k] = pieceCount(pieces[k] ?? '');
  }
  return { pieces, pieceTokens, text, completionTokens, finishReason };
}
