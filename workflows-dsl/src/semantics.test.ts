// Semantic checks beyond the corpus: what is allowed (visibility, scopes), and the warnings.
import { describe, expect, it } from 'vitest';
import { checkSemantics, parseWorkflow, validateWorkflow } from './index.ts';

const codes = (source: string) => {
  const result = parseWorkflow(source);
  return {
    errors: result.ok ? [] : result.errors.map((e) => `${e.code} ${e.pointer}`),
    warnings: result.warnings.map((w) => `${w.code} ${w.pointer}`),
  };
};
const ok = (source: string) => expect(codes(source)).toEqual({ errors: [], warnings: [] });

describe('what an expression may read', () => {
  it('a DAG step reads what it needs, directly or transitively', () => {
    ok(`name: x
steps:
  - { id: a, kind: template, template: a }
  - { id: b, kind: template, template: b, needs: [a] }
  - { id: c, kind: template, template: "\${{ steps.a.output }}\${{ steps.b.output }}", needs: [b] }
`);
  });

  it('a DAG step does not read a sibling it does not need', () => {
    expect(
      codes(`name: x
steps:
  - { id: a, kind: template, template: a }
  - { id: b, kind: template, template: b }
  - { id: c, kind: template, template: "\${{ steps.b.output }}", needs: [a] }
`).errors,
    ).toEqual(['missing_dependency /steps/2/template']);
  });

  it('a nested step reads its container’s ancestors and earlier steps of its block', () => {
    ok(`name: x
inputs: { type: object, properties: { xs: { type: array } } }
steps:
  - { id: before, kind: template, template: b }
  - id: each
    kind: map
    over: \${{ inputs.xs }}
    steps:
      - { id: one, kind: template, template: "\${{ steps.before.output }} \${{ item }} \${{ index }}" }
      - { id: two, kind: template, template: "\${{ steps.one.output }}" }
  - { id: after, kind: transform, value: "\${{ steps.each.output }}" }
`);
  });

  it('a loop’s until reads the iteration’s steps and the loop variables', () => {
    ok(`name: x
steps:
  - id: l
    kind: loop
    max_iterations: 5
    until: \${{ steps.check.output.done || loop.index >= 3 }}
    steps:
      - { id: work, kind: template, template: "\${{ default(loop.previous.work, 'start') }}" }
      - { id: check, kind: transform, value: { done: "\${{ contains(steps.work.output, 'x') }}" } }
  - { id: last, kind: transform, value: "\${{ [steps.l.output.check, steps.l.iterations] }}" }
`);
  });

  it('inner map variables shadow outer ones and both are visible', () => {
    ok(`name: x
steps:
  - id: outer
    kind: map
    over: \${{ [[1, 2], [3]] }}
    as: row
    steps:
      - id: inner
        kind: map
        over: \${{ row }}
        as: cell
        steps:
          - { id: pair, kind: transform, value: "\${{ [row, cell, index] }}" }
`);
  });

  it('variables: visible in the block that sets them and in nested blocks', () => {
    ok(`name: x
steps:
  - { id: s, kind: set, values: { base: 10 } }
  - id: l
    kind: loop
    max_iterations: 3
    steps:
      - { id: bump, kind: set, values: { total: "\${{ default(vars.total, vars.base) + 1 }}" } }
      - { id: show, kind: template, template: "\${{ vars.total }}" }
  - { id: end, kind: template, template: "\${{ vars.base }}" }
`);
  });

  it('a fallback step reads what the failed step could, plus the failed step itself', () => {
    ok(`name: x
steps:
  - { id: a, kind: template, template: a }
  - { id: b, kind: http, url: "https://example.org/\${{ steps.a.output }}", on_error: { fallback: c } }
  - { id: c, kind: template, template: "\${{ steps.a.output }} \${{ steps.b.error.message }}" }
  - { id: d, kind: template, template: "\${{ steps.c.status }}" }
`);
  });

  it('run outputs read any top-level step', () => {
    ok(`name: x
steps:
  - { id: a, kind: template, template: a }
  - { id: b, kind: template, template: b, needs: [] }
outputs:
  both: "\${{ steps.a.output + steps.b.output }}"
`);
  });
});

describe('warnings', () => {
  it('constant conditions', () => {
    expect(
      codes(`name: x
steps:
  - { id: a, kind: template, template: a, if: "\${{ false }}" }
  - id: s
    kind: switch
    cases: [{ when: "\${{ 1 }}", then: b }]
  - { id: b, kind: template, template: b }
`).warnings,
    ).toEqual(['constant_condition /steps/0/if', 'constant_condition /steps/1/cases/0/when']);
  });

  it('repair_retries without output_schema', () => {
    expect(codes(`name: x\nsteps:\n  - { id: a, kind: llm, prompt: p, repair_retries: 2 }\n`).warnings).toEqual(['unused_repair_retries /steps/0/repair_retries']);
  });

  it('a workflow calling itself', () => {
    expect(codes(`name: self\nsteps:\n  - { id: a, kind: workflow, workflow: self }\n`).warnings).toEqual(['recursive_workflow /steps/0/workflow']);
  });

  it('reading a property the output_schema does not declare', () => {
    expect(
      codes(`name: x
steps:
  - { id: a, kind: llm, prompt: p, output_schema: { type: object, properties: { items: { type: array, items: { type: object, properties: { title: { type: string } } } } } } }
  - { id: b, kind: template, template: "\${{ steps.a.output.items[0].title }} \${{ steps.a.output.items[0].name }} \${{ steps.a.output.item }}" }
`).warnings,
    ).toEqual(['unknown_output_property /steps/1/template', 'unknown_output_property /steps/1/template']);
  });
});

describe('checkSemantics on raw values', () => {
  it('never throws on malformed values and skips what the schema reports', () => {
    for (const value of [null, 1, 'x', [], { steps: 3 }, { steps: [1, null, { id: 5 }, { id: 'a', kind: 'map', steps: 'x' }] }, { steps: [{ id: 'a', kind: 'parallel', branches: { b: 1, c: { steps: 2 } } }] }]) {
      expect(() => checkSemantics(value)).not.toThrow();
    }
  });

  it('a schema error on a value hides semantic errors inside that value', () => {
    const result = validateWorkflow({ name: 'x', steps: [{ id: 'a', kind: 'map', over: 'not an expression ${{ nope }}', steps: [{ id: 'b', kind: 'template', template: 'x' }] }] });
    expect(result.ok ? [] : result.errors.map((e) => e.code)).toEqual(['expected_expression']);
  });
});
