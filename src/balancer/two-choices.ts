// The draw behind power-of-two-choices strategies: two distinct eligible candidates, uniformly at random.

import { randomInt, type Random } from '../clock.js';
import { nthEligible } from './random.js';
import type { Candidate } from './strategy.js';

/**
 * Two distinct eligible candidates; the caller guarantees `eligible` (countEligible) is at least 2. The second is
 * drawn from the remaining n-1 and shifted past the first, so every ordered pair is equally likely and the first
 * draw is itself random (strategies break ties in its favour, which breaks them uniformly).
 */
export function drawTwo(
  random: Random,
  candidates: readonly Candidate[],
  excluded: ReadonlySet<string> | undefined,
  eligible: number,
): [Candidate, Candidate] {
  const first = randomInt(random, eligible);
  let second = randomInt(random, eligible - 1);
  if (second >= first) second++;
  return [nthEligible(candidates, excluded, first)!, nthEligible(candidates, excluded, second)!];
}
