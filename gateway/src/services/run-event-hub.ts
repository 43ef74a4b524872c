// One blocking read for every open SSE relay of a gateway process. Each run's events are a Redis
// Stream; a relay per stream blocking on its own connection costs a connection per open stream and
// a round trip per stream whenever a worker appends (the worker appends every reply's pending text
// in one pipeline per tick, so 20 open replies meant 20 reads woken per tick). The hub keeps one
// connection blocked in XREAD over all subscribed streams: one wake per tick, and as many Redis
// connections per gateway process as one.
//
// A new subscription must join the read that is already blocked: the hub interrupts it with
// CLIENT UNBLOCK from its control connection, and the next read includes the new stream. A read
// still on its way to Redis cannot be unblocked yet, so the interrupt repeats until a read that
// includes every subscription has been sent.
import type { Redis } from 'ioredis';
import { parseRunEntries, runEventsKey, type RunEvent } from '@deepspace/core';

const BLOCK_MS = 5_000;
const COUNT_PER_STREAM = 500;

interface Subscription {
  after: string;
  deliver(events: RunEvent[]): void;
  fail(error: unknown): void;
}

/** Stream ids compared as (milliseconds, sequence); '0' and '0-0' are before every entry. */
export function streamIdAfter(a: string, b: string): boolean {
  const [aMs = '0', aSeq = '0'] = a.split('-');
  const [bMs = '0', bSeq = '0'] = b.split('-');
  if (aMs.length !== bMs.length) return aMs.length > bMs.length;
  if (aMs !== bMs) return aMs > bMs;
  return Number(aSeq) > Number(bSeq);
}

let hubCount = 0;

export class RunEventHub {
  private readonly reader: Redis;
  /** The client name of its blocking connection (CLIENT LIST). */
  readonly readerName: string;
  private readonly prefix: string;
  private readerId: number | null = null;
  private readonly byKey = new Map<string, Set<Subscription>>();
  /** Bumped by every subscription; a read includes every subscription up to the generation it was sent with. */
  private generation = 0;
  private sentGeneration = -1;
  private running = false;
  private interrupting = false;
  private closed = false;

  private readonly control: Redis;

  constructor(control: Redis) {
    this.control = control;
    this.readerName = `ds-run-events-${process.pid}-${++hubCount}`;
    this.reader = control.duplicate({ connectionName: this.readerName });
    this.prefix = control.options.keyPrefix ?? '';
    // A reconnected reader is another client with another id.
    this.reader.on('ready', () => {
      this.readerId = null;
    });
  }

  /** Calls `deliver` with the run's events after `after` as they come; returns the unsubscribe. */
  subscribe(runId: string, after: string, deliver: (events: RunEvent[]) => void, fail: (error: unknown) => void): () => void {
    if (this.closed) throw new Error('run event hub closed');
    const key = runEventsKey(runId);
    const subscription: Subscription = { after, deliver, fail };
    let subscribers = this.byKey.get(key);
    if (!subscribers) this.byKey.set(key, (subscribers = new Set()));
    subscribers.add(subscription);
    this.generation++;
    if (!this.running) void this.readLoop();
    else this.interrupt();
    return () => {
      subscribers.delete(subscription);
      if (subscribers.size === 0 && this.byKey.get(key) === subscribers) this.byKey.delete(key);
    };
  }

  /** Open subscriptions (tests, diagnostics). */
  get subscriptions(): number {
    let n = 0;
    for (const subscribers of this.byKey.values()) n += subscribers.size;
    return n;
  }

  close(): void {
    this.closed = true;
    this.reader.disconnect();
  }

  private async readLoop(): Promise<void> {
    this.running = true;
    try {
      while (!this.closed && this.byKey.size > 0) {
        if (this.readerId === null) this.readerId = (await this.reader.client('ID')) as number;
        const keys = [...this.byKey.keys()];
        const ids = keys.map((key) => {
          let min: string | null = null;
          for (const s of this.byKey.get(key)!) if (min === null || streamIdAfter(min, s.after)) min = s.after;
          return min ?? '0';
        });
        this.sentGeneration = this.generation;
        const reply = (await this.reader.xread('COUNT', COUNT_PER_STREAM, 'BLOCK', BLOCK_MS, 'STREAMS', ...keys, ...ids)) as Array<[string, Array<[string, string[]]>]> | null;
        for (const [streamKey, entries] of reply ?? []) {
          const subscribers = this.byKey.get(streamKey.startsWith(this.prefix) ? streamKey.slice(this.prefix.length) : streamKey);
          if (!subscribers) continue;
          const events = parseRunEntries(entries);
          for (const subscription of [...subscribers]) {
            const fresh = events.filter((event) => streamIdAfter(event.id, subscription.after));
            if (fresh.length === 0) continue;
            subscription.after = fresh.at(-1)!.id;
            subscription.deliver(fresh);
          }
        }
      }
    } catch (error) {
      // Every relay ends with the error (its client reconnects with Last-Event-ID).
      const failed = [...this.byKey.values()].flatMap((subscribers) => [...subscribers]);
      this.byKey.clear();
      for (const subscription of failed) subscription.fail(error);
    } finally {
      this.running = false;
    }
    // A subscription that came while the loop was ending.
    if (!this.closed && this.byKey.size > 0) void this.readLoop();
  }

  /** Gets the blocked read to return, so that the next one includes the newest subscriptions. */
  private interrupt(): void {
    if (this.interrupting) return;
    this.interrupting = true;
    void (async () => {
      try {
        let wait = 1;
        while (!this.closed && this.running && this.sentGeneration < this.generation) {
          const id = this.readerId ?? (await this.findReaderId());
          if (id !== null && (await this.control.client('UNBLOCK', id)) === 1) break;
          // Not blocked yet (the read is on its way, or the loop is between reads): try again,
          // backing off while the reader is away (reconnecting).
          await new Promise((resolve) => setTimeout(resolve, wait));
          wait = Math.min(wait * 2, 100);
        }
      } catch {
        // The control connection failed: the read returns within BLOCK_MS anyway.
      } finally {
        this.interrupting = false;
      }
      if (!this.closed && this.running && this.sentGeneration < this.generation) this.interrupt();
    })();
  }

  /** The reader's client id while it is blocked (after a reconnect, before the loop asked for it). */
  private async findReaderId(): Promise<number | null> {
    const list = (await this.control.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string;
    const line = list.split('\n').find((l) => l.includes(` name=${this.readerName} `));
    const id = line ? /(?:^|\s)id=(\d+)/.exec(line)?.[1] : undefined;
    return id ? Number(id) : null;
  }
}
