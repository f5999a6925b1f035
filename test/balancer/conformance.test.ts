// The contract every strategy meets, run against all of them; the hashing ones both with a key per request and without.

import { describe, expect, it } from 'vitest';
import { seededRandom } from '../../src/clock.js';
import { createStrategy, type Candidate, type Strategy } from '../../src/balancer/strategy.js';
import { hashString } from '../../src/balancer/hash.js';
import { HASH_STRATEGIES, STRATEGY_NAMES, type StrategyName } from '../../src/config/schema.js';
import { candidates } from './candidates.js';

/** Expected long-run share per backend, as [min, max], for weights {a:3, b:1, c:1} under a steady load of 10 in flight. */
const EXPECTED_SHARES: Record<StrategyName, Record<string, readonly [number, number]>> = {
  random: { a: around(1 / 3), b: around(1 / 3), c: around(1 / 3) },
  'round-robin': { a: around(1 / 3), b: around(1 / 3), c: around(1 / 3) },
  weighted: { a: around(0.6), b: around(0.2), c: around(0.2) },
  // P2C draws its pair uniformly, so one backend of n can win at most 2/n of picks (here 2/3): weights shift
  // traffic towards a (well above its unweighted 1/3) but cannot reach 3:1:1 exactly. Envoy's P2C shares this.
  'least-request': { a: [0.5, 2 / 3], b: [1 / 6, 0.25], c: [1 / 6, 0.25] },
  // Alike backends (same latency estimate) leave peak-ewma with least-request's choice: weight over load.
  'peak-ewma': { a: [0.5, 2 / 3], b: [1 / 6, 0.25], c: [1 / 6, 0.25] },
  // Keyed: each backend owns a share of the key space in proportion to its weight. Without a key: a weighted random pick.
  'ring-hash': { a: around(0.6), b: around(0.2), c: around(0.2) },
  maglev: { a: around(0.6), b: around(0.2), c: around(0.2) },
};

/**
 * Every strategy, and the hashing ones a second time with a distinct request key per pick (many clients): the
 * contract holds whether or not requests carry the value the pool hashes on.
 */
const VARIANTS: Array<[string, StrategyName, boolean]> = [
  ...STRATEGY_NAMES.map((name): [string, StrategyName, boolean] => [name, name, false]),
  ...HASH_STRATEGIES.map((name): [string, StrategyName, boolean] => [`${name} with a key per request`, name, true]),
];

/** The strategy's pick with a fresh key per call when `keyed` (as many distinct clients would send). */
function picker(strategy: Strategy, keyed: boolean): Strategy['pick'] {
  let client = 0;
  return (candidates, excluded) => strategy.pick(candidates, excluded, keyed ? hashString(`client-${client++}`) : undefined);
}

function around(share: number): readonly [number, number] {
  return [share - 0.03, share + 0.03];
}

describe.each(VARIANTS)('strategy %s', (_title, name, keyed) => {
  const make = (): { name: string; pick: Strategy['pick'] } => {
    const strategy = createStrategy(name, seededRandom(42));
    return { name: strategy.name, pick: picker(strategy, keyed) };
  };

  it('reports its name', () => {
    expect(make().name).toBe(name);
  });

  it('never picks an unavailable or excluded candidate', () => {
    const strategy = make();
    const pool = candidates({ a: 2, b: 1, c: 3, d: 1 });
    pool[1]!.available = false;
    const excluded = new Set(['c']);
    for (let i = 0; i < 500; i++) {
      const picked = strategy.pick(pool, excluded);
      expect(picked?.id).toBeDefined();
      expect(['a', 'd']).toContain(picked!.id);
    }
  });

  it('returns undefined when nothing qualifies', () => {
    const strategy = make();
    expect(strategy.pick([])).toBeUndefined();
    const pool = candidates(['a', 'b', 'c']);
    pool[0]!.available = false;
    pool[1]!.available = false;
    expect(strategy.pick(pool, new Set(['c']))).toBeUndefined();
    for (const c of pool) c.available = false;
    expect(strategy.pick(pool)).toBeUndefined();
  });

  it('picks the only candidate, whatever its load or weight', () => {
    const strategy = make();
    const pool = candidates({ solo: 0.1 });
    pool[0]!.inflight = 1000;
    for (let i = 0; i < 20; i++) expect(strategy.pick(pool)?.id).toBe('solo');
  });

  it('picks the one remaining candidate when the others are excluded (retry path)', () => {
    const strategy = make();
    const pool = candidates(['a', 'b', 'c']);
    for (let i = 0; i < 20; i++) expect(strategy.pick(pool, new Set(['a', 'c']))?.id).toBe('b');
  });

  it('follows changes of the candidate set: additions are picked, removals never are', () => {
    const strategy = make();
    let pool = candidates(['a', 'b']);
    for (let i = 0; i < 10; i++) strategy.pick(pool);
    pool = candidates(['b', 'c', 'd']);
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) seen.add(strategy.pick(pool)!.id);
    expect([...seen].sort()).toEqual(['b', 'c', 'd']);
    pool = candidates(['d']);
    for (let i = 0; i < 10; i++) expect(strategy.pick(pool)?.id).toBe('d');
  });

  it('recovers a candidate that becomes available again', () => {
    const strategy = make();
    const pool = candidates(['a', 'b', 'c']);
    pool[2]!.available = false;
    for (let i = 0; i < 50; i++) expect(strategy.pick(pool)?.id).not.toBe('c');
    pool[2]!.available = true;
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) seen.add(strategy.pick(pool)!.id);
    expect(seen.has('c')).toBe(true);
  });

  it('keeps long-run proportions within tolerance', () => {
    const strategy = make();
    const pool = candidates({ a: 3, b: 1, c: 1 });
    const counts: Record<string, number> = { a: 0, b: 0, c: 0 };
    // A steady 10 requests in flight, oldest finishing first: load-aware strategies see real pressure.
    const inflight: Candidate[] = [];
    const total = 30_000;
    for (let i = 0; i < total; i++) {
      if (inflight.length === 10) (inflight.shift() as (typeof pool)[number]).inflight--;
      const picked = strategy.pick(pool) as (typeof pool)[number];
      picked.inflight++;
      inflight.push(picked);
      counts[picked.id]!++;
    }
    for (const [id, [min, max]] of Object.entries(EXPECTED_SHARES[name])) {
      expect(counts[id]! / total, `share of ${id}`).toBeGreaterThanOrEqual(min);
      expect(counts[id]! / total, `share of ${id}`).toBeLessThanOrEqual(max);
    }
  });

  it('spreads evenly over equal weights', () => {
    const strategy = make();
    const pool = candidates(['a', 'b', 'c', 'd']);
    const counts: Record<string, number> = { a: 0, b: 0, c: 0, d: 0 };
    const total = 20_000;
    for (let i = 0; i < total; i++) counts[strategy.pick(pool)!.id]!++;
    for (const id of Object.keys(counts)) expect(Math.abs(counts[id]! / total - 0.25), id).toBeLessThan(0.02);
  });

  it('does not mutate or reorder the candidates', () => {
    const strategy = make();
    const pool = candidates({ a: 2, b: 1 });
    const snapshot = JSON.stringify(pool);
    for (let i = 0; i < 20; i++) strategy.pick(pool);
    expect(JSON.stringify(pool)).toBe(snapshot);
  });
});
