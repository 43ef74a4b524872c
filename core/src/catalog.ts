// The default model catalog seeded on first start. Names are what callers ask for; with no
// upstream configured they route to the simulator's models and are flagged as simulated.
export interface CatalogModel {
  name: string;
  displayName: string;
  kind: 'chat' | 'embedding';
  upstreamModel: string;
  simulatorModel: string;
  contextWindow: number;
  maxOutputTokens: number;
  inputMicrosPerMillion: bigint;
  outputMicrosPerMillion: bigint;
}

export const DEFAULT_CATALOG: readonly CatalogModel[] = [
  {
    name: 'gpt-4o-mini',
    displayName: 'GPT-4o mini',
    kind: 'chat',
    upstreamModel: 'gpt-4o-mini',
    simulatorModel: 'sim-gpt-4o-mini',
    contextWindow: 128_000,
    maxOutputTokens: 16_384,
    inputMicrosPerMillion: 150_000n,
    outputMicrosPerMillion: 600_000n,
  },
  {
    name: 'gpt-4o',
    displayName: 'GPT-4o',
    kind: 'chat',
    upstreamModel: 'gpt-4o',
    simulatorModel: 'sim-gpt-4o',
    contextWindow: 128_000,
    maxOutputTokens: 16_384,
    inputMicrosPerMillion: 2_500_000n,
    outputMicrosPerMillion: 10_000_000n,
  },
  {
    name: 'deepseek-reasoner',
    displayName: 'DeepSeek Reasoner',
    kind: 'chat',
    upstreamModel: 'deepseek-reasoner',
    simulatorModel: 'sim-reasoner',
    contextWindow: 64_000,
    maxOutputTokens: 8_192,
    inputMicrosPerMillion: 550_000n,
    outputMicrosPerMillion: 2_190_000n,
  },
  {
    name: 'text-embedding-3-small',
    displayName: 'Embedding 3 small',
    kind: 'embedding',
    upstreamModel: 'text-embedding-3-small',
    simulatorModel: 'sim-embedding-small',
    contextWindow: 8_191,
    maxOutputTokens: 0,
    inputMicrosPerMillion: 20_000n,
    outputMicrosPerMillion: 0n,
  },
  {
    name: 'text-embedding-3-large',
    displayName: 'Embedding 3 large',
    kind: 'embedding',
    upstreamModel: 'text-embedding-3-large',
    simulatorModel: 'sim-embedding-large',
    contextWindow: 8_191,
    maxOutputTokens: 0,
    inputMicrosPerMillion: 130_000n,
    outputMicrosPerMillion: 0n,
  },
];
