import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { compileWorkflow, nextSteps, parseWorkflow, WorkflowCompileError, type BlockState, type CompiledWorkflow, type StepStatus, type WorkflowDocument } from './index.ts';

function load(source: string): WorkflowDocument {
  const result = parseWorkflow(source);
  if (!result.ok) throw new Error(JSON.stringify(result.errors));
  return result.document;
}
const compile = (source: string) => compileWorkflow(load(source));

describe('compileWorkflow', () => {
  it('orders a sequence as written and chains each step to the previous one', () => {
    const plan = compile(`name: seq
steps:
  - { id: a, kind: template, template: a }
  - { id: b, kind: template, template: b }
  - { id: c, kind: template, template: c }
`);
    expect(plan.root).toMatchObject({ mode: 'sequence', order: ['a', 'b', 'c'], entry: ['a'], dependencies: { a: [], b: ['a'], c: ['b'] }, dependents: { a: ['b'], b: ['c'], c: [] } });
    expect(plan.steps.c!.needs).toEqual([]);
  });

  it('orders a DAG topologically, ties in document order', () => {
    const plan = compile(`name: dag
steps:
  - { id: report, kind: template, template: r, needs: [merge] }
  - { id: web, kind: template, template: w }
  - { id: merge, kind: template, template: m, needs: [kb, web] }
  - { id: kb, kind: template, template: k }
`);
    expect(plan.root.mode).toBe('dag');
    expect(plan.root.order).toEqual(['web', 'kb', 'merge', 'report']);
    expect(plan.root.entry).toEqual(['web', 'kb']);
    expect(plan.steps.merge).toMatchObject({ dependencies: ['kb', 'web'], needs: ['kb', 'web'] });
    expect(plan.stepIds).toEqual(['report', 'web', 'merge', 'kb']);
  });

  it('normalises retry, timeout, on_error, condition', () => {
    const plan = compile(`name: opts
version: 4
description: d
steps:
  - id: a
    kind: http
    url: https://example.org
    if: \${{ true || false }}
    timeout: 1m30s
    retry: { max_attempts: 4, backoff: { initial: 250ms, factor: 3, max: 5s } }
    on_error: { fallback: b }
  - { id: b, kind: http, url: "https://example.net", retry: { max_attempts: 2 }, on_error: continue }
  - { id: c, kind: template, template: c }
`);
    expect(plan).toMatchObject({ name: 'opts', version: 4, description: 'd', inputs: null, outputs: null });
    expect(plan.steps.a).toMatchObject({
      condition: '${{ true || false }}',
      timeoutMs: 90_000,
      retry: { maxAttempts: 4, initialIntervalMs: 250, backoffCoefficient: 3, maxIntervalMs: 5000 },
      onError: { action: 'fallback', step: 'b' },
      handler: false,
    });
    expect(plan.steps.b).toMatchObject({ handler: true, handlerFor: ['a'], dependencies: [], retry: { maxAttempts: 2, initialIntervalMs: 1000, backoffCoefficient: 2, maxIntervalMs: 60_000 }, onError: { action: 'continue' } });
    expect(plan.steps.c).toMatchObject({ dependencies: ['a'], retry: null, timeoutMs: null, condition: null, onError: { action: 'fail' } });
    expect(plan.root.handlers).toEqual(['b']);
    expect(plan.root.order).toEqual(['a', 'c', 'b']);
  });

  it('compiles nested blocks: map/loop body, parallel branches', () => {
    const plan = compile(`name: nested
steps:
  - id: p
    kind: parallel
    branches:
      left:
        steps:
          - id: l
            kind: loop
            max_iterations: 2
            steps:
              - { id: inner, kind: template, template: i }
      right:
        steps:
          - { id: r, kind: template, template: r }
`);
    expect(Object.keys(plan.steps!.p!.branches!)).toEqual(['left', 'right']);
    expect(plan.steps.p!.branches!.left).toMatchObject({ pointer: '/steps/0/branches/left/steps', order: ['l'] });
    expect(plan.steps.l).toMatchObject({ parent: 'p', branch: 'left', block: '/steps/0/branches/left/steps', body: { order: ['inner'], pointer: '/steps/0/branches/left/steps/0/steps' } });
    expect(plan.steps.inner).toMatchObject({ parent: 'l', branch: null, pointer: '/steps/0/branches/left/steps/0/steps/0' });
    expect(plan.stepIds).toEqual(['p', 'l', 'inner', 'r']);
  });

  it('records switch routes: targets depend on their switch', () => {
    const plan = compile(readFileSync(new URL('../test-corpus/valid/switch-join.yaml', import.meta.url), 'utf8'));
    expect(plan.steps.file_bug).toMatchObject({ switchedBy: 'route', dependencies: ['route'] });
    expect(plan.steps.answer).toMatchObject({ switchedBy: 'route', dependencies: ['route'] });
    expect(plan.steps.reply).toMatchObject({ switchedBy: null, needs: ['file_bug', 'answer'] });
  });

  it('throws WorkflowCompileError with every error for an invalid graph', () => {
    const doc = { name: 'x', steps: [{ id: 'a', kind: 'template', template: '${{ steps.zz.output }}', needs: ['a'] }] } as unknown as WorkflowDocument;
    try {
      compileWorkflow(doc);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(WorkflowCompileError);
      expect((error as WorkflowCompileError).errors.map((e) => e.code).sort()).toEqual(['cycle', 'unknown_step']);
      expect((error as Error).message).toMatch(/^workflow is invalid: /);
    }
  });

  it('is deterministic: compiling twice gives equal plans', () => {
    const source = readFileSync(new URL('../../examples/literature-review.yaml', import.meta.url), 'utf8');
    expect(compile(source)).toEqual(compile(source));
  });
});

/** Drives nextSteps like an interpreter would; `outcome` decides each started step's result. */
function simulate(plan: CompiledWorkflow, outcome: (id: string) => { status: StepStatus; chosen?: string | null }): { trace: string[]; status: Record<string, StepStatus> } {
  const state: { status: Record<string, StepStatus>; chosen: Record<string, string | null> } = { status: {}, chosen: {} };
  const trace: string[] = [];
  for (let round = 0; round < 50; round += 1) {
    const next = nextSteps(plan.root, plan.steps, state as BlockState);
    for (const { id, reason } of next.skip) {
      state.status[id] = 'skipped';
      trace.push(`skip ${id} (${reason})`);
    }
    if (next.complete) return { trace, status: state.status };
    if (next.start.length === 0) throw new Error('stuck');
    trace.push(`start ${next.start.join(',')}`);
    for (const id of next.start) {
      const result = outcome(id);
      state.status[id] = result.status;
      if (result.chosen !== undefined) state.chosen[id] = result.chosen;
    }
  }
  throw new Error('did not finish');
}

describe('nextSteps (the readiness rule)', () => {
  const dag = compile(`name: dag
steps:
  - { id: a, kind: template, template: a }
  - { id: b, kind: template, template: b }
  - { id: c, kind: template, template: c, needs: [a, b] }
  - { id: d, kind: template, template: d, needs: [c] }
`);

  it('starts independent steps together, then their join', () => {
    expect(simulate(dag, () => ({ status: 'succeeded' })).trace).toEqual(['start a,b', 'start c', 'start d']);
  });

  it('a failure the block survived (continue) does not block dependents', () => {
    expect(simulate(dag, (id) => ({ status: id === 'a' ? 'failed' : 'succeeded' })).status).toEqual({ a: 'failed', b: 'succeeded', c: 'succeeded', d: 'succeeded' });
  });

  it('skips cascade when every need was skipped, not when some ran', () => {
    const { trace } = simulate(dag, (id) => ({ status: id === 'a' || id === 'b' ? 'skipped' : 'succeeded' }));
    expect(trace).toEqual(['start a,b', 'skip c (dependencies_skipped)', 'skip d (dependencies_skipped)']);
    expect(simulate(dag, (id) => ({ status: id === 'a' ? 'skipped' : 'succeeded' })).trace).toEqual(['start a,b', 'start c', 'start d']);
  });

  it('in a sequence, a skipped step does not skip the next', () => {
    const seq = compile(`name: s\nsteps:\n  - { id: a, kind: template, template: a }\n  - { id: b, kind: template, template: b }\n`);
    expect(simulate(seq, (id) => ({ status: id === 'a' ? 'skipped' : 'succeeded' })).trace).toEqual(['start a', 'start b']);
  });

  it('a switch runs only its choice; the join after it runs', () => {
    const plan = compile(readFileSync(new URL('../test-corpus/valid/switch-join.yaml', import.meta.url), 'utf8'));
    const run = (choice: string | null) => simulate(plan, (id) => (id === 'route' ? { status: 'succeeded', chosen: choice } : { status: 'succeeded' })).trace;
    expect(run('answer')).toEqual(['start classify', 'start route', 'skip file_bug (not_selected)', 'start answer', 'start reply']);
    expect(run('file_bug')).toEqual(['start classify', 'start route', 'skip answer (not_selected)', 'start file_bug', 'start reply']);
    expect(run(null)).toEqual(['start classify', 'start route', 'skip file_bug (not_selected)', 'skip answer (not_selected)', 'skip reply (dependencies_skipped)']);
  });

  it('a skipped switch skips its targets', () => {
    const plan = compile(readFileSync(new URL('../test-corpus/valid/switch-join.yaml', import.meta.url), 'utf8'));
    expect(simulate(plan, (id) => ({ status: id === 'route' ? 'skipped' : 'succeeded' })).trace).toEqual([
      'start classify',
      'start route',
      'skip file_bug (not_selected)',
      'skip answer (not_selected)',
      'skip reply (dependencies_skipped)',
    ]);
  });

  it('never starts fallback steps, and an output step completes the block', () => {
    const plan = compile(`name: o
steps:
  - { id: a, kind: http, url: "https://example.org", on_error: { fallback: h } }
  - { id: h, kind: template, template: h }
  - { id: early, kind: output, value: 1, if: "\${{ steps.a.status == 'succeeded' }}" }
  - { id: late, kind: template, template: l }
`);
    expect(simulate(plan, () => ({ status: 'succeeded' })).trace).toEqual(['start a', 'start early']);
    expect(simulate(plan, (id) => ({ status: id === 'early' ? 'skipped' : 'succeeded' })).trace).toEqual(['start a', 'start early', 'start late']);
  });

  it('reports nothing to start while steps are running', () => {
    expect(nextSteps(dag.root, dag.steps, { status: { a: 'running', b: 'succeeded' }, chosen: {} })).toEqual({ start: [], skip: [], complete: false });
  });
});
