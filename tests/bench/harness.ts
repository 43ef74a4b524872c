// Benchmark contract: each suite measures a subject and its baseline in the same run and reports
// their ratio, so results compare across machines (absolute numbers on a shared 2-core box don't).
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
