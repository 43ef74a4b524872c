// Coalesced captures: captures that may wait a few milliseconds (a `/v1` call's capture runs after
// its answer went out) are gathered and written by ONE statement per organization — the same
// writes as the one-row capture (hold settled, wallet debited and unfrozen, usage record, capture
// transaction row, audit row), for many holds at once, in one commit.
//
// Why: on a small host the per-statement work of the database (executor start-up per table, the
// CHECK constraints it re-reads for every statement, the commit and its WAL flush) and the
// round trip cost more than the rows themselves; at a few hundred calls per second, a capture a
// call was most of the ledger's CPU. A batch pays that once.
//
// What stays exact:
// * Each row is written only if its hold is still active and exactly what the caller said (amount,
//   price rates): the checks of the one-row "known" capture, per row. A row the statement did not
//   settle (a replay, a changed hold) resolves to null, and the caller takes the one-row path,
//   which answers it as before.
// * The wallet row is updated once per batch, by the sum of the batch's charges; each capture row
//   gets the balances the wallet passed through (running sums in input order), and the rows are
//   inserted in that order, so the transaction chain stays unbroken (reconcile.ts checks it).
// * One organization per statement, so a statement locks one wallet row and batches cannot
//   deadlock on wallets; statements go through the group committer, which orders by organization.
// * If the statement fails (a taken idempotency key, a lost connection), every row of it resolves
//   to null and takes the one-row path, where each error stays that capture's own.
// A crash before the batch commits loses those captures exactly as a crash right after a call
// loses its capture: the holds stay active until the expiry sweep releases them.
import type pg from 'pg';
import type { GroupCommitter } from './group-commit.ts';

type Row = Record<string, unknown>;

/** Per-row parameters, in this order (the one-row capture's 25 plus the 12 of its audit row). */
const COLUMNS: Array<[name: string, type: string]> = [
  ['hold_id', 'uuid'], ['charged', 'bigint'], ['trace_id', 'text'], ['project_id', 'uuid'], ['api_key_id', 'uuid'], ['user_id', 'uuid'],
  ['model_id', 'uuid'], ['model_name', 'text'], ['upstream_model', 'text'], ['prompt_tokens', 'int'], ['completion_tokens', 'int'],
  ['latency_ms', 'int'], ['status', 'text'], ['error_code', 'text'], ['run_id', 'text'], ['step_id', 'text'], ['idempotency_key', 'text'],
  ['actor_type', 'text'], ['actor_id', 'text'], ['reason', 'text'], ['request_hash', 'text'], ['details', 'text'], ['known_amount', 'bigint'],
  ['in_rate', 'bigint'], ['out_rate', 'bigint'],
  ['a_trace_id', 'text'], ['a_actor_type', 'text'], ['a_actor_id', 'text'], ['a_action', 'text'], ['a_resource_type', 'text'],
  ['a_resource_id', 'text'], ['a_org_id', 'uuid'], ['a_project_id', 'uuid'], ['a_result', 'text'], ['a_ip', 'text'], ['a_user_agent', 'text'],
  ['a_details', 'text'],
];
export const CAPTURE_BATCH_WIDTH = COLUMNS.length;

export function captureBatchSql(holdColumns: string, txInsertColumns: string, auditColumns: string): string {
  const unnest = COLUMNS.map(([, type], i) => `$${i + 1}::${type}[]`).join(', ');
  const names = COLUMNS.map(([name]) => name).join(', ');
  return `
WITH i AS (
  SELECT * FROM unnest(${unnest}) WITH ORDINALITY AS i(${names}, n)
), h AS (
  UPDATE holds SET status = 'captured', captured_micros = i.charged, settled_at = now()
  FROM i
  WHERE holds.id = i.hold_id AND holds.status = 'active' AND holds.amount_micros = i.known_amount
    AND (i.in_rate IS NULL OR EXISTS (SELECT 1 FROM model_prices p WHERE p.id = holds.price_id
         AND p.input_micros_per_million = i.in_rate AND p.output_micros_per_million = i.out_rate))
  RETURNING holds.*, i.n
), s AS (
  SELECT wallet_id, sum(captured_micros) AS charged, sum(amount_micros) AS unfrozen FROM h GROUP BY wallet_id
), w AS (
  UPDATE wallets SET balance_micros = balance_micros - s.charged, frozen_micros = frozen_micros - s.unfrozen, updated_at = now()
  FROM s WHERE wallets.id = s.wallet_id
  RETURNING wallets.id, wallets.balance_micros, wallets.frozen_micros
), r AS (
  -- The balances after each capture, in input order: the wallet's final state plus what the later ones took.
  SELECT h.n, w.balance_micros + COALESCE(sum(h.captured_micros) OVER later, 0) AS balance_after,
         w.frozen_micros + COALESCE(sum(h.amount_micros) OVER later, 0) AS frozen_after
  FROM h JOIN w ON w.id = h.wallet_id
  WINDOW later AS (PARTITION BY h.wallet_id ORDER BY h.n ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
), u AS (
  INSERT INTO usage_records (trace_id, org_id, project_id, api_key_id, user_id, model_id, model_name, upstream_model, price_id, hold_id,
                             prompt_tokens, completion_tokens, cost_micros, latency_ms, status, error_code, run_id, step_id)
  SELECT i.trace_id, h.org_id, COALESCE(i.project_id, h.project_id), i.api_key_id, i.user_id, COALESCE(i.model_id, h.model_id), i.model_name,
         i.upstream_model, h.price_id, h.id, i.prompt_tokens, i.completion_tokens, i.charged, i.latency_ms, i.status::"UsageStatus", i.error_code,
         COALESCE(i.run_id, h.run_id), COALESCE(i.step_id, h.step_id)
  FROM h JOIN i ON i.n = h.n
  RETURNING id, hold_id
), t AS (
  INSERT INTO wallet_transactions (${txInsertColumns})
  SELECT h.wallet_id, 'capture'::"TransactionKind", -i.charged, r.balance_after, r.frozen_after, i.idempotency_key, h.id, i.trace_id,
         COALESCE(i.run_id, h.run_id), COALESCE(i.step_id, h.step_id), i.actor_type::"ActorType", i.actor_id, i.reason, i.request_hash, i.details::jsonb
  FROM h JOIN i ON i.n = h.n JOIN r ON r.n = h.n
  ORDER BY h.n
  RETURNING id, hold_id, balance_after_micros, frozen_after_micros, created_at
), a AS (
  INSERT INTO audit_logs (${auditColumns})
  SELECT i.a_trace_id, i.a_actor_type::"ActorType", i.a_actor_id, i.a_action, i.a_resource_type, i.a_resource_id, COALESCE(i.a_org_id, h.org_id),
         i.a_project_id, i.a_result::"AuditResult", i.a_ip, i.a_user_agent, i.a_details::jsonb
  FROM h JOIN i ON i.n = h.n
  WHERE i.a_action IS NOT NULL
)
SELECT ${holdColumns}, h.n AS n, t.id AS t_id, t.balance_after_micros AS t_balance_after_micros, t.frozen_after_micros AS t_frozen_after_micros,
       t.created_at AS t_created_at, u.id AS usage_id
FROM h JOIN t ON t.hold_id = h.id JOIN u ON u.hold_id = h.id`;
}

interface Pending {
  values: unknown[];
  resolve: (row: Row | null) => void;
}

export interface CaptureBatchStats {
  statements: number;
  captures: number;
  largest: number;
  /** Statements that failed, whose rows took the one-row path. */
  failed: number;
}

export class CaptureCoalescer {
  private readonly writes: GroupCommitter;
  private readonly sql: string;
  private readonly maxBatch: number;
  /** Waiting captures per organization, and when their statement goes. */
  private readonly waiting = new Map<string, { rows: Pending[]; timer: NodeJS.Timeout }>();
  readonly stats: CaptureBatchStats = { statements: 0, captures: 0, largest: 0, failed: 0 };

  constructor(writes: GroupCommitter, sql: string, options: { maxBatch?: number } = {}) {
    this.writes = writes;
    this.sql = sql;
    this.maxBatch = options.maxBatch ?? 100;
  }

  /**
   * Queues one capture's parameters (CAPTURE_BATCH_WIDTH of them) for `orgId`'s next statement,
   * which goes within `waitMs` (or at once when the batch is full). Resolves to the row the
   * statement wrote for it, or null when it wrote none (the caller then takes the one-row path).
   */
  add(orgId: string, values: unknown[], waitMs: number): Promise<Row | null> {
    if (values.length !== CAPTURE_BATCH_WIDTH) throw new RangeError(`a batched capture takes ${CAPTURE_BATCH_WIDTH} values`);
    return new Promise((resolve) => {
      let group = this.waiting.get(orgId);
      if (!group) {
        group = { rows: [], timer: setTimeout(() => this.flush(orgId), waitMs) };
        this.waiting.set(orgId, group);
      }
      group.rows.push({ values, resolve });
      if (group.rows.length >= this.maxBatch) this.flush(orgId);
    });
  }

  /** Sends every waiting batch now (a graceful stop need not wait for the timers). */
  flushAll(): void {
    for (const orgId of [...this.waiting.keys()]) this.flush(orgId);
  }

  private flush(orgId: string): void {
    const group = this.waiting.get(orgId);
    if (!group) return;
    this.waiting.delete(orgId);
    clearTimeout(group.timer);
    const rows = group.rows;
    this.stats.statements++;
    this.stats.captures += rows.length;
    this.stats.largest = Math.max(this.stats.largest, rows.length);
    // Column-wise: one array per parameter.
    const params = COLUMNS.map((_, c) => rows.map((row) => row.values[c]));
    this.writes.query(this.sql, params, { name: 'ledger_capture_batch', orderKey: orgId }).then(
      (result: pg.QueryResult) => {
        const byIndex = new Map<number, Row>();
        for (const row of result.rows as Row[]) byIndex.set(Number(row.n), row);
        rows.forEach((row, i) => row.resolve(byIndex.get(i + 1) ?? null));
      },
      () => {
        this.stats.failed++;
        for (const row of rows) row.resolve(null);
      },
    );
  }
}
