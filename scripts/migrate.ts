// `npm run db:migrate`: create the database when missing and apply pending migrations.
import { ensureDatabase, loadConfigOrExit, migrate } from '@deepspace/core';
import { MIGRATIONS_DIR } from './lib/paths.ts';
import { ensurePostgres, log } from './lib/services.ts';

const config = loadConfigOrExit();
await ensurePostgres(config.databaseUrl);
const db = await ensureDatabase(config.databaseUrl);
if (db.created) log(`created database ${db.name}`);
const result = await migrate(config.databaseUrl, MIGRATIONS_DIR);
log(`migrations: ${result.applied.length} applied, ${result.alreadyApplied.length} already applied`);
