// Idempotency-Key records (Stripe's semantics): the first request with a key runs; a replay with
// the same key and the same request returns the stored response; the same key with a different
// request is a 409; a replay while the first is still running is a 409 too.
import { AppError, Prisma, type PrismaClient } from '@deepspace/core';

export class IdempotencyService {
  private readonly prisma: PrismaClient;
  constructor(prisma: PrismaClient) {
    this.prisma = prisma;
  }

  /** Claims the key; returns the stored response when this is a replay. */
  async begin(scope: string, key: string, requestHash: string): Promise<{ status: number; body: unknown } | undefined> {
    try {
      await this.prisma.idempotencyRecord.create({ data: { scope, key, requestHash } });
      return undefined;
    } catch (error) {
      if (!(error instanceof Prisma.PrismaClientKnownRequestError) || error.code !== 'P2002') throw error;
    }
    const existing = await this.prisma.idempotencyRecord.findUnique({ where: { scope_key: { scope, key } } });
    if (!existing) throw new AppError('conflict', 'Idempotency key is being reused; retry');
    if (existing.requestHash !== requestHash) {
      throw new AppError('idempotency_conflict', 'This Idempotency-Key was used with a different request');
    }
    if (existing.responseStatus === null) {
      throw new AppError('conflict', 'A request with this Idempotency-Key is still in progress');
    }
    return { status: existing.responseStatus, body: existing.responseBody };
  }

  async finish(scope: string, key: string, status: number, body: unknown): Promise<void> {
    await this.prisma.idempotencyRecord.update({
      where: { scope_key: { scope, key } },
      data: {
        responseStatus: status,
        responseBody: body === null ? Prisma.JsonNull : (JSON.parse(JSON.stringify(body, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))) as Prisma.InputJsonValue),
      },
    });
  }

  /** A server-side failure releases the key so the client can retry. */
  async abandon(scope: string, key: string): Promise<void> {
    await this.prisma.idempotencyRecord.deleteMany({ where: { scope, key, responseStatus: null } });
  }
}
