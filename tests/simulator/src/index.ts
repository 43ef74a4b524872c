export { startSimulator } from './server.ts';
export { DEFAULT_MODELS, OWNED_BY } from './models.ts';
export { FAULT_KINDS, parseDirectives } from './controls.ts';
export type { FaultKind, RequestControls } from './controls.ts';
export { countTokens } from './tokenizer.ts';
export type {
  ModelKind,
  RecentRequest,
  RunningSimulator,
  SimulatedModel,
  SimulatorOptions,
  SimulatorStats,
} from './types.ts';
