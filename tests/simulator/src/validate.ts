/** Validation of chat-completions and embeddings request bodies, producing OpenAI-shaped 400s. */
import { invalidRequest } from './errors.ts';
import { parseResponseFormat } from './structured.ts';
import type { ResponseFormat } from './structured.ts';
import { isPlainObject } from './util.ts';
import {
  countTokens,
  TOKENS_PER_IMAGE,
  TOKENS_PER_MESSAGE,
  TOKENS_PER_NAME,
  TOKENS_REPLY_PRIMING,
} from './tokenizer.ts';

const ROLES = new Set(['system', 'developer', 'user', 'assistant', 'tool', 'function']);
const NON_TEXT_PART_TYPES = new Set(['image_url', 'input_audio', 'file']);

export interface NormalizedMessage {
  role: string;
  /** Concatenated text parts (joined by newlines); '' when the message has no text. */
  text: string;
  name?: string;
  /** Prompt tokens attributed to this message, including the per-message overhead. */
  tokens: number;
}

export interface ChatRequest {
  model: string;
  messages: NormalizedMessage[];
  stream: boolean;
  includeUsage: boolean;
  maxTokens?: number;
  promptTokens: number;
  lastUserText: string;
  responseFormat: ResponseFormat;
}


function optionalInteger(body: Record<string, unknown>, key: string, min: number): number | undefined {
  const v = body[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw invalidRequest(`Invalid type for '${key}': expected an integer, but got ${describe(v)} instead.`, key, 'invalid_type');
  }
  if (v < min) {
    throw invalidRequest(`Invalid '${key}': integer below minimum value. Expected a value >= ${min}, but got ${v} instead.`, key, 'integer_below_min_value');
  }
  return v;
}

function optionalNumberInRange(body: Record<string, unknown>, key: string, min: number, max: number): void {
  const v = body[key];
  if (v === undefined || v === null) return;
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw invalidRequest(`Invalid type for '${key}': expected a decimal, but got ${describe(v)} instead.`, key, 'invalid_type');
  }
  if (v < min || v > max) {
    throw invalidRequest(`Invalid '${key}': expected a value between ${min} and ${max}, but got ${v} instead.`, key, 'invalid_value');
  }
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return 'a string';
  if (typeof v === 'object') return 'an object';
  return `a ${typeof v}`;
}

function normalizeMessage(raw: unknown, i: number): NormalizedMessage {
  const at = `messages[${i}]`;
  if (!isPlainObject(raw)) {
    throw invalidRequest(`Invalid type for '${at}': expected an object, but got ${describe(raw)} instead.`, at, 'invalid_type');
  }
  const role = raw['role'];
  if (typeof role !== 'string' || !ROLES.has(role)) {
    throw invalidRequest(
      `Invalid value for '${at}.role': expected one of ${[...ROLES].join(', ')}, but got ${JSON.stringify(role ?? null)}.`,
      `${at}.role`,
      'invalid_value',
    );
  }
  let tokens = TOKENS_PER_MESSAGE + countTokens(role);
  const texts: string[] = [];
  const content = raw['content'];
  if (typeof content === 'string') {
    texts.push(content);
  } else if (Array.isArray(content)) {
    content.forEach((part, j) => {
      const pat = `${at}.content[${j}]`;
      if (!isPlainObject(part) || typeof part['type'] !== 'string') {
        throw invalidRequest(`Invalid content part '${pat}': expected an object with a 'type'.`, pat, 'invalid_type');
      }
      const type = part['type'];
      if (type === 'text' || (type === 'refusal' && role === 'assistant')) {
        const key = type === 'text' ? 'text' : 'refusal';
        const t = part[key];
        if (typeof t !== 'string') {
          throw invalidRequest(`Invalid type for '${pat}.${key}': expected a string, but got ${describe(t)} instead.`, `${pat}.${key}`, 'invalid_type');
        }
        texts.push(t);
      } else if (NON_TEXT_PART_TYPES.has(type) && role === 'user') {
        tokens += TOKENS_PER_IMAGE;
      } else {
        throw invalidRequest(`Invalid value for '${pat}.type': content part type '${type}' is not supported for role '${role}'.`, `${pat}.type`, 'invalid_value');
      }
    });
  } else if (content === undefined || content === null) {
    const hasCalls = raw['tool_calls'] !== undefined || raw['function_call'] !== undefined || raw['refusal'] !== undefined;
    if (!(role === 'assistant' && hasCalls)) {
      throw invalidRequest(`Missing required parameter: '${at}.content'.`, `${at}.content`, 'missing_required_parameter');
    }
  } else {
    throw invalidRequest(
      `Invalid type for '${at}.content': expected one of a string or array of objects, but got ${describe(content)} instead.`,
      `${at}.content`,
      'invalid_type',
    );
  }
  const text = texts.join('\n');
  tokens += countTokens(text);
  const msg: NormalizedMessage = { role, text, tokens };
  const name = raw['name'];
  if (name !== undefined && name !== null) {
    if (typeof name !== 'string') {
      throw invalidRequest(`Invalid type for '${at}.name': expected a string, but got ${describe(name)} instead.`, `${at}.name`, 'invalid_type');
    }
    msg.name = name;
    msg.tokens += TOKENS_PER_NAME + countTokens(name);
  }
  if (raw['tool_calls'] !== undefined && raw['tool_calls'] !== null) msg.tokens += countTokens(JSON.stringify(raw['tool_calls']));
  if (raw['function_call'] !== undefined && raw['function_call'] !== null) msg.tokens += countTokens(JSON.stringify(raw['function_call']));
  return msg;
}

/** Validate a chat-completions body (the model's existence is checked by the caller). */
export function parseChatRequest(body: unknown): ChatRequest {
  if (!isPlainObject(body)) throw invalidRequest('The request body must be a JSON object.', null, 'invalid_type');
  const model = body['model'];
  if (model === undefined || model === null) throw invalidRequest("Missing required parameter: 'model'.", 'model', 'missing_required_parameter');
  if (typeof model !== 'string' || model.length === 0) {
    throw invalidRequest(`Invalid type for 'model': expected a non-empty string, but got ${describe(model)} instead.`, 'model', 'invalid_type');
  }
  const rawMessages = body['messages'];
  if (rawMessages === undefined || rawMessages === null) {
    throw invalidRequest("Missing required parameter: 'messages'.", 'messages', 'missing_required_parameter');
  }
  if (!Array.isArray(rawMessages)) {
    throw invalidRequest(`Invalid type for 'messages': expected an array, but got ${describe(rawMessages)} instead.`, 'messages', 'invalid_type');
  }
  if (rawMessages.length === 0) {
    throw invalidRequest("Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.", 'messages', 'empty_array');
  }
  const messages = rawMessages.map(normalizeMessage);

  const stream = body['stream'];
  if (stream !== undefined && stream !== null && typeof stream !== 'boolean') {
    throw invalidRequest(`Invalid type for 'stream': expected a boolean, but got ${describe(stream)} instead.`, 'stream', 'invalid_type');
  }
  const streamOptions = body['stream_options'];
  let includeUsage = false;
  if (streamOptions !== undefined && streamOptions !== null) {
    if (stream !== true) {
      throw invalidRequest("The 'stream_options' parameter is only allowed when 'stream' is enabled.", 'stream_options', 'invalid_value');
    }
    if (!isPlainObject(streamOptions)) {
      throw invalidRequest(`Invalid type for 'stream_options': expected an object, but got ${describe(streamOptions)} instead.`, 'stream_options', 'invalid_type');
    }
    const iu = streamOptions['include_usage'];
    if (iu !== undefined && iu !== null && typeof iu !== 'boolean') {
      throw invalidRequest(`Invalid type for 'stream_options.include_usage': expected a boolean, but got ${describe(iu)} instead.`, 'stream_options.include_usage', 'invalid_type');
    }
    includeUsage = iu === true;
  }

  const n = optionalInteger(body, 'n', 1);
  if (n !== undefined && n > 1) {
    throw invalidRequest('The simulator supports only n=1.', 'n', 'unsupported_value');
  }
  const maxTokens = optionalInteger(body, 'max_tokens', 1);
  const maxCompletionTokens = optionalInteger(body, 'max_completion_tokens', 1);
  optionalNumberInRange(body, 'temperature', 0, 2);
  optionalNumberInRange(body, 'top_p', 0, 1);
  optionalNumberInRange(body, 'presence_penalty', -2, 2);
  optionalNumberInRange(body, 'frequency_penalty', -2, 2);
  const tools = body['tools'];
  if (tools !== undefined && tools !== null && !Array.isArray(tools)) {
    throw invalidRequest(`Invalid type for 'tools': expected an array, but got ${describe(tools)} instead.`, 'tools', 'invalid_type');
  }

  let promptTokens = TOKENS_REPLY_PRIMING;
  for (const m of messages) promptTokens += m.tokens;
  if (Array.isArray(tools) && tools.length > 0) promptTokens += countTokens(JSON.stringify(tools));

  let lastUserText = '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m && m.role === 'user') {
      lastUserText = m.text;
      break;
    }
  }

  const caps = [maxTokens, maxCompletionTokens].filter((x): x is number => x !== undefined);
  const req: ChatRequest = {
    model,
    messages,
    stream: stream === true,
    includeUsage,
    promptTokens,
    lastUserText,
    responseFormat: parseResponseFormat(body['response_format']),
  };
  if (caps.length > 0) req.maxTokens = Math.min(...caps);
  return req;
}

export interface EmbeddingsRequest {
  model: string;
  inputs: string[];
  /** Raw token arrays given instead of text (decoded by the caller). */
  tokenInputs?: number[][];
  dimensions?: number;
  encodingFormat: 'float' | 'base64';
}

export const MAX_EMBEDDING_INPUTS = 2048;

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0);
}

export function parseEmbeddingsRequest(body: unknown): EmbeddingsRequest {
  if (!isPlainObject(body)) throw invalidRequest('The request body must be a JSON object.', null, 'invalid_type');
  const model = body['model'];
  if (model === undefined || model === null) throw invalidRequest("Missing required parameter: 'model'.", 'model', 'missing_required_parameter');
  if (typeof model !== 'string' || model.length === 0) {
    throw invalidRequest(`Invalid type for 'model': expected a non-empty string, but got ${describe(model)} instead.`, 'model', 'invalid_type');
  }
  const input = body['input'];
  if (input === undefined || input === null) throw invalidRequest("Missing required parameter: 'input'.", 'input', 'missing_required_parameter');
  const req: EmbeddingsRequest = { model, inputs: [], encodingFormat: 'float' };
  if (typeof input === 'string') {
    if (input.length === 0) throw invalidRequest("'$.input' is invalid. Please check the API reference: the input must not be empty.", 'input', 'invalid_value');
    req.inputs = [input];
  } else if (Array.isArray(input)) {
    if (input.length === 0) throw invalidRequest("'$.input' is invalid: expected a non-empty array.", 'input', 'invalid_value');
    if (input.length > MAX_EMBEDDING_INPUTS) {
      throw invalidRequest(`'$.input' is invalid: at most ${MAX_EMBEDDING_INPUTS} inputs per request.`, 'input', 'invalid_value');
    }
    if (input.every((x) => typeof x === 'string')) {
      input.forEach((x, i) => {
        if ((x as string).length === 0) throw invalidRequest(`'$.input[${i}]' is invalid: the input must not be empty.`, 'input', 'invalid_value');
      });
      req.inputs = input as string[];
    } else if (isTokenArray(input)) {
      req.tokenInputs = [input];
    } else if (input.every(isTokenArray)) {
      req.tokenInputs = input as number[][];
    } else {
      throw invalidRequest("'$.input' is invalid: expected a string, an array of strings, or token arrays.", 'input', 'invalid_type');
    }
  } else {
    throw invalidRequest(`Invalid type for 'input': expected a string or an array, but got ${describe(input)} instead.`, 'input', 'invalid_type');
  }
  const dimensions = optionalInteger(body, 'dimensions', 1);
  if (dimensions !== undefined) req.dimensions = dimensions;
  const fmt = body['encoding_format'];
  if (fmt !== undefined && fmt !== null) {
    if (fmt !== 'float' && fmt !== 'base64') {
      throw invalidRequest(`Invalid value for 'encoding_format': expected 'float' or 'base64', but got ${JSON.stringify(fmt)}.`, 'encoding_format', 'invalid_value');
    }
    req.encodingFormat = fmt;
  }
  return req;
}
