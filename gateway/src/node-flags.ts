// Node flags the gateway process runs with (npm start, the Dockerfile's CMD, docker-compose and the
// /v1 bench all use these; a test checks the deployment files).
//
// --single-threaded-gc: V8 otherwise splits each pause's work with helper threads, and the pause
// ends only when every helper is done; on a small host shared with PostgreSQL and the upstream, a
// helper that is not scheduled stretches the pause. Measured with a 4 MiB young generation, with
// and without, run alternately (four runs each): added p99 at 500 req/s 59.6, 51.7, 44.0, 37.8 ms
// vs 30.6, 51.9, 20.9, 12.5 ms; at 200 req/s 7.2, 17.2, 13.1, 6.5 vs 6.7, −2.8, 7.5, 5.2 ms;
// closed-loop capacity unchanged within the noise.
//
// The young generation: it was capped at 4 MiB (--max-semi-space-size=4) to
// shorten scavenge pauses (added p99 at 200 req/s, median of five runs, 14.6 → 8.0 ms on an
// earlier machine). Measured again on a slower host (2026-11-26, `openai-gateway`, four alternating
// pairs, 4 MiB → default): our gateway's CPU per call at 500 req/s 1.74, 1.64, 1.62, 1.60 → 1.52,
// 1.24, 1.15, 1.19 ms (more, smaller scavenges cost a quarter of its CPU there), added p50 at 500
// req/s minus Portkey's +23.85, +5.68, +3.18, +2.63 → +4.73, +0.40, −0.25, −0.02 ms, p99 at 500
// 336, 162, 231, 121 → 208, 74, 41, 66 ms; at 200 req/s p50 and p99 within the noise (p99 minus
// Portkey's +6.2, −0.5, +1.3, −9.1 → +4.8, +4.2, −5.5, −6.9 ms). 8 MiB (two runs): 1.73, 1.66 ms.
//
// --max-semi-space-size=16: but not V8's default maximum either. Node runs without pointer
// compression, so that default lets the young generation grow to 64 MB, and each scavenge then
// copies out ~4 MB of survivors (6–8% of what was allocated since the last: calls in flight, batches
// being written) on the main thread: 11–25 ms at p50, up to 52 ms (`--trace-gc-nvp`, three
// `openai-gateway` runs, 2026-11-26). Capped at 16 MB semi-spaces (32 MB in all), ~1.2 MB survive per
// scavenge and the pauses took 4.5–5.9 ms at p50, 19–26 ms at most, three times as many of them for
// about the same total; CPU per call at 500 req/s 1.06, 1.05, 1.04 → 1.02, 1.24, 1.07 ms; our added
// p99 at 200 req/s 6.6, 20.1, 10.6 → 5.2, 6.5, 6.1 ms; at 500 req/s 31.0, 36.7, 17.5 → 15.4, 49.2,
// 22.5 (the noise of that rate on two shared cores).
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--single-threaded-gc', '--max-semi-space-size=16'];
