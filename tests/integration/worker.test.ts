import { spawn } from 'node:child_process';
import vm from 'node:vm';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '@deepspace/core';
import { ROOT } from '../../scripts/lib/paths.ts';
import { freePort } from '../../scripts/lib/services.ts';
import { startTestWorker } from '../support/stack.ts';
import { workflowSandboxOptions } from '../../temporal-workers/src/worker.ts';
import { leanSandboxCalls } from '../../temporal-workers/src/sandbox-calls.ts';

function runWorker(env: NodeJS.ProcessEnv) {
  const child = spawn(process.execPath, [path.join(ROOT, 'temporal-workers/src/main.ts')], {
    env: { ...process.env, LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, exit, output: () => output };
}

async function until(condition: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('worker process', () => {
  it('exits non-zero with a clear log line when Temporal is unreachable at start', async () => {
    const deadPort = await freePort();
    const worker = runWorker({ TEMPORAL_ADDRESS: `127.0.0.1:${deadPort}` });
    const code = await worker.exit;
    expect(code).not.toBe(0);
    expect(worker.output()).toContain('Temporal is unreachable');
  });

  it('logs its task queue, runs workflows end to end, and stops cleanly on SIGTERM', async () => {
    const taskQueue = `worker-proc-${Date.now()}`;
    const worker = runWorker({ TEMPORAL_TASK_QUEUE: taskQueue });
    try {
      await until(() => worker.output().includes('"msg":"worker started"'), 60_000);
      const started = worker.output().split('\n').find((l) => l.includes('"msg":"worker started"'))!;
      expect(JSON.parse(started).task_queue).toBe(taskQueue);

      const connection = await Connection.connect({ address: process.env.TEMPORAL_ADDRESS! });
      try {
        const client = new Client({ connection });
        const result = await client.workflow.execute('systemProbeWorkflow', {
          taskQueue,
          workflowId: `probe-${taskQueue}`,
          args: [{ traceId: 'f'.repeat(32) }],
        });
        expect(result.traceId).toBe('f'.repeat(32));
        expect(Date.parse(result.databaseTime)).not.toBeNaN();
      } finally {
        await connection.close();
      }
      worker.child.kill('SIGTERM');
      expect(await worker.exit).toBe(0);
      expect(worker.output()).toContain('worker stopped');
    } finally {
      worker.child.kill('SIGKILL');
    }
  });

  it('runs workflow code on its main thread by default, with the deadlock guard kept (a workflow stuck in a loop fails its task, the worker keeps serving), the DSL runtime shared by all runs, and workflow stack traces kept', async () => {
    expect(workflowSandboxOptions(loadConfig({}))).toEqual({ debugMode: true, isolateExecutionTimeout: '5s' });
    expect(workflowSandboxOptions(loadConfig({ TEMPORAL_WORKFLOW_THREAD: 'true' }))).toEqual({ debugMode: false, isolateExecutionTimeout: '5s' });

    const stack = await startTestWorker({}, { workflowsPath: path.join(ROOT, 'tests/integration/fixtures/stuck-workflows.ts') });
    try {
      // debugMode alone would lift the guard (its default timeout is 2^32 ms): ours sets it back.
      expect(stack.worker.options.debugMode).toBe(true);
      expect(stack.worker.options.isolateExecutionTimeoutMs).toBe(5_000);
      const taskQueue = stack.worker.options.taskQueue;
      const stuck = await stack.client.workflow.start('stuckWorkflow', { taskQueue, workflowId: `stuck-${Date.now()}` });
      const startedAt = Date.now();
      let failure: string | undefined;
      while (!failure && Date.now() - startedAt < 30_000) {
        await new Promise((r) => setTimeout(r, 250));
        const history = await stuck.fetchHistory();
        failure = history.events?.find((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure?.message ?? undefined;
      }
      expect(failure).toMatch(/Script execution timed out after 5000ms/);
      await stuck.terminate('test done');
      // The main thread was blocked for the guard's 5 s, not for good: the next workflow runs.
      const echoed = await stack.client.workflow.execute('echoWorkflow', { taskQueue, workflowId: `echo-${Date.now()}`, args: ['still serving'] });
      expect(echoed).toBe('still serving');
      // The DSL runtime is evaluated once for the sandbox (SHARED_WORKFLOW_MODULES), not per run.
      const shared = await stack.client.workflow.execute('dslRuntimeSharedWorkflow', { taskQueue, workflowId: `shared-${Date.now()}` });
      expect(shared).toEqual({ functionFrozen: true, constantsFrozen: true });
      // The SDK's promise hook skips this realm's promises (withMainRealmPromisesSkipped) but still
      // tracks the workflow's own: the stack-trace query (Temporal UI) shows where a run waits.
      const waiting = await stack.client.workflow.start('waitingWorkflow', { taskQueue, workflowId: `waiting-${Date.now()}` });
      const stackTrace = await waiting.query<string>('__stack_trace');
      expect(stackTrace).toMatch(/waitingWorkflow/);
      expect(stackTrace).toMatch(/stuck-workflows\.ts/);
      await waiting.signal('release');
      expect(await waiting.result()).toBe('released');
    } finally {
      await stack.stop();
    }
  });

  it('keeps the deadlock guard on every sandbox call that can run workflow code, and only there (sandbox-calls.ts)', async () => {
    // Every call into the sandbox, by the SDK's entry point name, with or without the watchdog.
    const calls: Array<{ fn: string; guarded: boolean }> = [];
    const runInContext = vm.Script.prototype.runInContext;
    vm.Script.prototype.runInContext = function (this: vm.Script, context: vm.Context, options?: vm.RunningScriptOptions) {
      const args = (context as { __temporal_args?: [unknown, string, unknown[]] }).__temporal_args;
      if (args) calls.push({ fn: args[1], guarded: options?.timeout !== undefined });
      return runInContext.call(this, context, options);
    };
    const stack = await startTestWorker({}, { workflowsPath: path.join(ROOT, 'tests/integration/fixtures/stuck-workflows.ts') });
    try {
      const taskQueue = stack.worker.options.taskQueue;
      const workflowsBefore = leanSandboxCalls.workflows;
      calls.length = 0;
      expect(await stack.client.workflow.execute('echoWorkflow', { taskQueue, workflowId: `echo-lean-${Date.now()}`, args: ['lean'] })).toBe('lean');
      expect(leanSandboxCalls.workflows).toBe(workflowsBefore + 1);
      const guarded = [...new Set(calls.filter((c) => c.guarded).map((c) => c.fn))].sort();
      const unguarded = [...new Set(calls.filter((c) => !c.guarded).map((c) => c.fn))].sort();
      // Workflow code runs in these (module evaluation, the workflow function, signal handlers).
      expect(guarded).toEqual(['activate', 'initRuntime', 'initialize']);
      // SDK code only (the run's dispose may come later, on eviction); tryUnblockConditions with
      // nothing blocked does not enter the sandbox at all.
      expect(unguarded).toContain('concludeActivation');
      expect(unguarded.filter((fn) => fn !== 'concludeActivation' && fn !== 'dispose')).toEqual([]);
      expect(calls.some((c) => c.fn === 'tryUnblockConditions')).toBe(false);

      // A blocked condition is evaluated in a guarded call: a predicate that spins fails the task.
      const spinning = await stack.client.workflow.start('spinningConditionWorkflow', { taskQueue, workflowId: `spin-${Date.now()}` });
      await spinning.signal('spin');
      const startedAt = Date.now();
      let failure: string | undefined;
      while (!failure && Date.now() - startedAt < 30_000) {
        await new Promise((r) => setTimeout(r, 250));
        const history = await spinning.fetchHistory();
        failure = history.events?.find((e) => e.workflowTaskFailedEventAttributes)?.workflowTaskFailedEventAttributes?.failure?.message ?? undefined;
      }
      expect(failure).toMatch(/Script execution timed out after 5000ms/);
      expect(calls.some((c) => c.fn === 'tryUnblockConditions' && c.guarded)).toBe(true);
      await spinning.terminate('test done');
    } finally {
      vm.Script.prototype.runInContext = runInContext;
      await stack.stop();
    }
  });
});
