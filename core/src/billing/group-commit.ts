// Group commit for the ledger's single-statement writes (hold, capture, release). On one hot
// wallet every write waits for the previous one's commit (the wallet row stays locked until the
// WAL is flushed), so throughput is one write per flush. Here, writes that arrive while a batch is
// committing wait for the next batch, and a batch runs its statements back to back in ONE
// transaction: one flush for all of them. A lone write goes at once (no added latency).
//
// Each statement runs under its own SAVEPOINT, so one write's failure (a duplicate idempotency
// key, a deadlock) is that write's alone. If the COMMIT itself fails, every write of the batch is
// rejected and, being idempotent on its key, is retried by its caller (withSerializationRetry).
import type pg from 'pg';

interface PendingWrite {
  sql: string;
  params: unknown[];
  resolve: (result: pg.QueryResult) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitStats {
  batches: number;
  writes: number;
  largestBatch: number;
}

export class GroupCommitter {
  private readonly pool: pg.Pool;
  private readonly maxBatch: number;
  private queue: PendingWrite[] = [];
  private flushing = false;
  readonly stats: GroupCommitStats = { batches: 0, writes: 0, largestBatch: 0 };

  constructor(pool: pg.Pool, options: { maxBatch?: number } = {}) {
    this.pool = pool;
    this.maxBatch = options.maxBatch ?? 64;
  }

  query(sql: string, params: unknown[]): Promise<pg.QueryResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ sql, params, resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        const batch = this.queue.splice(0, this.maxBatch);
        await this.runBatch(batch);
      }
    } finally {
      this.flushing = false;
    }
  }

  private async runBatch(batch: PendingWrite[]): Promise<void> {
    this.stats.batches++;
    this.stats.writes += batch.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    if (batch.length === 1) {
      // Nothing to share: autocommit, as without batching.
      const [only] = batch as [PendingWrite];
      await this.pool.query(only.sql, only.params).then(only.resolve, only.reject);
      return;
    }
    let client: pg.PoolClient;
    try {
      client = await this.pool.connect();
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    const outcomes: Array<{ ok: true; result: pg.QueryResult } | { ok: false; error: unknown }> = [];
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      for (const write of batch) {
        await client.query('SAVEPOINT w');
        try {
          outcomes.push({ ok: true, result: await client.query(write.sql, write.params) });
          await client.query('RELEASE SAVEPOINT w');
        } catch (error) {
          outcomes.push({ ok: false, error });
          await client.query('ROLLBACK TO SAVEPOINT w');
        }
      }
      await client.query('COMMIT');
      batch.forEach((write, i) => {
        const outcome = outcomes[i]!;
        if (outcome.ok) write.resolve(outcome.result);
        else write.reject(outcome.error);
      });
    } catch (error) {
      await client.query('ROLLBACK').catch((e: Error) => (broken = e));
      for (const w of batch) w.reject(error);
    } finally {
      client.release(broken);
    }
  }
}
