// Concurrent callers that need the same thing loaded share one load. The gateway's in-memory
// caches (API keys, sessions, policies) expire every few seconds; without this, every request that
// arrives while an expired entry is being reloaded starts its own database query (a stampede that
// grows with the request rate and is worst exactly when the database is slowest).
export class SingleFlight<T> {
  private readonly inFlight = new Map<string, Promise<T>>();

  /** `load()` once for `key` while a load of it is running; every caller gets its outcome. */
  run(key: string, load: () => Promise<T>): Promise<T> {
    const running = this.inFlight.get(key);
    if (running) return running;
    const started: Promise<T> = load().finally(() => {
      if (this.inFlight.get(key) === started) this.inFlight.delete(key);
    });
    this.inFlight.set(key, started);
    return started;
  }

  /** Later callers start a new load (what is running may predate a change, e.g. a revocation). */
  clear(): void {
    this.inFlight.clear();
  }

  get loading(): number {
    return this.inFlight.size;
  }
}
