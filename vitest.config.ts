import { defineConfig } from 'vitest/config';

// One run: a fresh test database, its own Temporal dev server, a Redis key prefix and the upstream
// simulator, all made by tests/support/global-setup.ts and removed afterwards.
export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts', '*/src/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'tests/e2e/**', 'tests/bench/**'],
    globalSetup: ['tests/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Two cores: suites share one database and Temporal server; keep parallelism modest.
    maxWorkers: 2,
    reporters: ['default'],
  },
});
