// Active models by name and their prices, cached briefly in memory (the catalog changes rarely).
// Billing always re-reads the price in force inside the ledger.
//
// Past its TTL a cache is reloaded in the background while callers keep the copy they have (stale
// by at most the TTL plus one reload): no call waits for a catalog query except on a cold cache,
// and concurrent callers share one reload (before, every call arriving during a reload started its
// own query, on every model call's path once per TTL). A copy older than twice the TTL (reloads
// failing) is not served: callers then wait for a reload and see its error.
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
  private readonly ttlMs: number;
  private cache: { at: number; models: Map<string, CatalogEntry> } | undefined;
  private prices: { at: number; byModel: Map<string, CachedPrice[]> } | undefined;
  private modelsLoad: Promise<Map<string, CatalogEntry>> | undefined;
  private pricesLoad: Promise<Map<string, CachedPrice[]>> | undefined;
  /** Bumped by invalidate(): a reload that began before it does not fill the cache. */
  private generation = 0;

  constructor(pool: pg.Pool, options: { ttlMs?: number } = {}) {
    this.pool = pool;
    this.ttlMs = options.ttlMs ?? TTL_MS;
  }

  /** The cached value when fresh; a stale one while a shared reload runs; else the reload. */
  private read<T>(cached: { at: number } | undefined, value: (() => T) | undefined, reload: () => Promise<T>): T | Promise<T> {
    const age = cached ? Date.now() - cached.at : Infinity;
    if (age < this.ttlMs) return value!();
    const loading = reload();
    if (age < 2 * this.ttlMs) {
      loading.catch(() => undefined); // the next caller past the limit sees a lasting failure
      return value!();
    }
    return loading;
  }

  async all(): Promise<Map<string, CatalogEntry>> {
    const cache = this.cache;
    return this.read(cache, cache && (() => cache.models), () => this.reloadModels());
  }

  private reloadModels(): Promise<Map<string, CatalogEntry>> {
    if (!this.modelsLoad) {
      const load: Promise<Map<string, CatalogEntry>> = this.loadModels().finally(() => {
        if (this.modelsLoad === load) this.modelsLoad = undefined;
      });
      this.modelsLoad = load;
    }
    return this.modelsLoad;
  }

  private reloadPrices(): Promise<Map<string, CachedPrice[]>> {
    if (!this.pricesLoad) {
      const load: Promise<Map<string, CachedPrice[]>> = this.loadPrices().finally(() => {
        if (this.pricesLoad === load) this.pricesLoad = undefined;
      });
      this.pricesLoad = load;
    }
    return this.pricesLoad;
  }

  private async loadModels(): Promise<Map<string, CatalogEntry>> {
    const generation = this.generation;
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
    if (generation === this.generation) this.cache = { at: Date.now(), models };
    return models;
  }

  async get(name: string): Promise<CatalogEntry | undefined> {
    return (await this.all()).get(name);
  }

  /**
   * The price row in force at `at` (the newest effective_from ≤ at). Price rows are versioned and
   * normally added ahead of their effective time, so a cache this fresh is exact for them; a row
   * inserted as effective immediately is seen within the TTL plus one reload.
   */
  async priceAt(modelId: string, at: Date = new Date()): Promise<CachedPrice | undefined> {
    const prices = this.prices;
    const byModel = await this.read(prices, prices && (() => prices.byModel), () => this.reloadPrices());
    return byModel.get(modelId)?.find((p) => p.effectiveFrom <= at);
  }

  private async loadPrices(): Promise<Map<string, CachedPrice[]>> {
    const generation = this.generation;
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
    if (generation === this.generation) this.prices = { at: Date.now(), byModel };
    return byModel;
  }

  /** Drops both caches; reloads already running do not fill them (they may predate the change). */
  invalidate(): void {
    this.generation++;
    this.cache = undefined;
    this.prices = undefined;
    this.modelsLoad = undefined;
    this.pricesLoad = undefined;
  }
}
