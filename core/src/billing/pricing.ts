// Prices and estimates. A call is priced with the model_prices row in force when it started (the
// hold records that row's id, so a price added later never changes the cost of an earlier call).
// Estimates count prompt tokens with the real tokenizer and reserve `max_tokens` of output.
import type pg from 'pg';
import type { PrismaClient } from '../generated/prisma/client.ts';
import { AppError } from '../errors.ts';
import { callCostMicros, tokenCostMicros, type Micros } from '../money.ts';
import { countChatPromptTokens, type ChatMessageLike } from '../tokenizer.ts';

export interface ModelPrice {
  id: string;
  modelId: string;
  currency: string;
  inputMicrosPerMillion: bigint;
  outputMicrosPerMillion: bigint;
  effectiveFrom: Date;
}

export interface TokenUsage {
  promptTokens: number;
  completionTokens: number;
}

/** Anything that runs SQL: a pg Pool / PoolClient, or a Prisma client. */
export type SqlSource = pg.Pool | pg.PoolClient | PrismaClient;

interface PriceRow {
  id: string;
  model_id: string;
  currency: string;
  input_micros_per_million: string | bigint;
  output_micros_per_million: string | bigint;
  effective_from: Date;
}

const PRICE_IN_FORCE_SQL = `
  SELECT id, model_id, currency, input_micros_per_million::text, output_micros_per_million::text, effective_from
  FROM model_prices
  WHERE model_id = $1::uuid AND effective_from <= $2::timestamptz
  ORDER BY effective_from DESC
  LIMIT 1`;

function toPrice(row: PriceRow): ModelPrice {
  return {
    id: row.id,
    modelId: row.model_id,
    currency: row.currency,
    inputMicrosPerMillion: BigInt(row.input_micros_per_million),
    outputMicrosPerMillion: BigInt(row.output_micros_per_million),
    effectiveFrom: row.effective_from,
  };
}

function isPg(db: SqlSource): db is pg.Pool | pg.PoolClient {
  return typeof (db as pg.Pool).query === 'function';
}

/** The price row of `modelId` in force at `at` (the newest with effective_from <= at), or null. */
export async function priceInForce(db: SqlSource, modelId: string, at: Date = new Date()): Promise<ModelPrice | null> {
  const rows = isPg(db)
    ? (await db.query<PriceRow>(PRICE_IN_FORCE_SQL, [modelId, at])).rows
    : await db.$queryRawUnsafe<PriceRow[]>(PRICE_IN_FORCE_SQL, modelId, at);
  return rows[0] ? toPrice(rows[0]) : null;
}

/** Like priceInForce, but a model without a price is an error callers can show. */
export async function requirePriceInForce(db: SqlSource, modelId: string, at: Date = new Date()): Promise<ModelPrice> {
  const price = await priceInForce(db, modelId, at);
  if (!price) throw new AppError('policy_violation', 'this model has no price in force; it cannot be billed', { details: { model_id: modelId } });
  return price;
}

/** What a call costs at `price`: each side rounded up to a whole micro (money.ts). */
export function costOf(price: Pick<ModelPrice, 'inputMicrosPerMillion' | 'outputMicrosPerMillion'>, usage: TokenUsage): Micros {
  return callCostMicros(price, usage.promptTokens, usage.completionTokens);
}

/** The smallest hold: holds are strictly positive (a CHECK), so a free model still holds 1 micro. */
export const MIN_HOLD_MICROS = 1n;

export type EstimateInput =
  | { price: Pick<ModelPrice, 'inputMicrosPerMillion' | 'outputMicrosPerMillion'>; messages: ChatMessageLike[]; maxTokens: number }
  | { price: Pick<ModelPrice, 'inputMicrosPerMillion' | 'outputMicrosPerMillion'>; promptTokens: number; maxTokens: number };

export interface HoldEstimate {
  promptTokens: number;
  maxTokens: number;
  amountMicros: Micros;
}

/**
 * The amount to hold before a call: prompt tokens (counted with the o200k tokenizer, OpenAI's chat
 * accounting) at the input price plus `maxTokens` at the output price. The upstream can never bill
 * more output than max_tokens, so only a prompt counted differently upstream can exceed it.
 */
export function estimateHoldMicros(input: EstimateInput): HoldEstimate {
  if (!Number.isInteger(input.maxTokens) || input.maxTokens < 0) {
    throw new AppError('validation_failed', 'max_tokens must be a non-negative integer');
  }
  const promptTokens = 'messages' in input ? countChatPromptTokens(input.messages) : input.promptTokens;
  if (!Number.isInteger(promptTokens) || promptTokens < 0) {
    throw new AppError('validation_failed', 'prompt tokens must be a non-negative integer');
  }
  const amount =
    tokenCostMicros(promptTokens, input.price.inputMicrosPerMillion) + tokenCostMicros(input.maxTokens, input.price.outputMicrosPerMillion);
  return { promptTokens, maxTokens: input.maxTokens, amountMicros: amount < MIN_HOLD_MICROS ? MIN_HOLD_MICROS : amount };
}
