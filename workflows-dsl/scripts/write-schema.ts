// Writes schema/workflow.schema.json from src/schema.ts (the source of truth).
// Run: node workflows-dsl/scripts/write-schema.ts
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { WORKFLOW_SCHEMA } from '../src/schema.ts';

const target = fileURLToPath(new URL('../schema/workflow.schema.json', import.meta.url));
writeFileSync(target, `${JSON.stringify(WORKFLOW_SCHEMA, null, 2)}\n`);
console.log(`wrote ${target}`);
