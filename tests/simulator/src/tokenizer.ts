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

export function countTokens(text: string): number {
  if (text.length === 0) return 0;
  return encode(text).length;
}

/** Per-message overhead of the chat format (as in OpenAI's cookbook for gpt-4o style models). */
export const TOKENS_PER_MESSAGE = 3;
export const TOKENS_PER_NAME = 1;
/** Every reply is primed with `<|start|>assistant<|message|>`. */
export const TOKENS_REPLY_PRIMING = 3;
/** Rough fixed cost of an image part (OpenAI's low-detail cost). */
export const TOKENS_PER_IMAGE = 85;
