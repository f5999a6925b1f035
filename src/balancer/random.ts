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
