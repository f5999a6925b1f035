// Property tests for every strategy: never an unavailable or excluded pick, and weights respected over long runs.

import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { LatencyEwma } from '../../src/balancer/latency-ewma.js';
import { createStrategy, type Candidate } from '../../src/balancer/strategy.js';
import { FakeClock, seededRandom } from '../../src/clock.js';
import { HASH_STRATEGIES, STRATEGY_NAMES } from '../../src/config/schema.js';

const candidateSets = fc.array(
  fc.record({
    available: fc.boolean(),
    weight: fc.integer({ min: 1, max: 20 }),
    inflight: fc.nat(10),
    excluded: fc.boolean(),
    // A measured latency (peak-ewma picks by it), or none yet; `stale` puts the measurement a decay in the past.
    latencyMs: fc.option(fc.double({ min: 0, max: 5_000, noNaN: true })),
    failed: fc.boolean(),
    stale: fc.boolean(),
  }),
  { minLength: 0, maxLength: 12 },
);

const EWMA = { decayMs: 10_000, initialMs: 10, penaltyMs: 60_000 };

function latencyFor(spec: { latencyMs: number | null; failed: boolean; stale: boolean }): LatencyEwma {
  const clock = new FakeClock();
  const latency = new LatencyEwma(clock, EWMA);
  if (spec.latencyMs !== null) latency.observe(spec.latencyMs);
  if (spec.failed) latency.penalize();
  if (spec.stale) clock.advance(EWMA.decayMs);
  return latency;
}

function unmeasured(): LatencyEwma {
  return new LatencyEwma(new FakeClock(), EWMA);
}

describe.each(STRATEGY_NAMES)('%s', (name) => {
  it('never picks an unavailable or excluded backend, and picks one whenever any qualifies', () => {
    fc.assert(
      fc.property(candidateSets, fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 50 }), (specs, seed, rounds) => {
        const strategy = createStrategy(name, seededRandom(seed));
        const candidates: Candidate[] = specs.map((spec, i) => ({
          id: `b${i}`,
          available: spec.available,
          effectiveWeight: spec.weight,
          inflight: spec.inflight,
          latency: latencyFor(spec),
        }));
        const excluded = new Set(specs.flatMap((spec, i) => (spec.excluded ? [`b${i}`] : [])));
        const eligible = candidates.filter((c) => c.available && !excluded.has(c.id));
        for (let i = 0; i < rounds; i++) {
          const picked = strategy.pick(candidates, excluded);
          if (eligible.length === 0) expect(picked).toBeUndefined();
          else expect(eligible).toContain(picked);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe.each(HASH_STRATEGIES)('%s with request keys', (name) => {
  it('never picks an unavailable or excluded backend, picks one whenever any qualifies, and the same one for the same key', () => {
    fc.assert(
      fc.property(candidateSets, fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 2_000 }), (specs, keys, ringSize) => {
        const strategy = createStrategy(name, seededRandom(1), { ringSize });
        const other = createStrategy(name, seededRandom(2), { ringSize });
        const candidates: Candidate[] = specs.map((spec, i) => ({ id: `b${i}`, available: spec.available, effectiveWeight: spec.weight, weight: spec.weight, inflight: spec.inflight, latency: unmeasured() }));
        const excluded = new Set(specs.flatMap((spec, i) => (spec.excluded ? [`b${i}`] : [])));
        const eligible = candidates.filter((c) => c.available && !excluded.has(c.id));
        for (const key of keys) {
          const picked = strategy.pick(candidates, excluded, key);
          if (eligible.length === 0) expect(picked).toBeUndefined();
          else expect(eligible).toContain(picked);
          expect(other.pick(candidates, excluded, key)).toBe(picked);
        }
      }),
      { numRuns: 150 },
    );
  });
});

describe('weights over long runs', () => {
  it('weighted gives each backend exactly its weight in every full cycle', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 8 }), (weights) => {
        const strategy = createStrategy('weighted', seededRandom(1));
        const candidates: Candidate[] = weights.map((w, i) => ({ id: `b${i}`, available: true, effectiveWeight: w, inflight: 0, latency: unmeasured() }));
        const total = weights.reduce((a, b) => a + b, 0);
        const counts = new Map<string, number>();
        for (let i = 0; i < total * 5; i++) {
          const id = strategy.pick(candidates)!.id;
          counts.set(id, (counts.get(id) ?? 0) + 1);
        }
        weights.forEach((w, i) => expect(counts.get(`b${i}`) ?? 0).toBe(w * 5));
      }),
      { numRuns: 200 },
    );
  });

  it('round-robin and random share evenly; least-request favours the heavier backend at equal load', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 6 }), fc.integer({ min: 1, max: 2 ** 31 - 1 }), (n, seed) => {
        const candidates: Candidate[] = Array.from({ length: n }, (_, i) => ({ id: `b${i}`, available: true, effectiveWeight: 1, inflight: 0, latency: unmeasured() }));
        for (const name of ['round-robin', 'random'] as const) {
          const strategy = createStrategy(name, seededRandom(seed));
          const counts = new Array<number>(n).fill(0);
          const rounds = 3000 * n;
          for (let i = 0; i < rounds; i++) counts[Number(strategy.pick(candidates)!.id.slice(1))]! += 1;
          for (const count of counts) expect(Math.abs(count / rounds - 1 / n)).toBeLessThan(name === 'round-robin' ? 1e-9 : 0.03);
        }
        const heavy: Candidate[] = [
          { id: 'light', available: true, effectiveWeight: 1, inflight: 0, latency: unmeasured() },
          { id: 'heavy', available: true, effectiveWeight: 4, inflight: 0, latency: unmeasured() },
        ];
        const strategy = createStrategy('least-request', seededRandom(seed));
        let heavyPicks = 0;
        for (let i = 0; i < 2000; i++) if (strategy.pick(heavy)!.id === 'heavy') heavyPicks += 1;
        expect(heavyPicks / 2000).toBeGreaterThan(0.5);
      }),
      { numRuns: 30 },
    );
  });
});
