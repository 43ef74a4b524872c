/** Public types of the upstream simulator. */

export type ModelKind = 'chat' | 'embedding';

export interface SimulatedModel {
  /** Model id as used in requests, e.g. `sim-gpt-4o-mini`. */
  id: string;
  kind: ModelKind;
  /** Embedding dimensions (required for embedding models, ignored for chat models). */
  dimensions?: number;
  /** `owned_by` in /v1/models; defaults to `deepspace-simulator`. */
  ownedBy?: string;
  /** Unix seconds for `created`; defaults to a fixed timestamp so listings are deterministic. */
  created?: number;
  /** Context window of chat models (prompt + completion tokens); default 128000. */
  contextWindow?: number;
}

export interface SimulatorOptions {
  /** TCP port; 0 (the default) picks a random free port. */
  port?: number;
  /** Interface to bind; default 127.0.0.1. */
  host?: string;
  /** When set, every /v1 request must carry `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** Delay before the first token of a chat completion (ms); default 0. */
  firstTokenLatencyMs?: number;
  /** Delay per generated token (ms); default 0. */
  perTokenLatencyMs?: number;
  /** Delay before answering an embeddings request (ms); default 0. */
  embeddingLatencyMs?: number;
  /** Natural completion length in tokens when no header/directive chooses one; default 64. */
  defaultOutputTokens?: number;
  /** Request body limit in bytes; default 4 MiB. Larger bodies get 413. */
  maxBodyBytes?: number;
  /** Models served; defaults to DEFAULT_MODELS. */
  models?: SimulatedModel[];
}

export interface RecentRequest {
  at: string;
  method: string;
  path: string;
  status: number;
  model?: string;
  stream?: boolean;
  fault?: string;
  durationMs: number;
}

export interface SimulatorStats {
  /** All HTTP requests received. */
  totalRequests: number;
  /** Requests per route, keyed `METHOD /path` (unknown routes are counted under `unmatched`). */
  routes: Record<string, number>;
  /** Responses per HTTP status code (as string); requests that never got a status are not counted here. */
  statuses: Record<string, number>;
  /** Injected faults per kind (`http_500`, `http_429`, `timeout`, `disconnect`, `slow`, ...). */
  faults: Record<string, number>;
  chat: { stream: number; nonStream: number };
  embeddings: { requests: number; inputs: number };
  streams: { started: number; completed: number; aborted: number };
  tokens: { prompt: number; completion: number; embedding: number };
  /** Requests currently being served (including `timeout` faults that are still hanging). */
  inFlight: number;
  /** Last 200 requests, oldest first. */
  recent: RecentRequest[];
}

export interface RunningSimulator {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:1234/v1`. */
  url: string;
  port: number;
  host: string;
  /** Snapshot (deep copy) of the request counters. */
  stats(): SimulatorStats;
  /** Zero all counters (models and settings are kept). */
  resetStats(): void;
  /** Stop listening, destroy open streams and hanging requests; resolves when the server is closed. */
  close(): Promise<void>;
}
