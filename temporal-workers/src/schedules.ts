// Temporal Schedules the platform relies on, created (or brought up to date) when a worker
// starts. Long-lived sweeps belong to Temporal, not to home-made cron tables.
import { ScheduleAlreadyRunning, ScheduleOverlapPolicy, type Client, type ScheduleOptions } from '@temporalio/client';
import type { AppConfig } from '@deepspace/core';

export const BILLING_EXPIRE_HOLDS_SCHEDULE_ID = 'billing-expire-holds';

export interface EnsureSchedulesOptions {
  /** Override the schedule id (tests use their own so parallel suites do not share one). */
  expireHoldsScheduleId?: string;
}

export function expireHoldsSchedule(config: AppConfig, scheduleId = BILLING_EXPIRE_HOLDS_SCHEDULE_ID): ScheduleOptions {
  return {
    scheduleId,
    spec: { intervals: [{ every: '1 minute' }] },
    action: {
      type: 'startWorkflow',
      workflowType: 'expireHoldsWorkflow',
      workflowId: `${scheduleId}-run`,
      taskQueue: config.temporal.taskQueue,
      args: [{}],
      workflowExecutionTimeout: '5 minutes',
    },
    // A sweep still running when the next is due makes the next one unnecessary.
    policies: { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: '1 minute' },
  };
}

/**
 * Creates every schedule; one that exists already (ScheduleAlreadyRunning) is updated to this
 * worker's spec and task queue, so calling it at every start is idempotent and converges.
 */
export async function ensureSchedules(
  client: Client,
  config: AppConfig,
  options: EnsureSchedulesOptions = {},
): Promise<{ created: string[]; updated: string[] }> {
  const result = { created: [] as string[], updated: [] as string[] };
  for (const schedule of [expireHoldsSchedule(config, options.expireHoldsScheduleId)]) {
    try {
      await client.schedule.create(schedule);
      result.created.push(schedule.scheduleId);
    } catch (error) {
      if (!(error instanceof ScheduleAlreadyRunning)) throw error;
      await client.schedule.getHandle(schedule.scheduleId).update((previous) => ({
        ...previous,
        spec: schedule.spec,
        action: schedule.action,
        policies: { ...previous.policies, ...schedule.policies },
      }));
      result.updated.push(schedule.scheduleId);
    }
  }
  return result;
}
