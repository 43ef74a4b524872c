// `npm run db:seed`: the demo organization, project, admin, wallet, models and prices (idempotent).
import { createPrisma, DEMO, loadConfigOrExit, seedDemo } from '@deepspace/core';
import { log } from './lib/services.ts';

const config = loadConfigOrExit();
const prisma = createPrisma(config.databaseUrl, { max: 2 });
try {
  const result = await seedDemo(prisma, { simulated: !config.upstream.baseUrl });
  log(result.created.length ? `seeded: ${result.created.join(', ')}` : 'seed: everything already present');
  log(`demo login: ${DEMO.adminEmail} / ${DEMO.adminPassword}`);
} finally {
  await prisma.$disconnect();
}
