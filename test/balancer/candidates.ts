// Test doubles for strategy candidates: plain mutable objects with the Candidate shape, each with a latency estimate on a fake clock.

import { FakeClock } from '../../src/clock.js';
import { LatencyEwma, type LatencyEwmaOptions } from '../../src/balancer/latency-ewma.js';
import type { Candidate } from '../../src/balancer/strategy.js';

export interface TestCandidate extends Candidate {
  available: boolean;
  effectiveWeight: number;
  inflight: number;
  readonly latency: LatencyEwma;
}

/** The defaults of a pool's `ewma` with the default response timeout as the penalty. */
export const TEST_EWMA: LatencyEwmaOptions = { decayMs: 10_000, initialMs: 10, penaltyMs: 60_000 };

/** Candidates by id (weight 1) or id -> weight; their latency estimates read `clock` (a fresh FakeClock by default). */
export function candidates(
  spec: Record<string, number> | readonly string[],
  clock: FakeClock = new FakeClock(),
  ewma: LatencyEwmaOptions = TEST_EWMA,
): TestCandidate[] {
  const entries: Array<[string, number]> = Array.isArray(spec)
    ? spec.map((id): [string, number] => [id, 1])
    : Object.entries(spec as Record<string, number>);
  return entries.map(([id, weight]) => ({ id, available: true, effectiveWeight: weight, inflight: 0, latency: new LatencyEwma(clock, ewma) }));
}

/** Picks `count` times and returns the ids (undefined as '-'). */
export function sequence(pick: () => Candidate | undefined, count: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(pick()?.id ?? '-');
  return out;
}
