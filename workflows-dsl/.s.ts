import { readFileSync } from 'node:fs';
import { parseWorkflow, compileWorkflow } from './src/index.ts';
for (const f of ['literature-review', 'data-extraction', 'approval']) {
  const r = parseWorkflow(readFileSync(`../examples/${f}.yaml`, 'utf8'));
  console.log(f, r.ok, JSON.stringify(r.ok ? r.warnings : r.errors, null, 1));
  if (r.ok) { const p = compileWorkflow(r.document); console.log(p.root.order, p.stepIds, p.root.mode); }
}
