// Token buckets in Redis, checked and taken atomically in one Lua script: a request passes only if
// every bucket it touches (API key, user, project, or client IP for anonymous calls) has a token.
// Redis's own clock is used so gateway replicas agree.
//
// Leases: a Redis round trip per request is the dearest step of a cached, authenticated call, so
// for high limits (≥ LEASE_MIN_PER_MINUTE on every bucket) this process takes tokens a few at a
// time — about LEASE_MS worth of its recent traffic, at most LEASE_MAX_SHARE of the smallest
// burst — and spends them locally for at most LEASE_MS; what is left then lapses. Tokens are
// always taken from Redis before a request spends them, so the limit holds across replicas
// exactly as before (a lease can only under-admit, by what lapses); small limits, where a few
// tokens matter, still go to Redis once per request.
import type { Redis } from '@deepspace/core';

const TOKEN_BUCKET_LUA = `
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local n = #KEYS
local want = tonumber(ARGV[2 * n + 1])
local need = tonumber(ARGV[2 * n + 2] or ARGV[2 * n + 1])
local levels = {}
local wait_ms = 0
local grant = want
for i = 1, n do
  local capacity = tonumber(ARGV[2 * i - 1])
  local per_ms = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then tokens = capacity; ts = now end
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
  levels[i] = tokens
  if tokens < need then
    local wait = math.ceil((need - tokens) / per_ms)
    if wait > wait_ms then wait_ms = wait end
  end
  local whole = math.floor(tokens)
  if whole < grant then grant = whole end
end
if wait_ms > 0 then return {0, wait_ms, 0, 0} end
if grant < need then grant = need end
local remaining = -1
for i = 1, n do
  local capacity = tonumber(ARGV[2 * i - 1])
  local per_ms = tonumber(ARGV[2 * i])
  local left = levels[i] - grant
  redis.call('HSET', KEYS[i], 'tokens', tostring(left), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(capacity / per_ms) + 1000)
  if remaining < 0 or left < remaining then remaining = left end
end
return {1, 0, math.floor(remaining), grant}
`;

/** A lease is spent within this long; what is left then lapses. */
const LEASE_MS = 100;
/** Buckets under this many requests per minute are taken one request at a time (exact). */
const LEASE_MIN_PER_MINUTE = 6_000;
/** A lease takes at most this share of the smallest bucket's burst. */
const LEASE_MAX_SHARE = 0.01;
const MAX_LEASES = 10_000;

export interface Bucket {
  /** Redis key (the client's key prefix is added by ioredis). */
  key: string;
  /** Requests per minute; also the burst size. */
  perMinute: number;
}

export interface RateDecision {
  allowed: boolean;
  retryAfterMs: number;
  remaining: number;
  limit: number;
}

type RedisWithBucket = Redis & {
  takeTokens(numKeys: number, ...args: Array<string | number>): Promise<[number, number, number, number]>;
};

interface Lease {
  tokens: number;
  /** Tokens granted by the last refill: the next one starts when half of that is spent. */
  size: number;
  expiresAt: number;
  /** Redis's remaining count when the lease was taken. */
  remaining: number;
  /** Denied by Redis until then (the bucket is empty): no need to ask again sooner. */
  deniedUntil: number;
  /** Requests seen since the last refill, and when that was: the local rate sizes the next lease. */
  arrivals: number;
  since: number;
  rate: number | undefined;
  refill: Promise<void> | undefined;
}

export class RateLimiter {
  private readonly redis: RedisWithBucket;
  private readonly leases = new Map<string, Lease>();

  constructor(redis: Redis) {
    if (!('takeTokens' in redis)) redis.defineCommand('takeTokens', { lua: TOKEN_BUCKET_LUA });
    this.redis = redis as RedisWithBucket;
  }

  async take(buckets: Bucket[], cost = 1): Promise<RateDecision> {
    if (buckets.length === 0) return { allowed: true, retryAfterMs: 0, remaining: Infinity, limit: Infinity };
    const limit = Math.min(...buckets.map((b) => b.perMinute));
    if (cost !== 1 || limit < LEASE_MIN_PER_MINUTE) {
      const [allowed, waitMs, remaining] = await this.takeTokens(buckets, cost, cost);
      return { allowed: allowed === 1, retryAfterMs: waitMs, remaining, limit };
    }
    return this.takeLeased(buckets, limit);
  }

  private takeTokens(buckets: Bucket[], want: number, need: number) {
    const args: Array<string | number> = [];
    for (const b of buckets) args.push(b.perMinute, b.perMinute / 60_000);
    args.push(want, need);
    return this.redis.takeTokens(buckets.length, ...buckets.map((b) => b.key), ...args);
  }

  private async takeLeased(buckets: Bucket[], limit: number): Promise<RateDecision> {
    const id = buckets.map((b) => `${b.key}=${b.perMinute}`).join('|');
    let lease = this.leases.get(id);
    if (!lease) {
      if (this.leases.size >= MAX_LEASES) this.leases.clear();
      lease = { tokens: 0, size: 0, expiresAt: 0, remaining: 0, deniedUntil: 0, arrivals: 0, since: Date.now(), rate: undefined, refill: undefined };
      this.leases.set(id, lease);
    }
    lease.arrivals++;
    // A few rounds at most: requests that queued behind one refill may drain it before their turn.
    for (let round = 0; round < 3; round++) {
      const now = Date.now();
      if (lease.tokens > 0 && now < lease.expiresAt) {
        lease.tokens--;
        // Top up ahead of need, off this request's path, so steady traffic never waits for Redis.
        if (lease.tokens < lease.size / 2 || lease.expiresAt - now < LEASE_MS / 2) void this.refilled(lease, buckets, limit);
        return { allowed: true, retryAfterMs: 0, remaining: lease.remaining + lease.tokens, limit };
      }
      if (now < lease.deniedUntil) return { allowed: false, retryAfterMs: lease.deniedUntil - now, remaining: 0, limit };
      await this.refilled(lease, buckets, limit);
    }
    // Still nothing local (heavy contention on this lease): take this request's own token.
    const [allowed, waitMs, remaining] = await this.takeTokens(buckets, 1, 1);
    return { allowed: allowed === 1, retryAfterMs: waitMs, remaining, limit };
  }

  /** One refill of the lease at a time; its failure (Redis down) surfaces on the fallback path. */
  private refilled(lease: Lease, buckets: Bucket[], limit: number): Promise<void> {
    lease.refill ??= this.refill(lease, buckets, limit)
      .catch(() => {})
      .finally(() => {
        lease.refill = undefined;
      });
    return lease.refill;
  }

  private async refill(lease: Lease, buckets: Bucket[], limit: number): Promise<void> {
    const now = Date.now();
    // Requests per ms, smoothed over refills; a first request counts as one per LEASE_MS.
    const recent = lease.arrivals / Math.max(1, now - lease.since);
    lease.rate = lease.rate === undefined ? lease.arrivals / LEASE_MS : (lease.rate + recent) / 2;
    const want = Math.max(1, Math.min(Math.floor(limit * LEASE_MAX_SHARE), Math.ceil(lease.rate * LEASE_MS)));
    lease.arrivals = 0;
    lease.since = now;
    const [allowed, waitMs, remaining, granted] = await this.takeTokens(buckets, want, 1);
    const at = Date.now();
    if (allowed === 1) {
      // Tokens still held join the new ones (a refill starts at half a grant, so the lease stays small).
      lease.tokens = (at < lease.expiresAt ? lease.tokens : 0) + granted;
      lease.size = granted;
      lease.expiresAt = at + LEASE_MS;
      lease.remaining = remaining;
    } else {
      lease.deniedUntil = at + waitMs;
    }
  }
}
