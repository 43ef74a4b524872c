// Liveness (`/healthz`: the process answers) and readiness (`/readyz`: PostgreSQL, Redis and
// Temporal all answer within a deadline). Readiness is what load balancers and `npm start` wait on.
import type { Express } from 'express';
import type { GatewayDeps } from '../deps.ts';

const CHECK_TIMEOUT_MS = 2_000;

interface CheckResult {
  ok: boolean;
  latency_ms: number;
  error?: string;
}

async function timed(check: () => Promise<unknown>): Promise<CheckResult> {
  const started = performance.now();
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      check(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
      }),
    ]);
    return { ok: true, latency_ms: Math.round(performance.now() - started) };
  } catch (error) {
    return { ok: false, latency_ms: Math.round(performance.now() - started), error: (error as Error).message.split('\n')[0] };
  } finally {
    clearTimeout(timer);
  }
}

// Temporal checks still retrying inside their deadline; closing the connection under them makes
// the SDK's retry throw "Channel has been shut down" from a timer, so shutdown waits for them.
const inflightTemporalChecks = new Set<Promise<unknown>>();

export async function settleHealthChecks(): Promise<void> {
  await Promise.allSettled([...inflightTemporalChecks]);
}

function tracked<T>(promise: Promise<T>): Promise<T> {
  inflightTemporalChecks.add(promise);
  void promise.finally(() => inflightTemporalChecks.delete(promise)).catch(() => {});
  return promise;
}

/**
 * Registered on the app itself, not as a mounted Router: a Router that matches nothing hands the
 * request on with setImmediate, which put every API request behind the event loop's check phase.
 */
export function healthRoutes(app: Express, deps: GatewayDeps): void {
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const [postgres, redis, temporal] = await Promise.all([
      timed(() => deps.prisma.$queryRaw`SELECT 1`),
      timed(() => deps.redis.ping()),
      timed(() =>
        tracked(
          deps.temporal.connection.withDeadline(Date.now() + CHECK_TIMEOUT_MS, () =>
            deps.temporal.connection.workflowService.describeNamespace({ namespace: deps.config.temporal.namespace }),
          ),
        ),
      ),
    ]);
    const ready = postgres.ok && redis.ok && temporal.ok;
    res.status(ready ? 200 : 503).json({ status: ready ? 'ok' : 'unavailable', checks: { postgres, redis, temporal } });
  });
}
