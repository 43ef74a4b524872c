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

export interface CachedPrice {
  id: string;
  modelId: string;
  currency: string;
  inputMicrosPerMillion: bigint;
  outputMicrosPerMillion: bigint;
  effectiveFrom: Date;
}

export class ModelCatalog {
  private readonly pool: pg.Pool;
  private cache: { at: number; models: Map<string, CatalogEntry> } | undefined;
  private prices: { at: number; byModel: Map<string, CachedPrice[]> } | undefined;

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

  /**
   * The price row in force at `at` (the newest effective_from ≤ at). Price rows are versioned and
   * normally added ahead of their effective time, so a cache of at most TTL_MS is exact for them;
   * a row inserted as effective immediately is seen within TTL_MS.
   */
  async priceAt(modelId: string, at: Date = new Date()): Promise<CachedPrice | undefined> {
    if (!this.prices || Date.now() - this.prices.at >= TTL_MS) {
      const { rows } = await this.pool.query<Record<string, unknown>>(
        `SELECT id, model_id, currency, input_micros_per_million::text AS i, output_micros_per_million::text AS o, effective_from
         FROM model_prices ORDER BY model_id, effective_from DESC`,
      );
      const byModel = new Map<string, CachedPrice[]>();
      for (const r of rows) {
        const list = byModel.get(r.model_id as string) ?? [];
        list.push({
          id: r.id as string,
          modelId: r.model_id as string,
          currency: r.currency as string,
          inputMicrosPerMillion: BigInt(r.i as string),
          outputMicrosPerMillion: BigInt(r.o as string),
          effectiveFrom: r.effective_from as Date,
        });
        byModel.set(r.model_id as string, list);
      }
      this.prices = { at: Date.now(), byModel };
    }
    return this.prices.byModel.get(modelId)?.find((p) => p.effectiveFrom <= at);
  }

  invalidate(): void {
    this.cache = undefined;
    this.prices = undefined;
  }
}
