// Fixtures for the billing suites. Suites share one database and run in parallel, so every test
// makes its own organization + wallet (unique slug) and its own models; reconcile calls in tests
// are scoped to the test's wallets.
import { randomUUID } from 'node:crypto';
import { expect } from 'vitest';
import { AppError, createPgPool, Ledger, newTraceId, type Actor, type PgPool, type WalletView } from '@deepspace/core';

export const ADMIN: Actor = { type: 'user', id: 'billing-test-admin' };

export function testPool(max = 10): PgPool {
  return createPgPool(process.env.DATABASE_URL!, max);
}

export const key = (label: string) => `${label}:${randomUUID()}`;
export const trace = () => newTraceId();

export async function newOrganization(pool: PgPool, label: string): Promise<string> {
  const slug = `${label}-${randomUUID().slice(0, 12)}`;
  const { rows } = await pool.query<{ id: string }>('INSERT INTO organizations (name, slug) VALUES ($1, $2) RETURNING id', [label, slug]);
  return rows[0]!.id;
}

/** A fresh organization whose wallet was topped up (through the ledger) with `micros`. */
export async function fundedWallet(ledger: Ledger, label: string, micros: bigint): Promise<WalletView> {
  const orgId = await newOrganization(ledger.pool, label);
  await ledger.openWallet(orgId);
  if (micros > 0n) {
    await ledger.topup({ orgId, amountMicros: micros, idempotencyKey: key('fixture-topup'), reason: 'test credit', actor: ADMIN });
  }
  return ledger.getWallet(orgId);
}

export interface TestModel {
  modelId: string;
  name: string;
  upstreamModel: string;
  priceId: string;
}

/** A model with one price row (micros per 1M tokens) effective from `effectiveFrom`. */
export async function newModel(
  pool: PgPool,
  price: { input: bigint; output: bigint; effectiveFrom?: Date },
): Promise<TestModel> {
  const name = `test-model-${randomUUID().slice(0, 12)}`;
  const upstreamModel = `sim-${name}`;
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO models (name, upstream_model, display_name) VALUES ($1, $2, $1) RETURNING id`,
    [name, upstreamModel],
  );
  const modelId = rows[0]!.id;
  const priceId = await addPrice(pool, modelId, { ...price, effectiveFrom: price.effectiveFrom ?? new Date('2026-01-01T00:00:00Z') });
  return { modelId, name, upstreamModel, priceId };
}

export async function addPrice(pool: PgPool, modelId: string, price: { input: bigint; output: bigint; effectiveFrom: Date }): Promise<string> {
  const { rows } = await pool.query<{ id: string }>(
    `INSERT INTO model_prices (model_id, input_micros_per_million, output_micros_per_million, effective_from)
     VALUES ($1, $2, $3, $4) RETURNING id`,
    [modelId, price.input.toString(), price.output.toString(), price.effectiveFrom],
  );
  return rows[0]!.id;
}

/** Awaits a rejection and checks it is the AppError with `code` (and returns it). */
export async function expectAppError(promise: Promise<unknown>, code: string): Promise<AppError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, `expected AppError ${code}`).toBeInstanceOf(AppError);
  expect((error as AppError).code).toBe(code);
  return error as AppError;
}

export async function countRows(pool: PgPool, sql: string, params: unknown[]): Promise<number> {
  const { rows } = await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM (${sql}) x`, params);
  return rows[0]!.n;
}
