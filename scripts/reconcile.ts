// `npm run reconcile`: checks every billing invariant over the whole ledger (balance ≥ 0,
// frozen = Σ active holds, balance = Σ top-ups − Σ captures ± adjustments + refunds, an unbroken
// balance chain, every capture with a usage record of the same trace_id, no hold active past its
// expiry or its run). Prints a report; exits 1 when anything drifted, 0 when all is exact.
import { createPgPool, formatReconcileReport, loadConfigOrExit, reconcile } from '@deepspace/core';

const config = loadConfigOrExit();
const pool = createPgPool(config.databaseUrl, 2);
let exitCode = 0;
try {
  const report = await reconcile(pool);
  process.stdout.write(`${formatReconcileReport(report)}\n`);
  if (process.argv.includes('--json')) process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  exitCode = report.drift.length > 0 ? 1 : 0;
} catch (error) {
  process.stderr.write(`reconcile failed: ${(error as Error).message}\n`);
  exitCode = 2;
} finally {
  await pool.end();
}
process.exit(exitCode);
