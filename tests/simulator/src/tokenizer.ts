/**
 * Token counting with js-tiktoken's o200k_base encoding (the GPT-4o family tokenizer). The ranks are
 * bundled in the npm package, so this works offline. The encoder is built lazily once per process.
 */
import { Tiktoken } from 'js-tiktoken/lite';
import o200kBase from 'js-tiktoken/ranks/o200k_base';

let encoder: Tiktoken | undefined;

export function getEncoder(): Tiktoken {
  encoder ??= new Tiktoken(o200kBase);
  return encoder;
}

/** Encode plain text; special-token markers such as `<|endoftext|>` are treated as ordinary text. */
export function encode(text: string): number[] {
  return getEncoder().encode(text, [], []);
}

export function decode(tokens: number[]): string {
  return getEncoder().decode(tokens);
}

/**
 * Runs of more than LONG_RUN_CHARS non-whitespace (or whitespace) characters are estimated instead of
 * encoded: js-tiktoken's BPE is quadratic in the length of one pre-token chunk (a 512-char word takes
 * ~60 ms, a 1 MB base64 blob would block the server for minutes). The estimate encodes a 64-char
 * sample of the run and scales it. Normal prose never has such runs, so its counts stay exact.
 */
export const LONG_RUN_CHARS = 100;
const LONG_RUN_RE = new RegExp(`\\S{${LONG_RUN_CHARS + 1},}|\\s{${LONG_RUN_CHARS + 1},}`, 'gu');
const RUN_SAMPLE_CHARS = 64;

function estimateRun(run: string): number {
  const sample = run.slice(0, RUN_SAMPLE_CHARS);
  const n = encode(sample).length;
  return Math.max(1, Math.round((n * run.length) / sample.length));
}

export function countTokens(text: string): number {
  if (text.length === 0) return 0;
  LONG_RUN_RE.lastIndex = 0;
  if (text.length <= LONG_RUN_CHARS || !LONG_RUN_RE.test(text)) return encode(text).length;
  let total = 0;
  let last = 0;
  LONG_RUN_RE.lastIndex = 0;
  for (const m of text.matchAll(LONG_RUN_RE)) {
    if (m.index > last) total += encode(text.slice(last, m.index)).length;
    total += estimateRun(m[0]);
    last = m.index + m[0].length;
  }
  if (last < text.length) total += encode(text.slice(last)).length;
  return total;
}

/** Per-message overhead of the chat format (as in OpenAI's cookbook for gpt-4o style models). */
export const TOKENS_PER_MESSAGE = 3;
export const TOKENS_PER_NAME = 1;
/** Every reply is primed with `<|start|>assistant<|message|>`. */
export const TOKENS_REPLY_PRIMING = 3;
/** Rough fixed cost of an image part (OpenAI's low-detail cost). */
export const TOKENS_PER_IMAGE = 85;
