import { readFileSync, readdirSync } from 'node:fs';
import { parseWorkflow } from './src/index.ts';
const dir = 'test-corpus/malformed';
const expected = JSON.parse(readFileSync(`${dir}/expected.json`, 'utf8'));
let bad = 0;
for (const f of readdirSync(dir).filter((f) => f !== 'expected.json').sort()) {
  const src = readFileSync(`${dir}/${f}`, 'utf8');
  let r;
  try { r = parseWorkflow(src, f.endsWith('.json') ? 'json' : 'yaml'); } catch (e) { console.log('THROW', f, e); bad++; continue; }
  const exp = expected[f];
  const actual = r.ok ? [] : r.errors;
  const key = (e: any) => `${e.code} ${e.pointer}`;
  const a = actual.map(key).sort().join(' | ');
  const x = exp.errors.map(key).sort().join(' | ');
  let msg = '';
  if (a !== x) msg += `\n   expected: ${x}\n   actual:   ${a}`;
  const first = exp.errors[0];
  if (first?.line !== undefined) {
    const m = actual.find((e) => key(e) === key(first));
    if (m && (m.line !== first.line || m.column !== first.column)) msg += `\n   position: expected ${first.line}:${first.column} got ${m.line}:${m.column}`;
  }
  if (msg) { bad++; console.log(`✗ ${f}${msg}`); for (const e of actual) console.log(`      ${e.code} ${e.pointer} @${e.line}:${e.column} ${e.message}`); }
}
console.log('mismatches', bad);
