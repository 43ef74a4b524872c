// Orchestration only: no I/O, clocks or randomness here (Temporal replays this code).
import { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities/index.ts';

const { probeDatabase } = proxyActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { maximumAttempts: 3, initialInterval: '200 ms' },
});

/** End-to-end probe: gateway → Temporal → worker → PostgreSQL and back. */
export async function systemProbeWorkflow(input: { traceId: string }): Promise<{ traceId: string; workerIdentity: string; databaseTime: string }> {
  const result = await probeDatabase();
  return { traceId: input.traceId, ...result };
}
