// The `random` strategy: uniform over eligible candidates, driven by an injected Random.

import { randomInt, type Random } from '../clock.js';
import { isEligible } from './eligibility.js';
import type { Candidate, Strategy } from './strategy.js';

export class RandomStrategy implements Strategy {
  readonly name = 'random' as const;
  private readonly random: Random;

  constructor(random: Random) {
    this.random = random;
  }

  pick(candidates: readonly Candidate[], excluded?: ReadonlySet<string>): Candidate | undefined {
    // Two passes over the array instead of collecting the eligible ones: no allocation per pick.
    const eligible = countEligible(candidates, excluded);
    if (eligible === 0) return undefined;
    return nthEligible(candidates, excluded, eligible === 1 ? 0 : randomInt(this.random, eligible));
  }
}

export function countEligible(candidates: readonly Candidate[], excluded: ReadonlySet<string> | undefined): number {
  let count = 0;
  for (const candidate of candidates) if (isEligible(candidate, excluded)) count++;
  return count;
}

/** The n-th (0-based) eligible candidate; the caller guarantees n < countEligible. */
export function nthEligible(
  candidates: readonly Candidate[],
  excluded: ReadonlySet<string> | undefined,
  n: number,
): Candidate | undefined {
  let seen = 0;
  for (const candidate of candidates) {
    if (!isEligible(candidate, excluded)) continue;
    if (seen === n) return candidate;
    seen++;
  }
  return undefined;
}

/** A random eligible candidate, each as likely as its effective weight: what hashing strategies do for a request without a key. */
export function pickWeightedRandom(random: Random, candidates: readonly Candidate[], excluded: ReadonlySet<string> | undefined): Candidate | undefined {
  let total = 0;
  for (const candidate of candidates) if (isEligible(candidate, excluded)) total += candidate.effectiveWeight;
  if (total <= 0) return undefined;
  let point = random.next() * total;
  let last: Candidate | undefined;
  for (const candidate of candidates) {
    if (!isEligible(candidate, excluded)) continue;
    last = candidate;
    point -= candidate.effectiveWeight;
    if (point < 0) return candidate;
  }
  // Floating-point sums can leave a sliver past the last one.
  return last;
}
