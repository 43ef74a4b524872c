import { parseWorkflow } from './src/index.ts';
const cases: Record<string, string> = {
cycle: `name: x
steps:
  - id: a
    kind: template
    template: hi
    needs: [b]
  - id: b
    kind: template
    template: hi
    needs: [a]
`,
unknownNeed: `name: x
steps:
  - id: a
    kind: template
    template: hi
    needs: [bb]
  - id: b
    kind: template
    template: hi
`,
exprErr: `name: x
steps:
  - id: a
    kind: template
    template: "Hello \${{ inputs.name + }} there"
`,
exprBlock: `name: x
inputs:
  type: object
  properties:
    topic: { type: string }
steps:
  - id: a
    kind: llm
    prompt: |
      Hello
      about \${{ inputs.topik }} ok
`,
badKind: `name: x
steps:
  - id: a
    kind: lllm
    prompt: x
`,
extraProp: `name: x
steps:
  - id: a
    kind: http
    url: https://example.com
    allow_private: true
`,
missingReq: `name: x
steps:
  - id: a
    kind: retrieve
    knowledge_base: kb
`,
overNotExpr: `name: x
steps:
  - id: a
    kind: map
    over: [1, 2]
    steps:
      - id: b
        kind: template
        template: \${{ item }}
`,
overString: `name: x
inputs: { type: object, properties: { topic: { type: string } } }
steps:
  - id: a
    kind: map
    over: \${{ inputs.topic }}
    steps:
      - id: b
        kind: template
        template: \${{ item }}
`,
proto: `name: x
steps:
  - id: a
    kind: transform
    value: \${{ inputs.constructor }}
`,
badOutSchema: `name: x
steps:
  - id: a
    kind: llm
    prompt: hi
    output_schema:
      type: object
      properties:
        n: { type: strin }
`,
json: `{"name": "x", "steps": [{"id": "a", "kind": "template", "template": "x",}]}`,
jsonDup: `{"name": "x", "name": "y", "steps": [{"id": "a", "kind": "template", "template": "x"}]}`,
jsonOk: `{"name": "x", "steps": [{"id": "a", "kind": "template", "template": "\${{ steps.b.output }}"}, {"id": "b", "kind": "template", "template": "x"}]}`,
dupKey: `name: x
name: y
steps: []
`,
tab: `name: x
steps:
\t- id: a
`,
llmBoth: `name: x
steps:
  - id: a
    kind: llm
`,
empty: ``,
loopOut: `name: x
steps:
  - id: l
    kind: loop
    max_iterations: 101
    steps:
      - id: a
        kind: template
        template: \${{ loop.index }}
  - id: b
    kind: template
    template: \${{ steps.a.output }} \${{ loop.index }}
`,
};
for (const [name, src] of Object.entries(cases)) {
  const r = parseWorkflow(src);
  console.log(`--- ${name}: ok=${r.ok}`);
  for (const e of r.ok ? r.warnings : r.errors) console.log(`  ${e.code} ${e.pointer} @${e.line}:${e.column}${e.position !== undefined ? ' pos ' + e.position : ''} — ${e.message}`);
}
