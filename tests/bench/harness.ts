// Benchmark contract: each suite measures a subject and its baseline in the same run and reports
// their ratio, so results compare across machines (absolute numbers on a shared 2-core box don't).
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { spawnService, until } from '../support/processes.ts';

export interface Measurement {
  label: string;
  /** The figure, in `unit` (e.g. requests/s or ms p50). */
  value: number;
  unit: string;
}

export interface BenchResult {
  name: string;
  description: string;
  baseline: Measurement;
  subject: Measurement;
  /** subject / baseline for throughputs, baseline-relative cost for latencies; say which in `ratioMeaning`. */
  ratio: number;
  ratioMeaning: string;
  details?: Record<string, unknown>;
}

export interface BenchSuite {
  name: string;
  run(): Promise<BenchResult[]>;
}

/** Runs `fn` `concurrency` at a time until `total` calls are done; returns calls per second and latencies. */
export async function measureThroughput(
  fn: (i: number) => Promise<unknown>,
  options: { total: number; concurrency: number },
): Promise<{ perSecond: number; p50: number; p95: number; p99: number; errors: number }> {
  const latencies: number[] = [];
  let next = 0;
  let errors = 0;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: options.concurrency }, async () => {
      while (next < options.total) {
        const i = next++;
        const t = performance.now();
        try {
          await fn(i);
        } catch {
          errors++;
        }
        latencies.push(performance.now() - t);
      }
    }),
  );
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return { perSecond: options.total / seconds, p50: pct(50), p95: pct(95), p99: pct(99), errors };
}

export const round = (n: number, digits = 2) => Math.round(n * 10 ** digits) / 10 ** digits;

/** CPU seconds (user + system) of a process, from /proc (0 where there is none). */
export function processCpuSeconds(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

/** The worker in its own process, as deployed (docker-compose `worker`), started with `env` over the test config. */
export async function startWorkerProcess(env: NodeJS.ProcessEnv, nodeArgs: readonly string[] = []): Promise<{ pid: number; stop(): Promise<void> }> {
  const children: ChildProcess[] = [];
  const service = spawnService('temporal-workers/src/main.ts', env, children, nodeArgs);
  const exited = new Promise<void>((resolve) => service.child.once('exit', () => resolve()));
  await until(async () => {
    if (service.child.exitCode !== null) throw new Error(`worker exited: ${service.output()}`);
    return service.output().includes('worker started');
  }, 120_000, 'worker process');
  return {
    pid: service.child.pid!,
    async stop() {
      if (service.child.exitCode !== null) return;
      service.child.kill('SIGTERM');
      const timer = setTimeout(() => service.child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
