import { parseWorkflow } from './src/index.ts';
const t = (s: string) => `name: x\n${s}`;
const cases: Record<string, string> = {
switchBack: t(`steps:
  - id: a
    kind: template
    template: x
  - id: s
    kind: switch
    cases:
      - when: \${{ true }}
        then: a
`),
switchDag: t(`steps:
  - id: s
    kind: switch
    needs: [a]
    cases:
      - when: \${{ steps.a.output == 'x' }}
        then: a
  - id: a
    kind: template
    template: x
`),
fallback: t(`steps:
  - id: a
    kind: http
    url: https://x
    on_error: { fallback: b }
  - id: b
    kind: template
    template: \${{ steps.a.error.message }}
  - id: c
    kind: template
    template: \${{ steps.b.output }}
    needs: [b]
`),
fallbackSelf: t(`steps:
  - id: a
    kind: http
    url: https://x
    on_error: { fallback: a }
`),
outputUnreach: t(`steps:
  - id: a
    kind: output
    value: 1
  - id: b
    kind: template
    template: x
`),
outputNeeds: t(`steps:
  - id: a
    kind: output
    value: 1
  - id: b
    kind: template
    template: x
    needs: [a]
`),
vars: t(`steps:
  - id: s
    kind: set
    values: { count: 1 }
  - id: m
    kind: map
    over: \${{ [1,2] }}
    steps:
      - id: inner
        kind: set
        values: { local: \${{ vars.count + item }} }
      - id: use
        kind: template
        template: \${{ vars.local }} \${{ vars.nope }}
  - id: after
    kind: template
    template: \${{ vars.local }}
`),
parallel: t(`steps:
  - id: p
    kind: parallel
    branches:
      web:
        steps:
          - id: w
            kind: http
            url: https://x
      kb:
        steps:
          - id: k
            kind: template
            template: \${{ steps.w.output }}
  - id: after
    kind: template
    template: \${{ steps.p.output.web }}
`),
dupId: t(`steps:
  - id: a
    kind: template
    template: x
  - id: m
    kind: loop
    max_iterations: 2
    steps:
      - id: a
        kind: template
        template: x
`),
selfRead: t(`steps:
  - id: a
    kind: template
    template: \${{ steps.a.output }}
`),
needOuter: t(`steps:
  - id: a
    kind: template
    template: x
  - id: m
    kind: loop
    max_iterations: 2
    steps:
      - id: b
        kind: template
        template: \${{ steps.a.output }}
        needs: [a]
`),
fieldTypo: t(`steps:
  - id: a
    kind: template
    template: x
  - id: b
    kind: template
    template: \${{ steps.a.outputs }}
`),
stepsDynamic: t(`steps:
  - id: a
    kind: template
    template: \${{ steps['a'] }} \${{ json(steps) }}
`),
multiBlockIf: t(`steps:
  - id: a
    kind: template
    template: x
    if: \${{ true }} and \${{ false }}
`),
constIf: t(`steps:
  - id: a
    kind: template
    template: x
    if: \${{ false }}
`),
numExpr: t(`steps:
  - id: a
    kind: llm
    prompt: x
    temperature: \${{ 'hot' }}
    max_tokens: 0
`),
retrySchema: t(`steps:
  - id: a
    kind: llm
    prompt: x
    retry: { max_attempts: 0, backoff: { initial: 0s } }
    timeout: 0s
    on_error: retry
`),
templateRetry: t(`steps:
  - id: a
    kind: template
    template: x
    retry: { max_attempts: 2 }
`),
badInputs: `name: x
inputs:
  type: object
  properties:
    n: { type: number, minimum: "0" }
  required: [n, m]
steps:
  - id: a
    kind: template
    template: \${{ inputs.n }}
`,
unknownTag: t(`steps:
  - id: a
    kind: template
    template: !foo x
`),
aliasBomb: `a: &a [x, x, x, x, x, x, x, x, x, x]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
name: x
steps: []
`,
notObject: `- a\n- b\n`,
stringDoc: `hello`,
badId: t(`steps:
  - id: 1abc
    kind: template
    template: x
  - kind: template
    template: y
`),
};
for (const [name, src] of Object.entries(cases)) {
  const r = parseWorkflow(src);
  console.log(`--- ${name}: ok=${r.ok}`);
  for (const e of r.ok ? [] : r.errors) console.log(`  E ${e.code} ${e.pointer} @${e.line}:${e.column}${e.position !== undefined ? ' pos ' + e.position : ''} — ${e.message}`);
  for (const e of r.warnings) console.log(`  W ${e.code} ${e.pointer} @${e.line}:${e.column} — ${e.message}`);
}
