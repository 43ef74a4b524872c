/**
 * CLI entry: `node tests/simulator/src/main.ts`
 *
 * Env: SIMULATOR_PORT (default 4010; 0 = random), SIMULATOR_HOST (default 127.0.0.1), SIMULATOR_API_KEY,
 * SIMULATOR_FIRST_TOKEN_MS, SIMULATOR_TOKEN_MS. Prints one JSON line when listening; exits cleanly on
 * SIGINT/SIGTERM.
 */
import { startSimulator } from './server.ts';
import type { SimulatorOptions } from './types.ts';

function envNumber(name: string, fallback?: number): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === '') return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) {
    throw new Error(`${name} must be a non-negative number, got '${raw}'`);
  }
  return n;
}

function log(fields: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...fields })}\n`);
}

async function main(): Promise<void> {
  const options: SimulatorOptions = { port: envNumber('SIMULATOR_PORT', 4010) ?? 4010 };
  const host = process.env['SIMULATOR_HOST'];
  if (host) options.host = host;
  const apiKey = process.env['SIMULATOR_API_KEY'];
  if (apiKey) options.apiKey = apiKey;
  const first = envNumber('SIMULATOR_FIRST_TOKEN_MS');
  if (first !== undefined) options.firstTokenLatencyMs = first;
  const token = envNumber('SIMULATOR_TOKEN_MS');
  if (token !== undefined) options.perTokenLatencyMs = token;

  const sim = await startSimulator(options);
  log({ level: 'info', msg: 'upstream simulator listening', url: sim.url, port: sim.port, auth: Boolean(options.apiKey) });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log({ level: 'info', msg: 'upstream simulator stopping', signal, stats: { totalRequests: sim.stats().totalRequests } });
    const force = setTimeout(() => process.exit(0), 5000);
    force.unref();
    sim.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  log({ level: 'error', msg: 'upstream simulator failed to start', error: err instanceof Error ? err.message : String(err) });
  process.exit(1);
});
