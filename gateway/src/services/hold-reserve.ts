// Holds taken ahead of the calls that will use them, for busy (API key, model) pairs.
//
// A /v1 call needs its hold standing before it may answer. Taken per call, that hold is a database
// write on every call's path; on a small host, at a few hundred calls per second, its round trip
// (and its CPU beside the upstream call's) is most of what the gateway adds. For a pair that makes
// at least HOT_CALLS_PER_SECOND calls a second, this keeps up to `size` holds ready: ordinary
// ledger holds, one per future call, of the pair's key, project, model and price, taken by one
// statement (Ledger.holdMany). A call takes one from memory and goes straight to the upstream; its capture
// (or release) settles that hold exactly as it would have settled its own. Nothing about the money
// changes: every call still has one hold of its own, taken before the call and covering it, and
// one capture or release; the wallet shows the ready holds as frozen until they are used.
//
// Ready holds are released when the pair goes quiet (IDLE_MS without a call), when they have
// waited MAX_AGE_MS, when the pair's calls grow past their amount, and when the gateway stops. A
// hard kill leaves them, like calls in flight, to their expiry: each lives for the longest call
// (upstream timeout + margin) plus MAX_AGE_MS, so one handed out just before MAX_AGE_MS still
// outlives its call.
import { randomUUID } from 'node:crypto';
import type { Logger } from '@deepspace/core';
import { newTraceId } from '@deepspace/core';
import type { HoldResult, Ledger } from '@deepspace/core/billing/index';
import type { WalletHeadroom } from '@deepspace/core/billing/wallet-headroom';

// A hold outlives the longest possible call by this much; past that the expiry schedule returns it
// (the compensation of last resort when this process dies mid-call).
export const HOLD_TTL_MARGIN_MS = 10_000;
/** A pair is busy once it made this many calls within one second. */
export const HOT_CALLS_PER_SECOND = 20;
/** Ready holds of a pair without a call for this long are released. */
export const IDLE_MS = 1_000;
/** A ready hold is handed out only this long after it was taken; then it is released. */
export const MAX_AGE_MS = 10_000;
const SWEEP_MS = 250;
/** After a refused refill (funds, errors) a pair waits this long before trying again. */
const REFILL_BACKOFF_MS = 1_000;

export interface ReserveKey {
  orgId: string;
  projectId: string;
  keyId: string;
  modelId: string;
  priceId: string;
}

interface ReadyHold {
  result: HoldResult;
  takenAt: number;
}

interface Pair {
  key: ReserveKey;
  /** The amount of each ready hold: the pair's largest estimate, rounded up to a power of two micros. */
  amount: bigint;
  ready: ReadyHold[];
  refilling: boolean;
  /** How many holds the refill in flight brings, of what amount, and the calls waiting for one of them. */
  incoming: number;
  incomingAmount: bigint;
  waiters: Array<(result: HoldResult | null) => void>;
  refillAfter: number;
  windowStart: number;
  windowCalls: number;
  hot: boolean;
  lastCall: number;
}

/** Every live reserve, so a stopping process can release what they hold (releaseHoldReserves). */
const live = new Set<HoldReserve>();

export interface HoldReserveStats {
  /** Calls served by a ready hold. */
  served: number;
  /** Holds taken ahead, and released unused. */
  taken: number;
  released: number;
}

export class HoldReserve {
  private readonly ledger: Ledger;
  private readonly headroom: WalletHeadroom;
  private readonly size: number;
  private readonly holdTtlMs: number;
  private readonly log: Logger;
  private readonly pairs = new Map<string, Pair>();
  private readonly inFlight = new Set<Promise<void>>();
  private sweeper: NodeJS.Timeout | undefined;
  private closed = false;
  readonly stats: HoldReserveStats = { served: 0, taken: 0, released: 0 };

  /** `callTtlMs`: how long a call's own hold would live (the longest call plus a margin). */
  constructor(options: { ledger: Ledger; headroom: WalletHeadroom; size: number; callTtlMs: number; log: Logger }) {
    this.ledger = options.ledger;
    this.headroom = options.headroom;
    this.size = options.size;
    this.holdTtlMs = options.callTtlMs + MAX_AGE_MS;
    this.log = options.log;
    if (this.size > 0) live.add(this);
  }

  /**
   * A ready hold that covers `estimateMicros` for this call; or, when none is ready but a refill
   * is on its way with one to spare, a promise of one of its holds (null if that refill fails:
   * then take your own); or null (take your own). Counts the call towards its pair's rate either
   * way, and refills the pair in the background.
   *
   * Waiting for a refill already in flight rather than taking an own hold: under load the refill
   * usually lands first (it was sent earlier), and the database writes one statement, not one
   * per call that found the reserve empty — which, when the database is what is slow, is what
   * would keep it slow.
   */
  take(key: ReserveKey, estimateMicros: bigint, now = Date.now()): HoldResult | Promise<HoldResult | null> | null {
    if (this.size <= 0 || this.closed) return null;
    const id = `${key.keyId}\u0000${key.modelId}\u0000${key.priceId}\u0000${key.projectId}`;
    let pair = this.pairs.get(id);
    if (!pair) {
      pair = { key, amount: 0n, ready: [], refilling: false, incoming: 0, incomingAmount: 0n, waiters: [], refillAfter: 0, windowStart: now, windowCalls: 0, hot: false, lastCall: now };
      this.pairs.set(id, pair);
      this.sweeper ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
    }
    pair.lastCall = now;
    if (now - pair.windowStart >= 1_000) {
      pair.hot = pair.windowCalls >= HOT_CALLS_PER_SECOND;
      pair.windowStart = now;
      pair.windowCalls = 0;
    }
    pair.windowCalls++;
    if (pair.windowCalls >= HOT_CALLS_PER_SECOND) pair.hot = true;

    if (estimateMicros > pair.amount) {
      // Larger calls than the ready holds cover: the next holds are taken at the new size.
      pair.amount = roundUpToPowerOfTwo(estimateMicros);
      this.releaseReady(pair, pair.ready.splice(0));
    }
    let served: ReadyHold | undefined;
    while ((served = pair.ready.pop()) && now - served.takenAt > MAX_AGE_MS) this.releaseReady(pair, [served]);
    if (pair.hot) this.refill(pair, now);
    if (served) {
      this.stats.served++;
      return served.result;
    }
    if (pair.refilling && pair.incomingAmount === pair.amount && pair.waiters.length < pair.incoming) {
      const waiters = pair.waiters;
      return new Promise((resolve) => waiters.push(resolve));
    }
    return null;
  }

  /** Releases every ready hold and takes no more (a stopping process; also `releaseHoldReserves`). */
  async close(): Promise<void> {
    this.closed = true;
    live.delete(this);
    if (this.sweeper) clearInterval(this.sweeper);
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    for (const pair of this.pairs.values()) this.releaseReady(pair, pair.ready.splice(0));
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
  }

  usesLedger(ledger: Ledger): boolean {
    return this.ledger === ledger;
  }

  /** How many holds are ready now (all pairs). */
  readyCount(): number {
    let n = 0;
    for (const pair of this.pairs.values()) n += pair.ready.length;
    return n;
  }

  private track(work: Promise<void>): void {
    const tracked = work.finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private refill(pair: Pair, now: number): void {
    if (pair.refilling || this.closed || now < pair.refillAfter || pair.ready.length > this.size / 2) return;
    const count = this.size - pair.ready.length;
    const amount = pair.amount;
    // Only from a wallet seen recently with room to spare for all of them.
    if (!this.headroom.allows(pair.key.orgId, amount * BigInt(count))) return;
    pair.refilling = true;
    pair.incoming = count;
    pair.incomingAmount = amount;
    const traceId = newTraceId();
    // One statement for all of them (the ledger's holdMany): all or none.
    const holds = this.ledger.holdMany({
      orgId: pair.key.orgId,
      projectId: pair.key.projectId,
      amountMicros: amount,
      modelId: pair.key.modelId,
      priceId: pair.key.priceId,
      idempotencyKeys: Array.from({ length: count }, () => `v1:reserve:${randomUUID()}`),
      traceId,
      ttlMs: this.holdTtlMs,
      actor: { type: 'api_key', id: pair.key.keyId },
      durable: false,
    });
    this.track(
      holds.then(
        (results) => {
          pair.refilling = false;
          const takenAt = Date.now();
          this.stats.taken += results.length;
          const last = results.at(-1);
          if (last) this.headroom.note(pair.key.orgId, last.transaction);
          const fresh = results.map((result) => ({ result, takenAt }));
          const waiters = pair.waiters.splice(0);
          // Taken for an amount the pair has outgrown, or while stopping: give them back.
          if (this.closed || amount !== pair.amount) {
            this.releaseReady(pair, fresh);
            for (const waiter of waiters) waiter(null);
            return;
          }
          for (const waiter of waiters) {
            const next = fresh.shift();
            if (next) this.stats.served++;
            waiter(next ? next.result : null);
          }
          pair.ready.unshift(...fresh);
        },
        (error: unknown) => {
          pair.refilling = false;
          for (const waiter of pair.waiters.splice(0)) waiter(null);
          pair.refillAfter = Date.now() + REFILL_BACKOFF_MS;
          this.log.warn({ err: error, org_id: pair.key.orgId }, 'taking holds ahead failed; calls take their own for now');
        },
      ),
    );
  }

  private releaseReady(pair: Pair, holds: ReadyHold[]): void {
    for (const { result } of holds) {
      this.track(
        this.ledger
          .release({ holdId: result.hold.id, idempotencyKey: `v1:reserve:${result.hold.id}:release`, reason: 'unused_reserve', actor: { type: 'api_key', id: pair.key.keyId }, orgId: pair.key.orgId })
          .then(
            (released) => {
              this.stats.released++;
              this.headroom.note(pair.key.orgId, released.transaction);
            },
            // The hold's expiry returns the money if this fails.
            (error: unknown) => this.log.error({ err: error, hold_id: result.hold.id }, 'releasing an unused hold failed'),
          ),
      );
    }
  }

  private sweep(): void {
    const now = Date.now();
    for (const [id, pair] of this.pairs) {
      if (now - pair.lastCall > IDLE_MS) {
        this.releaseReady(pair, pair.ready.splice(0));
        if (!pair.refilling) this.pairs.delete(id);
        continue;
      }
      const stale = pair.ready.filter((r) => now - r.takenAt > MAX_AGE_MS);
      if (stale.length > 0) {
        pair.ready = pair.ready.filter((r) => now - r.takenAt <= MAX_AGE_MS);
        this.releaseReady(pair, stale);
      }
    }
    if (this.pairs.size === 0 && this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}

/** Releases the ready holds of every reserve on `ledger` in this process (call before closing its pool). */
export async function releaseHoldReserves(ledger: Ledger): Promise<void> {
  await Promise.allSettled([...live].filter((reserve) => reserve.usesLedger(ledger)).map((reserve) => reserve.close()));
}

function roundUpToPowerOfTwo(n: bigint): bigint {
  let p = 1n;
  while (p < n) p <<= 1n;
  return p;
}
