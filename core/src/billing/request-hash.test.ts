// Stored request hashes (wallet_transactions.request_hash) decide whether a retried ledger call is a
// replay or a conflict, so the hash of given parameters must never change. These were made by the
// first implementation (JSON.stringify of a sorted copy); the direct writer must match it byte for byte.
import { describe, expect, it } from 'vitest';
import { requestHash } from './ledger.ts';

describe('requestHash', () => {
  it('hashes parameters exactly as the first implementation did', () => {
    expect(
      requestHash('hold', {
        orgId: 'A1B2C3D4-0000-4000-8000-000000000001', amount: 5000n, projectId: null, traceId: 'trace-"quoted"-é-✓', runId: undefined, stepId: null, modelId: null, priceId: null,
      }),
    ).toBe('e0d98178ef9f7ffc7eefe88dfeec6c481de3a361ce9323f69b69ec2258575b0c');
    expect(
      requestHash('capture', {
        holdId: 'h',
        usage: { promptTokens: 1000, completionTokens: 0, traceId: 't', latencyMs: undefined, nested: { z: 1, a: [1, undefined, -2n, new Date('2026-11-25T00:00:00.123Z'), { b: true, a: 'x\n' }] } },
        cost: null,
      }),
    ).toBe('5dcfa3da16f63f06689e1030a4b79d079fad17a4a3b0d4012ce9594f8e534a08');
    // Integer-like keys come first in numeric order, as JSON.stringify lists them.
    expect(requestHash('refund', { holdId: 'h', amount: 'all-remaining', weird: { '': 0, é: -0, '10': 1.5e-7, '2': Number.NaN } })).toBe(
      '5e250d88b7b0e8fca3f78fbb2983111d59d99fcf4b8487d147d990aa67322d19',
    );
  });

  it('ignores key order and undefined members, and tells different values apart', () => {
    expect(requestHash('op', { a: 1, b: 2n, c: undefined })).toBe(requestHash('op', { b: 2n, a: 1 }));
    expect(requestHash('op', { a: 1 })).not.toBe(requestHash('op', { a: '1' }));
    expect(requestHash('op', { a: [undefined] })).toBe(requestHash('op', { a: [null] }));
    expect(requestHash('op', { a: 1 })).not.toBe(requestHash('other', { a: 1 }));
  });
});
