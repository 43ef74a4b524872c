import { describe, expect, it } from 'vitest';
import { SingleFlight } from './single-flight.ts';

describe('SingleFlight', () => {
  it('runs one load for concurrent callers of a key, and a new one once it settled', async () => {
    const flight = new SingleFlight<number>();
    let loads = 0;
    const load = () => new Promise<number>((resolve) => setTimeout(() => resolve(++loads), 20));
    const results = await Promise.all(Array.from({ length: 50 }, () => flight.run('k', load)));
    expect(results).toEqual(Array(50).fill(1));
    expect(await flight.run('other', load)).toBe(2);
    expect(await flight.run('k', load)).toBe(3);
    expect(flight.loading).toBe(0);
  });

  it('shares a failure with the callers that joined it, then lets the next caller retry', async () => {
    const flight = new SingleFlight<string>();
    let calls = 0;
    const failing = () => new Promise<string>((_, reject) => setTimeout(() => reject(new Error(`boom ${++calls}`)), 10));
    const outcomes = await Promise.allSettled([flight.run('k', failing), flight.run('k', failing)]);
    expect(outcomes.map((o) => (o as PromiseRejectedResult).reason.message)).toEqual(['boom 1', 'boom 1']);
    await expect(flight.run('k', async () => 'ok')).resolves.toBe('ok');
  });

  it('clear(): callers after it do not join a load that began before it', async () => {
    const flight = new SingleFlight<string>();
    const before = flight.run('k', () => new Promise((resolve) => setTimeout(() => resolve('old'), 30)));
    flight.clear();
    let newLoads = 0;
    const slowNew = () => new Promise<string>((resolve) => setTimeout(() => resolve(`new ${++newLoads}`), 60));
    const after = flight.run('k', slowNew);
    expect(await before).toBe('old');
    // The old load settling does not drop the new one: a caller now still joins it.
    expect(await flight.run('k', slowNew)).toBe('new 1');
    expect(await after).toBe('new 1');
  });
});
