// Run progress events live in one Redis Stream per run. Workers append (XADD); the gateway relays
// them as SSE with the stream entry id as the event id, so a client reconnecting with
// Last-Event-ID resumes exactly after the last event it saw: no loss, no duplicates.
import type { Redis } from 'ioredis';

export const RUN_EVENTS_MAX_LEN = 20_000;
export const RUN_EVENTS_TTL_SECONDS = 24 * 3600;

export type RunEventType =
  | 'run.started'
  | 'message.delta'
  | 'message.reset'
  | 'message.completed'
  | 'run.failed'
  | 'run.cancelled'
  // workflow runs (temporal-workers dslWorkflow)
  | 'step.started'
  | 'step.waiting'
  | 'step.succeeded'
  | 'step.failed'
  | 'step.skipped'
  | 'run.completed'
  // document ingestion (temporal-workers ingestDocumentWorkflow)
  | 'document.status'
  | 'document.progress'
  | 'document.indexed'
  | 'document.failed';

export const TERMINAL_RUN_EVENTS: ReadonlySet<RunEventType> = new Set([
  'message.completed',
  'run.completed',
  'run.failed',
  'run.cancelled',
  'document.indexed',
  'document.failed',
]);

export interface RunEvent {
  id: string;
  type: RunEventType;
  data: Record<string, unknown>;
}

export function runEventsKey(runId: string): string {
  return `run:${runId}:events`;
}

export async function appendRunEvent(redis: Redis, runId: string, type: RunEventType, data: Record<string, unknown>): Promise<string> {
  const key = runEventsKey(runId);
  const fields = ['type', type, 'data', JSON.stringify(data)];
  if (type === 'run.started' || TERMINAL_RUN_EVENTS.has(type)) {
    // The stream's expiry goes with the entry: one round trip (MULTI/EXEC), not two.
    const results = await redis.multi().xadd(key, 'MAXLEN', '~', String(RUN_EVENTS_MAX_LEN), '*', ...fields).expire(key, RUN_EVENTS_TTL_SECONDS).exec();
    const failed = results?.find(([error]) => error);
    if (failed) throw failed[0];
    return (results?.[0]?.[1] as string | null) ?? '';
  }
  const id = await redis.xadd(key, 'MAXLEN', '~', String(RUN_EVENTS_MAX_LEN), '*', ...fields);
  return id ?? '';
}

/**
 * Appends many runs' `message.delta` events together. Each run's reply arrives token by token; one
 * XADD per run per flush made every flush a socket write in the worker and a read in Redis (on this
 * kind of host the syscalls cost more than the command). Here text queued for any run waits for the
 * batcher's next tick (every `intervalMs`, only while something is queued), and the tick appends
 * every run's text as ONE pipeline: one write, one read, whatever the number of streams.
 *
 * Order per run holds because every command goes out on the same connection in the order issued:
 * a run's queued text is taken off the queue before `flushRun` appends the rest, and the terminal
 * event comes after `flushRun` resolved. A failed append is that run's alone: its next `queue` or
 * its `flushRun` throws it (its call then fails and is retried with a reset).
 */
export class RunDeltaBatcher {
  private readonly queued = new Map<string, string>();
  /** Per run: the pipeline that holds its latest appended text (flushRun waits for it). */
  private readonly inFlight = new Map<string, Promise<void>>();
  private readonly failures = new Map<string, unknown>();
  /** Runs that queued text and have not been flushed or discarded yet. */
  private readonly open = new Set<string>();
  private timer: NodeJS.Timeout | undefined;

  private readonly redis: Redis;
  private readonly intervalMs: number;

  constructor(redis: Redis, intervalMs = 50) {
    this.redis = redis;
    this.intervalMs = intervalMs;
  }

  /** Queues text for the run's next delta event (appended at the next tick). */
  queue(runId: string, text: string): void {
    this.throwIfFailed(runId);
    if (!text) return;
    this.open.add(runId);
    this.queued.set(runId, (this.queued.get(runId) ?? '') + text);
    this.timer ??= setTimeout(() => this.tick(), this.intervalMs);
  }

  /** Appends what is queued for the run now and resolves once all its text is in its stream. */
  async flushRun(runId: string): Promise<void> {
    const text = this.queued.get(runId);
    this.queued.delete(runId);
    const earlier = this.inFlight.get(runId);
    const last = text ? appendRunEvent(this.redis, runId, 'message.delta', { content: text }) : undefined;
    try {
      await earlier;
      await last;
      this.throwIfFailed(runId);
    } finally {
      this.forget(runId);
    }
  }

  /** Drops what is queued for the run (its call failed: nothing more of it is appended). */
  discard(runId: string): void {
    this.queued.delete(runId);
    this.forget(runId);
  }

  private forget(runId: string): void {
    this.open.delete(runId);
    this.inFlight.delete(runId);
    this.failures.delete(runId);
  }

  private throwIfFailed(runId: string): void {
    if (!this.failures.has(runId)) return;
    const failure = this.failures.get(runId);
    this.failures.delete(runId);
    throw failure;
  }

  private tick(): void {
    this.timer = undefined;
    if (this.queued.size === 0) return;
    const runs = [...this.queued];
    this.queued.clear();
    const pipeline = this.redis.pipeline();
    for (const [runId, text] of runs) {
      pipeline.xadd(runEventsKey(runId), 'MAXLEN', '~', String(RUN_EVENTS_MAX_LEN), '*', 'type', 'message.delta', 'data', JSON.stringify({ content: text }));
    }
    const sent = pipeline.exec().then(
      (results) => runs.map((_, i) => results?.[i]?.[0] ?? null),
      (error: unknown) => runs.map(() => error),
    );
    runs.forEach(([runId], i) => {
      const done: Promise<void> = sent.then((errors) => {
        if (this.inFlight.get(runId) === done) this.inFlight.delete(runId);
        // A run that was flushed or discarded meanwhile is not tracked any more.
        if (errors[i] && this.open.has(runId)) this.failures.set(runId, errors[i]);
      });
      this.inFlight.set(runId, done);
    });
  }
}

function parseEntries(entries: Array<[string, string[]]>): RunEvent[] {
  return entries.map(([id, fields]) => {
    const map = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) map.set(fields[i]!, fields[i + 1]!);
    return { id, type: map.get('type') as RunEventType, data: JSON.parse(map.get('data') ?? '{}') as Record<string, unknown> };
  });
}

/**
 * Events after `afterId` ('0' for all), waiting up to `blockMs` for new ones (a blocking read needs
 * its own connection); `blockMs` null reads what is there without waiting.
 */
export async function readRunEvents(redis: Redis, runId: string, afterId: string, blockMs: number | null, count = 500): Promise<RunEvent[]> {
  const key = runEventsKey(runId);
  const result = (
    blockMs === null
      ? await redis.xread('COUNT', count, 'STREAMS', key, afterId)
      : await redis.xread('COUNT', count, 'BLOCK', blockMs, 'STREAMS', key, afterId)
  ) as Array<[string, Array<[string, string[]]>]> | null;
  if (!result || !result[0]) return [];
  return parseEntries(result[0][1]);
}

export async function runEventsExist(redis: Redis, runId: string): Promise<boolean> {
  return (await redis.exists(runEventsKey(runId))) === 1;
}

/** Temporal search attributes the platform sets on its runs (registered on the dev server at start). */
export const SEARCH_ATTRIBUTES = {
  DsOrgId: 'Keyword',
  DsProjectId: 'Keyword',
  DsSessionId: 'Keyword',
  DsTraceId: 'Keyword',
  DsRunKind: 'Keyword',
} as const;

/**
 * Dynamic config of the Temporal dev server we start: one task-queue partition (with a single
 * worker process the default four cost about 3× throughput, shared/notes/temporal-dev-server.md);
 * eager activity dispatch (an activity scheduled by a workflow task goes straight back to the
 * worker that completed it, saving a matching round trip on the chat path); and the history
 * service's transfer queue unthrottled. That queue hands a new run's first workflow task to
 * matching, loading its tasks from the database at most `transferProcessorMaxPollRPS` times a
 * second per history shard (default 20, sized for clusters of hundreds of shards); the dev server
 * has one shard, so at ~10 chat runs/s (a start and a close each) new runs waited for the next
 * load: first task 50 ms late at p99 in the 20-stream chat bench, 9 ms with the limit lifted.
 */
export const DEV_SERVER_DYNAMIC_CONFIG = [
  'matching.numTaskqueueReadPartitions=1',
  'matching.numTaskqueueWritePartitions=1',
  'system.enableActivityEagerExecution=true',
  'history.transferProcessorMaxPollRPS=1000',
] as const;

/**
 * SQLite settings of a dev server that keeps its state in a file (`npm start`, docker compose).
 * The file otherwise uses SQLite's defaults, a rollback journal synced in full: several fsyncs per
 * commit. Write-ahead log with `synchronous=normal` keeps every commit through a crash or SIGKILL
 * of the server (only a power loss or kernel crash can lose the last commits), and halved the start
 * of a workflow here (probe, 280 starts each, twice: p50 5.4–6.0 → 2.9–3.2 ms). Tests and benches
 * run the server in memory, where these do not apply.
 */
export const DEV_SERVER_SQLITE_PRAGMAS = ['journal_mode=wal', 'synchronous=normal'] as const;

/** Flags that keep the dev server's state in `file`. */
export function devServerDbFileFlags(file: string): string[] {
  return ['--db-filename', file, ...DEV_SERVER_SQLITE_PRAGMAS.flatMap((pragma) => ['--sqlite-pragma', pragma])];
}

export function devServerFlags(): string[] {
  return [...DEV_SERVER_DYNAMIC_CONFIG.flatMap((v) => ['--dynamic-config-value', v]), ...searchAttributeFlags()];
}

export function searchAttributeFlags(): string[] {
  return Object.entries(SEARCH_ATTRIBUTES).flatMap(([name, type]) => ['--search-attribute', `${name}=${type}`]);
}

/** The contract between the gateway (which starts chat runs) and the chat workflow. */
export interface ChatRunInput {
  runId: string;
  traceId: string;
  orgId: string;
  projectId: string;
  sessionId: string;
  userMessageId: string;
  /** Made by the gateway, so a retried settle upserts the same row. */
  assistantMessageId: string;
  model: string;
  maxTokens?: number | null;
  temperature?: number | null;
  actor: { type: 'user' | 'api_key'; id: string };
}

export const CHAT_WORKFLOW_TYPE = 'chatMessageWorkflow';
export const chatWorkflowId = (userMessageId: string) => `chat-${userMessageId}`;

/** The contract between the gateway (which starts workflow runs) and the DSL interpreter. */
export interface DslRunInput {
  runId: string;
  traceId: string;
  orgId: string;
  projectId: string;
  definitionId: string;
  versionId: string;
  /** The validated document of the exact version (also stored in workflow_versions.spec). */
  document: unknown;
  /** Inputs after validation (defaults filled in). */
  inputs: Record<string, unknown>;
  /** Run-level spending cap in micros (decimal string), checked before each llm step. */
  budgetMicros?: string | null;
  /** Resume/fork: step key → output of a completed step of the source run, reused without a call. */
  reuse?: Record<string, { output: unknown; detail?: unknown }> | null;
  sourceRunId?: string | null;
  /** Nesting depth of `workflow` steps (child runs). */
  depth?: number;
  actor: { type: 'user' | 'api_key'; id: string };
}

export const DSL_WORKFLOW_TYPE = 'dslWorkflow';
export const dslWorkflowId = (runId: string) => `wf-run-${runId}`;
/** Signal carrying a human decision for an approval step. */
export const DSL_APPROVAL_SIGNAL = 'approval';
export interface DslApprovalSignal {
  step_key: string;
  decision: 'approve' | 'reject';
  by: string;
  comment?: string | null;
}

/** The contract between the gateway (which starts ingestions) and the ingestion workflow. */
export interface IngestionInput {
  documentId: string;
  knowledgeBaseId: string;
  orgId: string;
  projectId: string;
  /** documents.generation this ingestion writes; a newer generation supersedes it. */
  generation: number;
  traceId: string;
  actor: { type: 'user' | 'api_key'; id: string };
}

export const INGEST_WORKFLOW_TYPE = 'ingestDocumentWorkflow';
export const ingestWorkflowId = (documentId: string, generation: number) => `ingest-${documentId}-${generation}`;
/** Progress events of one ingestion live in their own stream (keyed like a run's). */
export const ingestEventsId = (documentId: string, generation: number) => `ingest:${documentId}:${generation}`;
