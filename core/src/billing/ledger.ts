// The billing ledger: wallets (balance, frozen), holds, captures, releases, top-ups, adjustments
// and refunds, on raw SQL over a pg Pool. Exact under concurrency, retries and crashes:
//
// * Locking. Every mutation of a wallet updates its row, so the wallet row lock is the one
//   serialization point. Hot paths (hold, capture within the hold, release, expire, top-up,
//   adjust) write in ONE SQL statement each — a data-modifying CTE run in autocommit or in a group
//   commit batch (group-commit.ts); a capture first reads its hold and price without locking,
//   unless the caller says what it knows of the hold, which the statement then checks — and a
//   hold's first step is the conditional
//   `UPDATE wallets … WHERE balance - frozen >= $amount RETURNING`. Under
//   READ COMMITTED a blocked UPDATE re-checks its WHERE against the newest committed row version,
//   so available can never go below zero whatever the concurrency, and the lock is held only for
//   that statement plus its commit — never across a client round trip or a turn of Node's event
//   loop. That is what makes it both correct and fast: with `SELECT … FOR UPDATE` followed by
//   more statements, every caller on a hot wallet would wait for the lock holder's round trips.
//   The two paths that must read the locked state before deciding (a capture above its hold,
//   a refund) use one short transaction with `SELECT … FOR UPDATE`, always hold row before
//   wallet row — the order every statement here takes — so they cannot deadlock with the rest.
// * Atomicity. A hold writes the wallet, the hold and its transaction row together; a capture
//   writes the wallet, the hold, the usage record and the transaction row together, so "every
//   capture has a usage record" survives any crash. A settlement can carry the call's audit row
//   (and a release the failed call's usage row), written by the same statement.
// * Idempotency. Every mutation writes exactly one wallet_transactions row carrying the caller's
//   key (UNIQUE) and a hash of the request. A replay finds that row and returns the first result;
//   the same key with other parameters is `idempotency_conflict`. Settling an already-settled
//   hold is idempotent by hold id too: the same capture (or any release) returns the first one.
// * Retries. Serialization failures and deadlocks (40001, 40P01) are retried a bounded number of
//   times with jittered backoff; nothing is half-applied because each attempt is one transaction.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { closeLedgerConnections, GroupCommitter, type WriteOptions } from './group-commit.ts';
import { CaptureCoalescer, captureBatchSql } from './capture-batch.ts';
import { AppError, notFound } from '../errors.ts';
import type { Micros } from '../money.ts';
import { newTraceId } from '../trace.ts';
import type { ChatMessageLike } from '../tokenizer.ts';
import { costOf, estimateHoldMicros, requirePriceInForce, type HoldEstimate, type ModelPrice } from './pricing.ts';
import {
  SYSTEM_ACTOR,
  type Actor,
  type ActorType,
  type CaptureResult,
  type HoldResult,
  type HoldView,
  type MutationResult,
  type Page,
  type ReleaseResult,
  type TransactionView,
  type UsageStatus,
  type WalletView,
} from './types.ts';

// ───────────────────────────── policy ─────────────────────────────

/**
 * Overage rule, for a capture whose actual cost exceeds its hold (the upstream counted the prompt
 * differently, or the caller held too little): charge `min(cost, hold + available)`, i.e. the
 * overage is taken from the wallet's free money as far as it goes, never into a negative balance
 * and never from other holds' frozen money. What cannot be collected is recorded on the capture
 * row (`details.uncollected_micros`, and in `reason`) for finance to follow up; the usage record
 * carries what was actually charged.
 */
export const OVERAGE_RULE = 'charge_up_to_available' as const;

export interface CaptureSettlement {
  chargedMicros: Micros;
  releasedMicros: Micros;
  uncollectedMicros: Micros;
}

/** The overage rule as a pure function. `availableMicros` is balance − frozen, excluding this hold. */
export function settleCapture(costMicros: Micros, holdMicros: Micros, availableMicros: Micros): CaptureSettlement {
  if (costMicros < 0n || holdMicros <= 0n) throw new RangeError('cost must be >= 0 and the hold > 0');
  const collectable = holdMicros + (availableMicros > 0n ? availableMicros : 0n);
  const charged = costMicros < collectable ? costMicros : collectable;
  return {
    chargedMicros: charged,
    releasedMicros: charged < holdMicros ? holdMicros - charged : 0n,
    uncollectedMicros: costMicros - charged,
  };
}

export const DEFAULT_HOLD_TTL_MS = 15 * 60_000;
const MAX_RETRIES = 5;
const MAX_PAGE = 100;

// ───────────────────────────── inputs ─────────────────────────────

export interface WalletMutationInput {
  orgId: string;
  idempotencyKey: string;
  /** Required: top-ups, adjustments and refunds are admin acts and say why. */
  reason: string;
  actor: Actor;
  traceId?: string | null;
}

export interface TopupInput extends WalletMutationInput {
  amountMicros: Micros;
}

export interface AdjustInput extends WalletMutationInput {
  /** Signed; a debit cannot drive the balance below what is frozen. */
  deltaMicros: Micros;
}

export interface RefundInput {
  holdId: string;
  /** Defaults to everything captured and not yet refunded. */
  amountMicros?: Micros;
  idempotencyKey: string;
  reason: string;
  actor: Actor;
  traceId?: string | null;
}

export interface HoldInput {
  orgId: string;
  projectId?: string | null;
  amountMicros: Micros;
  idempotencyKey: string;
  /** Absolute expiry; else now + ttlMs (default 15 minutes). */
  expiresAt?: Date;
  ttlMs?: number;
  traceId?: string | null;
  runId?: string | null;
  stepId?: string | null;
  modelId?: string | null;
  /** The model_prices row in force when the call starts; capture prices the usage with it. */
  priceId?: string | null;
  actor?: Actor;
  /**
   * false: return once the hold is committed and visible to every other transaction (so it
   * reserves the money against concurrent holds at once), without waiting for it to reach disk.
   * Sound for a hold taken right before a call whose capture follows: the capture is durable
   * before it returns, and the WAL is flushed in order, so a durable capture implies a durable
   * hold; a database crash in between loses only the reservation (with everything after it), as
   * a gateway crash mid-call would leave it to expire. Default true.
   */
  durable?: boolean;
}

export interface HoldForModelInput extends Omit<HoldInput, 'amountMicros' | 'modelId' | 'priceId'> {
  /** A model name (what callers ask for) or id. */
  model: string;
  messages?: ChatMessageLike[];
  promptTokens?: number;
  maxTokens: number;
  /** When the call starts (price lookup); defaults to now. */
  at?: Date;
  /**
   * A cached catalog (core/src/ai/catalog-cache.ts) to resolve the model and its price without a
   * query each: the hold is then one statement. Without it both are read from the database.
   */
  catalog?: HoldCatalog;
}

/** What holdForModel needs of a model catalog cache (active models only). */
export interface HoldCatalog {
  all(): Promise<Map<string, { id: string; name: string; upstreamModel: string }>>;
  priceAt(modelId: string, at?: Date): Promise<ModelPrice | undefined>;
}

export interface HoldForModelResult extends HoldResult {
  estimate: HoldEstimate | null;
  model: { id: string; name: string; upstreamModel: string };
  price: ModelPrice | null;
}

export interface CaptureUsage {
  promptTokens: number;
  completionTokens: number;
  /** Defaults to the hold's trace id; one of the two is required. */
  traceId?: string | null;
  modelId?: string | null;
  /** Default to the hold's model's name / upstream model. */
  modelName?: string;
  upstreamModel?: string;
  latencyMs?: number;
  status?: UsageStatus;
  errorCode?: string | null;
  projectId?: string | null;
  apiKeyId?: string | null;
  userId?: string | null;
  runId?: string | null;
  stepId?: string | null;
}

/**
 * The audit row of a model call, written by the statement that settles its hold (so money, usage
 * and audit commit together) and only when that statement settled it: a replay writes none.
 */
export interface SettlementAudit {
  traceId: string;
  actorType: ActorType | 'anonymous';
  actorId: string | null;
  action: string;
  resourceType: string;
  resourceId: string | null;
  /** Defaults to the hold's organization. */
  orgId: string | null;
  projectId: string | null;
  result: 'success' | 'failure' | 'denied';
  ip: string | null;
  userAgent: string | null;
  details: Record<string, unknown>;
}

export interface CaptureInput {
  holdId: string;
  idempotencyKey: string;
  usage: CaptureUsage;
  /** The cost, when it is not tokens × the hold's price (e.g. a hold taken without a model). */
  costMicros?: Micros;
  actor?: Actor;
  /**
   * What the caller knows of the hold from its own hold call: its amount, and the rates of the
   * price it was taken at. With it (and usage.traceId, modelName, upstreamModel) a capture within
   * the hold is one statement, without reading the hold first; the statement checks the hold
   * still is exactly that, and otherwise the capture takes the general path.
   */
  known?: { amountMicros: Micros; price?: Pick<ModelPrice, 'inputMicrosPerMillion' | 'outputMicrosPerMillion'> | null };
  audit?: SettlementAudit;
  /**
   * The hold's organization when the caller knows it: a group-commit batch locks its wallets in
   * organization order (group-commit.ts). A wrong value costs at most a re-run batch.
   */
  orgId?: string;
  /**
   * The capture may wait up to this many milliseconds to be written together with others of the
   * organization (capture-batch.ts): one statement and one commit for many. Only for a capture
   * within its hold that the caller describes (`known`, usage.traceId, modelName, upstreamModel)
   * and gives `orgId` for; anything else is written at once. Resolves once written, as always.
   */
  coalesceMs?: number;
}

/** A failed call's zero-cost usage row, written with its release. */
export interface ReleaseUsage {
  traceId: string;
  modelName: string;
  upstreamModel: string;
  latencyMs?: number;
  status?: UsageStatus;
  errorCode?: string | null;
  projectId?: string | null;
  apiKeyId?: string | null;
  userId?: string | null;
  modelId?: string | null;
}

export interface ReleaseInput {
  holdId: string;
  idempotencyKey: string;
  reason?: string | null;
  actor?: Actor;
  /** The call's usage and audit rows, written by the releasing statement (a replay writes none). */
  record?: { usage: ReleaseUsage; audit: SettlementAudit };
  /** The hold's organization when the caller knows it (see CaptureInput.orgId). */
  orgId?: string;
}

export interface ExpireResult {
  expired: HoldView[];
}

// ───────────────────────────── rows ─────────────────────────────

const WALLET_COLUMNS = ['id', 'org_id', 'currency', 'balance_micros', 'frozen_micros', 'created_at', 'updated_at'] as const;
const HOLD_COLUMNS = [
  'id', 'wallet_id', 'org_id', 'project_id', 'status', 'amount_micros', 'captured_micros', 'idempotency_key', 'trace_id',
  'run_id', 'step_id', 'model_id', 'price_id', 'created_at', 'expires_at', 'settled_at',
] as const;
const TX_COLUMNS = [
  'id', 'wallet_id', 'kind', 'amount_micros', 'balance_after_micros', 'frozen_after_micros', 'idempotency_key', 'hold_id',
  'trace_id', 'run_id', 'step_id', 'actor_type', 'actor_id', 'reason', 'request_hash', 'details', 'created_at',
] as const;

type Row = Record<string, unknown>;

/** `h.id AS h_id, h.status AS h_status, …`: several tables' rows in one result row, by prefix. */
function cols(alias: string, columns: readonly string[]): string {
  return columns.map((c) => `${alias}.${c} AS ${alias}_${c}`).join(', ');
}

function pick(row: Row, alias: string): Row {
  const out: Row = {};
  const prefix = `${alias}_`;
  for (const [k, v] of Object.entries(row)) if (k.startsWith(prefix)) out[k.slice(prefix.length)] = v;
  return out;
}

const str = (v: unknown) => (v === null || v === undefined ? null : String(v));
// pg returns int8 as decimal strings: BigInt() of those is exact.
const big = (v: unknown) => BigInt(v as string);

function toWallet(r: Row): WalletView {
  const balance = big(r.balance_micros);
  const frozen = big(r.frozen_micros);
  return {
    id: String(r.id),
    orgId: String(r.org_id),
    currency: String(r.currency),
    balanceMicros: balance,
    frozenMicros: frozen,
    availableMicros: balance - frozen,
    createdAt: r.created_at as Date,
    updatedAt: r.updated_at as Date,
  };
}

function toHold(r: Row): HoldView {
  return {
    id: String(r.id),
    walletId: String(r.wallet_id),
    orgId: String(r.org_id),
    projectId: str(r.project_id),
    status: r.status as HoldView['status'],
    amountMicros: big(r.amount_micros),
    capturedMicros: big(r.captured_micros),
    idempotencyKey: String(r.idempotency_key),
    traceId: str(r.trace_id),
    runId: str(r.run_id),
    stepId: str(r.step_id),
    modelId: str(r.model_id),
    priceId: str(r.price_id),
    createdAt: r.created_at as Date,
    expiresAt: r.expires_at as Date,
    settledAt: (r.settled_at as Date | null) ?? null,
  };
}

/** toHold of the `h_`-prefixed columns (cols('h', HOLD_COLUMNS)) of a hot statement's row, read directly. */
function toHoldH(r: Row): HoldView {
  return {
    id: String(r.h_id),
    walletId: String(r.h_wallet_id),
    orgId: String(r.h_org_id),
    projectId: str(r.h_project_id),
    status: r.h_status as HoldView['status'],
    amountMicros: big(r.h_amount_micros),
    capturedMicros: big(r.h_captured_micros),
    idempotencyKey: String(r.h_idempotency_key),
    traceId: str(r.h_trace_id),
    runId: str(r.h_run_id),
    stepId: str(r.h_step_id),
    modelId: str(r.h_model_id),
    priceId: str(r.h_price_id),
    createdAt: r.h_created_at as Date,
    expiresAt: r.h_expires_at as Date,
    settledAt: (r.h_settled_at as Date | null) ?? null,
  };
}

interface TxRecord extends TransactionView {
  requestHash: string | null;
}

function toTx(r: Row): TxRecord {
  return {
    id: String(r.id),
    walletId: String(r.wallet_id),
    kind: r.kind as TransactionView['kind'],
    amountMicros: big(r.amount_micros),
    balanceAfterMicros: big(r.balance_after_micros),
    frozenAfterMicros: big(r.frozen_after_micros),
    idempotencyKey: String(r.idempotency_key),
    holdId: str(r.hold_id),
    traceId: str(r.trace_id),
    runId: str(r.run_id),
    stepId: str(r.step_id),
    actorType: r.actor_type as TransactionView['actorType'],
    actorId: str(r.actor_id),
    reason: str(r.reason),
    details: (r.details as Record<string, unknown> | null) ?? {},
    createdAt: r.created_at as Date,
    requestHash: str(r.request_hash),
  };
}

function publicTx(tx: TxRecord): TransactionView {
  const { requestHash: _omit, ...view } = tx;
  return view;
}

// ───────────────────────────── helpers ─────────────────────────────

interface PgError {
  code?: string;
  constraint?: string;
}

const pgCode = (e: unknown) => (e as PgError | null)?.code;
const IDEMPOTENCY_CONSTRAINTS = new Set(['wallet_transactions_idempotency_key_key', 'holds_idempotency_key_key']);

function isKeyCollision(e: unknown): boolean {
  return pgCode(e) === '23505' && IDEMPOTENCY_CONSTRAINTS.has((e as PgError).constraint ?? '');
}

/** Re-runs `fn` on serialization failures and deadlocks, a bounded number of times. */
export async function withSerializationRetry<T>(fn: () => Promise<T>, attempts = MAX_RETRIES): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      const code = pgCode(error);
      if ((code !== '40001' && code !== '40P01') || attempt >= attempts) throw error;
      await new Promise((r) => setTimeout(r, Math.random() * 5 * 2 ** attempt));
    }
  }
}

/** sha256 of the canonical JSON of an operation's parameters (bigints as strings, keys sorted). */
export function requestHash(op: string, params: Record<string, unknown>): string {
  return createHash('sha256').update(`{"op":${JSON.stringify(op)},"params":${canonicalJson(params)}}`).digest('hex');
}

// Integer-like keys ("2", "10"): JSON.stringify lists an object's array-index keys first, in numeric order.
const ARRAY_INDEX = /^(?:0|[1-9]\d{0,9})$/;
const isArrayIndex = (key: string) => ARRAY_INDEX.test(key) && Number(key) < 4_294_967_295;

/**
 * The canonical JSON text, written directly (every hold and capture hashes its parameters). Byte
 * for byte what the first version produced — JSON.stringify of a copy with bigints and dates as
 * strings, undefined members dropped (null in arrays), keys sorted — since stored request hashes
 * must keep matching their replays; a unit test pins hashes made by that version.
 */
function canonicalJson(value: unknown): string {
  if (typeof value === 'bigint') return `"${value.toString()}"`;
  if (value instanceof Date) return `"${value.toISOString()}"`;
  if (Array.isArray(value)) return `[${value.map((v) => canonicalJson(v)).join(',')}]`;
  if (value && typeof value === 'object') {
    const keys = Object.keys(value);
    // Object.keys lists array-index keys first (ascending), the rest in insertion order.
    let indexKeys = 0;
    while (indexKeys < keys.length && isArrayIndex(keys[indexKeys]!)) indexKeys++;
    const ordered = indexKeys === 0 ? keys.sort() : [...keys.slice(0, indexKeys), ...keys.slice(indexKeys).sort()];
    let out = '{';
    for (const key of ordered) {
      const member = (value as Row)[key];
      if (member === undefined) continue;
      out += `${out.length > 1 ? ',' : ''}${JSON.stringify(key)}:${canonicalJson(member)}`;
    }
    return `${out}}`;
  }
  return JSON.stringify(value ?? null);
}

function requireKey(key: unknown): string {
  if (typeof key !== 'string' || key.length === 0 || key.length > 255) {
    throw new AppError('validation_failed', 'an idempotency key (1–255 characters) is required');
  }
  return key;
}

function requirePositive(amount: unknown, what: string): bigint {
  if (typeof amount !== 'bigint' || amount <= 0n) throw new AppError('validation_failed', `${what} must be a positive bigint of micros`);
  return amount;
}

function requireTokens(n: unknown, what: string): number {
  if (!Number.isSafeInteger(n) || (n as number) < 0) throw new AppError('validation_failed', `${what} must be a non-negative integer`);
  return n as number;
}

function requireReason(reason: unknown): string {
  if (typeof reason !== 'string' || reason.trim() === '') throw new AppError('validation_failed', 'a reason is required');
  return reason;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function requireUuid(id: unknown, what: string): string {
  if (typeof id !== 'string' || !UUID.test(id)) throw new AppError('validation_failed', `${what} must be a UUID`);
  return id;
}

function auditParams(a: SettlementAudit): unknown[] {
  return [
    a.traceId, a.actorType, a.actorId, a.action, a.resourceType, a.resourceId, a.orgId, a.projectId, a.result, a.ip,
    a.userAgent?.slice(0, 500) ?? null, JSON.stringify(a.details),
  ];
}

function idempotencyConflict(key: string, tx: TxRecord): AppError {
  return new AppError('idempotency_conflict', 'this idempotency key was already used with different parameters', {
    details: { idempotency_key: key, first_kind: tx.kind, first_transaction_id: tx.id },
  });
}

/**
 * A hold's result from its statement's row: the statement returns only what the database made;
 * the rest is the input as written (uuids come back lower-case). Few columns: a hold is on every
 * model call's path.
 */
function heldResult(r: Row, input: Omit<HoldInput, 'idempotencyKey'>, key: string, amount: bigint, actor: Actor): HoldResult {
  const holdId = String(r.h_id);
  const walletId = String(r.h_wallet_id);
  const hold: HoldView = {
    id: holdId,
    walletId,
    orgId: input.orgId.toLowerCase(),
    projectId: input.projectId?.toLowerCase() ?? null,
    status: 'active',
    amountMicros: amount,
    capturedMicros: 0n,
    idempotencyKey: key,
    traceId: input.traceId ?? null,
    runId: input.runId ?? null,
    stepId: input.stepId ?? null,
    modelId: input.modelId?.toLowerCase() ?? null,
    priceId: input.priceId?.toLowerCase() ?? null,
    createdAt: r.h_created_at as Date,
    expiresAt: r.h_expires_at as Date,
    settledAt: null,
  };
  const transaction: TransactionView = {
    id: String(r.t_id),
    walletId,
    kind: 'hold',
    amountMicros: amount,
    balanceAfterMicros: big(r.t_balance_after_micros),
    frozenAfterMicros: big(r.t_frozen_after_micros),
    idempotencyKey: key,
    holdId,
    traceId: input.traceId ?? null,
    runId: input.runId ?? null,
    stepId: input.stepId ?? null,
    actorType: actor.type,
    actorId: actor.id ?? null,
    reason: null,
    details: {},
    createdAt: r.t_created_at as Date,
  };
  return { hold, transaction, replayed: false };
}

// ───────────────────────────── SQL ─────────────────────────────

const TX_INSERT_COLUMNS = `wallet_id, kind, amount_micros, balance_after_micros, frozen_after_micros, idempotency_key, hold_id,
  trace_id, run_id, step_id, actor_type, actor_id, reason, request_hash, details`;

const HOLD_SQL = `
WITH w AS (
  UPDATE wallets SET frozen_micros = frozen_micros + $2::bigint, updated_at = now()
  WHERE org_id = $1::uuid AND balance_micros - frozen_micros >= $2::bigint
  RETURNING id, balance_micros, frozen_micros
), h AS (
  INSERT INTO holds (wallet_id, org_id, project_id, amount_micros, idempotency_key, trace_id, run_id, step_id, model_id, price_id, expires_at)
  SELECT w.id, $1::uuid, $3::uuid, $2::bigint, $4::text, $5::text, $6::text, $7::text, $8::uuid, $9::uuid, $10::timestamptz FROM w
  RETURNING id, wallet_id, created_at, expires_at
), t AS (
  INSERT INTO wallet_transactions (${TX_INSERT_COLUMNS})
  SELECT w.id, 'hold'::"TransactionKind", $2::bigint, w.balance_micros, w.frozen_micros, $4::text, h.id, $5::text, $6::text, $7::text,
         $11::"ActorType", $12::text, NULL, $13::text, '{}'::jsonb
  FROM w, h
  RETURNING id, balance_after_micros, frozen_after_micros, created_at
)
SELECT h.id AS h_id, h.wallet_id AS h_wallet_id, h.created_at AS h_created_at, h.expires_at AS h_expires_at,
       t.id AS t_id, t.balance_after_micros AS t_balance_after_micros, t.frozen_after_micros AS t_frozen_after_micros, t.created_at AS t_created_at
FROM h, t`;

// Many holds of one amount on one wallet in one statement ($4: their idempotency keys, in order):
// the wallet freezes all of them or none; each hold row's frozen_after is the running total.
const HOLD_MANY_SQL = `
WITH w AS (
  UPDATE wallets SET frozen_micros = frozen_micros + $2::bigint * cardinality($4::text[]), updated_at = now()
  WHERE org_id = $1::uuid AND balance_micros - frozen_micros >= $2::bigint * cardinality($4::text[])
  RETURNING id, balance_micros, frozen_micros
), k AS (
  SELECT key, n FROM unnest($4::text[]) WITH ORDINALITY AS k(key, n)
), h AS (
  INSERT INTO holds (wallet_id, org_id, project_id, amount_micros, idempotency_key, trace_id, run_id, step_id, model_id, price_id, expires_at)
  SELECT w.id, $1::uuid, $3::uuid, $2::bigint, k.key, $5::text, $6::text, $7::text, $8::uuid, $9::uuid, $10::timestamptz FROM w, k ORDER BY k.n
  RETURNING id, wallet_id, idempotency_key, created_at, expires_at
), t AS (
  INSERT INTO wallet_transactions (${TX_INSERT_COLUMNS})
  SELECT w.id, 'hold'::"TransactionKind", $2::bigint, w.balance_micros, w.frozen_micros - $2::bigint * (cardinality($4::text[]) - k.n), k.key, h.id,
         $5::text, $6::text, $7::text, $11::"ActorType", $12::text, NULL, $13::text, '{}'::jsonb
  FROM w, h JOIN k ON k.key = h.idempotency_key
  ORDER BY k.n
  RETURNING id, hold_id, balance_after_micros, frozen_after_micros, created_at
)
SELECT h.id AS h_id, h.wallet_id AS h_wallet_id, h.idempotency_key AS h_key, h.created_at AS h_created_at, h.expires_at AS h_expires_at,
       t.id AS t_id, t.balance_after_micros AS t_balance_after_micros, t.frozen_after_micros AS t_frozen_after_micros, t.created_at AS t_created_at
FROM h JOIN t ON t.hold_id = h.id`;

// The audit row of a settlement, written by the settling statement itself (one commit), and only
// when that statement settled the hold: a replay writes none. $n…$n+11 are its parameters (auditParams).
const AUDIT_COLUMNS = 'trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, project_id, result, ip, user_agent, details';
const auditCte = (n: number) => `, a AS (
  INSERT INTO audit_logs (${AUDIT_COLUMNS})
  SELECT $${n}::text, $${n + 1}::"ActorType", $${n + 2}::text, $${n + 3}::text, $${n + 4}::text, $${n + 5}::text, COALESCE($${n + 6}::uuid, h.org_id),
         $${n + 7}::uuid, $${n + 8}::"AuditResult", $${n + 9}::text, $${n + 10}::text, $${n + 11}::jsonb
  FROM h
)`;

// $2 is what is charged; the wallet gives back the whole hold from frozen and takes the charge
// from the balance. Within the hold (charge ≤ hold) this cannot break balance ≥ frozen whatever
// else happened to the wallet, so it needs no prior read of the wallet.
// `known`: the caller priced the call from what it knew of the hold (its amount, its price row's
// rates) without reading it; $23–$25 make the statement write nothing unless the hold still is
// exactly that, so a stale guess falls back to the general path instead of mispricing.
function captureSql(options: { known: boolean; audited: boolean }): string {
  const guard = options.known
    ? ` AND amount_micros = $23::bigint
    AND ($24::bigint IS NULL OR EXISTS (SELECT 1 FROM model_prices p WHERE p.id = holds.price_id
         AND p.input_micros_per_million = $24::bigint AND p.output_micros_per_million = $25::bigint))`
    : '';
  return `
WITH h AS (
  UPDATE holds SET status = 'captured', captured_micros = $2::bigint, settled_at = now()
  WHERE id = $1::uuid AND status = 'active'${guard}
  RETURNING *
), w AS (
  UPDATE wallets SET balance_micros = balance_micros - $2::bigint, frozen_micros = frozen_micros - h.amount_micros, updated_at = now()
  FROM h WHERE wallets.id = h.wallet_id
  RETURNING wallets.id, wallets.balance_micros, wallets.frozen_micros
), u AS (
  INSERT INTO usage_records (trace_id, org_id, project_id, api_key_id, user_id, model_id, model_name, upstream_model, price_id, hold_id,
                             prompt_tokens, completion_tokens, cost_micros, latency_ms, status, error_code, run_id, step_id)
  SELECT $3::text, h.org_id, COALESCE($4::uuid, h.project_id), $5::uuid, $6::uuid, COALESCE($7::uuid, h.model_id), $8::text, $9::text,
         h.price_id, h.id, $10::int, $11::int, $2::bigint, $12::int, $13::"UsageStatus", $14::text,
         COALESCE($15::text, h.run_id), COALESCE($16::text, h.step_id)
  FROM h
  RETURNING id
), t AS (
  INSERT INTO wallet_transactions (${TX_INSERT_COLUMNS})
  SELECT w.id, 'capture'::"TransactionKind", -$2::bigint, w.balance_micros, w.frozen_micros, $17::text, h.id, $3::text,
         COALESCE($15::text, h.run_id), COALESCE($16::text, h.step_id), $18::"ActorType", $19::text, $20::text, $21::text, $22::jsonb
  FROM w, h
  RETURNING id, balance_after_micros, frozen_after_micros, created_at
)${options.audited ? auditCte(options.known ? 26 : 23) : ''}
SELECT ${cols('h', HOLD_COLUMNS)}, t.id AS t_id, t.balance_after_micros AS t_balance_after_micros, t.frozen_after_micros AS t_frozen_after_micros,
       t.created_at AS t_created_at, u.id AS usage_id
FROM h, t, u`;
}

const CAPTURE_SQL = captureSql({ known: false, audited: false });
const CAPTURE_AUDITED_SQL = captureSql({ known: false, audited: true });
const CAPTURE_KNOWN_SQL = captureSql({ known: true, audited: false });
const CAPTURE_KNOWN_AUDITED_SQL = captureSql({ known: true, audited: true });
const CAPTURE_BATCH_SQL = captureBatchSql(cols('h', HOLD_COLUMNS), TX_INSERT_COLUMNS, AUDIT_COLUMNS);
/** A batched capture without an audit row: its 12 audit parameters. */
const NO_AUDIT: unknown[] = Array.from({ length: 12 }, () => null);

// Release or expire: the whole hold goes back from frozen. $3 limits an expiry to holds past it.
// `recorded`: a failed call's zero-cost usage row ($10–$19) and its audit row go with the release.
function releaseSql(options: { recorded: boolean }): string {
  const recorded = options.recorded
    ? `, u AS (
  INSERT INTO usage_records (trace_id, org_id, project_id, api_key_id, user_id, model_id, model_name, upstream_model, hold_id,
                             latency_ms, status, error_code, run_id, step_id)
  SELECT $10::text, h.org_id, COALESCE($11::uuid, h.project_id), $12::uuid, $13::uuid, COALESCE($14::uuid, h.model_id), $15::text, $16::text,
         h.id, $17::int, $18::"UsageStatus", $19::text, h.run_id, h.step_id
  FROM h
)${auditCte(20)}`
    : '';
  return `
WITH h AS (
  UPDATE holds SET status = $2::"HoldStatus", settled_at = now()
  WHERE id = $1::uuid AND status = 'active' AND ($3::timestamptz IS NULL OR expires_at <= $3::timestamptz)
  RETURNING *
), w AS (
  UPDATE wallets SET frozen_micros = frozen_micros - h.amount_micros, updated_at = now()
  FROM h WHERE wallets.id = h.wallet_id
  RETURNING wallets.id, wallets.balance_micros, wallets.frozen_micros
), t AS (
  INSERT INTO wallet_transactions (${TX_INSERT_COLUMNS})
  SELECT w.id, 'release'::"TransactionKind", h.amount_micros, w.balance_micros, w.frozen_micros, $4::text, h.id, h.trace_id, h.run_id,
         h.step_id, $5::"ActorType", $6::text, $7::text, $8::text, $9::jsonb
  FROM w, h
  RETURNING *
)${recorded}
SELECT ${cols('h', HOLD_COLUMNS)}, ${cols('t', TX_COLUMNS)} FROM h, t`;
}

const RELEASE_SQL = releaseSql({ recorded: false });
const RELEASE_RECORDED_SQL = releaseSql({ recorded: true });

// Top-up and adjustment (signed $2): the balance moves, never below frozen; an audit row goes
// with it in the same statement.
const WALLET_DELTA_SQL = `
WITH w AS (
  UPDATE wallets SET balance_micros = balance_micros + $2::bigint, updated_at = now()
  WHERE org_id = $1::uuid AND balance_micros + $2::bigint >= frozen_micros
  RETURNING id, org_id, balance_micros, frozen_micros
), t AS (
  INSERT INTO wallet_transactions (${TX_INSERT_COLUMNS})
  SELECT w.id, $3::"TransactionKind", $2::bigint, w.balance_micros, w.frozen_micros, $4::text, NULL, $5::text, NULL, NULL,
         $6::"ActorType", $7::text, $8::text, $9::text, '{}'::jsonb
  FROM w
  RETURNING *
), a AS (
  INSERT INTO audit_logs (trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, result, details)
  SELECT $5::text, $6::"ActorType", $7::text, $10::text, 'wallet', w.id::text, w.org_id, 'success',
         jsonb_build_object('transaction_id', t.id::text, 'amount_micros', ($2::bigint)::text, 'reason', $8::text,
                            'idempotency_key', $4::text, 'balance_after_micros', t.balance_after_micros::text)
  FROM w, t
)
SELECT ${cols('t', TX_COLUMNS)} FROM t`;

const REFUND_SQL = `
WITH w AS (
  UPDATE wallets SET balance_micros = balance_micros + $2::bigint, updated_at = now()
  WHERE id = $1::uuid
  RETURNING id, org_id, balance_micros, frozen_micros
), t AS (
  INSERT INTO wallet_transactions (${TX_INSERT_COLUMNS})
  SELECT w.id, 'refund'::"TransactionKind", $2::bigint, w.balance_micros, w.frozen_micros, $3::text, $4::uuid, $5::text, $6::text, $7::text,
         $8::"ActorType", $9::text, $10::text, $11::text, $12::jsonb
  FROM w
  RETURNING *
), a AS (
  INSERT INTO audit_logs (trace_id, actor_type, actor_id, action, resource_type, resource_id, org_id, result, details)
  SELECT $5::text, $8::"ActorType", $9::text, 'billing.refund', 'hold', $4::uuid::text, w.org_id, 'success',
         jsonb_build_object('transaction_id', t.id::text, 'amount_micros', ($2::bigint)::text, 'reason', $10::text,
                            'idempotency_key', $3::text, 'balance_after_micros', t.balance_after_micros::text)
  FROM w, t
)
SELECT ${cols('t', TX_COLUMNS)} FROM t`;

const TX_BY_KEY_SQL = `SELECT ${cols('t', TX_COLUMNS)} FROM wallet_transactions t WHERE t.idempotency_key = $1`;
const HOLD_BY_ID_SQL = `SELECT ${cols('h', HOLD_COLUMNS)} FROM holds h WHERE h.id = $1::uuid`;

// ───────────────────────────── the ledger ─────────────────────────────

type Queryable = Pick<pg.Pool, 'query'> | pg.PoolClient;

/** The pg pool the ledger runs on (re-exported so packages need no direct `pg` import for types). */
export type PgPool = pg.Pool;

export class Ledger {
  readonly pool: pg.Pool;
  /** Hold, capture and release statements go through it (see group-commit.ts). */
  readonly writes: GroupCommitter;

  /** Captures that may wait a few milliseconds for others (CaptureInput.coalesceMs). */
  readonly captures: CaptureCoalescer;

  constructor(pool: pg.Pool, options: { maxBatch?: number } = {}) {
    this.pool = pool;
    this.writes = new GroupCommitter(pool, options);
    this.captures = new CaptureCoalescer(this.writes, CAPTURE_BATCH_SQL);
  }

  /** Closes the connections the ledger opened beside its pool (the pool belongs to the caller). */
  end(): Promise<void> {
    this.captures.flushAll();
    return closeLedgerConnections(this.pool);
  }

  // ── wallets ──

  /** Creates the organization's wallet if it has none (idempotent); returns it. */
  async openWallet(orgId: string, currency = 'USD'): Promise<WalletView> {
    requireUuid(orgId, 'orgId');
    await this.pool.query('INSERT INTO wallets (org_id, currency) VALUES ($1::uuid, $2) ON CONFLICT (org_id) DO NOTHING', [orgId, currency]);
    return this.getWallet(orgId);
  }

  async getWallet(orgId: string): Promise<WalletView> {
    requireUuid(orgId, 'orgId');
    const { rows } = await this.pool.query(`SELECT ${WALLET_COLUMNS.join(', ')} FROM wallets WHERE org_id = $1::uuid`, [orgId]);
    if (!rows[0]) throw notFound('wallet');
    return toWallet(rows[0]);
  }

  async getHold(holdId: string): Promise<HoldView> {
    requireUuid(holdId, 'holdId');
    const { rows } = await this.pool.query(HOLD_BY_ID_SQL, [holdId]);
    if (!rows[0]) throw notFound('hold');
    return toHold(pick(rows[0], 'h'));
  }

  /** Newest first; `startingAfter` is the id of the last row of the previous page. */
  async listTransactions(orgId: string, options: { limit?: number; startingAfter?: string } = {}): Promise<Page<TransactionView>> {
    requireUuid(orgId, 'orgId');
    const limit = Math.min(Math.max(Math.trunc(options.limit ?? 25), 1), MAX_PAGE);
    if (options.startingAfter !== undefined && !/^\d{1,19}$/.test(options.startingAfter)) {
      throw new AppError('validation_failed', 'starting_after must be a transaction id');
    }
    const { rows } = await this.pool.query(
      `SELECT ${cols('t', TX_COLUMNS)} FROM wallet_transactions t JOIN wallets w ON w.id = t.wallet_id
       WHERE w.org_id = $1::uuid AND ($2::bigint IS NULL OR t.id < $2::bigint)
       ORDER BY t.id DESC LIMIT $3`,
      [orgId, options.startingAfter ?? null, limit + 1],
    );
    return { data: rows.slice(0, limit).map((r) => publicTx(toTx(pick(r, 't')))), has_more: rows.length > limit };
  }

  // ── admin money movements ──

  async topup(input: TopupInput): Promise<MutationResult> {
    const amount = requirePositive(input.amountMicros, 'amountMicros');
    return this.walletDelta('topup', 'billing.topup', input, amount);
  }

  async adjust(input: AdjustInput): Promise<MutationResult> {
    if (typeof input.deltaMicros !== 'bigint' || input.deltaMicros === 0n) {
      throw new AppError('validation_failed', 'deltaMicros must be a non-zero bigint of micros');
    }
    return this.walletDelta('adjust', 'billing.adjust', input, input.deltaMicros);
  }

  private async walletDelta(kind: 'topup' | 'adjust', action: string, input: WalletMutationInput, delta: bigint): Promise<MutationResult> {
    requireUuid(input.orgId, 'orgId');
    const key = requireKey(input.idempotencyKey);
    const reason = requireReason(input.reason);
    const hash = requestHash(kind, { orgId: input.orgId, amount: delta });
    const actor = input.actor ?? SYSTEM_ACTOR;
    return withSerializationRetry(async () => {
      try {
        const { rows } = await this.pool.query(WALLET_DELTA_SQL, [
          input.orgId, delta.toString(), kind, key, input.traceId ?? newTraceId(), actor.type, actor.id ?? null, reason, hash, action,
        ]);
        if (rows[0]) return { transaction: publicTx(toTx(pick(rows[0], 't'))), replayed: false };
      } catch (error) {
        if (!isKeyCollision(error)) throw error;
      }
      const first = await this.findByKey(this.pool, key);
      if (first) {
        if (first.kind !== kind || first.requestHash !== hash) throw idempotencyConflict(key, first);
        return { transaction: publicTx(first), replayed: true };
      }
      const wallet = await this.getWallet(input.orgId);
      throw new AppError('insufficient_funds', 'the adjustment would take the balance below what is frozen', {
        details: { available_micros: wallet.availableMicros.toString(), delta_micros: delta.toString() },
      });
    });
  }

  /** Gives back (part of) a capture to the balance; at most what was captured, over all refunds. */
  async refund(input: RefundInput): Promise<MutationResult & { hold: HoldView }> {
    requireUuid(input.holdId, 'holdId');
    const key = requireKey(input.idempotencyKey);
    const reason = requireReason(input.reason);
    if (input.amountMicros !== undefined) requirePositive(input.amountMicros, 'amountMicros');
    const hash = requestHash('refund', { holdId: input.holdId, amount: input.amountMicros ?? 'all-remaining' });
    const actor = input.actor;
    const attempt = () =>
      this.transaction(async (client) => {
        // Hold row first, as everywhere: refunds of one capture serialize on it, so the key lookup
        // and the refunded sum below see every earlier refund of this hold.
        const { rows } = await client.query(`${HOLD_BY_ID_SQL} FOR UPDATE`, [input.holdId]);
        if (!rows[0]) throw notFound('hold');
        const hold = toHold(pick(rows[0], 'h'));
        const first = await this.findByKey(client, key);
        if (first) {
          if (first.kind !== 'refund' || first.holdId !== hold.id || first.requestHash !== hash) throw idempotencyConflict(key, first);
          return { transaction: publicTx(first), replayed: true, hold };
        }
        if (hold.status !== 'captured') throw new AppError('conflict', `only a captured hold can be refunded (this one is ${hold.status})`);
        const refunded = await client.query<{ sum: string }>(
          `SELECT COALESCE(sum(amount_micros), 0)::text AS sum FROM wallet_transactions WHERE hold_id = $1::uuid AND kind = 'refund'`,
          [hold.id],
        );
        const refundable = hold.capturedMicros - BigInt(refunded.rows[0]!.sum);
        const amount = input.amountMicros ?? refundable;
        if (amount <= 0n || amount > refundable) {
          throw new AppError('conflict', 'the refund exceeds what this capture has left to refund', {
            details: { refundable_micros: refundable.toString(), requested_micros: amount.toString() },
          });
        }
        const traceId = input.traceId ?? hold.traceId ?? newTraceId();
        const inserted = await client.query(REFUND_SQL, [
          hold.walletId, amount.toString(), key, hold.id, traceId, hold.runId, hold.stepId, actor.type, actor.id ?? null, reason, hash,
          JSON.stringify({ refunded_before_micros: (hold.capturedMicros - refundable).toString() }),
        ]);
        return { transaction: publicTx(toTx(pick(inserted.rows[0]!, 't'))), replayed: false, hold };
      });
    try {
      return await attempt();
    } catch (error) {
      if (!isKeyCollision(error)) throw error;
      return attempt(); // the same key landed elsewhere meanwhile: the lookup now resolves it
    }
  }

  // ── holds ──

  /** Freezes `amountMicros`; `insufficient_funds` (402) when available < amount. */
  async hold(input: HoldInput): Promise<HoldResult> {
    requireUuid(input.orgId, 'orgId');
    const amount = requirePositive(input.amountMicros, 'amountMicros');
    const key = requireKey(input.idempotencyKey);
    for (const [name, id] of [['projectId', input.projectId], ['modelId', input.modelId], ['priceId', input.priceId]] as const) {
      if (id !== undefined && id !== null) requireUuid(id, name);
    }
    const expiresAt = input.expiresAt ?? new Date(Date.now() + (input.ttlMs ?? DEFAULT_HOLD_TTL_MS));
    if (!(expiresAt instanceof Date) || Number.isNaN(expiresAt.getTime())) throw new AppError('validation_failed', 'expiresAt must be a date');
    const actor = input.actor ?? SYSTEM_ACTOR;
    // The expiry is left out of the hash: a retried call computes a slightly later one.
    const hash = requestHash('hold', {
      orgId: input.orgId, amount, projectId: input.projectId ?? null, traceId: input.traceId ?? null, runId: input.runId ?? null,
      stepId: input.stepId ?? null, modelId: input.modelId ?? null, priceId: input.priceId ?? null,
    });
    return withSerializationRetry(async () => {
      try {
        const { rows } = await this.writes.query(
          HOLD_SQL,
          [
            input.orgId, amount.toString(), input.projectId ?? null, key, input.traceId ?? null, input.runId ?? null, input.stepId ?? null,
            input.modelId ?? null, input.priceId ?? null, expiresAt, actor.type, actor.id ?? null, hash,
          ],
          { name: 'ledger_hold', durable: input.durable ?? true, orderKey: input.orgId },
        );
        const r = rows[0];
        if (r) return heldResult(r, input, key, amount, actor);
      } catch (error) {
        if (!isKeyCollision(error)) throw error;
      }
      // Nothing written: a replay, a key used elsewhere, no wallet, or not enough money.
      const first = await this.findByKey(this.pool, key);
      if (first) {
        if (first.kind !== 'hold' || first.requestHash !== hash) throw idempotencyConflict(key, first);
        return { hold: await this.getHold(first.holdId!), transaction: publicTx(first), replayed: true };
      }
      const wallet = await this.getWallet(input.orgId);
      throw new AppError('insufficient_funds', 'insufficient funds: the wallet cannot cover this call’s estimate', {
        details: { available_micros: wallet.availableMicros.toString(), requested_micros: amount.toString() },
      });
    });
  }

  /**
   * `idempotencyKeys.length` holds of the same amount and attributes, in one statement: all of
   * them, or none (insufficient_funds). For holds taken ahead of calls (the gateway's hold
   * reserve); the keys must be new — a taken key fails the whole statement.
   */
  async holdMany(input: Omit<HoldInput, 'idempotencyKey'> & { idempotencyKeys: string[] }): Promise<HoldResult[]> {
    requireUuid(input.orgId, 'orgId');
    const amount = requirePositive(input.amountMicros, 'amountMicros');
    const keys = input.idempotencyKeys.map(requireKey);
    if (keys.length === 0) return [];
    for (const [name, id] of [['projectId', input.projectId], ['modelId', input.modelId], ['priceId', input.priceId]] as const) {
      if (id !== undefined && id !== null) requireUuid(id, name);
    }
    const expiresAt = input.expiresAt ?? new Date(Date.now() + (input.ttlMs ?? DEFAULT_HOLD_TTL_MS));
    if (!(expiresAt instanceof Date) || Number.isNaN(expiresAt.getTime())) throw new AppError('validation_failed', 'expiresAt must be a date');
    const actor = input.actor ?? SYSTEM_ACTOR;
    const hash = requestHash('hold', {
      orgId: input.orgId, amount, projectId: input.projectId ?? null, traceId: input.traceId ?? null, runId: input.runId ?? null,
      stepId: input.stepId ?? null, modelId: input.modelId ?? null, priceId: input.priceId ?? null,
    });
    return withSerializationRetry(async () => {
      const { rows } = await this.writes.query(
        HOLD_MANY_SQL,
        [
          input.orgId, amount.toString(), input.projectId ?? null, keys, input.traceId ?? null, input.runId ?? null, input.stepId ?? null,
          input.modelId ?? null, input.priceId ?? null, expiresAt, actor.type, actor.id ?? null, hash,
        ],
        { name: 'ledger_hold_many', durable: input.durable ?? true, orderKey: input.orgId },
      );
      if (rows.length === 0) {
        const wallet = await this.getWallet(input.orgId);
        throw new AppError('insufficient_funds', 'insufficient funds: the wallet cannot cover these holds', {
          details: { available_micros: wallet.availableMicros.toString(), requested_micros: (amount * BigInt(keys.length)).toString() },
        });
      }
      const byKey = new Map(rows.map((r) => [String(r.h_key), r]));
      return keys.map((key) => heldResult(byKey.get(key)!, input, key, amount, actor));
    });
  }

  /**
   * The hold before a model call: resolves the model, the price in force at `at`, estimates
   * prompt tokens (real tokenizer) + maxTokens of output, and holds that. A replay of the key
   * returns the first hold without re-estimating (the price may have changed since).
   */
  async holdForModel(input: HoldForModelInput): Promise<HoldForModelResult> {
    const key = requireKey(input.idempotencyKey);
    const { model: _model, messages: _messages, promptTokens: _prompt, maxTokens: _max, at: _at, catalog, ...rest } = input;
    const estimateFor = (price: Pick<ModelPrice, 'inputMicrosPerMillion' | 'outputMicrosPerMillion'>) =>
      input.messages !== undefined
        ? estimateHoldMicros({ price, messages: input.messages, maxTokens: input.maxTokens })
        : estimateHoldMicros({ price, promptTokens: input.promptTokens ?? 0, maxTokens: input.maxTokens });

    if (catalog) {
      // Fast path: model and price from the cache, then one statement. A replay whose estimate is
      // the same returns the first hold from the statement's fallback lookup.
      const models = await catalog.all();
      const cached = models.get(input.model) ?? [...models.values()].find((m) => m.id === input.model);
      const price = cached ? await catalog.priceAt(cached.id, input.at ?? new Date()) : undefined;
      if (cached && price) {
        const estimate = estimateFor(price);
        try {
          const result = await this.hold({ ...rest, amountMicros: estimate.amountMicros, modelId: cached.id, priceId: price.id });
          const model = { id: cached.id, name: cached.name, upstreamModel: cached.upstreamModel };
          return result.replayed ? { ...result, estimate: null, model, price: null } : { ...result, estimate, model, price };
        } catch (error) {
          // The key's hold was estimated otherwise (an earlier price or prompt): the path below
          // tells a replay (this org's hold for this model) from a conflict.
          if (!(error instanceof AppError && error.code === 'idempotency_conflict')) throw error;
        }
      }
    }

    const { rows: models } = await this.pool.query<{ id: string; name: string; upstream_model: string; is_active: boolean }>(
      `SELECT id, name, upstream_model, is_active FROM models WHERE name = $1 OR id::text = $1`,
      [input.model],
    );
    const model = models[0];
    if (!model) throw notFound(`model "${input.model}"`);
    const modelView = { id: model.id, name: model.name, upstreamModel: model.upstream_model };
    const first = await this.findByKey(this.pool, key);
    if (first) {
      const hold = first.kind === 'hold' ? await this.getHold(first.holdId!) : null;
      if (!hold || hold.orgId !== input.orgId || hold.modelId !== model.id) throw idempotencyConflict(key, first);
      return { hold, transaction: publicTx(first), replayed: true, estimate: null, model: modelView, price: null };
    }
    if (!model.is_active) throw new AppError('policy_violation', `model "${model.name}" is not active`);
    const price = await requirePriceInForce(this.pool, model.id, input.at ?? new Date());
    const estimate = estimateFor(price);
    const result = await this.hold({ ...rest, amountMicros: estimate.amountMicros, modelId: model.id, priceId: price.id });
    return { ...result, estimate, model: modelView, price };
  }

  /**
   * Charges the actual cost of the call and releases the rest of the hold, writing the usage
   * record in the same transaction. The cost is the usage priced at the hold's price (or
   * `costMicros`); above the hold, OVERAGE_RULE applies.
   */
  async capture(input: CaptureInput): Promise<CaptureResult> {
    requireUuid(input.holdId, 'holdId');
    const key = requireKey(input.idempotencyKey);
    const usage = input.usage;
    const promptTokens = requireTokens(usage.promptTokens, 'promptTokens');
    const completionTokens = requireTokens(usage.completionTokens, 'completionTokens');
    const latencyMs = requireTokens(usage.latencyMs ?? 0, 'latencyMs');
    if (input.costMicros !== undefined && (typeof input.costMicros !== 'bigint' || input.costMicros < 0n)) {
      throw new AppError('validation_failed', 'costMicros must be a non-negative bigint of micros');
    }
    for (const [name, id] of [['projectId', usage.projectId], ['apiKeyId', usage.apiKeyId], ['userId', usage.userId], ['modelId', usage.modelId]] as const) {
      if (id !== undefined && id !== null) requireUuid(id, name);
    }
    const actor = input.actor ?? SYSTEM_ACTOR;
    // Latency is a measurement, not a parameter: a caller retrying after a timeout re-measures it,
    // and that must still replay (the first capture's latency stays on the usage record).
    const { latencyMs: _latency, ...hashedUsage } = usage;
    const hash = requestHash('capture', { holdId: input.holdId, usage: { ...hashedUsage, promptTokens, completionTokens }, cost: input.costMicros ?? null });

    const audit = input.audit ? auditParams(input.audit) : null;
    const texts = (holdAmount: bigint, cost: bigint, s: CaptureSettlement) => {
      const details: Record<string, string> = {
        cost_micros: cost.toString(),
        charged_micros: s.chargedMicros.toString(),
        released_micros: s.releasedMicros.toString(),
        uncollected_micros: s.uncollectedMicros.toString(),
      };
      if (cost > holdAmount) details.overage_rule = OVERAGE_RULE;
      const reason = s.uncollectedMicros > 0n ? `overage: ${s.uncollectedMicros} micros uncollected (${OVERAGE_RULE})` : null;
      return { details, reason };
    };
    const params = (holdAmount: bigint, cost: bigint, s: CaptureSettlement, traceId: string, modelName: string, upstreamModel: string) => {
      const { details, reason } = texts(holdAmount, cost, s);
      return [
        input.holdId, s.chargedMicros.toString(), traceId, usage.projectId ?? null, usage.apiKeyId ?? null, usage.userId ?? null,
        usage.modelId ?? null, modelName, upstreamModel, promptTokens, completionTokens, latencyMs, usage.status ?? 'success',
        usage.errorCode ?? null, usage.runId ?? null, usage.stepId ?? null, key, actor.type, actor.id ?? null, reason, hash,
        JSON.stringify(details),
      ];
    };
    // The statement returns the settled hold and only the database-made columns of its transaction
    // row; the rest of that row is what this call wrote (`holdAmount` as priced, `traceId` as sent).
    const finish = (row: Row, cost: bigint, s: CaptureSettlement, holdAmount: bigint, traceId: string): CaptureResult => {
      const hold = toHoldH(row);
      const { details, reason } = texts(holdAmount, cost, s);
      return {
        hold,
        transaction: {
          id: String(row.t_id),
          walletId: hold.walletId,
          kind: 'capture',
          amountMicros: -s.chargedMicros,
          balanceAfterMicros: big(row.t_balance_after_micros),
          frozenAfterMicros: big(row.t_frozen_after_micros),
          idempotencyKey: key,
          holdId: hold.id,
          traceId,
          runId: usage.runId ?? hold.runId,
          stepId: usage.stepId ?? hold.stepId,
          actorType: actor.type,
          actorId: actor.id ?? null,
          reason,
          details,
          createdAt: row.t_created_at as Date,
        },
        replayed: false,
        costMicros: cost,
        ...s,
        usageRecordId: String(row.usage_id),
      };
    };
    const known = input.known;
    const knownCost =
      known && typeof known.amountMicros === 'bigint' && known.amountMicros > 0n && usage.traceId && usage.modelName && usage.upstreamModel
        ? (input.costMicros ?? (known.price ? costOf(known.price, { promptTokens, completionTokens }) : undefined))
        : undefined;

    const ordered: WriteOptions = input.orgId ? { orderKey: input.orgId } : {};
    return withSerializationRetry(async () => {
      if (knownCost !== undefined && knownCost <= known!.amountMicros) {
        // The caller's view of the hold, checked by the statement itself: one round trip, one commit.
        const s = settleCapture(knownCost, known!.amountMicros, 0n);
        const rates = input.costMicros === undefined ? [known!.price!.inputMicrosPerMillion.toString(), known!.price!.outputMicrosPerMillion.toString()] : [null, null];
        const values = [...params(known!.amountMicros, knownCost, s, usage.traceId!, usage.modelName!, usage.upstreamModel!), known!.amountMicros.toString(), ...rates];
        if (input.coalesceMs !== undefined && input.orgId) {
          // Written with the organization's other waiting captures; null: not by that statement.
          const row = await this.captures.add(input.orgId, [...values, ...(audit ?? NO_AUDIT)], Math.max(0, input.coalesceMs));
          if (row) return finish(row, knownCost, s, known!.amountMicros, usage.traceId!);
        }
        try {
          const done = await this.writes.query(
            audit ? CAPTURE_KNOWN_AUDITED_SQL : CAPTURE_KNOWN_SQL,
            [...values, ...(audit ?? [])],
            { name: audit ? 'ledger_capture_known_audited' : 'ledger_capture_known', ...ordered },
          );
          if (done.rows[0]) return finish(done.rows[0], knownCost, s, known!.amountMicros, usage.traceId!);
        } catch (error) {
          if (!isKeyCollision(error)) throw error;
        }
        // Not active any more, not what the caller thought, or the key is taken: the general path.
      }
      const { rows } = await this.pool.query(
        `SELECT ${cols('h', HOLD_COLUMNS)}, p.input_micros_per_million::text AS p_in, p.output_micros_per_million::text AS p_out,
                m.name AS m_name, m.upstream_model AS m_upstream
         FROM holds h LEFT JOIN model_prices p ON p.id = h.price_id LEFT JOIN models m ON m.id = h.model_id
         WHERE h.id = $1::uuid`,
        [input.holdId],
      );
      const pre = rows[0];
      if (!pre) throw notFound('hold');
      const hold = toHold(pick(pre, 'h'));
      if (hold.status !== 'active') return this.settledCapture(hold, key, hash);

      let cost: bigint;
      if (input.costMicros !== undefined) cost = input.costMicros;
      else if (pre.p_in !== null) cost = costOf({ inputMicrosPerMillion: big(pre.p_in), outputMicrosPerMillion: big(pre.p_out) }, { promptTokens, completionTokens });
      else throw new AppError('validation_failed', 'this hold has no price: give costMicros');
      const traceId = usage.traceId ?? hold.traceId;
      if (!traceId) throw new AppError('validation_failed', 'a trace id is required (on the hold or the usage)');
      const modelName = usage.modelName ?? (pre.m_name as string | null);
      const upstreamModel = usage.upstreamModel ?? (pre.m_upstream as string | null) ?? modelName;
      if (!modelName || !upstreamModel) throw new AppError('validation_failed', 'the usage needs a model name');
      const sql = audit ? CAPTURE_AUDITED_SQL : CAPTURE_SQL;
      const values = (s: CaptureSettlement) => [...params(hold.amountMicros, cost, s, traceId, modelName, upstreamModel), ...(audit ?? [])];

      try {
        if (cost <= hold.amountMicros) {
          // Within the hold: one statement, no wallet read needed.
          const s = settleCapture(cost, hold.amountMicros, 0n);
          const done = await this.writes.query(sql, values(s), { name: audit ? 'ledger_capture_audited' : 'ledger_capture', orderKey: hold.orgId });
          if (done.rows[0]) return finish(done.rows[0], cost, s, hold.amountMicros, traceId);
        } else {
          // Above the hold: what can be collected depends on the wallet now, so lock, read, write.
          const done = await this.transaction(async (client) => {
            const locked = await client.query(`SELECT status FROM holds WHERE id = $1::uuid FOR UPDATE`, [hold.id]);
            if (locked.rows[0]?.status !== 'active') return null;
            const w = await client.query<{ available: string }>(
              `SELECT (balance_micros - frozen_micros)::text AS available FROM wallets WHERE id = $1::uuid FOR UPDATE`,
              [hold.walletId],
            );
            const s = settleCapture(cost, hold.amountMicros, BigInt(w.rows[0]!.available));
            const written = await client.query(sql, values(s));
            return finish(written.rows[0]!, cost, s, hold.amountMicros, traceId);
          });
          if (done) return done;
        }
      } catch (error) {
        if (!isKeyCollision(error)) throw error;
      }
      // Settled by someone else meanwhile, or the key is taken: resolve against what is there.
      return this.settledCapture(await this.getHold(hold.id), key, hash);
    });
  }

  private async settledCapture(hold: HoldView, key: string, hash: string): Promise<CaptureResult> {
    const first = await this.findByKey(this.pool, key);
    if (first && (first.kind !== 'capture' || first.holdId !== hold.id || first.requestHash !== hash)) throw idempotencyConflict(key, first);
    if (hold.status === 'active') throw new AppError('idempotency_conflict', 'this idempotency key is in use by another operation');
    if (hold.status !== 'captured') throw new AppError('conflict', `the hold was already ${hold.status}; it cannot be captured`, { details: { hold_id: hold.id, status: hold.status } });
    const capture = first ?? (await this.settlementOf(hold.id, 'capture'));
    if (capture.requestHash !== hash) {
      throw new AppError('conflict', 'the hold was already captured with different usage', { details: { hold_id: hold.id, transaction_id: capture.id } });
    }
    const { rows } = await this.pool.query<{ id: string }>('SELECT id FROM usage_records WHERE hold_id = $1::uuid', [hold.id]);
    const d = capture.details as Record<string, string>;
    return {
      hold,
      transaction: publicTx(capture),
      replayed: true,
      costMicros: BigInt(d.cost_micros ?? -capture.amountMicros),
      chargedMicros: -capture.amountMicros,
      releasedMicros: BigInt(d.released_micros ?? 0),
      uncollectedMicros: BigInt(d.uncollected_micros ?? 0),
      usageRecordId: rows[0]!.id,
    };
  }

  /** Returns the whole hold to available: the compensation when a call fails or a run is cancelled. */
  async release(input: ReleaseInput): Promise<ReleaseResult> {
    requireUuid(input.holdId, 'holdId');
    const key = requireKey(input.idempotencyKey);
    const actor = input.actor ?? SYSTEM_ACTOR;
    const hash = requestHash('release', { holdId: input.holdId });
    const record = input.record;
    let recorded: unknown[] = [];
    if (record) {
      const u = record.usage;
      for (const [name, id] of [['projectId', u.projectId], ['apiKeyId', u.apiKeyId], ['userId', u.userId], ['modelId', u.modelId]] as const) {
        if (id !== undefined && id !== null) requireUuid(id, name);
      }
      if (!u.traceId || !u.modelName || !u.upstreamModel) throw new AppError('validation_failed', 'the usage row needs a trace id and model names');
      recorded = [
        u.traceId, u.projectId ?? null, u.apiKeyId ?? null, u.userId ?? null, u.modelId ?? null, u.modelName, u.upstreamModel,
        requireTokens(u.latencyMs ?? 0, 'latencyMs'), u.status ?? 'error', u.errorCode ?? null, ...auditParams(record.audit),
      ];
    }
    return withSerializationRetry(async () => {
      try {
        const { rows } = await this.writes.query(
          record ? RELEASE_RECORDED_SQL : RELEASE_SQL,
          [input.holdId, 'released', null, key, actor.type, actor.id ?? null, input.reason ?? null, hash, '{}', ...recorded],
          { name: record ? 'ledger_release_recorded' : 'ledger_release', ...(input.orgId ? { orderKey: input.orgId } : {}) },
        );
        if (rows[0]) {
          const hold = toHold(pick(rows[0], 'h'));
          return { hold, transaction: publicTx(toTx(pick(rows[0], 't'))), replayed: false, releasedMicros: hold.amountMicros };
        }
      } catch (error) {
        if (!isKeyCollision(error)) throw error;
      }
      const hold = await this.getHold(input.holdId);
      const first = await this.findByKey(this.pool, key);
      if (first && (first.kind !== 'release' || first.holdId !== hold.id)) throw idempotencyConflict(key, first);
      if (hold.status === 'active') throw new AppError('idempotency_conflict', 'this idempotency key is in use by another operation');
      if (hold.status === 'captured') {
        throw new AppError('conflict', 'the hold was already captured; it cannot be released (refund instead)', { details: { hold_id: hold.id } });
      }
      // Released or expired: the money is back already; return the row that did it.
      const settlement = first ?? (await this.settlementOf(hold.id, 'release'));
      return { hold, transaction: publicTx(settlement), replayed: true, releasedMicros: settlement.amountMicros };
    });
  }

  /**
   * Releases active holds whose expiry is at or before `now` (runs that died without
   * compensating), oldest first, at most `limit`. Each expiry is its own statement, keyed
   * `expire:<hold id>`, so sweeps running concurrently (or racing a capture) never double-release.
   */
  async expireHolds(now: Date = new Date(), limit = 100, options: { orgId?: string } = {}): Promise<ExpireResult> {
    if (options.orgId !== undefined) requireUuid(options.orgId, 'orgId');
    const { rows } = await this.pool.query<{ id: string }>(
      `SELECT id FROM holds WHERE status = 'active' AND expires_at <= $1::timestamptz AND ($2::uuid IS NULL OR org_id = $2::uuid)
       ORDER BY expires_at LIMIT $3`,
      [now, options.orgId ?? null, Math.max(1, Math.trunc(limit))],
    );
    const expired: HoldView[] = [];
    for (const { id } of rows) {
      const key = `expire:${id}`;
      const done = await withSerializationRetry(() =>
        this.pool.query(RELEASE_SQL, [
          id, 'expired', now, key, 'system', null, 'hold expired without capture or release', requestHash('expire', { holdId: id }),
          JSON.stringify({ expired_at: now.toISOString() }),
        ]),
      ).catch((error: unknown) => {
        if (isKeyCollision(error)) return { rows: [] }; // expired by a concurrent sweep
        throw error;
      });
      if (done.rows[0]) expired.push(toHold(pick(done.rows[0], 'h')));
    }
    return { expired };
  }

  // ── internals ──

  private async findByKey(db: Queryable, key: string): Promise<TxRecord | null> {
    const { rows } = await db.query(TX_BY_KEY_SQL, [key]);
    return rows[0] ? toTx(pick(rows[0], 't')) : null;
  }

  private async settlementOf(holdId: string, kind: 'capture' | 'release'): Promise<TxRecord> {
    const { rows } = await this.pool.query(
      `SELECT ${cols('t', TX_COLUMNS)} FROM wallet_transactions t WHERE t.hold_id = $1::uuid AND t.kind = $2::"TransactionKind" ORDER BY t.id LIMIT 1`,
      [holdId, kind],
    );
    if (!rows[0]) throw new AppError('internal_error', `hold ${holdId} is settled but has no ${kind} transaction`);
    return toTx(pick(rows[0], 't'));
  }

  /** One short transaction, retried on serialization failures and deadlocks. */
  private async transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return withSerializationRetry(async () => {
      const client = await this.pool.connect();
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const result = await fn(client);
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch((e: Error) => (broken = e));
        throw error;
      } finally {
        client.release(broken);
      }
    });
  }
}
