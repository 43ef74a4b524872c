// Fewer deadlock-guarded calls into the workflow sandbox (workflow code on the worker's main thread).
//
// The SDK passes its deadlock guard (`isolateExecutionTimeout`) to every `runInContext` into the
// reused V8 sandbox, and Node starts and joins a watchdog thread for each such call (~100 µs of
// CPU and ~240 µs of the main thread's wall time each here; in a CPU profile of the worker over a
// whole chat bench, `runInContext` was 23% of its CPU). An activation makes three such calls:
// `activate` (the jobs, and with them the workflow's own code), `tryUnblockConditions` (the
// workflow's `condition()` predicates) and `concludeActivation` (collects the commands); a run adds
// `initRuntime`, `initialize` and `dispose`. Only some of them can run workflow code, and those stay
// guarded:
// - `tryUnblockConditions` with no blocked condition and no pending task error evaluates nothing
//   and returns 0: it is answered without entering the sandbox. (Microtasks need no flush: the
//   sandbox runs with `microtaskMode: 'afterEvaluate'`, so the previous call drained them.)
// - `concludeActivation` and `dispose` run only SDK code (commands spliced out, unknown updates
//   rejected, sandbox destructors) unless workflow interceptors of the `internals` kind are
//   registered — none are here; with any, they stay guarded.
// `activate`, `initialize`, `initRuntime` and every other call keep the guard, so a workflow stuck
// in a loop still fails its task (tests/integration/worker.test.ts).
import vm from 'node:vm';
import { ReusableVMWorkflowCreator } from '@temporalio/worker/lib/workflow/reusable-vm.js';

type WorkflowModuleCall = (...args: unknown[]) => unknown;
type WorkflowModule = Record<string | symbol, WorkflowModuleCall>;

/** The parts of the SDK's BaseVMWorkflow (1.24) this relies on; checked before each use. */
interface SandboxedWorkflow {
  context?: vm.Context;
  activator?: {
    /** A Map of the sandbox's realm (so not `instanceof Map` here). */
    blockedConditions?: Map<unknown, unknown>;
    workflowTaskError?: unknown;
    interceptors?: { internals?: unknown[] };
  };
  workflowModule: WorkflowModule;
}

/** The SDK's own entry script (reusable-vm.js): reads `__temporal_args`, swaps in the run's globals. */
const callIntoScope = new vm.Script('__TEMPORAL_CALL_INTO_SCOPE()');
const SDK_ONLY_CALLS = new Set<string | symbol>(['concludeActivation', 'dispose']);

let installed = false;

/** Installs the leaner calls for every reused-context workflow this process creates (idempotent). */
export function installLeanSandboxCalls(): void {
  if (installed) return;
  installed = true;
  const creator = ReusableVMWorkflowCreator.prototype;
  const createWorkflow = creator.createWorkflow;
  creator.createWorkflow = async function createWorkflowWithLeanCalls(this: ReusableVMWorkflowCreator, ...args: Parameters<typeof createWorkflow>) {
    const workflow = await createWorkflow.apply(this, args);
    useLeanCalls(workflow as unknown as SandboxedWorkflow);
    return workflow;
  };
}

/** How many workflows got the leaner calls (tests check that an SDK upgrade did not turn them off). */
export const leanSandboxCalls = { workflows: 0 };

function useLeanCalls(workflow: SandboxedWorkflow): void {
  const { context, activator } = workflow;
  // The run's globals holder: `initRuntime`, called by createWorkflow, made it the sandbox's current one.
  const holder: unknown = context?.__TEMPORAL_BAG_HOLDER__;
  if (!context || !holder || typeof activator?.blockedConditions?.size !== 'number' || !Array.isArray(activator.interceptors?.internals)) return;
  const guarded = workflow.workflowModule;
  const unguarded = (fn: string | symbol): WorkflowModuleCall => (...args) => {
    if (activator.interceptors!.internals!.length > 0) return guarded[fn]!(...args);
    context.__temporal_args = [holder, fn, args];
    return callIntoScope.runInContext(context, { displayErrors: true });
  };
  const tryUnblockConditions: WorkflowModuleCall = (...args) =>
    activator.blockedConditions!.size === 0 && activator.workflowTaskError === undefined ? 0 : guarded.tryUnblockConditions!(...args);
  const lean = new Proxy(guarded, {
    get(target, fn) {
      if (fn === 'tryUnblockConditions') return tryUnblockConditions;
      if (SDK_ONLY_CALLS.has(fn)) return unguarded(fn);
      return target[fn];
    },
  });
  workflow.workflowModule = lean;
  leanSandboxCalls.workflows++;
}
