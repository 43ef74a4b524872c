// The readiness rule of a block, as a pure function, so the interpreter and its tests agree on
// when a step starts or is skipped:
//
// - A step is decided once everything it waits for (its `dependencies`) has settled.
// - A switch target runs only when its switch succeeded and chose it; otherwise it is skipped.
// - A step with `needs` is skipped when every one of its needs was skipped (a join after a
//   switch runs when one branch ran). In a sequence the implicit order never skips anything.
// - Otherwise it starts; the interpreter then evaluates its `if` (false → skipped).
// - Fallback steps (handlers) are never started here: the interpreter runs one in place of a
//   failed step whose on_error names it.
// - When an `output` step of the block has succeeded, the block is complete and nothing starts.
import type { CompiledBlock, CompiledStep } from './types.ts';

/** `failed` is a failure the block survived (on_error: continue). */
export type StepStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'skipped';
export type SkipReason = 'not_selected' | 'dependencies_skipped';

export interface BlockState {
  /** Status of each step of the block; absent means pending. */
  status: Readonly<Record<string, StepStatus>>;
  /** Choices of the block's succeeded switch steps: switch id → chosen step id (null: none). */
  chosen: Readonly<Record<string, string | null>>;
}

export interface NextSteps {
  /** Steps to start now, in the block's order. */
  start: string[];
  /** Steps to mark skipped now (cascades included), with the reason. */
  skip: { id: string; reason: SkipReason }[];
  /** True when nothing is left to run: every non-handler step settled, or an output step succeeded. */
  complete: boolean;
}

const settled = (status: StepStatus | undefined) => status === 'succeeded' || status === 'failed' || status === 'skipped';

export function nextSteps(block: CompiledBlock, steps: Readonly<Record<string, CompiledStep>>, state: BlockState): NextSteps {
  const status = new Map<string, StepStatus>(block.order.map((id) => [id, state.status[id] ?? 'pending']));
  if (block.outputs.some((id) => status.get(id) === 'succeeded')) return { start: [], skip: [], complete: true };

  const skip: NextSteps['skip'] = [];
  const start: string[] = [];
  const handlers = new Set(block.handlers);
  // Skips can unblock further decisions: repeat until nothing changes.
  for (let changed = true; changed; ) {
    changed = false;
    for (const id of block.order) {
      if (handlers.has(id) || status.get(id) !== 'pending' || start.includes(id)) continue;
      const step = steps[id];
      const deps = block.dependencies[id] ?? [];
      if (!step || !deps.every((d) => settled(status.get(d)))) continue;
      let reason: SkipReason | undefined;
      if (step.switchedBy !== null) {
        const switchStatus = status.get(step.switchedBy);
        if (switchStatus !== 'succeeded' || state.chosen[step.switchedBy] !== id) reason = 'not_selected';
      }
      if (!reason && step.needs.length > 0 && step.needs.every((n) => status.get(n) === 'skipped')) reason = 'dependencies_skipped';
      if (reason) {
        status.set(id, 'skipped');
        skip.push({ id, reason });
        changed = true;
      } else {
        start.push(id);
      }
    }
  }
  const complete = start.length === 0 && block.order.every((id) => handlers.has(id) || settled(status.get(id)));
  return { start, skip, complete };
}
