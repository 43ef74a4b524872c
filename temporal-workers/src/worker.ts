// Builds the worker: one task queue, the workflow bundle from ./workflows, activities with deps.
import { fileURLToPath } from 'node:url';
import os from 'node:os';
import v8 from 'node:v8';
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createRedis, type AppConfig, type Logger, type PgPool, type PrismaClient, type Redis } from '@deepspace/core';
import { createUpstreamClient, type OpenAI } from '@deepspace/core/ai/upstream';
import { createKnowledgeRuntime, type KnowledgeRuntime } from '@deepspace/core/knowledge/runtime';
import { createActivities } from './activities/index.ts';
import { installLeanSandboxCalls } from './sandbox-calls.ts';

export const WORKFLOWS_PATH = fileURLToPath(new URL('./workflows/index.ts', import.meta.url));

/**
 * Modules evaluated once for the worker's reused V8 sandbox instead of once per workflow run. Every
 * run otherwise re-evaluates its bundle's modules; the DSL runtime (pure, deterministic, no
 * per-run state: its module-level values are read-only Sets and constants, which the SDK freezes)
 * was most of that — measured ~1.5 ms of the 2.5–3 ms our bundle adds to a run's first workflow
 * task over a one-function bundle.
 */
export const SHARED_WORKFLOW_MODULES = ['@deepspace/workflows-dsl/runtime'] as const;

export interface CreateWorkerOptions {
  config: AppConfig;
  connection: NativeConnection;
  prisma: PrismaClient;
  /** The billing ledger's pg pool. */
  pool: PgPool;
  logger: Logger;
  /** Built from config when not given. */
  redis?: Redis;
  upstream?: OpenAI;
  /** Built from config when not given. */
  knowledge?: KnowledgeRuntime;
  taskQueue?: string;
  overrides?: Partial<WorkerOptions>;
}

export async function createWorker(options: CreateWorkerOptions): Promise<Worker> {
  const identity = `${os.hostname()}:${process.pid}`;
  const sandbox = workflowSandboxOptions(options.config);
  const create = () => Worker.create({
    connection: options.connection,
    namespace: options.config.temporal.namespace,
    taskQueue: options.taskQueue ?? options.config.temporal.taskQueue,
    identity,
    workflowsPath: WORKFLOWS_PATH,
    bundlerOptions: { preloadModules: [...SHARED_WORKFLOW_MODULES] },
    activities: createActivities({
      prisma: options.prisma,
      pool: options.pool,
      logger: options.logger,
      workerIdentity: identity,
      config: options.config,
      redis: options.redis ?? eventRedis(options),
      upstream: options.upstream ?? createUpstreamClient(options.config),
      knowledge: options.knowledge ?? createKnowledgeRuntime(options.config),
    }),
    ...sandbox,
    ...options.overrides,
  });
  if (sandbox.debugMode) installLeanSandboxCalls();
  return sandbox.debugMode ? withMainRealmPromisesSkipped(create) : create();
}

/**
 * The SDK tracks each workflow promise's stack (the Temporal UI's "stack trace" of a running
 * workflow) with a process-wide V8 promise hook whose init and settled callbacks first look up the
 * promise's realm by compiling a `Function` on that promise's constructor. On the sandbox thread
 * only workflow promises exist; on the main thread every promise of the activities (pg, Redis,
 * HTTP, the streamed reply) paid for that lookup and found no workflow. Promises of this realm are
 * never workflow promises (the sandbox is another V8 context with its own Promise), so the hook
 * created while the worker is built skips them before the lookup: the same result, without the
 * compile per promise. Only hooks created during Worker.create are wrapped.
 */
async function withMainRealmPromisesSkipped<T>(create: () => Promise<T>): Promise<T> {
  const hooks = v8.promiseHooks;
  const createHook = hooks.createHook;
  hooks.createHook = (callbacks) => {
    const { init, settled } = callbacks;
    return createHook({
      ...callbacks,
      ...(init ? { init: (promise: Promise<unknown>, parent: Promise<unknown>) => (promise instanceof Promise ? undefined : init(promise, parent)) } : {}),
      ...(settled ? { settled: (promise: Promise<unknown>) => (promise instanceof Promise ? undefined : settled(promise)) } : {}),
    });
  };
  try {
    return await create();
  } finally {
    hooks.createHook = createHook;
  }
}

/** The SDK's deadlock guard: a workflow task whose code runs longer than this fails (and is retried). */
export const WORKFLOW_DEADLOCK_TIMEOUT = '5s';

/**
 * Where workflow code runs. The SDK's default is a sandbox thread: every activation then crosses
 * threads twice, which measured ~3 ms per chat run's first workflow task here. `debugMode` runs the
 * same reused V8 sandbox on the worker's main thread; it only lifts the deadlock guard through its
 * default, so the guard is set explicitly (vm.runInContext's timeout interrupts a stuck workflow on
 * either thread). `isolateExecutionTimeout` is read by the SDK but not in its public WorkerOptions
 * type; tests/integration/worker.test.ts fails if an SDK upgrade stops honouring it.
 */
export function workflowSandboxOptions(config: AppConfig): { debugMode: boolean; isolateExecutionTimeout: string } {
  return { debugMode: !config.temporal.workflowThread, isolateExecutionTimeout: WORKFLOW_DEADLOCK_TIMEOUT };
}

function eventRedis(options: CreateWorkerOptions): Redis {
  const redis = createRedis(options.config.redis.url, options.config.redis.keyPrefix);
  redis.on('error', (error) => options.logger.warn({ err: error.message }, 'redis error'));
  return redis;
}

/** Connects to Temporal, failing fast (instead of retrying forever) when it is unreachable. */
export async function connectToTemporal(address: string, timeoutMs = 10_000): Promise<NativeConnection> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      NativeConnection.connect({ address }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer from Temporal at ${address} within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
