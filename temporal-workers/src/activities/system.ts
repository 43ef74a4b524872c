// System activities: the round trip that proves a worker can reach its own dependencies.
import type { ActivityDeps } from './index.ts';

export interface ProbeResult {
  workerIdentity: string;
  databaseTime: string;
}

export function createSystemActivities(deps: ActivityDeps) {
  return {
    async probeDatabase(): Promise<ProbeResult> {
      const rows = await deps.prisma.$queryRaw<Array<{ now: Date }>>`SELECT now() AS now`;
      return { workerIdentity: deps.workerIdentity, databaseTime: rows[0]!.now.toISOString() };
    },
  };
}
