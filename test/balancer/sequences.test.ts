// Exact pick sequences per strategy: the table-driven proof that each algorithm is the one documented.

import { describe, expect, it } from 'vitest';
import { FakeClock, randomInt, seededRandom } from '../../src/clock.js';
import { leastRequestScore } from '../../src/balancer/least-request.js';
import { peakEwmaCost } from '../../src/balancer/peak-ewma.js';
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

describe('peak-ewma (P2C by latency x (in-flight + 1) / weight)', () => {
  const scripted = (...draws: number[]) => ({ next: () => draws.shift() ?? 0 });

  /** Candidates a, b, c measured at the given latencies at time 0 of a fresh fake clock. */
  function measured(latencies: Record<string, number>, weights?: Record<string, number>) {
    const clock = new FakeClock();
    const pool = candidates(weights ?? Object.fromEntries(Object.keys(latencies).map((id) => [id, 1])), clock);
    for (const candidate of pool) candidate.latency.observe(latencies[candidate.id]!);
    return { clock, pool };
  }

  it('with nothing measured, picks exactly as least-request does', () => {
    const pool = candidates({ a: 3, b: 1, c: 1 });
    pool[0]!.inflight = 2;
    pool[2]!.inflight = 1;
    const ewma = createStrategy('peak-ewma', seededRandom(11));
    const least = createStrategy('least-request', seededRandom(11));
    expect(sequence(() => ewma.pick(pool), 40)).toEqual(sequence(() => least.pick(pool), 40));
  });

  it('picks the faster of the two drawn, and never one it did not draw', () => {
    const { pool } = measured({ a: 1, b: 5, c: 50 });
    expect(createStrategy('peak-ewma', scripted(0, 0.9)).pick(pool)?.id).toBe('a'); // a vs c
    expect(createStrategy('peak-ewma', scripted(0.9, 0.9)).pick(pool)?.id).toBe('b'); // c vs b
    expect(createStrategy('peak-ewma', scripted(0.5, 0)).pick(pool)?.id).toBe('a'); // b vs a
  });

  it('gives the 1/5/50 ms pool the exact sequence of "better of each seeded pair": the slow one never', () => {
    const { pool } = measured({ a: 1, b: 5, c: 50 });
    const strategy = createStrategy('peak-ewma', seededRandom(3));
    const picks = sequence(() => strategy.pick(pool), 24);
    expect(picks.join(' ')).toBe('a a a a a a a b a a b a a b b a a a b b b a b a');
    const reference = seededRandom(3);
    const expected = picks.map(() => {
      const first = randomInt(reference, 3);
      let second = randomInt(reference, 2);
      if (second >= first) second++;
      return ['a', 'b', 'c'][Math.min(first, second)];
    });
    expect(picks).toEqual(expected);
  });

  it('weighs latency by the queue it would join: latency x (in-flight + 1)', () => {
    const { pool } = measured({ a: 1, b: 5 });
    pool[0]!.inflight = 4; // 1 x 5 = 5 vs 5 x 1 = 5: a tie goes to the first draw
    expect(createStrategy('peak-ewma', scripted(0.9, 0)).pick(pool)?.id).toBe('b');
    expect(createStrategy('peak-ewma', scripted(0, 0)).pick(pool)?.id).toBe('a');
    pool[0]!.inflight = 5; // 6 vs 5
    expect(createStrategy('peak-ewma', scripted(0, 0)).pick(pool)?.id).toBe('b');
    expect(peakEwmaCost(pool[0]!)).toBe(6);
  });

  it('divides the cost by the effective weight, so weights and the slow-start ramp act as in least-request', () => {
    const { pool } = measured({ a: 10, b: 5 }, { a: 4, b: 1 });
    expect(peakEwmaCost(pool[0]!)).toBe(2.5);
    expect(createStrategy('peak-ewma', scripted(0.9, 0)).pick(pool)?.id).toBe('a');
    pool[0]!.effectiveWeight = 0.4 * 4 * 0.25; // ramping up at 10% of its weight
    expect(createStrategy('peak-ewma', scripted(0, 0)).pick(pool)?.id).toBe('b');
  });

  it('sends a backend it stopped using one probe once its estimate is decay old, and takes it back when it recovered', () => {
    const { clock, pool } = measured({ a: 1, b: 5, c: 50 });
    const strategy = createStrategy('peak-ewma', seededRandom(9));
    // a and b answer every 100 ms; c, at 50 ms, loses every pair it is drawn in.
    const serve = (steps: number) => {
      const picks: string[] = [];
      for (let i = 0; i < steps; i++) {
        clock.advance(100);
        const picked = strategy.pick(pool) as (typeof pool)[number];
        picks.push(picked.id);
        // c has recovered: it now answers in 1 ms like a.
        picked.latency.observe(picked.id === 'b' ? 5 : 1);
      }
      return picks;
    };
    const before = serve(99); // up to 9.9 s after c's last answer
    expect(before).not.toContain('c');
    const around = serve(6); // c's estimate turns 10 s old at the 100th step
    expect(around.join(' ')).toBe('c a c c a c');
    expect(pool[2]!.latency.estimateMs()).toBe(1);
    const after = serve(300);
    // Back in the pool alongside a (the two 1 ms backends share what b does not get).
    expect(after.filter((id) => id === 'c').length).toBeGreaterThan(100);
  });

  it('probes only a backend with nothing in flight, so a slow probe is not followed by a burst', () => {
    const { clock, pool } = measured({ a: 1, c: 50 });
    clock.advance(10_000);
    pool[0]!.latency.observe(1);
    pool[1]!.inflight = 1; // the probe is on its way
    const strategy = createStrategy('peak-ewma', seededRandom(1));
    expect(sequence(() => strategy.pick(pool), 10).join(' ')).toBe('a a a a a a a a a a');
    pool[1]!.inflight = 0;
    expect(createStrategy('peak-ewma', scripted(0, 0)).pick(pool)?.id).toBe('c');
  });

  it('keeps an erroring fast backend from attracting traffic: one failure 20 ms into its stream puts it behind a 5 ms peer', () => {
    const { clock, pool } = measured({ fast: 0.2, ok: 5 });
    const strategy = createStrategy('peak-ewma', scripted(0, 0, 0, 0, 0, 0));
    clock.advance(20);
    expect(strategy.pick(pool)?.id).toBe('fast');
    pool[0]!.latency.penalize(); // about 0.2 + 59,999.8 x 0.002 = 120 ms
    expect(pool[0]!.latency.estimateMs()).toBeCloseTo(120.2, 2);
    expect(sequence(() => strategy.pick(pool), 3).join(' ')).toBe('ok ok ok');
  });
});
