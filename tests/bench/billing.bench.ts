// Billing ledger contention: hold + capture pairs per second with 50 concurrent callers, all on one
// hot wallet (subject) vs spread over 50 separate wallets (baseline), in the same run against the
// same PostgreSQL. The ratio is the price of serializing on one wallet row.
import { randomUUID } from 'node:crypto';
import { createPgPool, Ledger, newTraceId, reconcile, type PgPool } from '@deepspace/core';
import { measureThroughput, round, type BenchResult, type BenchSuite } from './harness.ts';

const CALLERS = 50;
const PAIRS = 1_500;
const WARMUP = 300;
const FUNDS = 1_000_000_000_000n; // never the limiting factor

async function openFundedWallet(ledger: Ledger, pool: PgPool, label: string): Promise<{ orgId: string; walletId: string }> {
  const { rows } = await pool.query<{ id: string }>('INSERT INTO organizations (name, slug) VALUES ($1, $2) RETURNING id', [
    label,
    `${label}-${randomUUID().slice(0, 12)}`,
  ]);
  const orgId = rows[0]!.id;
  const wallet = await ledger.openWallet(orgId);
  await ledger.topup({ orgId, amountMicros: FUNDS, idempotencyKey: `bench-topup:${orgId}`, reason: 'bench credit', actor: { type: 'system' } });
  return { orgId, walletId: wallet.id };
}

const suite: BenchSuite = {
  name: 'billing ledger contention',
  async run(): Promise<BenchResult[]> {
    // One connection per caller: callers queue on the wallet row, not on the pool.
    const pool = createPgPool(process.env.DATABASE_URL!, CALLERS);
    const ledger = new Ledger(pool);
    try {
      const hot = await openFundedWallet(ledger, pool, 'bench-hot');
      const separate = await Promise.all(Array.from({ length: CALLERS }, (_, i) => openFundedWallet(ledger, pool, `bench-sep-${i}`)));
      const run = randomUUID().slice(0, 8);

      const pair = (phase: string, orgIdFor: (i: number) => string) => async (i: number) => {
        const traceId = newTraceId();
        const { hold } = await ledger.hold({ orgId: orgIdFor(i), amountMicros: 10_000n, idempotencyKey: `${run}:${phase}:${i}:hold`, traceId });
        await ledger.capture({
          holdId: hold.id,
          idempotencyKey: `${run}:${phase}:${i}:capture`,
          usage: { promptTokens: 120, completionTokens: 80, modelName: 'bench', upstreamModel: 'bench', latencyMs: 1 },
          costMicros: 4_321n,
        });
      };
      const hotPair = (phase: string) => pair(phase, () => hot.orgId);
      const separatePair = (phase: string) => pair(phase, (i) => separate[i % CALLERS]!.orgId);

      await measureThroughput(separatePair('warm-sep'), { total: WARMUP, concurrency: CALLERS });
      await measureThroughput(hotPair('warm-hot'), { total: WARMUP, concurrency: CALLERS });
      // Alternate the two twice so drift in the machine's load hits both alike; report the means.
      const sep1 = await measureThroughput(separatePair('sep1'), { total: PAIRS, concurrency: CALLERS });
      const hot1 = await measureThroughput(hotPair('hot1'), { total: PAIRS, concurrency: CALLERS });
      const sep2 = await measureThroughput(separatePair('sep2'), { total: PAIRS, concurrency: CALLERS });
      const hot2 = await measureThroughput(hotPair('hot2'), { total: PAIRS, concurrency: CALLERS });
      const errors = sep1.errors + hot1.errors + sep2.errors + hot2.errors;
      if (errors) throw new Error(`${errors} hold+capture pairs failed`);
      const hotRate = (hot1.perSecond + hot2.perSecond) / 2;
      const sepRate = (sep1.perSecond + sep2.perSecond) / 2;

      // Exactness under the load just measured.
      const report = await reconcile(pool, { walletIds: [hot.walletId, ...separate.map((s) => s.walletId)] });
      if (report.drift.length) throw new Error(`reconcile found drift after the bench: ${JSON.stringify(report.drift.slice(0, 3))}`);
      const hotWallet = await ledger.getWallet(hot.orgId);
      const expectedHot = FUNDS - BigInt(WARMUP + 2 * PAIRS) * 4_321n;
      if (hotWallet.balanceMicros !== expectedHot || hotWallet.frozenMicros !== 0n) {
        throw new Error(`hot wallet is ${hotWallet.balanceMicros}/${hotWallet.frozenMicros}, expected ${expectedHot}/0`);
      }

      return [
        {
          name: 'billing-hold-capture-hot-wallet',
          description: `hold + capture pairs, ${CALLERS} concurrent callers, ${PAIRS} pairs × 2 rounds: one shared wallet vs ${CALLERS} separate wallets`,
          baseline: { label: `${CALLERS} separate wallets`, value: round(sepRate, 0), unit: 'pairs/s' },
          subject: { label: 'one hot wallet', value: round(hotRate, 0), unit: 'pairs/s' },
          ratio: round(hotRate / sepRate, 3),
          ratioMeaning: 'hot-wallet throughput as a fraction of separate wallets (1 = no contention cost)',
          details: {
            rounds_pairs_per_s: { hot: [round(hot1.perSecond, 0), round(hot2.perSecond, 0)], separate: [round(sep1.perSecond, 0), round(sep2.perSecond, 0)] },
            p50_ms: { hot: round((hot1.p50 + hot2.p50) / 2), separate: round((sep1.p50 + sep2.p50) / 2) },
            p99_ms: { hot: round((hot1.p99 + hot2.p99) / 2), separate: round((sep1.p99 + sep2.p99) / 2) },
            reconcile_drift: report.drift.length,
            pool_connections: CALLERS,
          },
        },
      ];
    } finally {
      await pool.end();
    }
  },
};

export default suite;
