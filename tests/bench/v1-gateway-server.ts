// The /v1 bench's gateway child (openai-gateway.bench.ts starts it): our gateway (startTestGateway,
// the pools as gateway/src/main.ts makes them) served in this process until SIGTERM, with nothing
// else loaded — as deployed, no worker SDK, no bench code — so its heap and collections are the
// deployed gateway's. Prints BENCH_GATEWAY_URL=… when it listens.
import { writeFileSync } from 'node:fs';
import { startTestGateway } from '../support/gateway-stack.ts';

const overrides = JSON.parse(process.env.BENCH_GATEWAY_OVERRIDES ?? '{}') as NodeJS.ProcessEnv;
// Its pools as the deployed gateway makes them (gateway/src/main.ts).
const gateway = await startTestGateway(overrides, { keepConnections: true });
// BENCH_HEAP_SAMPLE_FILE=path writes a sampling allocation profile of this process there at stop,
// garbage included (for investigations: what the young generation's scavenges collect).
const heapFile = process.env.BENCH_HEAP_SAMPLE_FILE;
const inspector = heapFile ? new (await import('node:inspector/promises')).Session() : null;
if (inspector) {
  inspector.connect();
  await inspector.post('HeapProfiler.startSampling', { samplingInterval: 8192, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
}
process.stdout.write(`BENCH_GATEWAY_URL=${gateway.url}\n`);
const stop = async () => {
  if (inspector && heapFile) {
    const { profile } = await inspector.post('HeapProfiler.stopSampling');
    writeFileSync(heapFile, JSON.stringify(profile));
  }
  gateway.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
