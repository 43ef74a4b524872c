// Node flags the gateway process runs with (npm start, the Dockerfile's CMD, docker-compose and the
// /v1 bench all use these; a test checks the deployment files).
//
// --max-semi-space-size=4 (MiB): a small young generation. Under steady /v1 load V8 otherwise grows
// it to 16 MiB and more, and its scavenges pause the event loop for several milliseconds each (every
// call in flight waits). Measured with `npm run bench -- openai-gateway`, V8's default vs 4 MiB run
// alternately, five runs each: added p99 at 200 req/s median 14.6 ms vs 8.0 ms; no change at
// 500 req/s; about a tenth less closed-loop capacity (more, shorter scavenges). 8 MiB: 10.0 ms (3 runs).
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];
