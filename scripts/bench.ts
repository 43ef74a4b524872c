// `npm run bench`: runs every tests/bench/*.bench.ts suite against the same real services as the
// tests (fresh database, own Temporal dev server, simulator), then writes bench/results.json and
// bench/results.md. Each result is a ratio against a baseline measured in the same run.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import setup from '../tests/support/global-setup.ts';
import type { BenchResult, BenchSuite } from '../tests/bench/harness.ts';
import { ROOT } from './lib/paths.ts';
import { log } from './lib/services.ts';

const filter = process.argv[2];
const benchDir = path.join(ROOT, 'tests', 'bench');
const files = readdirSync(benchDir).filter((f) => f.endsWith('.bench.ts') && (!filter || f.includes(filter))).sort();
const teardown = await setup();
const results: BenchResult[] = [];
try {
  for (const file of files) {
    const suite = (await import(pathToFileURL(path.join(benchDir, file)).href)).default as BenchSuite;
    log(`bench: ${suite.name}`);
    const suiteResults = await suite.run();
    for (const r of suiteResults) log(`  ${r.name}: ${r.subject.value} vs ${r.baseline.value} ${r.subject.unit} → ratio ${r.ratio}`);
    results.push(...suiteResults);
  }
} finally {
  await teardown();
}

const outDir = path.join(ROOT, 'bench');
mkdirSync(outDir, { recursive: true });
const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version };
writeFileSync(path.join(outDir, 'results.json'), JSON.stringify({ generatedAt: new Date().toISOString(), machine, results }, null, 2));
const table = [
  `# Benchmarks (${new Date().toISOString()}, ${machine.cpus} cores, Node ${machine.node})`,
  '',
  '| benchmark | subject | baseline | ratio | meaning |',
  '|---|---|---|---|---|',
  ...results.map(
    (r) => `| ${r.name} | ${r.subject.label}: ${r.subject.value} ${r.subject.unit} | ${r.baseline.label}: ${r.baseline.value} ${r.baseline.unit} | **${r.ratio}** | ${r.ratioMeaning} |`,
  ),
  '',
];
writeFileSync(path.join(outDir, 'results.md'), table.join('\n'));
log(`wrote bench/results.json and bench/results.md (${results.length} results)`);
// Clients of the suites (Temporal native connections, pools) may keep handles open; the results
// are written, so end here.
process.exit(0);
