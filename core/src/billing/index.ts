export * from './types.ts';
export * from './pricing.ts';
export * from './ledger.ts';
export * from './reconcile.ts';
