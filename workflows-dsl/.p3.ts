import { parseWorkflow, compileWorkflow, nextSteps } from './src/index.ts';
const src = `name: x
steps:
  - id: s
    kind: set
    values: { count: 1 }
  - id: m
    kind: map
    over: \${{ [1,2] }}
    steps:
      - id: inner
        kind: set
        values: { local: "\${{ vars.count + item }}" }
      - id: use
        kind: template
        template: \${{ vars.local }} \${{ vars.nope }} \${{ index }}
  - id: after
    kind: template
    template: \${{ vars.local }}
  - id: c
    kind: http
    url: https://x
    on_error: { fallback: fb }
  - id: fb
    kind: template
    template: \${{ steps.c.error }}
  - id: d
    kind: template
    template: \${{ steps.fb.output }} \${{ steps.c.output }}
`;
const r = parseWorkflow(src);
for (const e of r.ok ? [] : r.errors) console.log(`  E ${e.code} ${e.pointer} @${e.line}:${e.column} — ${e.message}`);
const ok = parseWorkflow(`name: x
steps:
  - id: a
    kind: template
    template: x
  - id: sw
    kind: switch
    needs: [a]
    cases:
      - when: \${{ steps.a.output == 'x' }}
        then: left
    default: right
  - id: left
    kind: template
    template: L
  - id: right
    kind: template
    template: R
    on_error: { fallback: rescue }
  - id: rescue
    kind: template
    template: rescue
  - id: join
    kind: template
    needs: [left, right]
    template: \${{ default(steps.left.output, steps.right.output) }}
  - id: tail
    kind: template
    needs: [right]
    template: tail
`);
if (!ok.ok) { console.log(ok.errors); process.exit(1); }
const plan = compileWorkflow(ok.document);
console.log(JSON.stringify(plan.root, null, 1));
let st = { status: {} as Record<string, any>, chosen: {} as Record<string, string | null> };
const step = (n: any) => { console.log(JSON.stringify(n)); };
step(nextSteps(plan.root, plan.steps, st));
st.status.a = 'succeeded'; step(nextSteps(plan.root, plan.steps, st));
st.status.sw = 'succeeded'; st.chosen.sw = 'left'; const n = nextSteps(plan.root, plan.steps, st); step(n);
for (const s of n.skip) st.status[s.id] = 'skipped';
st.status.left = 'succeeded'; step(nextSteps(plan.root, plan.steps, st));
st.status.join = 'succeeded'; step(nextSteps(plan.root, plan.steps, st));
