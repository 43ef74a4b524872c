// Active models by name, cached briefly in memory (the catalog changes rarely; a stale entry lives
// at most TTL_MS). Billing always re-reads the price in force inside the ledger.
import type pg from 'pg';

export interface CatalogEntry {
  id: string;
  name: string;
  upstreamModel: string;
  kind: 'chat' | 'embedding';
  displayName: string;
  contextWindow: number;
  maxOutputTokens: number;
  isSimulated: boolean;
  createdAt: Date;
}

const TTL_MS = 10_000;

export class ModelCatalog {
  private readonly pool: pg.Pool;
  private cache: { at: number; models: Map<string, CatalogEntry> } | undefined;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  async all(): Promise<Map<string, CatalogEntry>> {
    if (this.cache && Date.now() - this.cache.at < TTL_MS) return this.cache.models;
    const { rows } = await this.pool.query<Record<string, unknown>>(
      `SELECT id, name, upstream_model, kind, display_name, context_window, max_output_tokens, is_simulated, created_at
       FROM models WHERE is_active ORDER BY name`,
    );
    const models = new Map<string, CatalogEntry>(
      rows.map((r) => [
        r.name as string,
        {
          id: r.id as string,
          name: r.name as string,
          upstreamModel: r.upstream_model as string,
          kind: r.kind as 'chat' | 'embedding',
          displayName: r.display_name as string,
          contextWindow: r.context_window as number,
          maxOutputTokens: r.max_output_tokens as number,
          isSimulated: r.is_simulated as boolean,
          createdAt: r.created_at as Date,
        },
      ]),
    );
    this.cache = { at: Date.now(), models };
    return models;
  }

  async get(name: string): Promise<CatalogEntry | undefined> {
    return (await this.all()).get(name);
  }

  invalidate(): void {
    this.cache = undefined;
  }
}
