// Token counting with a real BPE tokenizer (o200k_base, the GPT-4o family encoding), used for
// budget estimates before a call; the upstream's reported usage is what gets charged.
import { Tiktoken } from 'js-tiktoken/lite';
import o200k_base from 'js-tiktoken/ranks/o200k_base';

let encoder: Tiktoken | undefined;

function getEncoder(): Tiktoken {
  encoder ??= new Tiktoken(o200k_base);
  return encoder;
}

export function countTokens(text: string): number {
  return getEncoder().encode(text).length;
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
