export * from './worker.ts';
export { createActivities, type Activities, type ActivityDeps } from './activities/index.ts';
