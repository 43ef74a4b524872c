// Reconciliation: recomputes every billing invariant from the ledger and reports each wallet or
// hold that disagrees. Read-only, in one REPEATABLE READ snapshot, so it gives a consistent
// answer while the ledger keeps working (each ledger operation is atomic).
//
// Invariants, per wallet:
//   balance ≥ 0, 0 ≤ frozen ≤ balance
//   frozen  = Σ amount of its active holds
//   balance = Σ top-ups − Σ captures ± Σ adjustments + Σ refunds   (the signed ledger amounts)
//   the newest transaction's balance_after / frozen_after equal the wallet row, and every row's
//   balances follow from the previous row's (an unbroken chain)
// per hold:
//   exactly one `hold` row for its amount; active ⇒ no settlement row; captured ⇒ exactly one
//   capture row equal to captured_micros and a usage record with the same trace_id (and cost);
//   released/expired ⇒ exactly one release row for the whole amount; refunds ≤ captured
//   no hold active past its expiry (plus a grace for the sweep) or after its run finished
//   (holds.run_id is the run's id or its Temporal workflow id, matched to workflow_runs).
import type pg from 'pg';

export interface DriftItem {
  check: string;
  walletId: string;
  orgId?: string;
  holdId?: string;
  transactionId?: string;
  expected?: string;
  actual?: string;
  message: string;
}

export interface ReconcileReport {
  wallets: number;
  holds: number;
  transactions: number;
  checkedAt: Date;
  drift: DriftItem[];
}

export interface ReconcileOptions {
  /** The time "active past expiry" is judged at; defaults to now. */
  now?: Date;
  /** How long past its expiry a hold may stay active before it is drift (the sweep runs every minute). */
  staleGraceMs?: number;
  /** Only these wallets (default: every wallet). */
  walletIds?: string[];
}

export const DEFAULT_STALE_GRACE_MS = 5 * 60_000;

const BALANCE_KINDS = `('topup', 'adjust', 'capture', 'refund')`;

export async function reconcile(pool: pg.Pool, options: ReconcileOptions = {}): Promise<ReconcileReport> {
  const now = options.now ?? new Date();
  const staleBefore = new Date(now.getTime() - (options.staleGraceMs ?? DEFAULT_STALE_GRACE_MS));
  const scope = options.walletIds ?? null;
  const client = await pool.connect();
  const drift: DriftItem[] = [];
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');

    const wallets = await client.query(
      `SELECT w.id, w.org_id, w.balance_micros::text AS balance, w.frozen_micros::text AS frozen,
              COALESCE(ah.total, 0)::text AS active_holds,
              COALESCE(l.total, 0)::text AS ledger_balance, COALESCE(l.n, 0)::int AS transactions,
              lt.id::text AS last_id, lt.balance_after_micros::text AS last_balance, lt.frozen_after_micros::text AS last_frozen
       FROM wallets w
       LEFT JOIN LATERAL (SELECT sum(amount_micros) AS total FROM holds WHERE wallet_id = w.id AND status = 'active') ah ON true
       LEFT JOIN LATERAL (SELECT sum(amount_micros) FILTER (WHERE kind IN ${BALANCE_KINDS}) AS total, count(*) AS n
                          FROM wallet_transactions WHERE wallet_id = w.id) l ON true
       LEFT JOIN LATERAL (SELECT id, balance_after_micros, frozen_after_micros FROM wallet_transactions
                          WHERE wallet_id = w.id ORDER BY id DESC LIMIT 1) lt ON true
       WHERE $1::uuid[] IS NULL OR w.id = ANY($1::uuid[])`,
      [scope],
    );
    let transactions = 0;
    for (const w of wallets.rows) {
      transactions += w.transactions;
      const base = { walletId: w.id as string, orgId: w.org_id as string };
      const balance = BigInt(w.balance);
      const frozen = BigInt(w.frozen);
      if (balance < 0n || frozen < 0n || frozen > balance) {
        drift.push({ ...base, check: 'wallet_bounds', actual: `balance=${balance} frozen=${frozen}`, message: 'balance < 0, frozen < 0 or frozen > balance' });
      }
      if (frozen !== BigInt(w.active_holds)) {
        drift.push({ ...base, check: 'frozen_equals_active_holds', expected: w.active_holds, actual: w.frozen, message: 'frozen differs from the sum of active holds' });
      }
      if (balance !== BigInt(w.ledger_balance)) {
        drift.push({ ...base, check: 'balance_equals_ledger', expected: w.ledger_balance, actual: w.balance, message: 'balance differs from Σ top-ups − captures ± adjustments + refunds' });
      }
      if (w.last_id !== null && (w.last_balance !== w.balance || w.last_frozen !== w.frozen)) {
        drift.push({
          ...base,
          check: 'last_transaction_matches_wallet',
          transactionId: w.last_id,
          expected: `balance=${w.last_balance} frozen=${w.last_frozen}`,
          actual: `balance=${w.balance} frozen=${w.frozen}`,
          message: 'the newest transaction’s balances differ from the wallet row',
        });
      }
    }

    // Every row's balances follow from the row before it (per wallet, in id order, which is the
    // order the wallet lock granted). A capture unfreezes its whole hold.
    const chain = await client.query(
      `SELECT wallet_id, id::text, kind, balance_after_micros::text AS balance_after, frozen_after_micros::text AS frozen_after,
              (prev_balance + d_balance)::text AS expected_balance, (prev_frozen + d_frozen)::text AS expected_frozen
       FROM (
         SELECT t.wallet_id, t.id, t.kind, t.balance_after_micros, t.frozen_after_micros,
                lag(t.balance_after_micros, 1, 0::bigint) OVER wnd AS prev_balance,
                lag(t.frozen_after_micros, 1, 0::bigint) OVER wnd AS prev_frozen,
                CASE WHEN t.kind IN ${BALANCE_KINDS} THEN t.amount_micros ELSE 0 END AS d_balance,
                CASE t.kind WHEN 'hold' THEN t.amount_micros WHEN 'release' THEN -t.amount_micros
                            WHEN 'capture' THEN -COALESCE(h.amount_micros, 0) ELSE 0 END AS d_frozen
         FROM wallet_transactions t LEFT JOIN holds h ON h.id = t.hold_id
         WHERE $1::uuid[] IS NULL OR t.wallet_id = ANY($1::uuid[])
         WINDOW wnd AS (PARTITION BY t.wallet_id ORDER BY t.id)
       ) x
       WHERE balance_after_micros <> prev_balance + d_balance OR frozen_after_micros <> prev_frozen + d_frozen
       ORDER BY wallet_id, id`,
      [scope],
    );
    const brokenChains = new Set<string>();
    for (const r of chain.rows) {
      if (brokenChains.has(r.wallet_id)) continue; // the first break explains the rest
      brokenChains.add(r.wallet_id);
      drift.push({
        check: 'transaction_chain',
        walletId: r.wallet_id,
        transactionId: r.id,
        expected: `balance=${r.expected_balance} frozen=${r.expected_frozen}`,
        actual: `balance=${r.balance_after} frozen=${r.frozen_after}`,
        message: `a ${r.kind} row's balances do not follow from the row before it`,
      });
    }

    // Per hold: its rows, its usage record, its age. Only holds with a problem come back.
    const holds = await client.query(
      `WITH per_hold AS (
         SELECT h.id, h.wallet_id, h.status, h.amount_micros, h.captured_micros, h.expires_at, h.run_id,
                count(t.id) FILTER (WHERE t.kind = 'hold') AS hold_rows,
                COALESCE(sum(t.amount_micros) FILTER (WHERE t.kind = 'hold'), 0) AS held,
                count(t.id) FILTER (WHERE t.kind = 'capture') AS capture_rows,
                COALESCE(-sum(t.amount_micros) FILTER (WHERE t.kind = 'capture'), 0) AS captured,
                max(t.trace_id) FILTER (WHERE t.kind = 'capture') AS capture_trace,
                count(t.id) FILTER (WHERE t.kind = 'release') AS release_rows,
                COALESCE(sum(t.amount_micros) FILTER (WHERE t.kind = 'release'), 0) AS released,
                COALESCE(sum(t.amount_micros) FILTER (WHERE t.kind = 'refund'), 0) AS refunded,
                count(t.id) FILTER (WHERE t.wallet_id <> h.wallet_id) AS foreign_rows
         FROM holds h LEFT JOIN wallet_transactions t ON t.hold_id = h.id
         WHERE $1::uuid[] IS NULL OR h.wallet_id = ANY($1::uuid[])
         GROUP BY h.id
       )
       SELECT p.id, p.wallet_id, p.status, p.amount_micros::text AS amount, p.captured_micros::text AS captured_micros,
              p.hold_rows::int, p.held::text, p.capture_rows::int, p.captured::text, p.capture_trace,
              p.release_rows::int, p.released::text, p.refunded::text, p.foreign_rows::int,
              u.id AS usage_id, u.trace_id AS usage_trace, u.cost_micros::text AS usage_cost,
              (p.status = 'active' AND p.expires_at < $2::timestamptz) AS stale,
              (p.status = 'active' AND r.status IN ('succeeded', 'failed', 'cancelled') AND r.finished_at < $2::timestamptz) AS run_over
       FROM per_hold p
       LEFT JOIN usage_records u ON u.hold_id = p.id
       LEFT JOIN workflow_runs r ON r.temporal_workflow_id = p.run_id OR r.id::text = p.run_id
       WHERE p.hold_rows <> 1 OR p.held <> p.amount_micros OR p.foreign_rows <> 0 OR p.refunded > p.captured
          OR (p.status = 'active' AND (p.capture_rows <> 0 OR p.release_rows <> 0 OR p.expires_at < $2::timestamptz
                                       OR (r.status IN ('succeeded', 'failed', 'cancelled') AND r.finished_at < $2::timestamptz)))
          OR (p.status = 'captured' AND (p.capture_rows <> 1 OR p.release_rows <> 0 OR p.captured <> p.captured_micros
                                         OR u.id IS NULL OR u.trace_id IS DISTINCT FROM p.capture_trace OR u.cost_micros <> p.captured_micros))
          OR (p.status IN ('released', 'expired') AND (p.release_rows <> 1 OR p.capture_rows <> 0 OR p.released <> p.amount_micros))
          OR (p.status <> 'captured' AND p.refunded <> 0)`,
      [scope, staleBefore],
    );
    for (const h of holds.rows) {
      const base = { walletId: h.wallet_id as string, holdId: h.id as string };
      const add = (check: string, message: string, expected?: string, actual?: string) => drift.push({ ...base, check, message, expected, actual });
      if (h.hold_rows !== 1 || h.held !== h.amount) add('hold_row', 'a hold must have exactly one hold row for its amount', `1 row of ${h.amount}`, `${h.hold_rows} rows, ${h.held}`);
      if (h.foreign_rows !== 0) add('hold_wallet', 'a transaction of this hold belongs to another wallet');
      if (BigInt(h.refunded) > BigInt(h.captured)) add('refund_bound', 'refunds exceed what was captured', `≤ ${h.captured}`, h.refunded);
      if (h.status !== 'captured' && h.refunded !== '0') add('refund_bound', 'refunds of a hold that was not captured', '0', h.refunded);
      if (h.status === 'active') {
        if (h.capture_rows !== 0 || h.release_rows !== 0) add('hold_settlement', 'an active hold has settlement rows');
        if (h.stale) add('hold_active_past_expiry', 'an active hold is past its expiry (the expiry sweep has not run)');
        if (h.run_over) add('hold_active_after_run', 'an active hold outlived its run');
      }
      if (h.status === 'captured') {
        if (h.capture_rows !== 1 || h.release_rows !== 0) add('hold_settlement', 'a captured hold needs exactly one capture row and no release', '1 capture', `${h.capture_rows} captures, ${h.release_rows} releases`);
        if (h.captured !== h.captured_micros) add('capture_amount', 'the capture row differs from the hold’s captured amount', h.captured_micros, h.captured);
        if (h.usage_id === null) add('capture_usage_record', 'a capture has no usage record');
        else {
          if (h.usage_trace !== h.capture_trace) add('capture_usage_trace', 'the usage record’s trace_id differs from the capture’s', h.capture_trace ?? 'null', h.usage_trace);
          if (h.usage_cost !== h.captured_micros) add('capture_usage_cost', 'the usage record’s cost differs from what was captured', h.captured_micros, h.usage_cost);
        }
      }
      if ((h.status === 'released' || h.status === 'expired') && (h.release_rows !== 1 || h.capture_rows !== 0 || h.released !== h.amount)) {
        add('hold_settlement', `a ${h.status} hold needs exactly one release row for its whole amount`, `1 release of ${h.amount}`, `${h.release_rows} releases (${h.released}), ${h.capture_rows} captures`);
      }
    }

    const counted = await client.query<{ holds: number }>(
      `SELECT count(*)::int AS holds FROM holds WHERE $1::uuid[] IS NULL OR wallet_id = ANY($1::uuid[])`,
      [scope],
    );
    await client.query('COMMIT');
    return { wallets: wallets.rows.length, holds: counted.rows[0]!.holds, transactions, checkedAt: now, drift };
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  } finally {
    client.release();
  }
}

/** A human-readable report (for `npm run reconcile` and the test run's teardown). */
export function formatReconcileReport(report: ReconcileReport): string {
  const head = `reconcile: ${report.wallets} wallets, ${report.holds} holds, ${report.transactions} transactions checked at ${report.checkedAt.toISOString()}`;
  if (report.drift.length === 0) return `${head}\nno drift`;
  const lines = report.drift.map((d) => {
    const where = [`wallet ${d.walletId}`, d.holdId && `hold ${d.holdId}`, d.transactionId && `transaction ${d.transactionId}`].filter(Boolean).join(', ');
    const diff = d.expected !== undefined || d.actual !== undefined ? ` (expected ${d.expected ?? '?'}, actual ${d.actual ?? '?'})` : '';
    return `  ✗ ${d.check}: ${d.message} — ${where}${diff}`;
  });
  return `${head}\n${report.drift.length} drift item(s):\n${lines.join('\n')}`;
}
