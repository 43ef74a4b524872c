import { readFileSync, readdirSync } from 'node:fs';
import { parseWorkflow } from './src/index.ts';
const dir = 'test-corpus/malformed';
for (const f of readdirSync(dir).filter((f) => f !== 'expected.json').sort()) {
  const r = parseWorkflow(readFileSync(`${dir}/${f}`, 'utf8'));
  for (const e of r.ok ? [] : r.errors) console.log(`${f.slice(0, 3)} ${e.code}: ${e.message.slice(0, 230)}`);
}
