// Gateway overhead: the full pipeline (trace → auth by API key → Redis token buckets → policy →
// OpenAPI validation → handler → JSON) on an authenticated no-op route, against a bare Express
// route answering the same JSON, both over real HTTP with keep-alive, measured in this run.
import type { AddressInfo } from 'node:net';
import express from 'express';
import { createKey, signUp } from '../support/api.ts';
import { startTestGateway } from '../support/stack.ts';
import { measureThroughput, round, type BenchSuite } from './harness.ts';

const TOTAL = 3000;
const CONCURRENCY = 20;

const suite: BenchSuite = {
  name: 'gateway pipeline overhead',
  async run() {
    const gateway = await startTestGateway({ RATE_LIMIT_API_KEY_PER_MINUTE: '100000000', RATE_LIMIT_PROJECT_PER_MINUTE: '100000000' }, { keepConnections: true });
    const bare = express();
    bare.get('/noop', (_req, res) => {
      res.json({ type: 'api_key', ok: true });
    });
    const server = await new Promise<import('node:http').Server>((resolve) => {
      const s = bare.listen(0, '127.0.0.1', () => resolve(s));
    });
    const bareUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/noop`;
    try {
      const owner = await signUp(gateway.url, 'bench');
      const key = await createKey(owner, ['usage:read']);
      const gatewayCall = async () => {
        const res = await fetch(`${gateway.url}/api/v1/me`, { headers: { authorization: `Bearer ${key}` } });
        if (res.status !== 200) throw new Error(`status ${res.status}`);
        await res.arrayBuffer();
      };
      const bareCall = async () => {
        const res = await fetch(bareUrl);
        await res.arrayBuffer();
      };
      // Warm-up: JIT, connection pools, Redis script cache.
      await measureThroughput(gatewayCall, { total: 300, concurrency: CONCURRENCY });
      await measureThroughput(bareCall, { total: 300, concurrency: CONCURRENCY });
      const baseline = await measureThroughput(bareCall, { total: TOTAL, concurrency: CONCURRENCY });
      const subject = await measureThroughput(gatewayCall, { total: TOTAL, concurrency: CONCURRENCY });
      if (subject.errors) throw new Error(`${subject.errors} gateway calls failed`);
      return [
        {
          name: 'gateway-noop-throughput',
          description: `GET /api/v1/me with an API key vs a bare Express JSON route; ${TOTAL} requests, ${CONCURRENCY} concurrent`,
          baseline: { label: 'bare Express', value: round(baseline.perSecond, 0), unit: 'req/s' },
          subject: { label: 'gateway pipeline', value: round(subject.perSecond, 0), unit: 'req/s' },
          ratio: round(subject.perSecond / baseline.perSecond, 3),
          ratioMeaning: 'gateway throughput as a fraction of bare Express (1 = no overhead)',
          details: {
            p50_ms: { gateway: round(subject.p50), bare: round(baseline.p50) },
            p99_ms: { gateway: round(subject.p99), bare: round(baseline.p99) },
          },
        },
        {
          name: 'gateway-noop-latency-p50',
          description: 'median latency of the same calls',
          baseline: { label: 'bare Express', value: round(baseline.p50), unit: 'ms' },
          subject: { label: 'gateway pipeline', value: round(subject.p50), unit: 'ms' },
          ratio: round(subject.p50 / baseline.p50, 2),
          ratioMeaning: 'gateway median latency in multiples of bare Express',
        },
      ];
    } finally {
      server.close();
      await gateway.close();
    }
  },
};

export default suite;
