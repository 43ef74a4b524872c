export * from './types.ts';
export * from './pricing.ts';
export * from './ledger.ts';
export * from './reconcile.ts';
export { closeLedgerConnections, RELAXED_APPLICATION_SUFFIX } from './group-commit.ts';
