// Exact pick sequences per strategy: the table-driven proof that each algorithm is the one documented.

import { describe, expect, it } from 'vitest';
import { randomInt, seededRandom } from '../../src/clock.js';
import { leastRequestScore } from '../../src/balancer/least-request.js';
import { createStrategy } from '../../src/balancer/strategy.js';
import { candidates, sequence } from './candidates.js';

describe('weighted (smooth weighted round-robin)', () => {
  it.each([
    [{ a: 5, b: 1, c: 1 }, 'a a b a c a a a a b a c a a'],
    [{ a: 1, b: 1, c: 1 }, 'a b c a b c'],
    [{ a: 2, b: 1 }, 'a b a a b a'],
    [{ a: 4, b: 2, c: 1 }, 'a b a c a b a a b a c a b a'],
  ])('weights %j give %s', (weights, expected) => {
    const strategy = createStrategy('weighted', seededRandom(1));
    const pool = candidates(weights);
    expect(sequence(() => strategy.pick(pool), expected.split(' ').length).join(' ')).toBe(expected);
  });

  it('handles fractional (slow-start) weights smoothly and proportionally', () => {
    const strategy = createStrategy('weighted', seededRandom(1));
    const pool = candidates({ a: 1, b: 0.25 });
    expect(sequence(() => strategy.pick(pool), 10).join(' ')).toBe('a a b a a a a b a a');
  });

  it('skips an unavailable backend without disturbing the others, and takes it back', () => {
    const strategy = createStrategy('weighted', seededRandom(1));
    const pool = candidates({ a: 5, b: 1, c: 1 });
    expect(sequence(() => strategy.pick(pool), 7).join(' ')).toBe('a a b a c a a');
    pool[0]!.available = false;
    expect(sequence(() => strategy.pick(pool), 4).join(' ')).toBe('b c b c');
    pool[0]!.available = true;
    const next = sequence(() => strategy.pick(pool), 7);
    expect(next.filter((id) => id === 'a')).toHaveLength(5);
  });

  it('keeps its rhythm (state re-keyed by id) when every pick sees a freshly built array', () => {
    const strategy = createStrategy('weighted', seededRandom(1));
    const first = sequence(() => strategy.pick(candidates({ a: 5, b: 1, c: 1 })), 7);
    expect(first.join(' ')).toBe('a a b a c a a');
  });
});

describe('round-robin', () => {
  it('rotates strictly, ignoring weights', () => {
    const strategy = createStrategy('round-robin', seededRandom(1));
    const pool = candidates({ a: 10, b: 1, c: 1 });
    expect(sequence(() => strategy.pick(pool), 7).join(' ')).toBe('a b c a b c a');
  });

  it('skips a backend while it is unavailable and gives it its turn back without double picks', () => {
    const strategy = createStrategy('round-robin', seededRandom(1));
    const pool = candidates(['a', 'b', 'c', 'd']);
    const picks = sequence(() => strategy.pick(pool), 2); // a b
    pool[2]!.available = false; // c goes down
    picks.push(...sequence(() => strategy.pick(pool), 4)); // d a b d
    pool[2]!.available = true; // c comes back
    picks.push(...sequence(() => strategy.pick(pool), 5)); // a b c d a
    expect(picks.join(' ')).toBe('a b d a b d a b c d a');
    for (let i = 1; i < picks.length; i++) expect(picks[i], `pick ${i}`).not.toBe(picks[i - 1]);
  });

  it('skips excluded backends for a retry and continues the rotation after the pick', () => {
    const strategy = createStrategy('round-robin', seededRandom(1));
    const pool = candidates(['a', 'b', 'c']);
    expect(strategy.pick(pool)?.id).toBe('a');
    expect(strategy.pick(pool, new Set(['b']))?.id).toBe('c');
    expect(strategy.pick(pool)?.id).toBe('a');
  });

  it('continues after the last pick when the candidate array is replaced (config change)', () => {
    const strategy = createStrategy('round-robin', seededRandom(1));
    expect(sequence(() => strategy.pick(candidates(['a', 'b', 'c'])), 1)).toEqual(['a']);
    const rebuilt = candidates(['x', 'a', 'b', 'c']);
    expect(sequence(() => strategy.pick(rebuilt), 4).join(' ')).toBe('b c x a');
  });
});

describe('random', () => {
  it('follows the seeded generator exactly', () => {
    const pool = candidates(['a', 'b', 'c', 'd']);
    const reference = seededRandom(7);
    const expected = Array.from({ length: 20 }, () => pool[randomInt(reference, 4)]!.id);
    const strategy = createStrategy('random', seededRandom(7));
    expect(sequence(() => strategy.pick(pool), 20)).toEqual(expected);
  });

  it('is reproducible per seed and differs between seeds', () => {
    const pool = candidates(['a', 'b', 'c', 'd']);
    const run = (seed: number) => {
      const strategy = createStrategy('random', seededRandom(seed));
      return sequence(() => strategy.pick(pool), 30).join('');
    };
    expect(run(3)).toBe(run(3));
    expect(run(3)).not.toBe(run(4));
  });

  it('maps the random draw onto the available backends only', () => {
    const pool = candidates(['a', 'b', 'c']);
    pool[0]!.available = false;
    const low = createStrategy('random', { next: () => 0 });
    const high = createStrategy('random', { next: () => 0.99 });
    expect(low.pick(pool)?.id).toBe('b');
    expect(high.pick(pool)?.id).toBe('c');
  });
});

describe('least-request (P2C)', () => {
  /** A Random that returns the given draws in order. */
  const scripted = (...draws: number[]) => ({ next: () => draws.shift() ?? 0 });

  it('picks the less loaded of the two drawn', () => {
    const pool = candidates(['a', 'b', 'c']);
    pool[0]!.inflight = 5;
    pool[2]!.inflight = 1;
    // Draws: first = a (0/3), second = c (index 1 of the remaining two, shifted past a -> 2).
    expect(createStrategy('least-request', scripted(0, 0.9)).pick(pool)?.id).toBe('c');
    // The same pair in the other order gives the same answer.
    expect(createStrategy('least-request', scripted(0.9, 0)).pick(pool)?.id).toBe('c');
    // a and b drawn: b has none in flight.
    expect(createStrategy('least-request', scripted(0, 0)).pick(pool)?.id).toBe('b');
  });

  it('never considers a backend it did not draw, even an idle one', () => {
    const pool = candidates(['a', 'b', 'c']);
    pool[0]!.inflight = 5;
    pool[1]!.inflight = 3;
    expect(createStrategy('least-request', scripted(0, 0)).pick(pool)?.id).toBe('b');
  });

  it('breaks a tie in favour of the first draw', () => {
    const pool = candidates(['a', 'b']);
    expect(createStrategy('least-request', scripted(0.9, 0)).pick(pool)?.id).toBe('b');
    expect(createStrategy('least-request', scripted(0, 0)).pick(pool)?.id).toBe('a');
  });

  it('weighs load by weight: weight / (inflight + 1)', () => {
    const pool = candidates({ big: 4, small: 1 });
    pool[0]!.inflight = 2; // 4/3 = 1.33
    pool[1]!.inflight = 0; // 1/1 = 1
    expect(createStrategy('least-request', scripted(0.9, 0)).pick(pool)?.id).toBe('big');
    pool[0]!.inflight = 4; // 4/5 = 0.8
    expect(createStrategy('least-request', scripted(0, 0)).pick(pool)?.id).toBe('small');
    expect(leastRequestScore(pool[0]!)).toBeCloseTo(0.8);
  });

  it('with one eligible backend, picks it without drawing', () => {
    const pool = candidates(['a', 'b']);
    pool[0]!.available = false;
    let draws = 0;
    const strategy = createStrategy('least-request', { next: () => (draws++, 0.5) });
    expect(strategy.pick(pool)?.id).toBe('b');
    expect(draws).toBe(0);
  });

  it('steers new requests away from a backend that accumulates in-flight requests', () => {
    const strategy = createStrategy('least-request', seededRandom(5));
    const pool = candidates(['fast', 'slow', 'other']);
    pool[1]!.inflight = 50;
    const picks = sequence(() => strategy.pick(pool), 300);
    expect(picks.filter((id) => id === 'slow')).toHaveLength(0);
  });
});
