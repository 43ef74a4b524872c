// Configuration is parsed once at start-up from the environment; everything else receives the
// typed `AppConfig`. Every wrong value is reported on its own line, naming the variable.
import { z } from 'zod';

const port = z.coerce.number().int().min(1).max(65535);
const optionalUrl = z
  .string()
  .trim()
  .optional()
  .transform((v) => (v === '' ? undefined : v))
  .pipe(z.url().optional());
const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');

const DEV_SECRET = 'dev-only-secret-change-me-0123456789abcdef';

const envSchema = z
  .object({
    NODE_ENV: z.enum(['development', 'test', 'production']).default('development'),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),

    DATABASE_URL: z
      .string()
      .default('postgresql://postgres@127.0.0.1:5432/deepspace')
      .refine((v) => /^postgres(ql)?:\/\//.test(v), 'must be a postgresql:// URL'),
    REDIS_URL: z
      .string()
      .default('redis://127.0.0.1:6379/0')
      .refine((v) => /^rediss?:\/\//.test(v), 'must be a redis:// or rediss:// URL'),
    REDIS_KEY_PREFIX: z.string().regex(/^[A-Za-z0-9:_-]*$/, 'letters, digits, ":", "_" and "-" only').default('ds:'),

    TEMPORAL_ADDRESS: z
      .string()
      .default('127.0.0.1:7233')
      .refine((v) => /^[^\s:]+:\d{1,5}$/.test(v), 'must be host:port'),
    TEMPORAL_NAMESPACE: z.string().min(1).default('default'),
    TEMPORAL_TASK_QUEUE: z.string().min(1).default('deepspace'),
    // Chat replies stream inside a local activity whose workflow task is heartbeated at 80% of this.
    TEMPORAL_CHAT_TASK_TIMEOUT_MS: z.coerce.number().int().min(1_000).max(60_000).default(2_000),
    // Workflow code on the SDK's sandbox thread (its default) or on the worker's main thread (ours:
    // one thread hop less per workflow task). The 5 s deadlock guard applies either way.
    TEMPORAL_WORKFLOW_THREAD: bool.default(false),

    NEWAPI_BASE_URL: optionalUrl,
    NEWAPI_API_KEY: z.string().optional(),
    UPSTREAM_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(120_000),
    // /v1: start the upstream call beside the hold when the org's wallet was last seen (≤ 5 s ago)
    // with room for this many calls like it; 0 = always hold first.
    V1_SPECULATIVE_HEADROOM: z.coerce.number().int().min(0).max(1_000_000).default(20),
    // /v1 non-stream: commit the capture (money, usage, audit) before answering; false answers once
    // the upstream answered and the hold stands, and commits the capture right after.
    V1_SETTLE_BEFORE_RESPONSE: bool.default(false),
    // /v1 non-stream, captures after the answer: wait up to this many ms to be written together
    // with the org's other captures (one statement, one commit); 0 = each at once.
    V1_CAPTURE_BATCH_MS: z.coerce.number().int().min(0).max(1_000).default(20),
    // /v1 non-stream: holds kept ready per busy (API key, model) pair, taken ahead of its calls;
    // 0 = every call takes its own.
    V1_HOLD_RESERVE: z.coerce.number().int().min(0).max(256).default(32),
    // Chat runs: the worker starts the upstream call beside the hold under the same rule as
    // V1_SPECULATIVE_HEADROOM (what that worker last saw of the org's wallet); 0 = hold first.
    CHAT_SPECULATIVE_HEADROOM: z.coerce.number().int().min(0).max(1_000_000).default(20),
    /** Lets workflow `http` steps reach loopback addresses (tests and local demos only). */
    WORKFLOW_HTTP_ALLOW_LOOPBACK: bool.default(false),

    STORAGE_DRIVER: z.enum(['local', 's3']).default('local'),
    STORAGE_LOCAL_DIR: z.string().min(1).default('.data/objects'),
    S3_ENDPOINT: optionalUrl,
    S3_REGION: z.string().default('us-east-1'),
    S3_BUCKET: z.string().optional(),
    S3_ACCESS_KEY_ID: z.string().optional(),
    S3_SECRET_ACCESS_KEY: z.string().optional(),
    S3_FORCE_PATH_STYLE: bool.default(true),
    LANCEDB_URI: z.string().min(1).default('.data/lancedb'),

    GATEWAY_HOST: z.string().min(1).default('127.0.0.1'),
    GATEWAY_PORT: port.default(8080),
    WEB_PORT: port.default(3000),
    ADMIN_PORT: port.default(3001),
    TEMPORAL_UI_PORT: port.default(8233),
    PUBLIC_WEB_URL: z.url().default('http://127.0.0.1:3000'),
    CORS_ORIGINS: z.string().default('http://127.0.0.1:3000,http://127.0.0.1:3001,http://localhost:3000,http://localhost:3001'),

    SESSION_SECRET: z.string().min(32, 'must be at least 32 characters').default(DEV_SECRET),
    API_KEY_PEPPER: z.string().min(32, 'must be at least 32 characters').default(DEV_SECRET),
    TRUST_PROXY: bool.default(false),

    RATE_LIMIT_API_KEY_PER_MINUTE: z.coerce.number().int().min(1).default(600),
    RATE_LIMIT_USER_PER_MINUTE: z.coerce.number().int().min(1).default(1200),
    RATE_LIMIT_PROJECT_PER_MINUTE: z.coerce.number().int().min(1).default(3000),
    RATE_LIMIT_ANONYMOUS_PER_MINUTE: z.coerce.number().int().min(1).default(60),
    LOGIN_MAX_FAILURES: z.coerce.number().int().min(1).default(5),
    LOGIN_LOCK_MINUTES: z.coerce.number().int().min(1).default(15),
    SESSION_TTL_HOURS: z.coerce.number().int().min(1).default(24 * 7),
  })
  .superRefine((env, ctx) => {
    if (env.STORAGE_DRIVER === 's3') {
      for (const key of ['S3_ENDPOINT', 'S3_BUCKET', 'S3_ACCESS_KEY_ID', 'S3_SECRET_ACCESS_KEY'] as const) {
        if (!env[key]) ctx.addIssue({ code: 'custom', path: [key], message: 'is required when STORAGE_DRIVER=s3' });
      }
    }
    if (env.NODE_ENV === 'production') {
      for (const key of ['SESSION_SECRET', 'API_KEY_PEPPER'] as const) {
        if (env[key] === DEV_SECRET) ctx.addIssue({ code: 'custom', path: [key], message: 'must be set in production' });
      }
    }
    if (env.NEWAPI_BASE_URL && !env.NEWAPI_API_KEY) {
      ctx.addIssue({ code: 'custom', path: ['NEWAPI_API_KEY'], message: 'is required when NEWAPI_BASE_URL is set' });
    }
  });

export type AppConfig = ReturnType<typeof toConfig>;

function toConfig(env: z.infer<typeof envSchema>) {
  return {
    nodeEnv: env.NODE_ENV,
    logLevel: env.LOG_LEVEL,
    databaseUrl: env.DATABASE_URL,
    redis: { url: env.REDIS_URL, keyPrefix: env.REDIS_KEY_PREFIX },
    temporal: {
      address: env.TEMPORAL_ADDRESS,
      namespace: env.TEMPORAL_NAMESPACE,
      taskQueue: env.TEMPORAL_TASK_QUEUE,
      chatWorkflowTaskTimeoutMs: env.TEMPORAL_CHAT_TASK_TIMEOUT_MS,
      workflowThread: env.TEMPORAL_WORKFLOW_THREAD,
    },
    upstream: {
      baseUrl: env.NEWAPI_BASE_URL,
      apiKey: env.NEWAPI_API_KEY,
      timeoutMs: env.UPSTREAM_TIMEOUT_MS,
    },
    v1: {
      speculativeHeadroom: env.V1_SPECULATIVE_HEADROOM,
      settleBeforeResponse: env.V1_SETTLE_BEFORE_RESPONSE,
      captureBatchMs: env.V1_CAPTURE_BATCH_MS,
      holdReserve: env.V1_HOLD_RESERVE,
    },
    chat: { speculativeHeadroom: env.CHAT_SPECULATIVE_HEADROOM },
    workflows: { httpAllowLoopback: env.WORKFLOW_HTTP_ALLOW_LOOPBACK },
    storage: {
      driver: env.STORAGE_DRIVER,
      localDir: env.STORAGE_LOCAL_DIR,
      s3: {
        endpoint: env.S3_ENDPOINT,
        region: env.S3_REGION,
        bucket: env.S3_BUCKET,
        accessKeyId: env.S3_ACCESS_KEY_ID,
        secretAccessKey: env.S3_SECRET_ACCESS_KEY,
        forcePathStyle: env.S3_FORCE_PATH_STYLE,
      },
      lancedbUri: env.LANCEDB_URI,
    },
    gateway: {
      host: env.GATEWAY_HOST,
      port: env.GATEWAY_PORT,
      corsOrigins: env.CORS_ORIGINS.split(',').map((o) => o.trim()).filter(Boolean),
      trustProxy: env.TRUST_PROXY,
    },
    ports: { web: env.WEB_PORT, admin: env.ADMIN_PORT, temporalUi: env.TEMPORAL_UI_PORT },
    publicWebUrl: env.PUBLIC_WEB_URL,
    secrets: { session: env.SESSION_SECRET, apiKeyPepper: env.API_KEY_PEPPER },
    rateLimits: {
      apiKeyPerMinute: env.RATE_LIMIT_API_KEY_PER_MINUTE,
      userPerMinute: env.RATE_LIMIT_USER_PER_MINUTE,
      projectPerMinute: env.RATE_LIMIT_PROJECT_PER_MINUTE,
      anonymousPerMinute: env.RATE_LIMIT_ANONYMOUS_PER_MINUTE,
    },
    auth: {
      loginMaxFailures: env.LOGIN_MAX_FAILURES,
      loginLockMinutes: env.LOGIN_LOCK_MINUTES,
      sessionTtlHours: env.SESSION_TTL_HOURS,
    },
  };
}

export class ConfigError extends Error {
  readonly problems: string[];
  constructor(problems: string[]) {
    super(`invalid configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

/** Parses the environment; throws ConfigError listing one line per wrong value. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): AppConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.') || '(environment)';
      const value = env[String(issue.path[0])];
      const shown = value === undefined ? '' : ` (got "${/SECRET|KEY|PASSWORD|PEPPER/.test(name) ? '***' : value}")`;
      return `${name}: ${issue.message}${shown}`;
    });
    throw new ConfigError(problems);
  }
  return toConfig(parsed.data);
}

/** For process entry points: print the problems and exit 2 instead of a stack trace. */
export function loadConfigOrExit(env: NodeJS.ProcessEnv = process.env): AppConfig {
  try {
    return loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
