// `npm run bench`: runs every tests/bench/*.bench.ts suite against the same real services as the
// tests (fresh database, own Temporal dev server, simulator), then writes bench/results.json and
// bench/results.md. Each result is a ratio against a baseline measured in the same run.
//
// Each suite runs in a process of its own (with the services' settings in its environment): a
// suite's clients and what it leaves behind (pools, connections, LanceDB's background threads, a
// heap grown by earlier suites) would otherwise keep working, or collecting garbage, inside the
// next suite's load generator — a full run once fired one target's /v1 requests up to 46 ms late
// (p99 of the generator's own timer lag) where a run of that suite alone stayed at 1–2 ms.
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import setup from '../tests/support/global-setup.ts';
import type { BenchResult, BenchSuite } from '../tests/bench/harness.ts';
import { ROOT } from './lib/paths.ts';
import { log } from './lib/services.ts';

const benchDir = path.join(ROOT, 'tests', 'bench');

// Child mode: run one suite, write its results to a file, exit.
const suiteArg = process.argv.indexOf('--suite');
if (suiteArg !== -1) {
  const file = process.argv[suiteArg + 1]!;
  const out = process.argv[suiteArg + 2]!;
  const suite = (await import(pathToFileURL(path.join(benchDir, file)).href)).default as BenchSuite;
  log(`bench: ${suite.name}`);
  const suiteResults = await suite.run();
  for (const r of suiteResults) log(`  ${r.name}: ${r.subject.value} vs ${r.baseline.value} ${r.subject.unit} → ratio ${r.ratio}`);
  writeFileSync(out, JSON.stringify(suiteResults));
  // Clients of the suite (Temporal native connections, pools) may keep handles open.
  process.exit(0);
}

function runSuite(file: string, out: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), '--suite', file, out], { stdio: 'inherit', env: process.env });
    child.once('error', reject);
    child.once('exit', (code, signal) => (code === 0 ? resolve() : reject(new Error(`bench suite ${file} failed (${signal ?? `exit ${code}`})`))));
  });
}

const filter = process.argv[2];
const files = readdirSync(benchDir).filter((f) => f.endsWith('.bench.ts') && (!filter || f.includes(filter))).sort();
const teardown = await setup();
const results: BenchResult[] = [];
const scratch = mkdtempSync(path.join(os.tmpdir(), 'deepspace-bench-'));
try {
  for (const file of files) {
    const out = path.join(scratch, `${file}.json`);
    await runSuite(file, out);
    results.push(...(JSON.parse(readFileSync(out, 'utf8')) as BenchResult[]));
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
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
process.exit(0);
