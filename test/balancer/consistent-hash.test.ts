// ring-hash and maglev beyond the shared contract: the same key on the same backend everywhere, only a leaver's keys move, weights hold.

import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/clock.js';
import { hashString } from '../../src/balancer/hash.js';
import { createStrategy, type Strategy } from '../../src/balancer/strategy.js';
import { HASH_STRATEGIES, type StrategyName } from '../../src/config/schema.js';
import { candidates, type TestCandidate } from './candidates.js';

const KEYS = Array.from({ length: 10_000 }, (_, i) => hashString(`user-${i}`));

function ids(n: number): string[] {
  return Array.from({ length: n }, (_, i) => `backend-${i + 1}`);
}

/** key index -> backend id for all 10,000 keys. */
function assign(strategy: Strategy, pool: readonly TestCandidate[], excluded?: ReadonlySet<string>): string[] {
  return KEYS.map((key) => strategy.pick(pool, excluded, key)?.id ?? '-');
}

function shares(assignment: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const id of assignment) counts.set(id, (counts.get(id) ?? 0) + 1);
  return new Map([...counts].map(([id, count]) => [id, count / assignment.length]));
}

describe.each(HASH_STRATEGIES.map((name) => [name]))('%s', (name: StrategyName) => {
  const make = (seed = 1) => createStrategy(name, seededRandom(seed));

  it('sends a key to the same backend on every pick, and in every process (no per-process state or seed)', () => {
    const here = make(1);
    const there = make(999);
    const pool = candidates(ids(5));
    const first = assign(here, pool);
    expect(assign(here, pool)).toEqual(first);
    // Another "node": its own strategy, its own (freshly built) candidate objects, another random seed.
    expect(assign(there, candidates(ids(5)))).toEqual(first);
  });

  it.each([5, 10])('moves only the leaving backend\'s keys when one of %i leaves the pool (10,000 keys)', (n) => {
    const before = assign(make(), candidates(ids(n)));
    const leaver = `backend-${Math.ceil(n / 2)}`;
    const after = assign(make(), candidates(ids(n).filter((id) => id !== leaver)));
    let moved = 0;
    let movedFromOthers = 0;
    before.forEach((id, i) => {
      if (after[i] === id) return;
      moved++;
      if (id !== leaver) movedFromOthers++;
    });
    const leaverShare = before.filter((id) => id === leaver).length / KEYS.length;
    // About 1/N moves: the leaver's own keys. Ring-hash moves exactly those; Maglev's table refill moves a few more.
    expect(moved / KEYS.length).toBeGreaterThan(0.7 / n);
    expect(moved / KEYS.length).toBeLessThan(1.3 / n);
    expect(moved / KEYS.length).toBeGreaterThanOrEqual(leaverShare);
    if (name === 'ring-hash') expect(movedFromOthers).toBe(0);
    else expect(movedFromOthers / KEYS.length).toBeLessThan(0.02);
  });

  it('hands an unavailable backend\'s keys on deterministically and leaves every other key where it was', () => {
    const pool = candidates(ids(5));
    const strategy = make();
    const before = assign(strategy, pool);
    pool[2]!.available = false;
    const during = assign(strategy, pool);
    // Another node with the same backend down sends each of those keys to the same place.
    const otherPool = candidates(ids(5));
    otherPool[2]!.available = false;
    expect(assign(make(7), otherPool)).toEqual(during);
    const receivers = new Set<string>();
    before.forEach((id, i) => {
      if (id === 'backend-3') {
        expect(during[i]).not.toBe('backend-3');
        receivers.add(during[i]!);
      } else expect(during[i]).toBe(id);
    });
    // Spread over the others, not piled onto one neighbour.
    expect(receivers.size).toBe(4);
    pool[2]!.available = true;
    expect(assign(strategy, pool)).toEqual(before);
  });

  it('skips excluded backends (a retry) the same way', () => {
    const pool = candidates(ids(4));
    const strategy = make();
    const key = hashString('retrying-user');
    const first = strategy.pick(pool, undefined, key)!.id;
    const retry = strategy.pick(pool, new Set([first]), key)!.id;
    expect(retry).not.toBe(first);
    expect(make(3).pick(candidates(ids(4)), new Set([first]), key)!.id).toBe(retry);
  });

  it('gives each backend a share of keys in proportion to its configured weight, whatever slow start does', () => {
    const pool = candidates({ heavy: 3, mid: 2, light: 1 });
    const strategy = make();
    const share = shares(assign(strategy, pool));
    expect(share.get('heavy')!).toBeCloseTo(3 / 6, 1);
    expect(share.get('mid')!).toBeCloseTo(2 / 6, 1);
    expect(share.get('light')!).toBeCloseTo(1 / 6, 1);
    // Slow start scales the effective weight of a returning backend; keys must not reshuffle for it.
    const configured = pool.map((candidate) => ({ ...candidate, weight: candidate.effectiveWeight }));
    const before = assign(strategy, configured);
    configured[0]!.effectiveWeight = 0.5;
    expect(assign(strategy, configured)).toEqual(before);
  });

  it('picks at random, by weight, for a request without a key', () => {
    const strategy = make(5);
    const pool = candidates({ a: 3, b: 1 });
    const counts = { a: 0, b: 0 } as Record<string, number>;
    for (let i = 0; i < 4_000; i++) counts[strategy.pick(pool)!.id]!++;
    expect(counts['a']! / 4_000).toBeCloseTo(0.75, 1);
    pool[0]!.available = false;
    for (let i = 0; i < 50; i++) expect(strategy.pick(pool)!.id).toBe('b');
  });
});

describe('ring-hash ring size', () => {
  it('spreads keys more evenly with more points per backend', () => {
    const pool = candidates(ids(8));
    const spread = (points: number) => {
      const share = shares(assign(createStrategy('ring-hash', seededRandom(1), { ringSize: points }), pool));
      return Math.max(...share.values()) - Math.min(...share.values());
    };
    expect(spread(4096)).toBeLessThan(spread(4));
    expect(spread(4096)).toBeLessThan(0.05);
  });
});
