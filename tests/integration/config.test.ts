import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '@deepspace/core';

describe('configuration', () => {
  it('defaults give a working local configuration', () => {
    const config = loadConfig({});
    expect(config.databaseUrl).toMatch(/^postgresql:\/\//);
    expect(config.temporal.address).toBe('127.0.0.1:7233');
    expect(config.gateway.port).toBe(8080);
    expect(config.storage.driver).toBe('local');
    expect(config.upstream.baseUrl).toBeUndefined();
    expect(config.temporal.chatWorkflowTaskTimeoutMs).toBe(2_000);
    expect(config.temporal.workflowThread).toBe(false);
    expect(loadConfig({ TEMPORAL_WORKFLOW_THREAD: 'true' }).temporal.workflowThread).toBe(true);
    expect(loadConfig({ TEMPORAL_CHAT_TASK_TIMEOUT_MS: '5000' }).temporal.chatWorkflowTaskTimeoutMs).toBe(5_000);
    expect(config.v1).toEqual({ speculativeHeadroom: 20, settleBeforeResponse: false, captureBatchMs: 20, holdReserve: 32 });
    expect(loadConfig({ V1_SPECULATIVE_HEADROOM: '0', V1_SETTLE_BEFORE_RESPONSE: 'true', V1_CAPTURE_BATCH_MS: '0', V1_HOLD_RESERVE: '0' }).v1).toEqual({ speculativeHeadroom: 0, settleBeforeResponse: true, captureBatchMs: 0, holdReserve: 0 });
    expect(() => loadConfig({ V1_HOLD_RESERVE: '257' })).toThrow(/V1_HOLD_RESERVE/);
    expect(() => loadConfig({ V1_CAPTURE_BATCH_MS: '1001' })).toThrow(/V1_CAPTURE_BATCH_MS/);
    expect(() => loadConfig({ V1_SPECULATIVE_HEADROOM: '-1' })).toThrow(/V1_SPECULATIVE_HEADROOM/);
    expect(config.chat).toEqual({ speculativeHeadroom: 20 });
    expect(loadConfig({ CHAT_SPECULATIVE_HEADROOM: '0' }).chat).toEqual({ speculativeHeadroom: 0 });
    expect(() => loadConfig({ CHAT_SPECULATIVE_HEADROOM: 'x' })).toThrow(/CHAT_SPECULATIVE_HEADROOM/);
  });

  it('reports every wrong value on its own line, naming the variable', () => {
    let error: unknown;
    try {
      loadConfig({ GATEWAY_PORT: '99999', DATABASE_URL: 'mysql://x', STORAGE_DRIVER: 'ftp', TEMPORAL_ADDRESS: 'nohost', TEMPORAL_CHAT_TASK_TIMEOUT_MS: '500' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const problems = (error as ConfigError).problems;
    expect(problems).toHaveLength(5);
    expect(problems.some((p) => p.startsWith('TEMPORAL_CHAT_TASK_TIMEOUT_MS:'))).toBe(true);
    expect(problems.find((p) => p.startsWith('GATEWAY_PORT:'))).toContain('99999');
    expect(problems.find((p) => p.startsWith('DATABASE_URL:'))).toContain('postgresql');
    expect(problems.some((p) => p.startsWith('STORAGE_DRIVER:'))).toBe(true);
    expect(problems.some((p) => p.startsWith('TEMPORAL_ADDRESS:'))).toBe(true);
  });

  it('s3 storage requires its endpoint, bucket and keys', () => {
    expect(() => loadConfig({ STORAGE_DRIVER: 's3' })).toThrow(/S3_ENDPOINT: is required[\s\S]*S3_BUCKET[\s\S]*S3_ACCESS_KEY_ID[\s\S]*S3_SECRET_ACCESS_KEY/);
    const ok = loadConfig({
      STORAGE_DRIVER: 's3',
      S3_ENDPOINT: 'http://127.0.0.1:9000',
      S3_BUCKET: 'docs',
      S3_ACCESS_KEY_ID: 'a',
      S3_SECRET_ACCESS_KEY: 'b',
    });
    expect(ok.storage.s3.bucket).toBe('docs');
  });

  it('production refuses the development secrets and hides secret values in messages', () => {
    expect(() => loadConfig({ NODE_ENV: 'production' })).toThrow(/SESSION_SECRET: must be set in production/);
    try {
      loadConfig({ SESSION_SECRET: 'short-secret' });
      expect.unreachable();
    } catch (e) {
      expect((e as ConfigError).problems[0]).toBe('SESSION_SECRET: must be at least 32 characters (got "***")');
    }
  });

  it('an upstream URL needs its API key', () => {
    expect(() => loadConfig({ NEWAPI_BASE_URL: 'http://upstream.example/v1' })).toThrow(/NEWAPI_API_KEY: is required/);
    expect(loadConfig({ NEWAPI_BASE_URL: 'http://upstream.example/v1', NEWAPI_API_KEY: 'k' }).upstream.baseUrl).toBe(
      'http://upstream.example/v1',
    );
  });
});
