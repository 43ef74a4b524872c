import type { SimulatedModel } from './types.ts';

export const OWNED_BY = 'deepspace-simulator';
/** Fixed `created` timestamp (2024-05-13) so listings are deterministic. */
export const MODEL_CREATED = 1715558400;

export const DEFAULT_MODELS: readonly SimulatedModel[] = Object.freeze([
  { id: 'sim-gpt-4o-mini', kind: 'chat', contextWindow: 128_000 },
  { id: 'sim-gpt-4o', kind: 'chat', contextWindow: 128_000 },
  { id: 'sim-reasoner', kind: 'chat', contextWindow: 200_000 },
  { id: 'sim-embedding-small', kind: 'embedding', dimensions: 256 },
  { id: 'sim-embedding-large', kind: 'embedding', dimensions: 1024 },
] satisfies SimulatedModel[]);

export function validateModels(models: readonly SimulatedModel[]): Map<string, SimulatedModel> {
  const map = new Map<string, SimulatedModel>();
  for (const m of models) {
    if (!m || typeof m.id !== 'string' || m.id.length === 0) throw new TypeError('simulator: every model needs a non-empty id');
    if (m.kind !== 'chat' && m.kind !== 'embedding') throw new TypeError(`simulator: model ${m.id} has invalid kind`);
    if (m.kind === 'embedding' && !(Number.isInteger(m.dimensions) && (m.dimensions ?? 0) > 0)) {
      throw new TypeError(`simulator: embedding model ${m.id} needs positive integer dimensions`);
    }
    if (map.has(m.id)) throw new TypeError(`simulator: duplicate model id ${m.id}`);
    map.set(m.id, { ...m });
  }
  return map;
}

export function modelObject(m: SimulatedModel): { id: string; object: 'model'; created: number; owned_by: string } {
  return { id: m.id, object: 'model', created: m.created ?? MODEL_CREATED, owned_by: m.ownedBy ?? OWNED_BY };
}
