// Shapes the billing ledger reads and returns. Money is bigint micro-units throughout.
import type { Micros } from '../money.ts';

export type HoldStatus = 'active' | 'captured' | 'released' | 'expired';
export type TransactionKind = 'topup' | 'hold' | 'capture' | 'release' | 'adjust' | 'refund';
export type ActorType = 'user' | 'api_key' | 'system';
export type UsageStatus = 'success' | 'error' | 'cancelled';

/** Who asked for a mutation; written on the transaction row (and the audit row for admin ones). */
export interface Actor {
  type: ActorType;
  id?: string | null;
}

export const SYSTEM_ACTOR: Actor = { type: 'system', id: null };

export interface WalletView {
  id: string;
  orgId: string;
  currency: string;
  balanceMicros: Micros;
  frozenMicros: Micros;
  /** balance − frozen: what a new hold can take. */
  availableMicros: Micros;
  createdAt: Date;
  updatedAt: Date;
}

export interface HoldView {
  id: string;
  walletId: string;
  orgId: string;
  projectId: string | null;
  status: HoldStatus;
  amountMicros: Micros;
  capturedMicros: Micros;
  idempotencyKey: string;
  traceId: string | null;
  runId: string | null;
  stepId: string | null;
  modelId: string | null;
  priceId: string | null;
  createdAt: Date;
  expiresAt: Date;
  settledAt: Date | null;
}

export interface TransactionView {
  /** A BIGSERIAL, as a decimal string (it is also the pagination cursor). */
  id: string;
  walletId: string;
  kind: TransactionKind;
  /** Effect on the balance (topup/adjust/capture/refund; captures ≤ 0), or the amount frozen/unfrozen (hold/release). */
  amountMicros: Micros;
  balanceAfterMicros: Micros;
  frozenAfterMicros: Micros;
  idempotencyKey: string;
  holdId: string | null;
  traceId: string | null;
  runId: string | null;
  stepId: string | null;
  actorType: ActorType;
  actorId: string | null;
  reason: string | null;
  details: Record<string, unknown>;
  createdAt: Date;
}

/** Every mutation returns the row it wrote (or, on a replay, the row the first call wrote). */
export interface MutationResult {
  transaction: TransactionView;
  /** True when this call wrote nothing and returned the first call's result. */
  replayed: boolean;
}

export interface HoldResult extends MutationResult {
  /** The hold as it is now (a replay may find it captured or released since). */
  hold: HoldView;
}

export interface CaptureResult extends HoldResult {
  /** What the usage cost at the hold's price (or the cost the caller gave). */
  costMicros: Micros;
  /** What was taken from the balance: min(cost, hold + available) — see OVERAGE_RULE. */
  chargedMicros: Micros;
  /** The part of the hold returned to available. */
  releasedMicros: Micros;
  /** cost − charged: owed but not collectable without a negative balance. */
  uncollectedMicros: Micros;
  usageRecordId: string;
}

export interface ReleaseResult extends HoldResult {
  releasedMicros: Micros;
}

export interface Page<T> {
  data: T[];
  has_more: boolean;
}
