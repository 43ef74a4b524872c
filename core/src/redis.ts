import { Redis } from 'ioredis';

export { Redis };

/** A Redis client whose every key is prefixed (tests use a per-run prefix). */
export function createRedis(url: string, keyPrefix: string, options: { lazyConnect?: boolean } = {}): Redis {
  return new Redis(url, {
    keyPrefix,
    lazyConnect: options.lazyConnect ?? false,
    maxRetriesPerRequest: 2,
    enableOfflineQueue: true,
    connectTimeout: 2_000,
  });
}
