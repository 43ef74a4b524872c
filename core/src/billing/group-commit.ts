// Group commit for the ledger's single-statement writes (hold, capture, release). Every write
// updates its wallet row, so on one hot wallet writes serialize on that row lock — and a
// transaction keeps its locks until its commit record is flushed to disk. Three things here:
//
// * Batching. Writes that arrive while a batch is being written wait for the next batch, and a
//   batch runs its statements in ONE transaction.
// * Pipelining. BEGIN, every statement and COMMIT leave in one network write and their answers
//   come back together (pg's pipeline mode, switched on for the batch): a batch costs one round
//   trip whatever its size. On this kind of host a round trip — the syscalls and wake-ups on both
//   sides — costs more than the SQL.
// * Locks are not held across the flush. A batch commits with `synchronous_commit = off`, so its
//   row locks go as soon as its commit record is in the WAL, and the next batch can run at once.
//   Durability is then awaited separately: right behind the COMMIT, on the same connection, goes
//   a barrier — a one-statement transaction that writes WAL and commits at the server's normal
//   level, so it returns only once the WAL up to and including the batch's commit is on disk (the
//   WAL is flushed in order). A durable write (the default) resolves after the barrier, exactly as
//   if it had committed synchronously; a write queued with `durable: false` resolves at the
//   COMMIT (visible to every other transaction, not yet flushed). The next batch does not wait
//   for the barrier, and concurrent barriers share the disk flush. A lone durable write simply
//   runs in autocommit (one message: nothing to gain from a barrier).
//
// Batches of different processes (gateways and workers share the wallets) run at the same time and
// may need the same wallet rows, so each batch takes them in one order: its writes are sorted
// (stably) by their `orderKey`, the wallet's organization. Two batches then wait for each other at
// most, never in a cycle. A write without a key is sorted first; should a deadlock still happen,
// PostgreSQL aborts one batch, which is re-run one write at a time (below).
//
// Statements run without savepoints: if any of them fails, PostgreSQL aborts the transaction and
// answers the COMMIT with ROLLBACK, so nothing of the batch was written, and the batch is re-run
// one write at a time in autocommit, in order — what would have happened without batching, so a
// failure (a duplicate idempotency key, a deadlock) stays that write's alone. If the COMMIT (or a
// barrier) gets no answer, the outcome is unknown and the writes waiting on it are rejected; each
// is idempotent on its key, so safe to retry.
import pg from 'pg';
import { warmPool } from '../db/client.ts';

interface PendingWrite {
  sql: string;
  params: unknown[];
  /** Prepared-statement name (the same SQL text always), so the server plans it once per connection. */
  name: string | undefined;
  durable: boolean;
  orderKey: string;
  resolve: (result: pg.QueryResult) => void;
  reject: (error: unknown) => void;
}

export interface GroupCommitStats {
  batches: number;
  writes: number;
  largestBatch: number;
  /** Batches rolled back by a failing statement and re-run one write at a time. */
  rerunBatches: number;
}

export interface WriteOptions {
  /** Prepared-statement name for `sql` (one name per SQL text). */
  name?: string;
  /**
   * Resolve only once the write is flushed to disk (default). `false`: resolve once it is
   * committed and visible to every other transaction; a crash of the database before the flush
   * (at most a fraction of a second) loses it, together with everything committed after it.
   */
  durable?: boolean;
  /** The wallet's organization id: a batch takes its wallet rows in this order. */
  orderKey?: string;
}

/** pg.Client's pipelining switch (its documented `pipeline` option) and the socket it writes to. */
type PipelinableClient = pg.PoolClient & { pipeline?: boolean; connection?: { stream?: { cork?(): void; uncork?(): void } } };

// Writes a WAL record (a logical-decoding message nobody subscribes to) in a transaction with an
// xid, so its commit waits for the flush of everything before it. PUBLIC may execute it.
const BARRIER_SQL = "SELECT pg_logical_emit_message(true, 'deepspace-ledger', '')";

export class GroupCommitter {
  private readonly pool: pg.Pool;
  private readonly maxBatch: number;
  private queue: PendingWrite[] = [];
  private flushing = false;
  /** 'refused' when the server will not run the barrier: batches then commit synchronously (the plain way). */
  private barrier: 'unknown' | 'works' | 'refused' = 'unknown';
  readonly stats: GroupCommitStats = { batches: 0, writes: 0, largestBatch: 0, rerunBatches: 0 };

  constructor(pool: pg.Pool, options: { maxBatch?: number } = {}) {
    this.pool = pool;
    this.maxBatch = options.maxBatch ?? 64;
  }

  query(sql: string, params: unknown[], options: WriteOptions = {}): Promise<pg.QueryResult> {
    return new Promise((resolve, reject) => {
      this.queue.push({ sql, params, name: options.name, durable: options.durable ?? true, orderKey: options.orderKey ?? '', resolve, reject });
      if (!this.flushing) void this.flush();
    });
  }

  private async flush(): Promise<void> {
    this.flushing = true;
    try {
      while (this.queue.length > 0) {
        // Sorted (stably) by wallet: every batch locks wallets in the same order.
        const batch = this.queue.splice(0, this.maxBatch).sort((a, b) => (a.orderKey < b.orderKey ? -1 : a.orderKey > b.orderKey ? 1 : 0));
        await this.runBatch(batch);
      }
    } finally {
      this.flushing = false;
    }
  }

  private run(db: pg.Pool | pg.PoolClient, write: PendingWrite): Promise<pg.QueryResult> {
    return write.name ? db.query({ name: write.name, text: write.sql, values: write.params }) : db.query(write.sql, write.params);
  }

  /** Resolves once the batch's locks are gone (committed or rolled back); durable writes may still await their barrier. */
  private async runBatch(batch: PendingWrite[]): Promise<void> {
    this.stats.batches++;
    this.stats.writes += batch.length;
    this.stats.largestBatch = Math.max(this.stats.largestBatch, batch.length);
    if (batch.length === 1 && batch[0]!.durable) {
      // Nothing to share: autocommit, as without batching.
      const [only] = batch as [PendingWrite];
      await this.run(this.pool, only).then(only.resolve, only.reject);
      return;
    }
    const relaxedPool = batch.length === 1 ? this.relaxed() : null;
    if (relaxedPool) {
      // A lone visible-only write: autocommit in a session that does not wait for the flush.
      const [only] = batch as [PendingWrite];
      await this.run(relaxedPool, only).then(only.resolve, only.reject);
      return;
    }
    let client: PipelinableClient;
    let relaxed: boolean;
    try {
      relaxed = await this.barrierUsable();
      client = (await this.pool.connect()) as PipelinableClient;
    } catch (error) {
      for (const w of batch) w.reject(error);
      return;
    }
    // A ledger-pool client, switched to pipelining for this batch only.
    const pipelined = client.pipeline === false;
    const needsBarrier = relaxed && batch.some((w) => w.durable);
    let sent: { writes: Array<Promise<pg.QueryResult>>; commit: Promise<pg.QueryResult>; barrier: Promise<pg.QueryResult> | undefined; all: Array<Promise<unknown>> };
    if (pipelined) client.pipeline = true;
    const stream = client.connection?.stream;
    stream?.cork?.();
    try {
      // In pipeline mode each query is written at once (one write, thanks to the cork); without
      // it (an older pg) they queue and go one round trip each.
      // (BEGIN and SET LOCAL share one simple-query message.)
      const begin = client.query(relaxed ? 'BEGIN; SET LOCAL synchronous_commit TO off' : 'BEGIN');
      const writes = batch.map((w) => this.run(client, w));
      const commit = client.query('COMMIT');
      const barrier = needsBarrier ? client.query({ name: 'ledger_flush_barrier', text: BARRIER_SQL }) : undefined;
      sent = { writes, commit, barrier, all: [begin, ...writes, commit, ...(barrier ? [barrier] : [])] };
    } finally {
      stream?.uncork?.();
    }
    // Every promise gets a handler now, so none rejects unhandled while others are awaited.
    const settledAll = Promise.allSettled(sent.all);
    const outcomes = await Promise.allSettled(sent.writes);
    const committed = (await Promise.allSettled([sent.commit]))[0]!;

    const finish = async (): Promise<Error | undefined> => {
      const results = await settledAll;
      if (pipelined) client.pipeline = false;
      const failed = results.find((r) => r.status === 'rejected' && !isServerError(r.reason));
      return failed ? toError((failed as PromiseRejectedResult).reason) : undefined;
    };

    if (committed.status === 'rejected') {
      // No answer to COMMIT: the connection is gone and the outcome unknown.
      for (const w of batch) w.reject(committed.reason);
      client.release(toError(committed.reason));
      return;
    }
    if (committed.value.command !== 'COMMIT') {
      // COMMIT answered ROLLBACK: a statement failed and nothing of the batch was written. Re-run
      // each write on its own before any later batch, as if there had been no batching.
      this.stats.rerunBatches++;
      client.release(await finish());
      for (const write of batch) await this.run(this.pool, write).then(write.resolve, write.reject);
      return;
    }
    // Committed (or, had BEGIN failed, each statement autocommitted on its own): every write has
    // its own outcome. Visible-only writes are done; durable ones wait for the barrier, which the
    // next batch does not.
    const durableOnes: Array<{ write: PendingWrite; outcome: PromiseSettledResult<pg.QueryResult> }> = [];
    batch.forEach((write, i) => {
      const outcome = outcomes[i]!;
      if (outcome.status === 'rejected') write.reject(outcome.reason);
      else if (write.durable && sent.barrier) durableOnes.push({ write, outcome });
      else write.resolve(outcome.value);
    });
    if (!sent.barrier) {
      client.release(await finish());
      return;
    }
    void Promise.allSettled([sent.barrier]).then(async ([flushed]) => {
      for (const { write, outcome } of durableOnes) {
        if (flushed!.status === 'fulfilled') write.resolve((outcome as PromiseFulfilledResult<pg.QueryResult>).value);
        // Committed, but not confirmed on disk: an error; the write's idempotency key makes a retry safe.
        else write.reject(flushed!.reason);
      }
      client.release(await finish());
    });
  }

  /** The pool for lone visible-only writes (see relaxedPoolFor). */
  private relaxed(): pg.Pool | null {
    return process.env.LEDGER_RELAXED_AUTOCOMMIT === '0' ? null : relaxedPoolFor(this.pool);
  }

  /** Whether the barrier can be used here  /** Whether the barrier can be used here: tried once (it costs one flush), before any batch relies on it. */
  private async barrierUsable(): Promise<boolean> {
    if (this.barrier === 'unknown') {
      this.barrier = await this.pool.query(BARRIER_SQL).then(
        () => 'works' as const,
        (error: unknown) => (isServerError(error) ? ('refused' as const) : ('unknown' as const)),
      );
    }
    return this.barrier === 'works';
  }
}

/** How the relaxed connections name themselves to the server (pg_stat_activity): the ledger pool's name and this. */
export const RELAXED_APPLICATION_SUFFIX = ':ledger-relaxed';

// One relaxed pool per ledger pool, shared by every ledger (and committer) on it.
const relaxedPools = new WeakMap<pg.Pool, pg.Pool>();

/**
 * The ledger pool's settings, at most 4 connections, sessions set to `synchronous_commit = off`.
 * None when the ledger runs on something other than a pg.Pool (a wrapper in tests): lone
 * visible-only writes then take the batch path.
 */
function relaxedPoolFor(pool: pg.Pool): pg.Pool | null {
  if (!(pool instanceof pg.Pool)) return null;
  let relaxed = relaxedPools.get(pool);
  if (!relaxed) {
    const base = (pool as pg.Pool & { options: pg.PoolConfig }).options;
    const options = [base.options, '-c synchronous_commit=off'].filter(Boolean).join(' ');
    // allowExitOnIdle: its idle connections never keep alive a process that ended its own pool.
    const max = Math.min(base.max ?? 10, 4);
    relaxed = new pg.Pool({ ...base, max, options, application_name: `${base.application_name ?? 'deepspace'}${RELAXED_APPLICATION_SUFFIX}`, allowExitOnIdle: true });
    relaxed.on('error', () => {}); // an idle connection the server ended is dropped
    // A service pool keeps its connections (createPgPool's keepConnections): so does this one, opened at once.
    if (base.idleTimeoutMillis === 0) void warmPool(relaxed, max);
    relaxedPools.set(pool, relaxed);
  }
  return relaxed;
}

/** Closes the connections the ledger opened beside `pool` (call before ending `pool`; a later write opens new ones). */
export async function closeLedgerConnections(pool: pg.Pool): Promise<void> {
  const relaxed = relaxedPools.get(pool);
  relaxedPools.delete(pool);
  await relaxed?.end();
}

/** An error the server answered with (the connection is fine), as opposed to a lost connection. */
function isServerError(error: unknown): boolean {
  return typeof (error as { code?: unknown } | null)?.code === 'string' && typeof (error as { severity?: unknown }).severity === 'string';
}

function toError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(String(reason));
}
