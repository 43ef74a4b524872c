// Node flags the gateway process runs with (npm start, the Dockerfile's CMD, docker-compose and the
// /v1 bench all use these; a test checks the deployment files).
//
// --max-semi-space-size=4 (MiB): a small young generation. Under steady /v1 load V8 otherwise grows
// it to 16 MiB and more, and its scavenges pause the event loop for several milliseconds each (every
// call in flight waits). Measured with `npm run bench -- openai-gateway`, V8's default vs 4 MiB run
// alternately, five runs each: added p99 at 200 req/s median 14.6 ms vs 8.0 ms; no change at
// 500 req/s; about a tenth less closed-loop capacity (more, shorter scavenges). 8 MiB: 10.0 ms (3 runs).
//
// --single-threaded-gc: V8 otherwise splits each pause's work with helper threads, and the pause
// ends only when every helper is done; on a small host shared with PostgreSQL and the upstream, a
// helper that is not scheduled stretches the pause. Measured with the 4 MiB young generation, with
// and without, run alternately (four runs each): added p99 at 500 req/s 59.6, 51.7, 44.0, 37.8 ms
// vs 30.6, 51.9, 20.9, 12.5 ms; at 200 req/s 7.2, 17.2, 13.1, 6.5 vs 6.7, −2.8, 7.5, 5.2 ms;
// closed-loop capacity unchanged within the noise.
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4', '--single-threaded-gc'];
