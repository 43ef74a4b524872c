// What this process (a gateway, or a worker running chat) last saw of each organization's available
// balance (balance − frozen), from the ledger's own answers to its holds and captures. It decides
// one thing: whether a model call (/v1, or a chat run) may start its upstream request beside its
// hold instead of after it. The hold still decides whether the call is served; this only predicts
// that it will succeed.
import type { Micros } from '../money.ts';

interface Seen {
  availableMicros: Micros;
  at: number;
}

const MAX_ORGS = 10_000;

export class WalletHeadroom {
  private readonly seen = new Map<string, Seen>();
  /** Available must be at least this many times the estimate; 0 disables speculation. */
  readonly factor: number;
  /** An observation older than this predicts nothing. */
  readonly maxAgeMs: number;

  constructor(options: { factor: number; maxAgeMs?: number }) {
    this.factor = options.factor;
    this.maxAgeMs = options.maxAgeMs ?? 5_000;
  }

  /** Records the wallet as a ledger write left it. */
  note(orgId: string, wallet: { balanceAfterMicros: Micros; frozenAfterMicros: Micros }, now = Date.now()): void {
    this.noteAvailable(orgId, wallet.balanceAfterMicros - wallet.frozenAfterMicros, now);
  }

  noteAvailable(orgId: string, availableMicros: Micros, now = Date.now()): void {
    if (this.seen.size >= MAX_ORGS && !this.seen.has(orgId)) this.seen.clear();
    this.seen.set(orgId, { availableMicros, at: now });
  }

  /**
   * True when a hold of `estimateMicros` is all but certain to succeed: a recent observation showed
   * room for `factor` such calls. Concurrent calls, other gateway processes and workers draw on
   * the same wallet meanwhile; the margin covers them, and when it does not the hold refuses the
   * call anyway (the upstream request is then aborted).
   */
  allows(orgId: string, estimateMicros: Micros, now = Date.now()): boolean {
    if (this.factor <= 0) return false;
    const seen = this.seen.get(orgId);
    if (!seen || now - seen.at > this.maxAgeMs) return false;
    return seen.availableMicros >= estimateMicros * BigInt(this.factor);
  }
}
