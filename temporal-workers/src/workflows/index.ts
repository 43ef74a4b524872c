// The workflow bundle's entry: every workflow type the worker serves is exported here.
export { systemProbeWorkflow } from './system.ts';
export { expireHoldsWorkflow } from './billing.ts';
export { chatMessageWorkflow } from './chat.ts';
export { dslWorkflow } from './dsl.ts';
export { ingestDocumentWorkflow, purgeKnowledgeIndexWorkflow } from './ingestion.ts';
