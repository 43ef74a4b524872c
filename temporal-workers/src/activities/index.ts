// Every side effect of the platform runs here, as Temporal activities. Activities receive their
// dependencies through this factory, so tests and the worker build them the same way.
import type { Logger, PrismaClient } from '@deepspace/core';
import { createSystemActivities } from './system.ts';

export interface ActivityDeps {
  prisma: PrismaClient;
  logger: Logger;
  workerIdentity: string;
}

export function createActivities(deps: ActivityDeps) {
  return {
    ...createSystemActivities(deps),
  };
}

export type Activities = ReturnType<typeof createActivities>;
