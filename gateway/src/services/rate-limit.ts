// Token buckets in Redis, checked and taken atomically in one Lua script: a request passes only if
// every bucket it touches (API key, user, project, or client IP for anonymous calls) has a token.
// Redis's own clock is used so gateway replicas agree.
import type { Redis } from '@deepspace/core';

const TOKEN_BUCKET_LUA = `
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local n = #KEYS
local cost = tonumber(ARGV[2 * n + 1])
local levels = {}
local wait_ms = 0
local remaining = -1
for i = 1, n do
  local capacity = tonumber(ARGV[2 * i - 1])
  local per_ms = tonumber(ARGV[2 * i])
  local state = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
  local tokens = tonumber(state[1])
  local ts = tonumber(state[2])
  if tokens == nil or ts == nil then tokens = capacity; ts = now end
  tokens = math.min(capacity, tokens + math.max(0, now - ts) * per_ms)
  levels[i] = tokens
  if tokens < cost then
    local need = math.ceil((cost - tokens) / per_ms)
    if need > wait_ms then wait_ms = need end
  end
end
if wait_ms > 0 then return {0, wait_ms, 0} end
for i = 1, n do
  local capacity = tonumber(ARGV[2 * i - 1])
  local per_ms = tonumber(ARGV[2 * i])
  local left = levels[i] - cost
  redis.call('HSET', KEYS[i], 'tokens', tostring(left), 'ts', tostring(now))
  redis.call('PEXPIRE', KEYS[i], math.ceil(capacity / per_ms) + 1000)
  if remaining < 0 or left < remaining then remaining = left end
end
return {1, 0, math.floor(remaining)}
`;

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
  takeTokens(numKeys: number, ...args: Array<string | number>): Promise<[number, number, number]>;
};

export class RateLimiter {
  private readonly redis: RedisWithBucket;

  constructor(redis: Redis) {
    if (!('takeTokens' in redis)) redis.defineCommand('takeTokens', { lua: TOKEN_BUCKET_LUA });
    this.redis = redis as RedisWithBucket;
  }

  async take(buckets: Bucket[], cost = 1): Promise<RateDecision> {
    if (buckets.length === 0) return { allowed: true, retryAfterMs: 0, remaining: Infinity, limit: Infinity };
    const args: Array<string | number> = [];
    for (const b of buckets) args.push(b.perMinute, b.perMinute / 60_000);
    args.push(cost);
    const [allowed, waitMs, remaining] = await this.redis.takeTokens(buckets.length, ...buckets.map((b) => b.key), ...args);
    return {
      allowed: allowed === 1,
      retryAfterMs: waitMs,
      remaining,
      limit: Math.min(...buckets.map((b) => b.perMinute)),
    };
  }
}
